"""The command line: argument parsing, printing and exit codes only.

It loads the inventory, renders the release and hands the work to ``deploy``, ``verify`` or
``fleet``; it decides nothing itself. May import every other package; nothing imports it.
"""
