"""Build one host's frozen ``HostConfig`` from its merged inventory layers: validate every key,
merge each service over its role's defaults, apply placements, check dependencies, ports and the
memory budget. Pure: no I/O except reading role defaults.

Every error names the file that set the key and the key path, e.g.
``inventory/host_vars/spark.yml: services.vllm-nemotron.port: expected an integer, got 'abc'``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from sparkkit.errors import InputError
from sparkkit.inventory.imageref import image_problem
from sparkkit.inventory.layers import HostLayers, Layer, deep_merge, has_path, load_role_defaults
from sparkkit.inventory.model import (HostConfig, HostGates, Healthcheck, Service, ServiceGates, SshSettings,
                                      scalar_text)
from sparkkit.inventory.placement import place, read_placement
from sparkkit.inventory.read import (Reader, non_negative_int, optional_number, optional_sub, port_number,
                                     positive_int, scalar_map, string_list)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FLAG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_SECRET_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_PATH_RE = re.compile(r"^[A-Za-z0-9._/-]+$")
_IP_RE = re.compile(r"^[0-9a-fA-F.:]+$")

COMMON_SERVICE_KEYS = {
    "role", "enabled", "image", "port", "container_port", "command", "entrypoint", "flags", "env",
    "secret_env", "volumes", "healthcheck", "start_timeout_s", "memory_gib", "crash_signatures",
    "depends_on", "gpu", "ipc", "shm_size", "ulimits", "gates", "placement", "bind_address",
}
HOST_KEYS = {
    "ansible_host", "ansible_port", "ansible_user", "ansible_ssh_private_key_file", "ansible_connection",
    "ssh_known_hosts_file", "ssh_accept_new_host_key", "sparkkit_root", "compose_project",
    "keep_releases", "bind_address", "gpu", "host_memory_gib", "required_headroom_gib",
    "secrets_file", "services", "gates",
}


def _service_gates(reader: Reader) -> ServiceGates:
    g = reader.sub("gates")
    acc = g.sub("min_accuracy")
    min_accuracy = {}
    for suite in acc.data:
        value = acc.get(suite, float)
        if not 0 <= value <= 1:
            raise acc.fail(suite, f"must be between 0 and 1, got {value}")
        min_accuracy[str(suite)] = value
    ttft_source = g.get("ttft_source", str, "client")
    if ttft_source not in ("client", "server"):
        raise g.fail("ttft_source", f"expected client or server, got {ttft_source!r}")
    gates = ServiceGates(ttft_p50_max_ms=optional_number(g, "ttft_p50_max_ms"), ttft_source=ttft_source,
                         decode_tok_s_p50_min=optional_number(g, "decode_tok_s_p50_min"),
                         min_accuracy=min_accuracy, quality=g.get("quality", bool, True))
    g.reject_unknown()
    return gates


def _host_gates(reader: Reader, headroom: float) -> HostGates:
    g = reader.sub("gates")
    policy = g.get("first_deploy_failure", str, "stop")
    if policy not in ("stop", "keep"):
        raise g.fail("first_deploy_failure", f"expected stop or keep, got {policy!r}")

    def number(key: str, default: float) -> float:
        value = optional_number(g, key)
        return default if value is None else value

    gates = HostGates(min_headroom_gib=number("min_headroom_gib", headroom),
                      max_crashes=non_negative_int(g, "max_crashes", 0),
                      max_failed_requests=non_negative_int(g, "max_failed_requests", 0),
                      regression_ttft_pct=number("regression_ttft_pct", 20.0),
                      regression_decode_pct=number("regression_decode_pct", 10.0),
                      first_deploy_failure=policy)
    g.reject_unknown()
    return gates


def _healthcheck(reader: Reader) -> Healthcheck | None:
    hc = optional_sub(reader, "healthcheck")
    if hc is None:
        return None
    test = string_list(hc, "test")
    if not test:
        raise hc.fail("test", "must not be empty")
    result = Healthcheck(
        test=test,
        interval_s=positive_int(hc, "interval_s", 10),
        timeout_s=positive_int(hc, "timeout_s", 5),
        retries=positive_int(hc, "retries", 3),
        start_period_s=non_negative_int(hc, "start_period_s", 0),
    )
    hc.reject_unknown()
    return result


def _role_vars(reader: Reader, defaults: dict, role_source: str) -> dict:
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
    head = Reader(data, path, origin)
    role = head.get("role", str)
    if not _NAME_RE.match(role):
        raise head.fail("role", f"not a valid role name: {role!r}")
    if not (project_dir / "roles" / role).is_dir():
        raise head.fail("role", f"role {role!r} not found (no roles/{role}/)")
    role_layer: Layer = load_role_defaults(project_dir, role)

    def service_origin(p: tuple[str, ...]) -> str:
        """The inventory file that set ``p``, else the role defaults when they set it."""
        inner = p[len(path):]
        if inner and not layers.defines(p) and has_path(role_layer.data, inner):
            return role_layer.source
        return origin(p)

    merged = deep_merge(role_layer.data, data)
    r = Reader(merged, path, service_origin)
    r.get("role", str)
    enabled = r.get("enabled", bool, True)
    image = r.get("image", str)
    if not image.strip() or any(c.isspace() for c in image) or not image.isprintable():
        raise r.fail("image", f"not a valid image reference: {image!r}")
    if image.startswith("-"):  # docker would read it as an option
        raise r.fail("image", f"not a valid image reference: {image!r} (it starts with '-')")
    if (problem := image_problem(image)) is not None:
        raise r.fail("image", f"not a valid image reference: {image!r} ({problem})")
    port = port_number(r, "port")
    container_port = port_number(r, "container_port", port)
    command = string_list(r, "command", ())
    entrypoint = string_list(r, "entrypoint", None)
    flags = scalar_map(r, "flags", allow_null=True)
    for flag, _ in flags:
        if not _FLAG_RE.match(flag):
            raise r.fail(("flags", flag), "flag names use a-z, 0-9 and '-' (without the leading --)")
    env = scalar_map(r, "env")
    for key, _ in env:
        if not _ENV_RE.match(key):
            raise r.fail(("env", key), "not a valid environment variable name")
    secret_env = scalar_map(r, "secret_env")
    for key, secret in secret_env:
        if not _ENV_RE.match(key):
            raise r.fail(("secret_env", key), "not a valid environment variable name")
        if not isinstance(secret, str) or not _SECRET_RE.match(secret):
            raise r.fail(("secret_env", key), f"expected a secret name (a-z, 0-9, _), got {secret!r}")
    volumes = string_list(r, "volumes", ())
    healthcheck = _healthcheck(r)
    start_timeout_s = positive_int(r, "start_timeout_s")
    memory_gib = r.get("memory_gib", float)
    if memory_gib < 0:
        raise r.fail("memory_gib", f"must not be negative, got {memory_gib}")
    crash = string_list(r, "crash_signatures", ())
    for i, pattern in enumerate(crash):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise r.fail(("crash_signatures", str(i)), f"not a valid regular expression: {exc}") from None
    depends_on = string_list(r, "depends_on", ())
    gpu = r.get("gpu", bool, False)
    ipc = r.get("ipc", str, None, nullable=True)
    shm_size = r.get("shm_size", str, None, nullable=True)
    ulimits = {k: v for k, v in r.get("ulimits", dict, {}).items() if v is not None}  # null drops a limit
    gates = _service_gates(r)
    bind = r.get("bind_address", str, None, nullable=True)  # None: the host's bind_address
    if bind is not None and not _IP_RE.match(bind):
        raise r.fail("bind_address", f"expected an IP address, got {bind!r}")
    placement = read_placement(r)
    role_vars = _role_vars(r, role_layer.data, role_layer.source)
    r.reject_unknown(COMMON_SERVICE_KEYS | set(role_layer.data))
    if not enabled:
        return None, name, service_origin
    return Service(
        name=name, role=role, image=image, port=port, container_port=container_port,
        command=command, entrypoint=entrypoint, flags=flags,
        env=tuple((k, scalar_text(v)) for k, v in env), secret_env=tuple(secret_env),
        volumes=volumes, healthcheck=healthcheck, start_timeout_s=start_timeout_s,
        memory_gib=memory_gib, crash_signatures=crash, depends_on=depends_on, gpu=gpu, ipc=ipc,
        shm_size=shm_size, ulimits=ulimits, gates=gates, role_vars=role_vars, placement=placement,
        bind_address=bind,
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
    layers.check()  # a value whose template cannot be evaluated: refused here, where it is used
    data = layers.merged()
    origin = layers.origin
    r = Reader(data, (), origin)
    project_dir = layers.project_dir
    address = r.get("ansible_host", str)
    if not address.strip() or any(c.isspace() for c in address) or address.startswith("-"):
        raise r.fail("ansible_host", f"not a valid host address: {address!r}")
    ssh_port = port_number(r, "ansible_port", 22)
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
    if not _IP_RE.match(bind):
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
    r.reject_unknown(HOST_KEYS | layers.helpers)  # a variable other values use is allowed

    services: dict[str, Service] = {}
    disabled: set[str] = set()
    origins: dict[str, Callable] = {}
    for name in sorted(services_raw):
        svc, off, origins[str(name)] = _service(str(name), services_raw[name], ("services", str(name)), layers)
        if svc:
            services[svc.name] = replace(svc, bind_address=svc.bind_address or bind)  # its own, else the host's
        else:
            disabled.add(off)
    if not services:
        raise InputError("no enabled services", source=origin(("services",)), key="services")
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
