"""deploy-and-verify on several hosts at once or rolling, and the fleet summary.

May import: ``verify``, ``deploy``, ``release``, ``host``, ``inventory``, ``errors``.
"""
