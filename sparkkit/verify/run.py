"""deploy-and-verify and verify: deploy, measure the live release, keep it or undo it, and return
one Verification (what the report says). The decisions are ``decide``'s; this module acts on them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime, timezone

from sparkkit.deploy.apply import HostOps
from sparkkit.deploy.lock import LockHeld
from sparkkit.deploy.outcome import DeployResult, Outcome, Verdict
from sparkkit.deploy.plan import Recovery, recovery
from sparkkit.deploy.restore import host_state
from sparkkit.deploy.session import brief, now_iso
from sparkkit.errors import ConnectionLost, HostUnreachable, OperationError
from sparkkit.inventory.exposure import exposure_warnings
from sparkkit.probe.suites import Suite
from sparkkit.release.render import Release
from sparkkit.verify.decide import (after_deploy, after_gates, after_verify_only, decision_line,
                                    deploy_error_verdict, rollback_failure, to_undo)
from sparkkit.verify.gates import Gate
from sparkkit.verify.measure import Measurement, effective_settings, measure, store_results

DEPLOY_AND_VERIFY = "deploy-and-verify"


@dataclass(frozen=True, kw_only=True)
class Verification:
    """Everything a report says about one run, and its verdict."""

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
    passed: bool = False  # every gate passed
    decision: str = ""  # the verdict in words (``decide.decision_line``)
    stages: dict = field(default_factory=dict)  # stage -> {"seconds", "round_trips"}
    verdict: Verdict
    deployed: DeployResult | None = None  # what the deploy step did (None: it did not run)
    exposure: list = field(default_factory=list)  # APIs open on all interfaces without a key (inventory.exposure)

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    @property
    def interrupted(self) -> bool:
        """Ctrl-C: exit 130."""
        return self.verdict in (Verdict.INTERRUPTED, Verdict.UNVERIFIED)

    @property
    def attention(self) -> bool:
        """A restore or rollback failed: exit 3."""
        return self.verdict in (Verdict.RESTORE_FAILED, Verdict.ROLLBACK_FAILED)

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("verdict", "deployed")}
        out["gates"] = [g.to_json() if isinstance(g, Gate) else g for g in self.gates]
        out["crashes"] = [c.to_json() if hasattr(c, "to_json") else c for c in self.crashes]
        out["interrupted"] = self.interrupted
        out["attention"] = self.attention
        return out


def _measured(m: Measurement) -> dict:
    return {"probes": m.probes, "memory": m.memory, "crashes": m.crashes, "gates": m.gates, "baseline": m.baseline,
            "metrics": m.metrics, "passed": m.passed}


def deploy_and_verify(ops: HostOps, release: Release, suites: dict[str, Suite], *,
                      break_lock: bool = False) -> Verification:
    """The lock is held from the deploy to the decision, so no other run can slip in between."""
    try:
        with ops.locked(DEPLOY_AND_VERIFY, release.id, break_lock=break_lock):
            return _deploy_and_verify(ops, release, suites)
    except LockHeld as exc:
        return Verification(host=ops.cfg.name, action=DEPLOY_AND_VERIFY, release=release.id, deploy_error=str(exc),
                            verdict=Verdict.LOCKED, finished=now_iso(),
                            decision=decision_line(Verdict.LOCKED, host=ops.cfg.name, release=release.id))


def _deploy_and_verify(ops: HostOps, release: Release, suites: dict[str, Suite]) -> Verification:
    cfg = ops.cfg
    started = now_iso()
    settings = effective_settings(cfg)
    exposure = [w.text for w in exposure_warnings(cfg)]
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def ended(verdict: Verdict, error: str, deployed: DeployResult | None = None) -> Verification:
        return Verification(host=cfg.name, action=DEPLOY_AND_VERIFY, release=release.id, started=started,
                            settings=settings, exposure=exposure, deploy_error=error, verdict=verdict,
                            deployed=deployed,
                            decision=decision_line(verdict, host=cfg.name, release=release.id,
                                                   restored=deployed.restored if deployed else None),
                            finished=now_iso())

    try:
        deployed = ops.deploy(release)
    except Exception as exc:  # noqa: BLE001 - the deploy raises only before it changed anything running
        if isinstance(exc, HostUnreachable) or (isinstance(exc, ConnectionLost) and ops.changed_running):
            raise  # the host's state is unknown: the caller says so
        release = ops.final(release)
        verdict = deploy_error_verdict(changed=ops.changed_running)
        return ended(verdict, ops.secrets.mask(brief(exc)))
    release = ops.final(release)  # the id the deploy used: keyed by the host's key in its preflight
    verdict = after_deploy(deployed.outcome)
    if verdict is not None:
        return ended(verdict, deployed.message, deployed)
    step = recovery(deployed.previous, release.id)
    previous = deployed.previous if step is Recovery.RESTORE_PREVIOUS else None
    m = Measurement()
    startup_s: dict = {}


    def verification(verdict: Verdict, decision: str) -> Verification:
        return Verification(host=cfg.name, action=DEPLOY_AND_VERIFY, release=release.id, previous=previous,
                            started=started, finished=now_iso(), deploy_message=deployed.message,
                            startup_s=startup_s, settings=settings, exposure=exposure, **_measured(m),
                            decision=decision, stages=ops.stages, verdict=verdict, deployed=deployed)

    try:
        with ops.stage("facts"):
            before = {c.service: c for c in ops.containers()}
        # None: the same container as before the deploy (not restarted, nothing to time)
        startup_s.update({s.name: (None if before.get(s.name) and before[s.name].id == ops.ids_before.get(s.name)
                                   else ops.startup_s.get(s.name)) for s in cfg.services})
        ops.out(f"{cfg.name}: verifying release {release.id}")
        measure(ops, cfg, suites, m, since_iso=since, before=before)
        with ops.stage("store results"):
            store_results(ops, release.id, m)
    except KeyboardInterrupt:
        m.passed = False
        decision = decision_line(Verdict.UNVERIFIED, host=cfg.name, release=release.id)
        ops.out(f"{cfg.name}: {decision}")
        try:
            ops.audit("verify", release.id, "interrupted")
        except OperationError:
            pass
        return verification(Verdict.UNVERIFIED, decision)
    except Exception as exc:  # noqa: BLE001 - any error (a dropped connection, ...): an unverified release is not kept
        ops.out(f"{cfg.name}: verification could not finish: {ops.secrets.mask(brief(exc))}")
        m.passed = False
        m.gates = [*m.gates, Gate(name="verification finished", service="host", observed="no",
                                  threshold="yes", passed=False, why=ops.secrets.mask(brief(exc)))]
    failed = [f"{g.service}/{g.name}" for g in m.gates if not g.passed]
    try:
        ops.audit("verify", release.id, "pass" if m.passed else "fail", failed_gates=failed)
    except Exception as exc:  # noqa: BLE001 - the decision still stands; the undo below writes its own line
        ops.out(f"{cfg.name}: WARNING: the verify audit line could not be written ({ops.secrets.mask(brief(exc))})")
    keep_first = cfg.gates.first_deploy_failure != "stop"
    undo = to_undo(passed=m.passed, step=step, keep_first=keep_first)
    undone, failure = _undo(ops, undo, previous, failed)
    verdict = after_gates(passed=m.passed, step=step, keep_first=keep_first, undone=undone)
    return verification(verdict, decision_line(verdict, host=cfg.name, release=release.id, previous=previous,
                                               failure=failure))


def _undo(ops: HostOps, undo: Recovery | None, previous: str | None, failed: list[str]) -> tuple[Outcome | None, str]:
    """Roll back to ``previous``, or stop a first deploy: (the outcome, its failure text if it failed)."""
    cfg = ops.cfg
    if undo is Recovery.RESTORE_PREVIOUS:
        ops.out(f"{cfg.name}: gates failed ({', '.join(failed)}); rolling back to {previous}")
    elif undo is Recovery.STOP_NEW:
        ops.out(f"{cfg.name}: gates failed on a first deploy; stopping it")
    else:
        return None, ""
    try:
        result = ops.undo(undo, previous)
    except Exception as exc:  # noqa: BLE001 - a rollback or stop that raised: say what the host runs
        what = f"rolling back to {previous}" if undo is Recovery.RESTORE_PREVIOUS else "stopping the first deploy"
        return None, rollback_failure(None, ops.secrets.mask(f"{what} failed ({brief(exc)}); {host_state(ops)}"))
    failure = rollback_failure(result.outcome, result.message)
    if result.outcome not in (Outcome.LIVE, Outcome.STOPPED) and "containers:" not in failure:
        failure += f"; {host_state(ops)}"
    return result.outcome, failure


def verify_only(ops: HostOps, suites: dict[str, Suite]) -> Verification:
    cfg = ops.cfg
    facts = ops.facts()
    started = now_iso()
    if facts.current_release is None:
        raise OperationError(f"{cfg.name}: no release is live; deploy first")
    settings = effective_settings(cfg)
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    m = Measurement()
    measure(ops, cfg, suites, m, since_iso=since)
    failed = [f"{g.service}/{g.name}" for g in m.gates if not g.passed]
    ops.audit("verify", facts.current_release, "pass" if m.passed else "fail", failed_gates=failed)
    verdict = after_verify_only(m.passed)
    return Verification(host=cfg.name, action="verify", release=facts.current_release, started=started,
                        settings=settings, exposure=[w.text for w in exposure_warnings(cfg)], **_measured(m),
                        verdict=verdict, finished=now_iso(),
                        decision=decision_line(verdict, host=cfg.name, release=facts.current_release))
