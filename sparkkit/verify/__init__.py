"""deploy-and-verify: probe the live release, read memory and crash facts, judge the gates,
keep or roll back, and write the report. ``decide`` holds the pure decisions (the verdict and its
words), ``measure`` the measuring, ``run`` the sequence, ``report`` what a person reads.

May import: ``deploy``, ``probe``, ``release``, ``host``, ``inventory``, ``errors``.
"""
