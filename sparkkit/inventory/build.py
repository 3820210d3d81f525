"""Validate merged inventory data into typed, frozen config. Pure: no I/O except reading role defaults.

Every error names the file that set the key and the key path, e.g.
``inventory/host_vars/spark.yml: services.vllm-nemotron.port: expected an integer, got 'abc'``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sparkkit.errors import InputError
from sparkkit.inventory.layers import HostLayers, Layer, deep_merge, load_role_defaults
from sparkkit.inventory.layers import _has_path as _has

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
    """One model served across several hosts with Ray (see ``sparkkit/placement.py``)."""

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
                out += [f"--{name}", _scalar_text(value)]
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
    from dataclasses import replace

    return replace(cfg, ssh=replace(cfg.ssh, accept_new_host_key=True))


def _scalar_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_MISSING = object()
_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping"}


class _Reader:
    """Typed access to one mapping with errors that name the file and the key path."""

    def __init__(self, data: dict, path: tuple[str, ...], origin: Callable[[tuple[str, ...]], str]):
        self.data = data
        self.path = path
        self.origin = origin
        self.used: set[str] = set()

    def fail(self, key: str | tuple[str, ...], message: str) -> InputError:
        keys = (key,) if isinstance(key, str) else key
        full = self.path + tuple(keys)
        return InputError(message, source=self.origin(full), key=".".join(full))

    def get(self, key: str, kind: type, default: Any = _MISSING, *, nullable: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise self.fail(key, f"missing value ({_TYPE_WORDS[kind]} is required)")
            return default
        value = self.data[key]
        if value is None and nullable:
            return None
        return check_type(value, kind, lambda msg: self.fail(key, msg))

    def sub(self, key: str) -> "_Reader":
        value = self.get(key, dict, {})
        return _Reader(value, self.path + (key,), self.origin)

    def reject_unknown(self, allowed: set[str] | None = None) -> None:
        allowed = self.used if allowed is None else allowed
        for key in self.data:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                raise self.fail(str(key), f"unknown key (expected one of: {hint})")


MAX_TEXT = 4096  # characters in one string value (a model id, an image, a path, a flag value)
MAX_INT = 2**31 - 1


def check_size(value: Any, fail: Callable[[str], InputError]) -> None:
    """Values no real inventory needs: very long strings, huge or non-finite numbers, NUL bytes."""
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise fail(f"value too long ({len(value)} characters; at most {MAX_TEXT})")
        if "\0" in value:
            raise fail("value holds a NUL character")
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > MAX_INT:
            raise fail(f"number out of range (at most {MAX_INT})")
    elif isinstance(value, float) and (not math.isfinite(value) or abs(value) > 1e15):
        raise fail(f"number out of range: {value!r}")


def check_type(value: Any, kind: type, fail: Callable[[str], InputError]) -> Any:
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        list: lambda v: isinstance(v, list),
        dict: lambda v: isinstance(v, dict),
    }[kind](value)
    if not ok:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise fail(f"expected {_TYPE_WORDS[kind]}, got {shown}")
    check_size(value, fail)
    return float(value) if kind is float else value


def _str_list(reader: _Reader, key: str, default: Any = _MISSING) -> tuple[str, ...] | None:
    items = reader.get(key, list, default, nullable=True)
    if items is None:
        return None
    for i, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise reader.fail((key, str(i)), f"expected a string, got {item!r}")
        check_size(item, lambda msg, i=i: reader.fail((key, str(i)), msg))
    return tuple(str(item) for item in items)


def _scalar_map(reader: _Reader, key: str, *, allow_null: bool = False) -> tuple[tuple[str, Scalar], ...]:
    mapping = reader.get(key, dict, {})
    out = []
    for name, value in mapping.items():
        if not isinstance(name, str) or not name:
            raise reader.fail((key, str(name)), "keys must be non-empty strings")
        if value is None and allow_null:
            out.append((name, None))
        elif isinstance(value, (str, int, float, bool)):
            check_size(value, lambda msg: reader.fail((key, name), msg))
            if isinstance(value, str) and ("\n" in value or "\r" in value):
                raise reader.fail((key, name), "value must be a single line (it holds a line break)")
            out.append((name, value))
        else:
            raise reader.fail((key, name), f"expected a string, number or boolean, got {value!r}")
    return tuple(out)


_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FLAG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SECRET_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_PATH_RE = re.compile(r"^[A-Za-z0-9._/-]+$")

COMMON_SERVICE_KEYS = {
    "role", "enabled", "image", "port", "container_port", "command", "entrypoint", "flags", "env",
    "secret_env", "volumes", "healthcheck", "start_timeout_s", "memory_gib", "crash_signatures",
    "depends_on", "gpu", "ipc", "shm_size", "ulimits", "gates", "placement",
}
HOST_KEYS = {
    "ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file", "ansible_connection",
    "ssh_known_hosts_file", "ssh_accept_new_host_key", "sparkkit_root", "compose_project",
    "keep_releases", "bind_address", "gpu", "host_memory_gib", "required_headroom_gib",
    "secrets_file", "services", "gates",
}


def _optional_number(reader: _Reader, key: str) -> float | None:
    value = reader.get(key, float, None, nullable=True)
    if value is not None and value < 0:
        raise reader.fail(key, f"must not be negative, got {value}")
    return value


def _service_gates(reader: _Reader) -> ServiceGates:
    g = reader.sub("gates")
    acc = g.sub("min_accuracy")
    min_accuracy = {}
    for suite in acc.data:
        value = acc.get(suite, float)
        if not 0 <= value <= 1:
            raise acc.fail(suite, f"must be between 0 and 1, got {value}")
        min_accuracy[str(suite)] = value
    gates = ServiceGates(ttft_p50_max_ms=_optional_number(g, "ttft_p50_max_ms"),
                         decode_tok_s_p50_min=_optional_number(g, "decode_tok_s_p50_min"),
                         min_accuracy=min_accuracy, quality=g.get("quality", bool, True))
    g.reject_unknown()
    return gates


def _host_gates(reader: _Reader, headroom: float) -> HostGates:
    g = reader.sub("gates")
    policy = g.get("first_deploy_failure", str, "stop")
    if policy not in ("stop", "keep"):
        raise g.fail("first_deploy_failure", f"expected stop or keep, got {policy!r}")

    def number(key: str, default: float) -> float:
        value = _optional_number(g, key)
        return default if value is None else value

    gates = HostGates(min_headroom_gib=number("min_headroom_gib", headroom),
                      max_crashes=_non_negative(g, "max_crashes", 0),
                      max_failed_requests=_non_negative(g, "max_failed_requests", 0),
                      regression_ttft_pct=number("regression_ttft_pct", 20.0),
                      regression_decode_pct=number("regression_decode_pct", 10.0),
                      first_deploy_failure=policy)
    g.reject_unknown()
    return gates


_IP_RE = re.compile(r"^[0-9a-fA-F.:]+$")


def _optional_sub(reader: _Reader, key: str) -> _Reader | None:
    """The mapping under ``key``, or None where it is missing or null."""
    if reader.data.get(key) is None:
        reader.used.add(key)
        return None
    return reader.sub(key)


def _placement(reader: _Reader) -> Placement | None:
    p = _optional_sub(reader, "placement")
    if p is None:
        return None
    hosts = _str_list(p, "hosts")
    if len(hosts) < 2:
        raise p.fail("hosts", f"a placement needs at least 2 hosts, got {len(hosts)}")
    if len(set(hosts)) != len(hosts):
        raise p.fail("hosts", "a host is listed twice")
    parallel = p.get("parallel", str, "tensor")
    if parallel not in ("tensor", "pipeline"):
        raise p.fail("parallel", f"expected tensor or pipeline, got {parallel!r}")
    addr = p.sub("addresses")
    addresses = []
    for host in hosts:
        value = addr.get(host, str)
        if not _IP_RE.match(value):
            raise addr.fail(host, f"expected an IP address, got {value!r}")
        addresses.append((host, value))
    addr.reject_unknown(set(hosts))
    ray_port = _port(p, "ray_port", 6379)
    network = p.get("network", str, "host")
    if network not in ("host", "bridge"):
        raise p.fail("network", f"expected host or bridge, got {network!r}")
    p.reject_unknown()
    return Placement(hosts=hosts, addresses=tuple(addresses), parallel=parallel, ray_port=ray_port,
                     network=network)


def _healthcheck(reader: _Reader) -> Healthcheck | None:
    hc = _optional_sub(reader, "healthcheck")
    if hc is None:
        return None
    test = _str_list(hc, "test")
    if not test:
        raise hc.fail("test", "must not be empty")
    result = Healthcheck(
        test=test,
        interval_s=_positive(hc, "interval_s", 10),
        timeout_s=_positive(hc, "timeout_s", 5),
        retries=_positive(hc, "retries", 3),
        start_period_s=_non_negative(hc, "start_period_s", 0),
    )
    hc.reject_unknown()
    return result


def _positive(reader: _Reader, key: str, default: Any = _MISSING) -> int:
    value = reader.get(key, int, default)
    if value <= 0:
        raise reader.fail(key, f"must be greater than 0, got {value}")
    return value


def _non_negative(reader: _Reader, key: str, default: Any = _MISSING) -> int:
    value = reader.get(key, int, default)
    if value < 0:
        raise reader.fail(key, f"must not be negative, got {value}")
    return value


def _port(reader: _Reader, key: str, default: Any = _MISSING) -> int:
    value = reader.get(key, int, default)
    if not 1 <= value <= 65535:
        raise reader.fail(key, f"must be a port number 1-65535, got {value}")
    return value


def _role_vars(reader: _Reader, defaults: dict, role_source: str) -> dict:
    """Keys a role adds in its defaults are valid for its services, with the default's type."""
    out = {}
    for key, default in defaults.items():
        if key in COMMON_SERVICE_KEYS:
            continue
        kind = type(default) if isinstance(default, (str, bool, list, dict)) else (
            float if isinstance(default, float) else int if isinstance(default, int) else None)
        if kind is None:
            raise InputError(f"role defaults must not be null (give {key} a typed default)",
                             source=role_source, key=key)
        out[key] = reader.get(key, kind)
    return out


