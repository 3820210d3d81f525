"""When a deploy or rollback stops part-way, whatever stopped it (a service that fails, a remote
command that fails or times out, a dropped connection, any other error), there is one way back: put
the host right (restore the previous release, stop a first deploy's stack, or leave an
already-current release in place), check it, write the audit line, and say what changed and what
runs now. Ctrl-C takes the same way back under its own outcome. Each ends in a DeployResult whose
message is made here."""

from __future__ import annotations

from typing import Callable

from sparkkit.deploy.activate import Activation, Failure
from sparkkit.deploy.outcome import DeployResult, Outcome, after_failure
from sparkkit.deploy.plan import Recovery, recovery
from sparkkit.deploy.session import HostSession, Refused, brief
from sparkkit.errors import ConnectionLost
from sparkkit.host import commands as cmd


def guarded(s: HostSession, steps: Callable[[], Failure | None]) -> Failure | None:
    """Run the steps that change the host. Any exception becomes a failure to put right (after a
    dropped connection the next command reconnects); Ctrl-C an interrupted failure. ``Refused``
    (an image neither present nor pullable: nothing running changed) passes through."""
    try:
        return steps()
    except Refused:
        raise
    except ConnectionLost as exc:
        s.out(f"{s.cfg.name}: {exc}\n  reconnecting to put the host right")
        return Failure(service=None, why=f"the SSH connection dropped during {s.current_stage}")
    except KeyboardInterrupt:
        return Failure(service=None, why="interrupted (Ctrl-C)", interrupted=True)
    except Exception as exc:  # noqa: BLE001 - the one failure path takes every kind
        s.out(f"{s.cfg.name}: {s.secrets.mask(str(exc))}")
        return Failure(service=None, why=f"{s.current_stage} failed: {s.secrets.mask(brief(exc))}")


def recover(s: HostSession, activation: Activation, action: str, release_id: str, previous: str | None,
            failure: Failure, *, rolling_back: bool) -> DeployResult:
    """``release_id`` failed to come up (``failure``); ``previous`` was current before. Put the host
    right as ``plan.recovery`` says, write the audit line, and say what changed and what runs now."""
    name = s.cfg.name
    service, why = failure.service, failure.why
    changed, started = _changed(s, activation, release_id), list(activation.started)
    logs = _logs(activation, release_id, service)
    s.out(f"{name}: {action} of {release_id} failed: {service or 'compose'}: {why}")
    step = recovery(previous, release_id)
    problem = _put_back(s, activation, step, release_id, previous)
    restored = previous if step is Recovery.RESTORE_PREVIOUS and problem is None else None
    outcome = after_failure(step, restore_ok=problem is None, rolling_back=rolling_back)
    if problem is not None:
        state = host_state(s)
        written = _audit(s, action, release_id, "failed", service=service, reason=why, restore=previous,
                         restore_result="failed", started=started)
        what = f"restoring {previous}" if step is Recovery.RESTORE_PREVIOUS else f"stopping release {release_id}"
        message = (f"{name}: {action} of {release_id} failed ({service or 'compose'}: {why}) AND {what} failed "
                   f"({problem.service or 'compose'}: {problem.why}). The host needs attention: {state}; "
                   f"see `sparkkit status {name}`.{written}")
    else:
        written = _audit(s, action, release_id, "failed", service=service, reason=why, restored=restored,
                         started=started)
        message = (f"{name}: {action} of {release_id} failed: service {service or '?'}: {why}\n"
                   f"  {changed}\n  {_left(step, release_id, restored)}{written}")
        if logs:
            message += f"\n  last log lines of {service}:\n" + "\n".join("    " + line for line in logs.splitlines())
    if outcome is Outcome.ROLLBACK_FAILED:
        message = f"ROLLBACK FAILED: {message}"
    return DeployResult(outcome=outcome, action=action, release=release_id, previous=previous, restored=restored,
                        message=message)


