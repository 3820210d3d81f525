"""The probe suite: measure every service of a stack as the benchmark report did, without its
bugs. Requests return records and never raise.

May import: ``inventory`` (service config, YAML loading), ``errors``.
"""
