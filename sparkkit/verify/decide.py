"""Pure decisions of a verification: what the deploy step's outcome means for the run, what to undo
when the gates fail, the verdict, and the decision line people read (made from the verdict)."""

from __future__ import annotations

from sparkkit.deploy.outcome import Outcome, Verdict
from sparkkit.deploy.plan import Recovery

# how a deploy step that ends the run ends it; None: the release is live, verification goes on
_AFTER_DEPLOY: dict[Outcome, Verdict | None] = {
    Outcome.LIVE: None,
    Outcome.UNCHANGED: None,
    Outcome.REFUSED: Verdict.DEPLOY_REFUSED,
    Outcome.LOCKED: Verdict.LOCKED,
    Outcome.RESTORED: Verdict.DEPLOY_RESTORED,
    Outcome.FAILED_FIRST: Verdict.DEPLOY_FAILED,
    Outcome.FAILED_IN_PLACE: Verdict.DEPLOY_FAILED,
    Outcome.RESTORE_FAILED: Verdict.RESTORE_FAILED,
    Outcome.INTERRUPTED: Verdict.INTERRUPTED,
}


def after_deploy(outcome: Outcome) -> Verdict | None:
    """The verdict when the deploy step ends the run; None when verification goes on."""
    if outcome not in _AFTER_DEPLOY:
        raise ValueError(f"a deploy does not end {outcome.name}")
    return _AFTER_DEPLOY[outcome]


def deploy_error_verdict(*, changed: bool) -> Verdict:
    """The deploy step raised instead of ending in an outcome: "refused" only when nothing running
    had been changed (``changed``: the run's typed flag, never the error's text); otherwise the
    host's state is not what any outcome says, and it needs a person."""
    return Verdict.RESTORE_FAILED if changed else Verdict.DEPLOY_REFUSED


def to_undo(*, passed: bool, step: Recovery, keep_first: bool) -> Recovery | None:
    """What to undo after the gates: nothing when they passed, when the release was already current
    (LEAVE_IN_PLACE), or when a failed first deploy is kept (``gates.first_deploy_failure: keep``)."""
    if passed or step is Recovery.LEAVE_IN_PLACE or (step is Recovery.STOP_NEW and keep_first):
        return None
    return step


def after_gates(*, passed: bool, step: Recovery, keep_first: bool, undone: Outcome | None) -> Verdict:
    """The verdict of deploy-and-verify once the gates are judged. ``step``: how the release would be
    undone (``plan.recovery``); ``undone``: the outcome of that rollback or down (None: not done, or it
    raised)."""
    if passed:
        return Verdict.KEPT
    if step is Recovery.LEAVE_IN_PLACE:
        return Verdict.NOT_ROLLED_BACK
    if step is Recovery.STOP_NEW:
        if keep_first:
            return Verdict.FIRST_DEPLOY_KEPT
        return Verdict.FIRST_DEPLOY_STOPPED if undone is Outcome.STOPPED else Verdict.ROLLBACK_FAILED
    return Verdict.ROLLED_BACK if undone is Outcome.LIVE else Verdict.ROLLBACK_FAILED


def after_verify_only(passed: bool) -> Verdict:
    return Verdict.VERIFIED if passed else Verdict.VERIFY_FAILED


def rollback_failure(outcome: Outcome | None, message: str) -> str:
    """The text of a rollback (or stop) that did not bring the host where it should be; a
    ROLLBACK_FAILED message already says so."""
    return message if outcome is Outcome.ROLLBACK_FAILED else f"ROLLBACK FAILED: {message}"


def decision_line(verdict: Verdict, *, host: str, release: str | None, previous: str | None = None,
                  restored: str | None = None, failure: str = "") -> str:
    """The decision as the report and the console say it. ``failure``: the rollback_failure text."""
    match verdict:
        case Verdict.KEPT:
            return "kept"
        case Verdict.VERIFIED:
            return "verified"
        case Verdict.VERIFY_FAILED:
            return "verification failed (nothing changed)"
        case Verdict.ROLLED_BACK:
            return f"rolled back to {previous} (healthy)"
        case Verdict.ROLLBACK_FAILED:
            return failure
        case Verdict.NOT_ROLLED_BACK:
            return "not rolled back: this release was already current before this run"
        case Verdict.FIRST_DEPLOY_STOPPED:
            return "stopped: first deploy failed its gates (host left without a running stack)"
        case Verdict.FIRST_DEPLOY_KEPT:
            return "kept running although it failed (first deploy, first_deploy_failure: keep)"
        case Verdict.UNVERIFIED:
            return (f"interrupted during verification (Ctrl-C): release {release} stays live, unverified; "
                    f"run `sparkkit verify {host}` to judge it, or `sparkkit rollback {host}`")
        case Verdict.INTERRUPTED:
            return "interrupted during the deploy (Ctrl-C)"
        case Verdict.DEPLOY_REFUSED:
            return "deploy refused before anything running was changed"
        case Verdict.DEPLOY_RESTORED:
            return f"deploy failed; restored {restored}"
        case Verdict.DEPLOY_FAILED:
            return "deploy failed; nothing kept"
        case Verdict.RESTORE_FAILED:
            return "DEPLOY AND RESTORE FAILED: the host needs attention"
        case Verdict.LOCKED:
            return "not started: the host is locked"
        case Verdict.UNREACHABLE:
            return "not started: host unreachable; nothing on it was touched"
        case Verdict.LOST:
            return ("connection lost mid-run: the host's state is unknown; check it (`sparkkit status`), "
                    "then rerun (a lock left behind needs --break-lock)")
        case Verdict.ERROR:
            return "failed before a decision was reached"
    raise ValueError(verdict)