def interrupted(s: HostSession, activation: Activation, action: str, release_id: str,
                previous: str | None) -> DeployResult:
    """Ctrl-C during ``action``: put the host back as after a failure (unless the switch had
    happened: then the new release is live and healthy), write it to the audit log, and say what the
    host looks like. A second Ctrl-C stops putting it back; the message then says what runs."""
    stage = s.current_stage
    name = s.cfg.name
    s.out(f"{name}: interrupted (Ctrl-C) during {stage}; putting the host back and releasing the lock "
          f"(Ctrl-C again to stop that)")
    restored, extra = None, {}
    try:
        current = s.facts().current_release
        if current == release_id and previous != release_id:
            state = f"release {release_id} is current (the switch had happened)"
        elif not s.changed_running:
            state = f"nothing running was changed; current release is still {current or 'none'}"
        else:
            step = recovery(previous, release_id)
            changed = _changed(s, activation, release_id)
            problem = _put_back(s, activation, step, release_id, previous)
            if problem is not None:
                extra = {"restore": previous, "restore_result": "failed"} if previous else {}
                state = f"putting the host back failed ({problem.why}): {host_state(s)}"
            elif step is Recovery.RESTORE_PREVIOUS:
                restored = previous
                state = f"{changed}; restored previous release {previous}, healthy"
            elif step is Recovery.STOP_NEW:
                state = f"{changed}; stack stopped, no release is live"
            else:
                state = f"release {release_id} stays current"
        state += f". Rerun the {action} to finish it"
    except KeyboardInterrupt:
        state = f"interrupted again while putting the host back: {host_state(s)}"
    except Exception as exc:  # noqa: BLE001
        state = f"could not read the host afterwards ({s.secrets.mask(brief(exc))}). Run `sparkkit status {name}`"
    written = _audit(s, action, release_id, "interrupted", stage=stage, previous=previous, restored=restored,
                     **extra)
    return DeployResult(outcome=Outcome.INTERRUPTED, action=action, release=release_id, previous=previous,
                        restored=restored,
                        message=f"{name}: {action} of {release_id} interrupted during {stage}: {state}.{written}")


def host_state(s: HostSession) -> str:
    """What the host runs now, read from it: the release `current` names, and each container with
    its state and the release it was created from."""
    try:
        facts = s.facts()
    except Exception as exc:  # noqa: BLE001
        return f"the host could not be read ({s.secrets.mask(brief(exc))})"
    running = [f"{c.service} {c.status}{'/' + c.health if c.health else ''} created from "
               f"{c.release or 'an unknown release'}" for c in facts.containers]
    return f"`current` names {facts.current_release or 'no release'}; containers: {', '.join(running) or 'none'}"


def _put_back(s: HostSession, activation: Activation, step: Recovery, release_id: str,
              previous: str | None) -> Failure | None:
    """Restore ``previous`` or stop a first deploy's stack, as ``step`` says; None once done."""
    if step is Recovery.RESTORE_PREVIOUS:
        s.out(f"  restoring previous release {previous}")
        return _restore(s, activation, previous)
    if step is Recovery.STOP_NEW and s.changed_running:
        s.out("  no previous release: stopping the new one, the host is left as it was")
        return _stop(s, release_id)
    return None


def _restore(s: HostSession, activation: Activation, previous: str) -> Failure | None:
    """Bring ``previous`` back and make it current again (it may have been switched when the
    connection dropped); None when it is back and healthy."""
    try:
        failed = activation.activate(previous, s.manifest_specs(previous))
        if failed is None:
            s.ex.run(cmd.switch_current(s.cfg.root, previous))
        return failed
    except Exception as exc:  # noqa: BLE001
        return Failure(service=None, why=s.secrets.mask(brief(exc)))


def _stop(s: HostSession, release_id: str) -> Failure | None:
    """Stop a first deploy's stack and clear `current` (it may have been switched)."""
    try:
        done = s.ex.run(cmd.chain(cmd.compose_down(s.cfg.project, s.compose_file(release_id)),
                                  cmd.clear_current(s.cfg.root)), check=False, timeout_s=300)
    except Exception as exc:  # noqa: BLE001
        return Failure(service=None, why=s.secrets.mask(brief(exc)))
    if done.rc != 0:
        return Failure(service=None, why=f"docker compose down exited {done.rc}: "
                                         f"{s.secrets.mask(done.stderr.strip()[-200:])}")
    return None


def _changed(s: HostSession, activation: Activation, release_id: str) -> str:
    if not s.changed_running:
        return "changed: nothing running (it stopped before `compose up`)"
    return f"changed: started {', '.join(activation.started) or 'nothing'} of release {release_id}"


def _logs(activation: Activation, release_id: str, service: str | None) -> str:
    if not service:
        return ""
    try:
        return activation.last_logs(release_id, service)
    except Exception:  # noqa: BLE001 - the logs are a courtesy; putting the host right is not
        return ""


def _audit(s: HostSession, action: str, release_id: str, result: str, **extra) -> str:
    """Write the attempt's audit line; "" once written, else a sentence for the message."""
    try:
        s.audit(action, release_id, result, **extra)
        return ""
    except Exception as exc:  # noqa: BLE001
        return f"\n  WARNING: the audit line could not be written ({s.secrets.mask(brief(exc))})"


def _left(step: Recovery, release_id: str, restored: str | None) -> str:
    """What the host runs after a failure that was put right."""
    if step is Recovery.RESTORE_PREVIOUS:
        return f"restored previous release {restored}, healthy"
    if step is Recovery.STOP_NEW:
        return "stack stopped; no previous release"
    return f"release {release_id} was already current and stays in place; fix the service and redeploy"
