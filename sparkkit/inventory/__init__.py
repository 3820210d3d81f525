"""The inventory: load an Ansible-style inventory, merge its layers, validate it into a frozen
``HostConfig`` (and read the secrets it names). Pure except for reading the project's files.

May import: ``sparkkit.errors``. Everything else may import it.
"""
