"""Measure the live release: probe every service, read crash and memory facts, read the last
passing release's results, judge the gates; and keep a passing run's results on the host."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field

from sparkkit.deploy.apply import HostOps
from sparkkit.deploy.session import now_iso
from sparkkit.errors import OperationError
from sparkkit.host import commands as cmd
from sparkkit.inventory.model import HostConfig
from sparkkit.probe.runner import probe_service
from sparkkit.probe.suites import Suite
from sparkkit.probe.targets import bind_of, make_target, needs_tunnel, targets_for
from sparkkit.verify.gates import crash_facts, evaluate, parse_logs, service_metrics
from sparkkit.verify.memory import account, read_memory_facts
from sparkkit.inventory.address import http_url


@dataclass
class Measurement:
    """What one verification measured; filled step by step, so a run cut short keeps what it got."""

    probes: list = field(default_factory=list)
    memory: dict | None = None
    crashes: list = field(default_factory=list)
    gates: list = field(default_factory=list)
    baseline: dict | None = None  # the last passing release's results on this host
    metrics: dict = field(default_factory=dict)
    passed: bool = False


def effective_settings(cfg: HostConfig) -> list[dict]:
    """What was measured: image, command with flags, environment; secret values masked."""
    return [{"service": s.name, "image": s.image, "command": list(s.entrypoint or ()) + list(s.argv()),
             "env": dict(s.env), "secret_env": {name: "********" for name, _ in s.secret_env}}
            for s in cfg.services]


def _read_baseline(ops: HostOps) -> dict | None:
    text = ops.ex.run(cmd.read_last_pass(ops.cfg.root)).stdout
    head, _, body = text.partition("\n")
    if not head.strip() or not body.strip():
        return None
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and data.get("release") == head.strip() else None


def measure(ops: HostOps, cfg: HostConfig, suites: dict[str, Suite], m: Measurement, *, since_iso: str,
            before: dict | None = None) -> None:
    """Probe every service, then read crash and memory facts and judge the gates (fills ``m``).
    ``before``: the containers by service as the verification starts (read here when not given)."""
    if before is None:
        with ops.stage("facts"):
            before = {c.service: c for c in ops.containers()}
    for svc, names in targets_for(cfg, suites):
        if needs_tunnel(cfg, svc):
            base = f"http://127.0.0.1:{ops.ex.forward(svc.port, bind_of(cfg, svc))}"
        else:
            base = http_url(cfg.ssh.address, svc.port)
        ops.out(f"  probing {svc.name}: {', '.join(names)}")
        with ops.stage("probes"):
            target = make_target(svc, names, base)
            m.probes.append(probe_service(target, suites, out=lambda line: ops.out("  " + line)))
    with ops.stage("facts"):
        after = {c.service: c for c in ops.containers()}
        nonce = secrets.token_hex(8)
        logs = parse_logs(ops.ex.run(cmd.crash_logs(cfg.project, since_iso, nonce=nonce), timeout_s=120).stdout,
                          nonce)
    m.crashes = crash_facts(services=[s.name for s in cfg.services], before=before, after=after,
                            logs={k: ops.secrets.mask(v) for k, v in logs.items()},
                            signatures={s.name: s.crash_signatures for s in cfg.services})
    memory = None
    with ops.stage("facts"):
        try:
            facts = read_memory_facts(ops.ex, cfg.project, local=ops.ex.is_local)
            memory = account(facts, gpu=cfg.gpu)
            m.memory = asdict(memory)
        except OperationError as exc:
            m.memory = {"error": str(exc)}
        m.baseline = _read_baseline(ops)
    with ops.stage("gates"):
        m.metrics = {p["service"]: service_metrics(p) for p in m.probes}
        m.gates = evaluate(cfg=cfg, probes=m.probes, headroom_gib=memory.headroom_gib if memory else None,
                           crashes=m.crashes, previous=m.baseline)
        m.passed = all(g.passed for g in m.gates)


def store_results(ops: HostOps, release_id: str, m: Measurement) -> None:
    data = {"release": release_id, "passed": m.passed, "ts": now_iso(), "metrics": m.metrics}
    ops.ex.run(cmd.write_results(ops.cfg.root, release_id, passed=m.passed),
               stdin=json.dumps(data, indent=1).encode())
