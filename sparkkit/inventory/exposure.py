"""Which APIs a config opens to every network the host is on (pure): ``exposure_warnings``.

A service's API is reachable where its ``bind_address`` says (the host's by default, 127.0.0.1):
the address its port is published on, or with host networking (a placement's head) the address
vLLM listens on. An API on all interfaces (0.0.0.0 or ::) without an API key is usable by anyone
who can reach the host; so is a Ray head on all interfaces (Ray has no authentication). ``diff``
prints these warnings and the report of deploy-and-verify and verify lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sparkkit.inventory.model import HostConfig, Service
from sparkkit.inventory.address import host_port

ALL_INTERFACES = ("0.0.0.0", "::")
KEY_ENV_NAMES = ("VLLM_API_KEY", "API_KEY")  # or any name ending in _API_KEY


@dataclass(frozen=True, kw_only=True)
class ExposureWarning:
    service: str
    address: str
    port: int
    what: str  # "api" or "ray"

    @property
    def text(self) -> str:
        if self.what == "ray":
            return (f"service {self.service}: the Ray head listens on all interfaces ({host_port(self.address, self.port)}); "
                    f"Ray has no authentication: give placement.addresses the interconnect address")
        return (f"service {self.service} listens on all interfaces ({host_port(self.address, self.port)}) without an API "
                f"key: anyone who reaches this host can use it; set its bind_address (or the host's) to "
                f"127.0.0.1 or an internal address, or give it an API key (vLLM: secret_env VLLM_API_KEY)")


def has_api_key(svc: Service) -> bool:
    """An API key is configured: vLLM's ``api-key`` flag, or an env or secret env variable for one."""
    if any(name == "api-key" and value not in (None, False, "") for name, value in svc.flags):
        return True
    names = [name for name, _ in svc.env] + [name for name, _ in svc.secret_env]
    return any(name in KEY_ENV_NAMES or name.endswith("_API_KEY") for name in names)


def exposure_warnings(cfg: HostConfig) -> list[ExposureWarning]:
    """Every API on all interfaces without an API key, and every Ray head on all interfaces."""
    out = []
    for svc in cfg.services:
        address = svc.bind_address or cfg.bind_address
        if svc.role != "ray_worker" and address in ALL_INTERFACES and not has_api_key(svc):
            out.append(ExposureWarning(service=svc.name, address=address, port=svc.port, what="api"))
        p = svc.placement
        if p is not None and p.hosts[0] == cfg.name and p.address(cfg.name) in ALL_INTERFACES:
            out.append(ExposureWarning(service=svc.name, address=p.address(cfg.name), port=p.ray_port, what="ray"))
    return out