def _service(name: str, data: Any, path: tuple[str, ...], layers: HostLayers):
    """One service: (Service or None when disabled, its name when disabled, its origin function)."""
    origin, project_dir = layers.origin, layers.project_dir
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping, got {data!r}", source=origin(path), key=".".join(path))
    if not _NAME_RE.match(name):
        raise InputError("service names use a-z, 0-9, '-' and '_' and start with a letter or digit",
                         source=origin(path), key=".".join(path))
    head = _Reader(data, path, origin)
    role = head.get("role", str)
    if not _NAME_RE.match(role):
        raise head.fail("role", f"not a valid role name: {role!r}")
    if not (project_dir / "roles" / role).is_dir():
        raise head.fail("role", f"role {role!r} not found (no roles/{role}/)")
    role_layer: Layer = load_role_defaults(project_dir, role)

    def service_origin(p: tuple[str, ...]) -> str:
        """The inventory file that set ``p``, else the role defaults when they set it."""
        inner = p[len(path):]
        if inner and not layers.defines(p) and _has(role_layer.data, inner):
            return role_layer.source
        return origin(p)

    merged = deep_merge(role_layer.data, data)
    r = _Reader(merged, path, service_origin)
    r.get("role", str)
    enabled = r.get("enabled", bool, True)
    image = r.get("image", str)
    if not image.strip() or any(c.isspace() for c in image):
        raise r.fail("image", f"not a valid image reference: {image!r}")
    port = _port(r, "port")
    container_port = _port(r, "container_port", port)
    command = _str_list(r, "command", ())
    entrypoint = _str_list(r, "entrypoint", None)
    flags = _scalar_map(r, "flags", allow_null=True)
    for flag, _ in flags:
        if not _FLAG_RE.match(flag):
            raise r.fail(("flags", flag), "flag names use a-z, 0-9 and '-' (without the leading --)")
    env = _scalar_map(r, "env")
    for key, _ in env:
        if not _ENV_RE.match(key):
            raise r.fail(("env", key), "not a valid environment variable name")
    secret_env = _scalar_map(r, "secret_env")
    for key, secret in secret_env:
        if not _ENV_RE.match(key):
            raise r.fail(("secret_env", key), "not a valid environment variable name")
        if not isinstance(secret, str) or not _SECRET_RE.match(secret):
            raise r.fail(("secret_env", key), f"expected a secret name (a-z, 0-9, _), got {secret!r}")
    volumes = _str_list(r, "volumes", ())
    healthcheck = _healthcheck(r)
    start_timeout_s = _positive(r, "start_timeout_s")
    memory_gib = r.get("memory_gib", float)
    if memory_gib < 0:
        raise r.fail("memory_gib", f"must not be negative, got {memory_gib}")
    crash = _str_list(r, "crash_signatures", ())
    for i, pattern in enumerate(crash):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise r.fail(("crash_signatures", str(i)), f"not a valid regular expression: {exc}") from None
    depends_on = _str_list(r, "depends_on", ())
    gpu = r.get("gpu", bool, False)
    ipc = r.get("ipc", str, None, nullable=True)
    shm_size = r.get("shm_size", str, None, nullable=True)
    ulimits = {k: v for k, v in r.get("ulimits", dict, {}).items() if v is not None}  # null drops a limit
    gates = _service_gates(r)
    placement = _placement(r)
    role_vars = _role_vars(r, role_layer.data, role_layer.source)
    r.reject_unknown(COMMON_SERVICE_KEYS | set(role_layer.data))
    if not enabled:
        return None, name, service_origin
    return Service(
        name=name, role=role, image=image, port=port, container_port=container_port,
        command=command, entrypoint=entrypoint, flags=flags,
        env=tuple((k, _scalar_text(v)) for k, v in env), secret_env=tuple(secret_env),
        volumes=volumes, healthcheck=healthcheck, start_timeout_s=start_timeout_s,
        memory_gib=memory_gib, crash_signatures=crash, depends_on=depends_on, gpu=gpu, ipc=ipc,
        shm_size=shm_size, ulimits=ulimits, gates=gates, role_vars=role_vars, placement=placement,
    ), None, service_origin


