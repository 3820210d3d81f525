"""One model served across several hosts with Ray (pure): reading a service's ``placement``
mapping, and the service as each of its hosts runs it.

A vLLM service with a ``placement`` becomes, on each host of ``placement.hosts``:

- on the first (the **head**): the same vLLM service, whose container first starts a Ray head on
  ``ray_port`` (on the host's network with ``network: host``, the default, as Ray needs many ports
  between nodes; with ``network: bridge`` only that port is published, on the head's link
  address, which is enough for the rehearsal simulator), then execs
  ``vllm serve`` with ``--tensor-parallel-size N`` (or ``--pipeline-parallel-size N``) and
  ``--distributed-executor-backend ray``. vLLM waits until the cluster has a GPU per rank before it
  serves, so its health check passes only when every worker has joined: this is the one endpoint
  the probe suite measures.
- on every other host (a **worker**): a ``ray_worker`` service of the same name and image running
  ``ray start --address=HEAD:PORT --block``, healthy while the head counts it as a live node. It
  serves no API, so no probe suite runs on it.

Each side gets ``VLLM_HOST_IP`` (and Ray ``--node-ip-address``) set to its own link address. The
start order is head, then workers (they retry until the head answers), then vLLM on the head (it
waits for them). The fleet deploys the hosts of a placement in one batch and rolls all of them
back when one fails (``fleet.plan.partners_to_roll_back``).
"""

from __future__ import annotations

import re
from dataclasses import replace

from sparkkit.errors import InputError
from sparkkit.inventory.model import HostConfig, Placement, Service, ServiceGates
from sparkkit.inventory.read import Reader, optional_sub, port_number, string_list
from sparkkit.inventory.address import host_port

# The values travel as arguments ($0 = the Ray port, "$@" = vllm serve ...), never inside the script.
# Ray binds to the link address it is given (--node-ip-address; Ray >= 2.49 binds its GCS, raylet and
# object manager there instead of 0.0.0.0), its dashboard to the loopback only.
HEAD_SCRIPT = ('ray start --head --port="$0" --node-ip-address="$VLLM_HOST_IP" --dashboard-host=127.0.0.1 '
               '--disable-usage-stats && exec "$@"')
SIZE_FLAGS = {"tensor": "tensor-parallel-size", "pipeline": "pipeline-parallel-size"}
_IP_RE = re.compile(r"^[0-9a-fA-F.:]+$")


def read_placement(reader: Reader) -> Placement | None:
    """A service's ``placement`` mapping, validated; None where it has none."""
    p = optional_sub(reader, "placement")
    if p is None:
        return None
    hosts = string_list(p, "hosts")
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
    ray_port = port_number(p, "ray_port", 6379)
    network = p.get("network", str, "host")
    if network not in ("host", "bridge"):
        raise p.fail("network", f"expected host or bridge, got {network!r}")
    p.reject_unknown()
    return Placement(hosts=hosts, addresses=tuple(addresses), parallel=parallel, ray_port=ray_port,
                     network=network)


def place(svc: Service, host: str, source: str) -> Service:
    """The service as it runs on ``host``: the Ray head with vLLM, or a Ray worker."""
    p = svc.placement
    key = f"services.{svc.name}.placement"
    if svc.role != "vllm":
        raise InputError(f"only vllm services can be placed on several hosts (role is {svc.role!r})",
                         source=source, key=key)
    if host not in p.hosts:
        raise InputError(f"host {host!r} is not one of placement.hosts ({', '.join(p.hosts)}); give the "
                         f"service only to those hosts' group", source=source, key=f"{key}.hosts")
    head = p.hosts[0]
    env = {**dict(svc.env), "VLLM_HOST_IP": p.address(host)}
    if p.network == "host":  # Ray needs many ports between the nodes: the host's network, no mapping
        svc = replace(svc, network_mode="host", container_port=svc.port)
    if host == head:
        size_flag = SIZE_FLAGS[p.parallel]
        flags = [(k, v) for k, v in svc.flags if k not in (*SIZE_FLAGS.values(), "distributed-executor-backend")]
        flags += [(size_flag, len(p.hosts)), ("distributed-executor-backend", "ray")]
        return replace(svc, entrypoint=("sh", "-c", HEAD_SCRIPT, str(p.ray_port)), flags=tuple(flags),
                       env=tuple(env.items()),
                       extra_ports=() if p.network == "host" else ((p.address(head), p.ray_port, p.ray_port),))
    head_at = host_port(p.address(head), p.ray_port)
    health = svc.healthcheck and replace(svc.healthcheck, test=("CMD", "ray", "health-check", "--address", head_at))
    return replace(svc, role="ray_worker", entrypoint=("ray",),
                   command=("start", f"--address={head_at}", f"--node-ip-address={p.address(host)}", "--block"),
                   flags=(), env=tuple(env.items()), healthcheck=health, depends_on=(),
                   gates=ServiceGates(quality=False), role_vars={**svc.role_vars, "probe_suites": []})


def role_on(svc: Service, host: str) -> str | None:
    """head, worker, or None for a service without a placement."""
    if svc.placement is None:
        return None
    return "head" if svc.placement.hosts[0] == host else "worker"


def placement_groups(cfgs: list[HostConfig], *, selected: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The host tuples that share a placed service; every one of them must be selected."""
    groups: list[tuple[str, ...]] = []
    for cfg in cfgs:
        for svc in cfg.services:
            if svc.placement is None:
                continue
            hosts = tuple(svc.placement.hosts)
            missing = [h for h in hosts if h not in selected]
            if missing:
                raise InputError(f"service {svc.name!r} is placed on {', '.join(hosts)}: deploy them together "
                                 f"({', '.join(missing)} not selected)", source=f"host {cfg.name}",
                                 key=f"services.{svc.name}.placement.hosts")
            if hosts not in groups:
                groups.append(hosts)
    return groups
