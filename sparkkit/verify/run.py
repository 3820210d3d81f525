"""deploy-and-verify and verify: probe the live release, read memory and crash facts, judge the
gates, keep or roll back, and hand everything to the report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable

from sparkkit.host import commands as cmd
from sparkkit.inventory.model import HostConfig
from sparkkit.deploy.apply import DeployFailed, HostOps, LockHeld, now_iso
from sparkkit.errors import ConnectionLost, HostUnreachable, Interrupted, NeedsAttention, OperationError
from sparkkit.verify.gates import Gate, crash_facts, evaluate, parse_logs, service_metrics
from sparkkit.verify.memory import account, read_memory_facts
from sparkkit.probe.runner import probe_service
from sparkkit.probe.suites import Suite
from sparkkit.probe.targets import make_target, needs_tunnel, targets_for
from sparkkit.release.render import Release

Printer = Callable[[str], None]


@dataclass
class Verification:
    """Everything a report says about one run."""

    host: str
    action: str  # "deploy-and-verify" or "verify"
    release: str | None
    previous: str | None = None
    started: str = field(default_factory=now_iso)
    finished: str | None = None
    deploy_message: str = ""
    deploy_error: str | None = None
    startup_s: dict = field(default_factory=dict)  # service -> seconds, or None when left running
    settings: list = field(default_factory=list)
    probes: list = field(default_factory=list)
    memory: dict | None = None
    crashes: list = field(default_factory=list)
    gates: list = field(default_factory=list)
    baseline: dict | None = None  # the last passing release's results on this host
    metrics: dict = field(default_factory=dict)
    passed: bool = False
    decision: str = ""
    stages: dict = field(default_factory=dict)  # stage -> {"seconds", "round_trips"}
    interrupted: bool = False  # Ctrl-C: exit 130
    attention: bool = False  # a restore or rollback failed: exit 3

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        out["gates"] = [g.to_json() if isinstance(g, Gate) else g for g in self.gates]
        out["crashes"] = [c.to_json() if hasattr(c, "to_json") else c for c in self.crashes]
        return out


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


def measure(ops: HostOps, cfg: HostConfig, suites: dict[str, Suite], run: Verification, *, since_iso: str,
            before: dict | None = None) -> None:
    """Probe every service, then read crash and memory facts and judge the gates (fills ``run``).
    ``before``: the containers by service as the verification starts (read here when not given)."""
    if before is None:
        with ops.stage("facts"):
            before = {c.service: c for c in ops.containers()}
    for svc, names in targets_for(cfg, suites):
        if needs_tunnel(cfg):
            base = f"http://127.0.0.1:{ops.ex.forward(svc.port, cfg.bind_address)}"
        else:
            base = f"http://{cfg.ssh.address}:{svc.port}"
        ops.out(f"  probing {svc.name}: {', '.join(names)}")
        with ops.stage("probes"):
            target = make_target(svc, names, base)
            run.probes.append(probe_service(target, suites, out=lambda line: ops.out("  " + line)))
    with ops.stage("facts"):
        after = {c.service: c for c in ops.containers()}
        logs = parse_logs(ops.ex.run(cmd.crash_logs(cfg.project, since_iso), timeout_s=120).stdout)
    run.crashes = crash_facts(services=[s.name for s in cfg.services], before=before, after=after,
                              logs={k: ops.secrets.mask(v) for k, v in logs.items()},
                              signatures={s.name: s.crash_signatures for s in cfg.services})
    memory = None
    with ops.stage("facts"):
        try:
            facts = read_memory_facts(ops.ex, cfg.project, local=ops.ex.is_local)
            memory = account(facts, gpu=cfg.gpu)
            run.memory = asdict(memory)
        except OperationError as exc:
            run.memory = {"error": str(exc)}
        run.baseline = _read_baseline(ops)
    with ops.stage("gates"):
        run.metrics = {p["service"]: service_metrics(p) for p in run.probes}
        run.gates = evaluate(cfg=cfg, probes=run.probes, headroom_gib=memory.headroom_gib if memory else None,
                             crashes=run.crashes, previous=run.baseline)
        run.passed = all(g.passed for g in run.gates)


def _store_results(ops: HostOps, run: Verification) -> None:
    data = {"release": run.release, "passed": run.passed, "ts": now_iso(), "metrics": run.metrics}
    ops.ex.run(cmd.write_results(ops.cfg.root, run.release, passed=run.passed),
               stdin=json.dumps(data, indent=1).encode())


def deploy_and_verify(ops: HostOps, release: Release, suites: dict[str, Suite], *,
                      break_lock: bool = False) -> Verification:
    """The lock is held from the deploy to the decision, so no other run can slip in between."""
    try:
        with ops.locked("deploy-and-verify", release.id, break_lock=break_lock):
            return _deploy_and_verify(ops, release, suites)
    except LockHeld as exc:
        run = Verification(host=ops.cfg.name, action="deploy-and-verify", release=release.id)
        run.deploy_error = str(exc)
        run.decision = "not started: the host is locked"
        run.finished = now_iso()
        return run


def _deploy_and_verify(ops: HostOps, release: Release, suites: dict[str, Suite]) -> Verification:
    cfg = ops.cfg
    run = Verification(host=cfg.name, action="deploy-and-verify", release=release.id)
    run.settings = effective_settings(cfg)
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        outcome = ops.deploy(release)
    except Interrupted as exc:
        run.deploy_error = str(exc)
        run.interrupted = True
        run.decision = "interrupted during the deploy (Ctrl-C)"
        run.finished = now_iso()
        return run
    except DeployFailed as exc:
        run.deploy_error = str(exc)
        run.attention = isinstance(exc, NeedsAttention)
        run.decision = (f"deploy failed; restored {exc.restored}" if exc.restored
                        else "DEPLOY AND RESTORE FAILED: the host needs attention" if run.attention
                        else "deploy failed; nothing kept")
        run.finished = now_iso()
        return run
    except (ConnectionLost, HostUnreachable):  # not "refused": the host's state is unknown, the caller says so
        raise
    except OperationError as exc:  # preflight, lock, image pull: nothing running was changed
        run.deploy_error = str(exc)
        run.decision = "deploy refused before anything running was changed"
        run.finished = now_iso()
        return run
    run.deploy_message = outcome.message
    already_current = outcome.previous == release.id  # a no-op, or the same release restarted
    run.previous = None if already_current else outcome.previous
    with ops.stage("facts"):
        before = {c.service: c for c in ops.containers()}
    # None: the same container as before the deploy (not restarted, nothing to time)
    run.startup_s = {s.name: (None if before.get(s.name) and before[s.name].id == ops.ids_before.get(s.name)
                              else ops.startup_s.get(s.name)) for s in cfg.services}
    ops.out(f"{cfg.name}: verifying release {release.id}")
    try:
        measure(ops, cfg, suites, run, since_iso=since, before=before)
        with ops.stage("store results"):
            _store_results(ops, run)
    except KeyboardInterrupt:
        run.interrupted = True
        run.passed = False
        run.decision = (f"interrupted during verification (Ctrl-C): release {release.id} stays live, unverified; "
                        f"run `sparkkit verify {cfg.name}` to judge it, or `sparkkit rollback {cfg.name}`")
        ops.out(f"{cfg.name}: {run.decision}")
        try:
            ops.audit("verify", release.id, "interrupted")
        except OperationError:
            pass
        run.finished = now_iso()
        run.stages = ops.stages
        return run
    except OperationError as exc:  # e.g. the connection dropped: an unverified release is not kept
        ops.out(f"{cfg.name}: verification could not finish: {exc}")
        run.passed = False
        run.gates = [*run.gates, Gate(name="verification finished", service="host", observed="no",
                                      threshold="yes", passed=False, why=ops.secrets.mask(str(exc)))]
    failed = [f"{g.service}/{g.name}" for g in run.gates if not g.passed]
    ops.audit("verify", release.id, "pass" if run.passed else "fail", failed_gates=failed)
    if run.passed:
        run.decision = "kept"
    elif already_current:
        run.decision = "not rolled back: this release was already current before this run"
    elif run.previous:
        ops.out(f"{cfg.name}: gates failed ({', '.join(failed)}); rolling back to {run.previous}")
        try:
            ops.rollback(run.previous, break_lock=False)
            run.decision = f"rolled back to {run.previous} (healthy)"
        except OperationError as exc:
            run.attention = True
            text = str(exc)
            run.decision = text if text.startswith("ROLLBACK FAILED") else f"ROLLBACK FAILED: {text}"
    elif cfg.gates.first_deploy_failure == "stop":
        ops.out(f"{cfg.name}: gates failed on a first deploy; stopping it")
        ops.down()
        ops.ex.run(cmd.clear_current(cfg.root))
        run.decision = "stopped: first deploy failed its gates (host left without a running stack)"
    else:
        run.decision = "kept running although it failed (first deploy, first_deploy_failure: keep)"
    run.finished = now_iso()
    run.stages = ops.stages
    return run


def verify_only(ops: HostOps, suites: dict[str, Suite]) -> Verification:
    cfg = ops.cfg
    facts = ops.facts()
    run = Verification(host=cfg.name, action="verify", release=facts.current_release)
    run.settings = effective_settings(cfg)
    if facts.current_release is None:
        raise OperationError(f"{cfg.name}: no release is live; deploy first")
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    measure(ops, cfg, suites, run, since_iso=since)
    failed = [f"{g.service}/{g.name}" for g in run.gates if not g.passed]
    ops.audit("verify", run.release, "pass" if run.passed else "fail", failed_gates=failed)
    run.decision = "verified" if run.passed else "verification failed (nothing changed)"
    run.finished = now_iso()
    return run
