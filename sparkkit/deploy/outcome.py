"""What became of a host, as values: the outcome of a deploy, rollback or down, the verdict of a
verification, and the one table that gives each its exit code.

Code decides from these enums and the typed fields beside them; the messages are made from
them for people and are never read back. Pure: no I/O, nothing of the kit imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sparkkit.deploy.plan import Recovery

EXIT_OK = 0  # the host runs what was asked
EXIT_FAILED = 1  # the operation failed; the message says what was restored, or that nothing changed
EXIT_ATTENTION = 3  # a restore or rollback failed, or the host was lost mid-run: it needs a person
EXIT_INTERRUPTED = 130  # Ctrl-C: the message says where, and what the host looks like
# exit code 2 (bad input, nothing on a host touched) belongs to the command line


class Outcome(Enum):
    """What one deploy, rollback or down did to a host."""

    LIVE = "live"  # the release asked for is live (deployed, restarted, or rolled back to)
    UNCHANGED = "unchanged"  # already current and healthy: nothing restarted
    STOPPED = "stopped"  # down: the stack is stopped, its releases kept
    REFUSED = "refused"  # preflight, an image, a missing or damaged release: nothing running changed
    LOCKED = "locked"  # another run holds the host's lock: nothing was touched
    RESTORED = "restored"  # the release failed; the previous one is back and healthy
    FAILED_FIRST = "failed-first"  # a first deploy failed: its stack is stopped, the host is as it was
    FAILED_IN_PLACE = "failed-in-place"  # the release was already current, failed to restart, and stays
    RESTORE_FAILED = "restore-failed"  # the release failed and putting the host back failed too
    ROLLBACK_FAILED = "rollback-failed"  # a rollback did not finish (what ran before may be back)
    INTERRUPTED = "interrupted"  # Ctrl-C part-way: recorded in the audit log, the lock released

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self]


class Verdict(Enum):
    """What deploy-and-verify (or verify) decided for a host, fleet runs included."""

    KEPT = "kept"  # every gate passed: the release stays
    VERIFIED = "verified"  # verify: every gate passed (nothing changed)
    VERIFY_FAILED = "verify-failed"  # verify: a gate failed (nothing changed)
    ROLLED_BACK = "rolled-back"  # a gate failed: the previous release is back and healthy
    ROLLBACK_FAILED = "rollback-failed"  # a gate failed and the rollback (or stop) failed
    NOT_ROLLED_BACK = "not-rolled-back"  # a gate failed, but the release was already current before
    FIRST_DEPLOY_STOPPED = "first-deploy-stopped"  # a first deploy failed its gates: stopped
    FIRST_DEPLOY_KEPT = "first-deploy-kept"  # ... and kept running (gates.first_deploy_failure: keep)
    UNVERIFIED = "unverified"  # Ctrl-C during verification: the release stays live, unverified
    INTERRUPTED = "interrupted"  # Ctrl-C during the deploy
    DEPLOY_REFUSED = "deploy-refused"  # the deploy was refused before anything running changed
    DEPLOY_RESTORED = "deploy-restored"  # the deploy failed; the previous release is back
    DEPLOY_FAILED = "deploy-failed"  # the deploy failed; nothing kept (a first deploy, or in place)
    RESTORE_FAILED = "restore-failed"  # the deploy failed and restoring the previous release failed
    LOCKED = "locked"  # another run holds the lock: not started
    UNREACHABLE = "unreachable"  # no connection could be opened: nothing touched
    LOST = "lost"  # the connection was lost mid-run: the host's state is unknown
    ERROR = "error"  # an error before a decision was reached

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self]

    @property
    def before_verification(self) -> bool:
        """The run ended before anything was measured (the report says the deploy itself failed)."""
        return self in _BEFORE_VERIFICATION


_BEFORE_VERIFICATION = frozenset({
    Verdict.INTERRUPTED, Verdict.DEPLOY_REFUSED, Verdict.DEPLOY_RESTORED, Verdict.DEPLOY_FAILED,
    Verdict.RESTORE_FAILED, Verdict.LOCKED, Verdict.UNREACHABLE, Verdict.LOST, Verdict.ERROR})

# The one exit-code table (the README's "Exit codes" says the same in words).
EXIT_CODES: dict[Outcome | Verdict, int] = {
    Outcome.LIVE: EXIT_OK,
    Outcome.UNCHANGED: EXIT_OK,
    Outcome.STOPPED: EXIT_OK,
    Outcome.REFUSED: EXIT_FAILED,
    Outcome.LOCKED: EXIT_FAILED,
    Outcome.RESTORED: EXIT_FAILED,
    Outcome.FAILED_FIRST: EXIT_FAILED,
    Outcome.FAILED_IN_PLACE: EXIT_FAILED,
    Outcome.RESTORE_FAILED: EXIT_ATTENTION,
    Outcome.ROLLBACK_FAILED: EXIT_ATTENTION,
    Outcome.INTERRUPTED: EXIT_INTERRUPTED,
    Verdict.KEPT: EXIT_OK,
    Verdict.VERIFIED: EXIT_OK,
    Verdict.VERIFY_FAILED: EXIT_FAILED,
    Verdict.ROLLED_BACK: EXIT_FAILED,
    Verdict.ROLLBACK_FAILED: EXIT_ATTENTION,
    Verdict.NOT_ROLLED_BACK: EXIT_FAILED,
    Verdict.FIRST_DEPLOY_STOPPED: EXIT_FAILED,
    Verdict.FIRST_DEPLOY_KEPT: EXIT_FAILED,
    Verdict.UNVERIFIED: EXIT_INTERRUPTED,
    Verdict.INTERRUPTED: EXIT_INTERRUPTED,
    Verdict.DEPLOY_REFUSED: EXIT_FAILED,
    Verdict.DEPLOY_RESTORED: EXIT_FAILED,
    Verdict.DEPLOY_FAILED: EXIT_FAILED,
    Verdict.RESTORE_FAILED: EXIT_ATTENTION,
    Verdict.LOCKED: EXIT_FAILED,
    Verdict.UNREACHABLE: EXIT_FAILED,
    Verdict.LOST: EXIT_ATTENTION,
    Verdict.ERROR: EXIT_FAILED,
}


@dataclass(frozen=True, kw_only=True)
class DeployResult:
    """What a deploy, rollback or down did: the outcome, the facts behind it, and its message."""

    outcome: Outcome
    action: str  # "deploy", "rollback" or "down"
    release: str | None  # the release acted on
    previous: str | None = None  # the release that was current before
    restored: str | None = None  # the release put back after a failure
    message: str  # for people; made from the outcome and the facts above

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code

    @property
    def changed(self) -> bool:
        return self.outcome in (Outcome.LIVE, Outcome.STOPPED)


def after_failure(step: Recovery, *, restore_ok: bool, rolling_back: bool) -> Outcome:
    """A deploy or rollback failed part-way and ``step`` was taken to put the host right: what the
    host is left with. A rollback that fails is ROLLBACK_FAILED whatever came back, as the message
    says what runs now; ``restore_ok``: the previous release is back, or a first deploy's stack
    stopped (STOP_NEW)."""
    if rolling_back:
        return Outcome.ROLLBACK_FAILED
    if step is Recovery.RESTORE_PREVIOUS:
        return Outcome.RESTORED if restore_ok else Outcome.RESTORE_FAILED
    if step is Recovery.STOP_NEW:
        return Outcome.FAILED_FIRST if restore_ok else Outcome.RESTORE_FAILED
    return Outcome.FAILED_IN_PLACE
