"""Everything that touches a host: the ``Executor`` seam (``executor``) and its three kinds —
SSH (``ssh``, with ``worker`` and ``relay``), local (``local``) and a scriptable fake for tests
(``fake``) — picked per host by ``connect.executor_for``; remote commands as argv lists
(``commands``); parsers for what those commands print (``facts``).

May import: ``inventory`` (connection settings), ``errors``.
"""
