"""The executor for a host, as its inventory says (``ansible_connection``): SSH, or local when the
kit runs on the host itself."""

from __future__ import annotations

from sparkkit.host.executor import Executor
from sparkkit.inventory.model import HostConfig


def executor_for(cfg: HostConfig) -> Executor:
    if cfg.ssh.connection == "local":
        from sparkkit.host.local import LocalExecutor

        return LocalExecutor(cfg.name)
    from sparkkit.host.ssh import SshExecutor

    return SshExecutor(cfg.ssh, cfg.name)
