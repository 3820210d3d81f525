"""deploy-and-verify on several hosts: all at once, or rolling (``serial`` hosts at a time).

Each host gets its own SSH connection, its own lock (taken by deploy-and-verify) and its own
report; the decisions (batches, when to stop, which placement partner to roll back, the verdict)
come from ``fleet.plan``. Hosts run in threads: no state is shared between them but the printer.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from sparkkit.fleet import plan as fp
from sparkkit.fleet.plan import HostStatus
from sparkkit.inventory.model import HostConfig
from sparkkit.deploy.apply import HostOps
from sparkkit.deploy.outcome import EXIT_ATTENTION, Outcome, Verdict
from sparkkit.deploy.plan import Recovery, recovery
from sparkkit.deploy.session import now_iso
from sparkkit.errors import ConnectionLost, HostUnreachable, OperationError
from sparkkit.release.render import Release
from sparkkit.inventory.secrets import Secrets

Printer = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class HostTarget:
    cfg: HostConfig
    secrets: Secrets
    release: Release


@dataclass(frozen=True, kw_only=True)
class HostResult:
    """One host's line in the fleet summary."""

    host: str
    status: HostStatus
    batch: int | None
    release: str | None = None
    previous: str | None = None
    decision: str = ""
    gates_passed: int = 0
    gates_total: int = 0
    failed_gates: list = field(default_factory=list)
    seconds: float | None = None
    report: str | None = None
    error: str | None = None
    attention: bool = False  # a restore or rollback failed, or the host was lost mid-run: exit 3


@dataclass(kw_only=True)
class FleetRun:
    spec: str
    hosts: list
    serial: int | None
    max_fail_percent: float | None
    batches: list
    started: str = field(default_factory=now_iso)
    finished: str | None = None
    seconds: float = 0.0
    results: list = field(default_factory=list)  # HostResult, in host order
    stopped: str | None = None

    @property
    def verdict(self) -> fp.FleetVerdict:
        return fp.fleet_verdict({r.host: r.status for r in self.results}, stopped=self.stopped)

    def to_json(self) -> dict:
        v = self.verdict
        return {"spec": self.spec, "hosts": self.hosts, "serial": self.serial,
                "max_fail_percent": self.max_fail_percent, "batches": self.batches, "started": self.started,
                "finished": self.finished, "seconds": self.seconds, "stopped": self.stopped,
                "passed": v.passed, "verdict": v.line, "counts": v.counts,
                "results": [dict(r.__dict__) for r in self.results]}

    @property
    def exit_code(self) -> int:
        return fp.fleet_exit_code(self.verdict, [r.attention for r in self.results])


class _Out:
    """One printer shared by the host threads: whole lines, each prefixed with its host."""

    def __init__(self, out: Printer):
        self._out = out
        self._lock = threading.Lock()

    def for_host(self, host: str) -> Printer:
        def say(text: str) -> None:
            with self._lock:
                for line in str(text).splitlines() or [""]:
                    self._out(f"[{host}] {line}")
        return say

    def __call__(self, text: str) -> None:
        with self._lock:
            self._out(text)


def verify_host(target: HostTarget, *, suites, reports_dir: Path, break_lock: bool, out: Printer,
                executor_factory) -> tuple[HostResult, object]:
    """deploy-and-verify one host on its own connection; never raises for a host's failure."""
    from sparkkit.verify.decide import decision_line
    from sparkkit.verify.report import write_report
    from sparkkit.verify.run import DEPLOY_AND_VERIFY, Verification, deploy_and_verify

    cfg, release = target.cfg, target.release
    start = time.perf_counter()
    ex = executor_factory(cfg)
    ops = HostOps(ex, cfg, out=out, secrets=target.secrets)
    try:
        run = deploy_and_verify(ops, release, suites, break_lock=break_lock)
    except (HostUnreachable, ConnectionLost) as exc:
        verdict = fp.cut_off_verdict(unreachable=isinstance(exc, HostUnreachable),
                                     ever_connected=bool(ex.connects))
        error = str(exc)
        if verdict is Verdict.LOST and isinstance(exc, HostUnreachable):
            error = f"{cfg.name}: the SSH connection was lost mid-run, and reconnecting failed: {exc}"
        rid = ops.final(release).id
        run = Verification(host=cfg.name, action=DEPLOY_AND_VERIFY, release=rid, deploy_error=error,
                           verdict=verdict, decision=decision_line(verdict, host=cfg.name, release=rid))
    except OperationError as exc:  # a failure the single-host command would also stop on
        rid = ops.final(release).id
        run = Verification(host=cfg.name, action=DEPLOY_AND_VERIFY, release=rid, deploy_error=str(exc),
                           verdict=Verdict.ERROR, decision=decision_line(Verdict.ERROR, host=cfg.name, release=rid))
    finally:
        for notice in ex.notices:
            out(ops.secrets.mask(notice))
        ex.close()
    # the connection dropped and the host could not be put right over a new one: lost
    status = fp.host_status(run.verdict, dropped=bool(ex.dropped))
    run = replace(run, finished=run.finished or now_iso(), stages=run.stages or ops.stages)
    mask = ops.secrets.mask  # this run's secrets and the values the host's env files hold
    folder = write_report(run, reports_dir, mask)
    out(mask(f"{status}: {run.decision} (report: {folder / 'report.md'})"))
    result = HostResult(
        host=cfg.name, status=status, batch=None, release=run.release, previous=run.previous,
        decision=mask(run.decision), gates_passed=sum(g.passed for g in run.gates), gates_total=len(run.gates),
        failed_gates=[f"{g.service}/{g.name}" for g in run.gates if not g.passed],
        seconds=round(time.perf_counter() - start, 2), report=str(folder / "report.md"),
        error=mask(run.deploy_error) if run.deploy_error else None,
        attention=run.exit_code == EXIT_ATTENTION)
    return result, run


