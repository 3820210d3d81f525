"""The inventory: load an Ansible-style inventory and merge its layers (``layers``), validate it
(``read``, ``placement``, ``build``) into the frozen ``HostConfig`` records of ``model``, and read
the secrets it names (``secrets``). Pure except for reading the project's files.

Inside, imports flow build -> placement -> read -> model; ``layers`` and ``secrets`` stand beside.
May import: ``sparkkit.errors``. Everything else may import it.
"""
