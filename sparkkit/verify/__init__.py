"""deploy-and-verify: probe the live release, read memory and crash facts, judge the gates,
keep or roll back, and write the report.

May import: ``deploy``, ``probe``, ``release``, ``host``, ``inventory``, ``errors``.
"""
