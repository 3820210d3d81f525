"""One model served across several hosts (Ray): which hosts share a placement.

Filled in with the rendering rules below; ``placement_groups`` is what the fleet needs.
"""

from __future__ import annotations

from sparkkit.config import HostConfig
from sparkkit.errors import InputError


def placement_groups(cfgs: list[HostConfig], *, selected: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The host tuples that share a placed service; every one of them must be selected."""
    groups: list[tuple[str, ...]] = []
    for cfg in cfgs:
        for svc in cfg.services:
            placement = getattr(svc, "placement", None)
            if placement is None:
                continue
            hosts = tuple(placement.hosts)
            missing = [h for h in hosts if h not in selected]
            if missing:
                raise InputError(f"service {svc.name!r} is placed on {', '.join(hosts)}: deploy them together "
                                 f"({', '.join(missing)} not selected)", key=f"services.{svc.name}.placement.hosts")
            if hosts not in groups:
                groups.append(hosts)
    return groups