def roll_back_partner(target: HostTarget, result: HostResult, run, partner: str, *, reports_dir: Path,
                      out: Printer, executor_factory) -> HostResult:
    """A host that passed but shares a placement with a failed host goes back as well."""
    from sparkkit.verify.decide import after_gates
    from sparkkit.verify.report import write_report

    cfg = target.cfg
    step = recovery(run.deployed.previous, run.release)
    ex = executor_factory(cfg)
    try:
        undone, failure = _undo(HostOps(ex, cfg, out=out, secrets=target.secrets), step, result.previous,
                                partner, out)
    finally:
        ex.close()
    verdict = after_gates(passed=False, step=step, keep_first=False, undone=undone)
    decision = fp.partner_decision(verdict, partner=partner, previous=result.previous, failure=failure)
    run = replace(run, verdict=verdict, decision=decision)
    write_report(run, reports_dir, target.secrets.mask)
    result = replace(result, status=HostStatus.PARTNER_FAILED, decision=target.secrets.mask(decision),
                     attention=run.exit_code == EXIT_ATTENTION)
    out(result.decision)
    return result


def _undo(ops: HostOps, step: Recovery, previous: str | None, partner: str,
          out: Printer) -> tuple[Outcome | None, str]:
    """Roll back to ``previous``, or stop a first deploy: (the outcome, its message); (None, the
    error) when that raised."""
    if step is Recovery.RESTORE_PREVIOUS:
        out(f"placement partner {partner} failed: rolling back to {previous}")
    elif step is Recovery.STOP_NEW:
        out(f"placement partner {partner} failed: stopping this first deploy")
    else:
        return None, ""
    try:
        done = ops.undo(step, previous)
    except OperationError as exc:
        return None, str(exc)
    return done.outcome, done.message


def run_fleet(targets: list[HostTarget], *, spec: str, serial: int | None, max_fail_percent: float | None,
              suites, reports_dir: Path, break_lock: bool, out: Printer,
              together: list[tuple[str, ...]] = (), executor_factory=None) -> FleetRun:
    if executor_factory is None:
        from sparkkit.host.connect import executor_for as executor_factory

    by_host = {t.cfg.name: t for t in targets}
    hosts = tuple(by_host)
    plan = fp.batches(hosts, serial, list(together))
    fleet = FleetRun(spec=spec, hosts=list(hosts), serial=serial, max_fail_percent=max_fail_percent,
                     batches=[list(b) for b in plan])
    printer = _Out(out)
    results: dict[str, HostResult] = {}
    start = time.perf_counter()
    mode = "all hosts at once" if serial is None else f"rolling, {serial} at a time"
    printer(f"fleet {spec}: {len(hosts)} host(s), {mode}: " + " | ".join(", ".join(b) for b in plan))
    for number, batch in enumerate(plan, 1):
        if fleet.stopped:
            for host in batch:
                results[host] = HostResult(host=host, status=HostStatus.SKIPPED, batch=number,
                                           decision="not touched: the rolling run stopped before this batch")
            continue
        if len(plan) > 1:
            printer(f"batch {number}/{len(plan)}: {', '.join(batch)}")
        with ThreadPoolExecutor(max_workers=len(batch), thread_name_prefix="fleet") as pool:
            futures = {host: pool.submit(verify_host, by_host[host], suites=suites, reports_dir=reports_dir,
                                         break_lock=break_lock, out=printer.for_host(host),
                                         executor_factory=executor_factory) for host in batch}
            done = {host: f.result() for host, f in futures.items()}
        for host, (result, _) in done.items():
            results[host] = replace(result, batch=number)
        statuses = {h: r.status for h, r in results.items()}
        for host, partner in fp.partners_to_roll_back(statuses, list(together)).items():
            if host in done:
                results[host] = roll_back_partner(by_host[host], results[host], done[host][1], partner,
                                                  reports_dir=reports_dir, out=printer.for_host(host),
                                                  executor_factory=executor_factory)
        if serial is not None and number < len(plan):
            fleet.stopped = fp.stop_reason({h: r.status for h, r in results.items()}, total=len(hosts),
                                           max_fail_percent=max_fail_percent)
            if fleet.stopped:
                rest = [h for b in plan[number:] for h in b]
                printer(f"rolling run stops: {fleet.stopped}; not touched: {', '.join(rest)}")
    fleet.results = [results[h] for h in hosts]
    fleet.seconds = round(time.perf_counter() - start, 2)
    fleet.finished = now_iso()
    return fleet
