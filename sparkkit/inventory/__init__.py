"""The inventory: read Ansible inventory sources as ansible-core does (``sources``, ``ini``,
``ranges``, ``yamltext`` into the ``graph``), give one host its variables in Ansible's precedence
with the origin of each (``hostvars``), evaluate Jinja2 in them (``template``), merge them into
layers (``layers``), print them as ansible-inventory does (``export``), validate them (``read``,
``placement``, ``build``) into the frozen ``HostConfig`` records of ``model``, and read the secrets
it names (``secrets``). Pure except for reading the project's files.

Inside, imports flow build -> placement -> read -> model, and layers -> template, hostvars ->
sources -> ini -> graph -> ranges, yamltext; ``export`` and ``secrets`` stand beside.
May import: ``sparkkit.errors``. Everything else may import it.
"""
