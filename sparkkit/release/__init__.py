"""A release: the compose file, env files and config files rendered in memory, and its id.

May import: ``inventory``, ``errors``.
"""