def _check_depends(services: dict[str, Service], disabled: set[str], origin) -> None:
    for svc in services.values():
        for dep in svc.depends_on:
            if dep not in services:
                why = "is disabled" if dep in disabled else "is not a service"
                path = ("services", svc.name, "depends_on")
                raise InputError(f"{dep!r} {why}", source=origin(path), key=".".join(path))
    # cycles
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join(trail[trail.index(name):] + [name])
            path = ("services", name, "depends_on")
            raise InputError(f"dependency cycle: {cycle}", source=origin(path), key=".".join(path))
        state[name] = 1
        for dep in services[name].depends_on:
            visit(dep, trail + [name])
        state[name] = 2

    for name in services:
        visit(name, [])


def build_config(layers: HostLayers) -> HostConfig:
    data = layers.merged()
    origin = layers.origin
    r = _Reader(data, (), origin)
    project_dir = layers.project_dir
    address = r.get("ansible_host", str)
    if not address.strip() or any(c.isspace() for c in address) or address.startswith("-"):
        raise r.fail("ansible_host", f"not a valid host address: {address!r}")
    ssh_port = _port(r, "ansible_port", 22)
    user = r.get("ansible_user", str, None, nullable=True)
    if user is not None and (not user or not re.match(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$", user)):
        raise r.fail("ansible_user", f"not a valid user name: {user!r}")
    key_file = r.get("ansible_ssh_private_key_file", str, None, nullable=True)
    known_hosts = r.get("ssh_known_hosts_file", str, None, nullable=True)
    accept_new = r.get("ssh_accept_new_host_key", bool, False)
    connection = r.get("ansible_connection", str, "ssh")
    if connection not in ("ssh", "local"):
        raise r.fail("ansible_connection", f"expected ssh or local, got {connection!r}")
    root = r.get("sparkkit_root", str, "/opt/sparkkit")
    if not root.startswith("/") or "\n" in root or root.rstrip("/") == "" or ".." in root.split("/"):
        raise r.fail("sparkkit_root", f"must be an absolute path without '..', got {root!r}")
    if not _PATH_RE.match(root):
        raise r.fail("sparkkit_root", "use letters, digits and . _ - / only (no spaces, quotes, $, ; or line breaks)")
    project = r.get("compose_project", str, "sparkkit")
    if not _NAME_RE.match(project):
        raise r.fail("compose_project", "use a-z, 0-9, '-' and '_', starting with a letter or digit")
    keep = r.get("keep_releases", int, 5)
    if keep < 2:
        raise r.fail("keep_releases", f"must be at least 2 (current and previous), got {keep}")
    bind = r.get("bind_address", str, "127.0.0.1")
    if not re.match(r"^[0-9a-fA-F.:]+$", bind):
        raise r.fail("bind_address", f"expected an IP address, got {bind!r}")
    gpu = r.get("gpu", bool)
    host_mem = r.get("host_memory_gib", float)
    if host_mem <= 0:
        raise r.fail("host_memory_gib", f"must be greater than 0, got {host_mem}")
    headroom = r.get("required_headroom_gib", float, 0.0)
    if headroom < 0:
        raise r.fail("required_headroom_gib", f"must not be negative, got {headroom}")
    secrets_file = r.get("secrets_file", str, None, nullable=True)
    host_gates = _host_gates(r, headroom)
    services_raw = r.get("services", dict)
    r.reject_unknown(HOST_KEYS)

    services: dict[str, Service] = {}
    disabled: set[str] = set()
    origins: dict[str, Callable] = {}
    for name in sorted(services_raw):
        svc, off, origins[str(name)] = _service(str(name), services_raw[name], ("services", str(name)), layers)
        if svc:
            services[svc.name] = svc
        else:
            disabled.add(off)
    if not services:
        raise InputError("no enabled services", source=origin(("services",)), key="services")
    from sparkkit.inventory.placement import place

    for name, svc in list(services.items()):
        if svc.placement is not None:
            services[name] = place(svc, layers.host, origins[name](("services", name, "placement")))
    _check_depends(services, disabled, lambda p: origins[p[1]](p))

    seen_ports: dict[int, str] = {}
    for svc in services.values():
        if svc.port in seen_ports:
            path = ("services", svc.name, "port")
            raise InputError(f"host port {svc.port} is already used by service {seen_ports[svc.port]!r}",
                             source=origins[svc.name](path), key=".".join(path))
        seen_ports[svc.port] = svc.name

    budget = sum(s.memory_gib for s in services.values())
    if budget + headroom > host_mem:
        raise InputError(
            f"services need {budget:.1f} GiB + {headroom:.1f} GiB required headroom = "
            f"{budget + headroom:.1f} GiB, more than the host's {host_mem:.1f} GiB",
            source=origin(("host_memory_gib",)), key="host_memory_gib")

    def local_path(value: str | None) -> Path | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else project_dir / path

    return HostConfig(
        name=layers.host, groups=layers.groups,
        ssh=SshSettings(address=address, port=ssh_port, user=user, key_file=local_path(key_file),
                        known_hosts_file=local_path(known_hosts), accept_new_host_key=accept_new,
                        connection=connection),
        root=root.rstrip("/"), project=project, keep_releases=keep, bind_address=bind, gpu=gpu,
        host_memory_gib=host_mem, required_headroom_gib=headroom,
        secrets_file=local_path(secrets_file), services=tuple(services.values()),
        disabled=tuple(sorted(disabled)), gates=host_gates,
    )
