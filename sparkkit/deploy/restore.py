"""When a deploy or rollback stops part-way: put the host right (restore the previous release, stop
a first deploy's stack, or leave an already-current release in place), or, on Ctrl-C, record
it and say what the host looks like. Each ends in a DeployResult whose message is made here."""

from __future__ import annotations

from typing import Callable

from sparkkit.deploy.activate import Activation, Failure
from sparkkit.deploy.outcome import DeployResult, Outcome, after_failure
from sparkkit.deploy.plan import Recovery, recovery
from sparkkit.deploy.session import HostSession
from sparkkit.errors import ConnectionLost, OperationError
from sparkkit.host import commands as cmd


def guarded(s: HostSession, steps: Callable[[], Failure | None]) -> Failure | None:
    """Run the steps that change the host. A dropped connection becomes a failure to restore from
    (the next command reconnects); Ctrl-C becomes an interrupted failure."""
    try:
        return steps()
    except ConnectionLost as exc:
        s.out(f"{s.cfg.name}: {exc}\n  reconnecting to put the host right")
        return Failure(service=None, why=f"the SSH connection dropped during {s.current_stage}")
    except KeyboardInterrupt:
        return Failure(service=None, why="interrupted (Ctrl-C)", interrupted=True)


def interrupted(s: HostSession, action: str, release_id: str, previous: str | None) -> DeployResult:
    """Ctrl-C during ``action``: write it to the audit log and say what the host looks like."""
    stage = s.current_stage
    s.out(f"{s.cfg.name}: interrupted (Ctrl-C) during {stage}; recording it and releasing the lock")
    try:
        s.audit(action, release_id, "interrupted", stage=stage, previous=previous)
        current = s.facts().current_release
    except OperationError as exc:
        return DeployResult(
            outcome=Outcome.INTERRUPTED, action=action, release=release_id, previous=previous,
            message=f"{s.cfg.name}: {action} of {release_id} interrupted during {stage}; could not "
                    f"read the host afterwards ({exc}). Run `sparkkit status {s.cfg.name}`.")
    if current == release_id and previous != release_id:
        state = f"release {release_id} is current (the switch had happened)"
    else:
        state = (f"current release is still {current or 'none'}; services may be part-way to {release_id}. "
                 f"Rerun the {action} to finish it")
        if current:
            state += f", or `sparkkit rollback {s.cfg.name} --to {current}` to put the current one back"
    return DeployResult(outcome=Outcome.INTERRUPTED, action=action, release=release_id, previous=previous,
                        message=f"{s.cfg.name}: {action} of {release_id} interrupted during {stage}: {state}.")


def recover(s: HostSession, activation: Activation, action: str, release_id: str, previous: str | None,
            failure: Failure, *, rolling_back: bool) -> DeployResult:
    """``release_id`` failed to come up (``failure``); ``previous`` was current before. Put the host
    right as ``plan.recovery`` says, write the audit line, and say what runs now."""
    name = s.cfg.name
    service, why = failure.service, failure.why
    logs = activation.last_logs(release_id, service) if service else ""
    s.out(f"{name}: {action} of {release_id} failed: {service or 'compose'}: {why}")
    step = recovery(previous, release_id)
    restore_failure = None
    if step is Recovery.RESTORE_PREVIOUS:
        s.out(f"  restoring previous release {previous}")
        restore_failure = _restore(s, activation, previous)
    elif step is Recovery.STOP_NEW:
        s.out("  no previous release: stopping the new one, the host is left as it was")
        s.ex.run(cmd.compose_down(s.cfg.project, s.compose_file(release_id)), check=False, timeout_s=300)
    restored = previous if step is Recovery.RESTORE_PREVIOUS and restore_failure is None else None
    outcome = after_failure(step, restore_ok=restore_failure is None, rolling_back=rolling_back)
    if restore_failure is not None:
        try:
            s.audit(action, release_id, "failed", service=service, restore=previous, restore_result="failed")
        except OperationError:
            pass
        message = (f"{name}: {action} of {release_id} failed ({service or 'compose'}: {why}) AND restoring "
                   f"{previous} failed ({restore_failure.service or 'compose'}: {restore_failure.why}). The host "
                   f"needs attention: see `sparkkit status {name}`.")
    else:
        s.audit(action, release_id, "failed", service=service, reason=why, restored=restored)
        message = (f"{name}: {action} of {release_id} failed: service {service or '?'}: {why}\n"
                   f"  {_left(step, release_id, restored)}")
        if logs:
            message += f"\n  last log lines of {service}:\n" + "\n".join("    " + line for line in logs.splitlines())
    if outcome is Outcome.ROLLBACK_FAILED:
        message = f"ROLLBACK FAILED: {message}"
    return DeployResult(outcome=outcome, action=action, release=release_id, previous=previous, restored=restored,
                        message=message)


def _restore(s: HostSession, activation: Activation, previous: str) -> Failure | None:
    """Bring ``previous`` back and make it current again (it may have been switched when the
    connection dropped); None when it is back and healthy."""
    try:
        failed = activation.activate(previous, s.manifest_specs(previous))
        if failed is None:
            s.ex.run(cmd.switch_current(s.cfg.root, previous))
        return failed
    except OperationError as exc:
        return Failure(service=None, why=str(exc))


def _left(step: Recovery, release_id: str, restored: str | None) -> str:
    """What the host runs after a failure that was put right."""
    if step is Recovery.RESTORE_PREVIOUS:
        return f"restored previous release {restored}, healthy"
    if step is Recovery.STOP_NEW:
        return "stack stopped; no previous release"
    return f"release {release_id} was already current and stays in place; fix the service and redeploy"
