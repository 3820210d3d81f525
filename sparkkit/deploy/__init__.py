"""Apply a release to one host under its lock: preflight, upload, start wave by wave, switch,
restore on failure; rollback, down, status and diff are the same operations aimed elsewhere.

May import: ``release``, ``host``, ``inventory``, ``errors``.
"""
