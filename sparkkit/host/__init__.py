"""Everything that touches a host: the ``Executor`` seam (SSH), remote commands as argv lists,
and parsers for what those commands print (facts).

May import: ``inventory`` (connection settings), ``errors``.
"""
