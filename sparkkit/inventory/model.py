"""The typed, frozen config of one host: what ``build.build_config`` returns and every other
package reads. Records only; no I/O, no validation (that is ``build`` and ``read``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

Scalar = str | int | float | bool


@dataclass(frozen=True, kw_only=True)
class Healthcheck:
    test: tuple[str, ...]
    interval_s: int
    timeout_s: int
    retries: int
    start_period_s: int


@dataclass(frozen=True, kw_only=True)
class ServiceGates:
    """A service's thresholds for deploy-and-verify; None means "no such gate"."""

    ttft_p50_max_ms: float | None = None  # p50 over the measured requests of its chat suites
    ttft_source: str = "client"  # client: the client's TTFT p50; server: the server's TTFT mean (vLLM /metrics)
    decode_tok_s_p50_min: float | None = None
    min_accuracy: dict = field(default_factory=dict)  # suite name -> minimum share of passed cases
    quality: bool = True  # every quality gate of the probe suite must pass


@dataclass(frozen=True, kw_only=True)
class HostGates:
    min_headroom_gib: float
    max_crashes: int = 0
    max_failed_requests: int = 0
    regression_ttft_pct: float = 20.0  # TTFT p50 may grow at most this much over the last passing release
    regression_decode_pct: float = 10.0  # decode p50 may drop at most this much
    first_deploy_failure: str = "stop"  # stop: a first release that fails its gates is stopped; keep: left up


@dataclass(frozen=True, kw_only=True)
class Placement:
    """One model served across several hosts with Ray (see ``sparkkit/inventory/placement.py``)."""

    hosts: tuple[str, ...]  # the first is the Ray head and serves the API; the others are Ray workers
    addresses: tuple[tuple[str, str], ...]  # host -> its address on the link between the hosts
    parallel: str  # tensor (--tensor-parallel-size N) or pipeline (--pipeline-parallel-size N)
    ray_port: int
    network: str = "host"  # host: Ray and vLLM on the host's network (real Sparks); bridge: published ports

    def address(self, host: str) -> str:
        return dict(self.addresses)[host]


@dataclass(frozen=True, kw_only=True)
class Service:
    name: str
    role: str
    image: str
    port: int
    container_port: int
    command: tuple[str, ...]
    entrypoint: tuple[str, ...] | None
    flags: tuple[tuple[str, Scalar], ...]  # rendered as --name value / --name for true
    env: tuple[tuple[str, str], ...]
    secret_env: tuple[tuple[str, str], ...]  # (ENV_NAME, secret name)
    volumes: tuple[str, ...]
    healthcheck: Healthcheck | None
    start_timeout_s: int
    memory_gib: float
    crash_signatures: tuple[str, ...]
    depends_on: tuple[str, ...]
    gpu: bool
    ipc: str | None
    shm_size: str | None
    ulimits: dict
    gates: ServiceGates = field(default_factory=ServiceGates)
    role_vars: dict = field(default_factory=dict)  # keys a role declares in its defaults
    placement: Placement | None = None  # served across several hosts (set before placement is applied)
    extra_ports: tuple[tuple[str, int, int], ...] = ()  # (address, host port, container port) beyond ``port``
    network_mode: str | None = None  # "host": no published ports (set by a placement)
    # where its API is reachable: the address its port is published on, or on the host's network the
    # address it listens on; the service's own bind_address, else the host's (build_config sets it)
    bind_address: str | None = None

    def listen_address(self) -> str:
        """The address the service's process listens on: all of its own container's interfaces where
        it has a network of its own (the port is published on ``bind_address`` only), or
        ``bind_address`` itself on the host's network, where all interfaces are the host's."""
        return self.bind_address if self.network_mode == "host" else "0.0.0.0"

    def healthcheck_test(self) -> tuple[str, ...]:
        """The healthcheck command with ``{port}`` replaced by the container port."""
        assert self.healthcheck is not None
        return tuple(part.replace("{port}", str(self.container_port)) for part in self.healthcheck.test)

    def argv(self, *positional: str) -> tuple[str, ...]:
        """The container command: ``command``, then ``positional``, then the flags."""
        out = list(self.command) + [str(p) for p in positional]
        for name, value in self.flags:
            if value is True:
                out.append(f"--{name}")
            elif value is False or value is None:
                continue
            else:
                out += [f"--{name}", scalar_text(value)]
        return tuple(out)


@dataclass(frozen=True, kw_only=True)
class SshSettings:
    address: str
    port: int
    user: str | None
    key_file: Path | None
    known_hosts_file: Path | None
    accept_new_host_key: bool
    connection: str = "ssh"  # ansible_connection: "ssh", or "local" (the kit runs on the host itself)


@dataclass(frozen=True, kw_only=True)
class HostConfig:
    name: str
    groups: tuple[str, ...]
    ssh: SshSettings
    root: str
    project: str
    keep_releases: int
    bind_address: str
    gpu: bool
    host_memory_gib: float
    required_headroom_gib: float
    secrets_file: Path | None
    services: tuple[Service, ...]  # enabled services only, in name order
    disabled: tuple[str, ...]
    gates: HostGates

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)


def accepting_new_host_key(cfg: HostConfig) -> HostConfig:
    """The same config, with an unknown SSH host key trusted and recorded (--accept-new-host-key)."""
    return replace(cfg, ssh=replace(cfg.ssh, accept_new_host_key=True))


def scalar_text(value: Scalar) -> str:
    """A flag or environment value as text: booleans as ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
