"""Which services to probe, with which suites, at which address. Pure: config in, targets out."""

from __future__ import annotations

from sparkkit.inventory.model import HostConfig, Service
from sparkkit.errors import InputError
from sparkkit.probe.runner import Target
from sparkkit.probe.suites import Suite

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def model_of(svc: Service) -> str | None:
    """The name a service answers to: vLLM's --served-model-name, else its model; Ollama's model."""
    flags = dict(svc.flags)
    if svc.role == "vllm":
        return str(flags.get("served-model-name") or svc.role_vars.get("model") or "") or None
    return svc.role_vars.get("embedding_model") or svc.role_vars.get("model") or None


WILDCARD = ("0.0.0.0", "::")


def bind_of(cfg: HostConfig, svc: Service | None = None) -> str:
    """Where a service's API is reachable on the host: its own bind_address, else the host's."""
    return (svc.bind_address if svc is not None else None) or cfg.bind_address


def needs_tunnel(cfg: HostConfig, svc: Service | None = None) -> bool:
    """Ports published on every address (or on the SSH address itself) are reached directly at
    ``ansible_host``; ports bound to any other address (the loopback, or an address only the host
    may reach, like a fleet rehearsal host's publish address) through the SSH connection, which
    opens them from the host's side at the service's ``bind_address`` (``bind_of``)."""
    bind = bind_of(cfg, svc)
    if bind in LOOPBACK:
        return True
    return bind not in WILDCARD and bind != cfg.ssh.address


def targets_for(cfg: HostConfig, suites: dict[str, Suite], *, service: str | None = None,
                suite: str | None = None) -> list[tuple[Service, list[str]]]:
    chosen = [s for s in cfg.services if service is None or s.name == service]
    if service is not None and not chosen:
        names = ", ".join(s.name for s in cfg.services)
        raise InputError(f"no enabled service {service!r} on {cfg.name} (services: {names})", key="--service")
    if suite is not None and suite not in suites:
        raise InputError(f"unknown suite {suite!r} (suites: {', '.join(sorted(suites))})", key="--suite")
    out = []
    for svc in chosen:
        names = list(svc.role_vars.get("probe_suites") or [])
        for name in names:
            if name not in suites:
                raise InputError(f"unknown suite {name!r} (suites: {', '.join(sorted(suites))})",
                                 source=f"roles/{svc.role}/defaults/main.yml or inventory",
                                 key=f"services.{svc.name}.probe_suites")
        if suite is not None:
            names = [suite] if suite in names or service is not None else []
        if names:
            out.append((svc, names))
    return out


def make_target(svc: Service, suites: list[str], base_url: str) -> Target:
    return Target(service=svc.name, base_url=base_url, model=model_of(svc), suites=tuple(suites),
                  health_path=svc.role_vars.get("health_path") or "/health",
                  metrics_path="/metrics" if svc.role == "vllm" else None)
