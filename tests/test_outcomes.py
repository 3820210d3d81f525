"""Outcomes as values: every decision is a pure function of typed facts, tested here as a table, and
every outcome carries its exit code from one table. A few deploy flows on a recording executor
show the commands ending in each outcome."""

from __future__ import annotations

import pytest

from sparkkit.cli.main import FAILURE_HEADING
from sparkkit.deploy.apply import HostOps
from sparkkit.deploy.outcome import (EXIT_ATTENTION, EXIT_CODES, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK,
                                     DeployResult, Outcome, Verdict, after_failure)
from sparkkit.deploy.plan import Recovery, recovery
from sparkkit.fleet.plan import (HostStatus, cut_off_verdict, fleet_exit_code, fleet_verdict, host_status,
                                 partner_decision)
from sparkkit.host.executor import Result
from sparkkit.host.fake import FakeHost
from sparkkit.verify.decide import (after_deploy, after_gates, after_verify_only, decision_line, rollback_failure,
                                    to_undo)
from sparkkit.verify.run import Verification

from .test_deploy_flow import RELEASE_KEY, SECRETS, inspect_json, preflight_text

RESTORE, STOP, LEAVE = Recovery.RESTORE_PREVIOUS, Recovery.STOP_NEW, Recovery.LEAVE_IN_PLACE

# -- the one exit-code table -----------------------------------------------------------------------

EXPECTED_EXIT = {
    Outcome.LIVE: 0, Outcome.UNCHANGED: 0, Outcome.STOPPED: 0,
    Outcome.REFUSED: 1, Outcome.LOCKED: 1, Outcome.RESTORED: 1, Outcome.FAILED_FIRST: 1, Outcome.FAILED_IN_PLACE: 1,
    Outcome.RESTORE_FAILED: 3, Outcome.ROLLBACK_FAILED: 3,
    Outcome.INTERRUPTED: 130,
    Verdict.KEPT: 0, Verdict.VERIFIED: 0,
    Verdict.VERIFY_FAILED: 1, Verdict.ROLLED_BACK: 1, Verdict.NOT_ROLLED_BACK: 1, Verdict.FIRST_DEPLOY_STOPPED: 1,
    Verdict.FIRST_DEPLOY_KEPT: 1, Verdict.DEPLOY_REFUSED: 1, Verdict.DEPLOY_RESTORED: 1, Verdict.DEPLOY_FAILED: 1,
    Verdict.LOCKED: 1, Verdict.UNREACHABLE: 1, Verdict.ERROR: 1,
    Verdict.ROLLBACK_FAILED: 3, Verdict.RESTORE_FAILED: 3, Verdict.LOST: 3,
    Verdict.UNVERIFIED: 130, Verdict.INTERRUPTED: 130,
}


@pytest.mark.parametrize("value, code", list(EXPECTED_EXIT.items()), ids=lambda v: getattr(v, "name", str(v)))
def test_exit_code_per_outcome(value, code):
    assert value.exit_code == code == EXIT_CODES[value]


def test_the_table_covers_every_outcome_and_verdict_and_only_the_documented_codes():
    assert set(EXIT_CODES) == set(Outcome) | set(Verdict) == set(EXPECTED_EXIT)
    assert set(EXIT_CODES.values()) == {EXIT_OK, EXIT_FAILED, EXIT_ATTENTION, EXIT_INTERRUPTED} == {0, 1, 3, 130}


@pytest.mark.parametrize("outcome", [o for o in Outcome if o.exit_code != EXIT_OK])
def test_every_failed_outcome_has_a_heading_on_stderr(outcome):
    assert FAILURE_HEADING[outcome.exit_code] in ("FAILED", "FAILED, THE HOST NEEDS ATTENTION", "INTERRUPTED")


def test_headings_by_exit_code():
    assert FAILURE_HEADING == {1: "FAILED", 3: "FAILED, THE HOST NEEDS ATTENTION", 130: "INTERRUPTED"}


# -- deploy: how a failed release is undone, and what the host is left with -----------------------

@pytest.mark.parametrize("previous, release, step", [
    ("r1", "r2", RESTORE),
    (None, "r2", STOP),
    ("r2", "r2", LEAVE),
    ("", "r2", LEAVE),  # an empty name is no release to restore
])
def test_recovery(previous, release, step):
    assert recovery(previous, release) is step


@pytest.mark.parametrize("step, restore_ok, rolling_back, outcome", [
    (RESTORE, True, False, Outcome.RESTORED),
    (RESTORE, False, False, Outcome.RESTORE_FAILED),
    (STOP, True, False, Outcome.FAILED_FIRST),
    (STOP, False, False, Outcome.RESTORE_FAILED),  # the first deploy's stack could not be stopped
    (LEAVE, True, False, Outcome.FAILED_IN_PLACE),
    (RESTORE, True, True, Outcome.ROLLBACK_FAILED),  # what ran before is back, but the rollback failed
    (RESTORE, False, True, Outcome.ROLLBACK_FAILED),
    (STOP, True, True, Outcome.ROLLBACK_FAILED),
    (LEAVE, True, True, Outcome.ROLLBACK_FAILED),
])
def test_after_failure(step, restore_ok, rolling_back, outcome):
    assert after_failure(step, restore_ok=restore_ok, rolling_back=rolling_back) is outcome


# -- verification ----------------------------------------------------------------------------------

@pytest.mark.parametrize("outcome, verdict", [
    (Outcome.LIVE, None),
    (Outcome.UNCHANGED, None),
    (Outcome.REFUSED, Verdict.DEPLOY_REFUSED),
    (Outcome.LOCKED, Verdict.LOCKED),
    (Outcome.RESTORED, Verdict.DEPLOY_RESTORED),
    (Outcome.FAILED_FIRST, Verdict.DEPLOY_FAILED),
    (Outcome.FAILED_IN_PLACE, Verdict.DEPLOY_FAILED),
    (Outcome.RESTORE_FAILED, Verdict.RESTORE_FAILED),
    (Outcome.INTERRUPTED, Verdict.INTERRUPTED),
])
def test_after_deploy(outcome, verdict):
    assert after_deploy(outcome) is verdict


@pytest.mark.parametrize("outcome", [Outcome.STOPPED, Outcome.ROLLBACK_FAILED])
def test_a_deploy_never_ends_as_down_or_rollback_do(outcome):
    with pytest.raises(ValueError):
        after_deploy(outcome)


@pytest.mark.parametrize("passed, step, keep_first, undo", [
    (True, RESTORE, False, None),
    (True, STOP, False, None),
    (True, LEAVE, False, None),
    (False, RESTORE, False, RESTORE),
    (False, RESTORE, True, RESTORE),  # keep_first is about first deploys only
    (False, STOP, False, STOP),
    (False, STOP, True, None),
    (False, LEAVE, False, None),
])
def test_to_undo(passed, step, keep_first, undo):
    assert to_undo(passed=passed, step=step, keep_first=keep_first) is undo


@pytest.mark.parametrize("passed, step, keep_first, undone, verdict", [
    (True, RESTORE, False, None, Verdict.KEPT),
    (True, STOP, True, None, Verdict.KEPT),
    (True, LEAVE, False, None, Verdict.KEPT),
    (False, LEAVE, False, None, Verdict.NOT_ROLLED_BACK),
    (False, RESTORE, False, Outcome.LIVE, Verdict.ROLLED_BACK),
    (False, RESTORE, False, Outcome.ROLLBACK_FAILED, Verdict.ROLLBACK_FAILED),
    (False, RESTORE, False, Outcome.REFUSED, Verdict.ROLLBACK_FAILED),
    (False, RESTORE, False, Outcome.INTERRUPTED, Verdict.ROLLBACK_FAILED),
    (False, RESTORE, False, None, Verdict.ROLLBACK_FAILED),  # the rollback raised
    (False, STOP, False, Outcome.STOPPED, Verdict.FIRST_DEPLOY_STOPPED),
    (False, STOP, False, Outcome.LOCKED, Verdict.ROLLBACK_FAILED),
    (False, STOP, False, None, Verdict.ROLLBACK_FAILED),
    (False, STOP, True, None, Verdict.FIRST_DEPLOY_KEPT),
])
def test_after_gates(passed, step, keep_first, undone, verdict):
    assert after_gates(passed=passed, step=step, keep_first=keep_first, undone=undone) is verdict


@pytest.mark.parametrize("passed, verdict", [(True, Verdict.VERIFIED), (False, Verdict.VERIFY_FAILED)])
def test_after_verify_only(passed, verdict):
    assert after_verify_only(passed) is verdict


@pytest.mark.parametrize("outcome, message, text", [
    (Outcome.ROLLBACK_FAILED, "ROLLBACK FAILED: h: rollback of r1 failed", "ROLLBACK FAILED: h: rollback of r1 failed"),
    (Outcome.INTERRUPTED, "h: rollback of r1 interrupted", "ROLLBACK FAILED: h: rollback of r1 interrupted"),
    (Outcome.REFUSED, "h: release r1 has a damaged release.json",
     "ROLLBACK FAILED: h: release r1 has a damaged release.json"),
    (None, "connection refused", "ROLLBACK FAILED: connection refused"),
])
def test_rollback_failure_says_so_once(outcome, message, text):
    assert rollback_failure(outcome, message) == text


DECISIONS = {
    Verdict.KEPT: "kept",
    Verdict.VERIFIED: "verified",
    Verdict.VERIFY_FAILED: "verification failed (nothing changed)",
    Verdict.ROLLED_BACK: "rolled back to r1 (healthy)",
    Verdict.ROLLBACK_FAILED: "ROLLBACK FAILED: why",
    Verdict.NOT_ROLLED_BACK: "not rolled back: this release was already current before this run",
    Verdict.FIRST_DEPLOY_STOPPED: "stopped: first deploy failed its gates (host left without a running stack)",
    Verdict.FIRST_DEPLOY_KEPT: "kept running although it failed (first deploy, first_deploy_failure: keep)",
    Verdict.UNVERIFIED: "interrupted during verification (Ctrl-C): release r2 stays live, unverified; run "
                        "`sparkkit verify h` to judge it, or `sparkkit rollback h`",
    Verdict.INTERRUPTED: "interrupted during the deploy (Ctrl-C)",
    Verdict.DEPLOY_REFUSED: "deploy refused before anything running was changed",
    Verdict.DEPLOY_RESTORED: "deploy failed; restored r0",
    Verdict.DEPLOY_FAILED: "deploy failed; nothing kept",
    Verdict.RESTORE_FAILED: "DEPLOY AND RESTORE FAILED: the host needs attention",
    Verdict.LOCKED: "not started: the host is locked",
    Verdict.UNREACHABLE: "not started: host unreachable; nothing on it was touched",
    Verdict.LOST: "connection lost mid-run: the host's state is unknown; check it (`sparkkit status`), then rerun "
                  "(a lock left behind needs --break-lock)",
    Verdict.ERROR: "failed before a decision was reached",
}


@pytest.mark.parametrize("verdict", list(Verdict))
def test_decision_line_per_verdict(verdict):
    assert decision_line(verdict, host="h", release="r2", previous="r1", restored="r0",
                         failure="ROLLBACK FAILED: why") == DECISIONS[verdict]


def test_the_verdicts_that_end_before_verification():
    assert {v for v in Verdict if v.before_verification} == {
        Verdict.INTERRUPTED, Verdict.DEPLOY_REFUSED, Verdict.DEPLOY_RESTORED, Verdict.DEPLOY_FAILED,
        Verdict.RESTORE_FAILED, Verdict.LOCKED, Verdict.UNREACHABLE, Verdict.LOST, Verdict.ERROR}


def test_every_verdict_comes_out_of_a_decision():
    reached = {after_deploy(o) for o in Outcome if o not in (Outcome.STOPPED, Outcome.ROLLBACK_FAILED)}
    reached |= {after_gates(passed=p, step=s, keep_first=k, undone=u) for p in (True, False) for s in Recovery
                for k in (True, False) for u in (None, *Outcome)}
    reached |= {after_verify_only(p) for p in (True, False)}
    reached |= {cut_off_verdict(unreachable=u, ever_connected=c) for u in (True, False) for c in (True, False)}
    # the two set where they happen: Ctrl-C while measuring, and a fleet host's error before any verdict
    reached |= {Verdict.UNVERIFIED, Verdict.ERROR}
    assert reached - {None} == set(Verdict)


# -- the report record -----------------------------------------------------------------------------

@pytest.mark.parametrize("verdict", list(Verdict))
def test_verification_flags_and_exit_code_follow_the_verdict(verdict):
    run = Verification(host="h", action="deploy-and-verify", release="r1", verdict=verdict)
    assert run.exit_code == verdict.exit_code
    assert run.interrupted == (verdict.exit_code == EXIT_INTERRUPTED)
    # the report's "attention": a restore or rollback failed (a lost host says so in its fleet status)
    assert run.attention == (verdict in (Verdict.RESTORE_FAILED, Verdict.ROLLBACK_FAILED))


def test_report_json_keeps_its_keys_in_order():
    run = Verification(host="h", action="verify", release="r1", verdict=Verdict.VERIFIED, decision="verified")
    assert list(run.to_json()) == [
        "host", "action", "release", "previous", "started", "finished", "deploy_message", "deploy_error",
        "startup_s", "settings", "probes", "memory", "crashes", "gates", "baseline", "metrics", "passed",
        "decision", "stages", "exposure", "interrupted", "attention"]


# -- fleet -----------------------------------------------------------------------------------------

HOST_STATUS = {
    Verdict.KEPT: HostStatus.PASSED,
    Verdict.VERIFIED: HostStatus.PASSED,
    Verdict.VERIFY_FAILED: HostStatus.FAILED,
    Verdict.ROLLED_BACK: HostStatus.FAILED,
    Verdict.ROLLBACK_FAILED: HostStatus.FAILED,
    Verdict.NOT_ROLLED_BACK: HostStatus.FAILED,
    Verdict.FIRST_DEPLOY_STOPPED: HostStatus.FAILED,
    Verdict.FIRST_DEPLOY_KEPT: HostStatus.FAILED,
    Verdict.UNVERIFIED: HostStatus.FAILED,
    Verdict.INTERRUPTED: HostStatus.DEPLOY_FAILED,
    Verdict.DEPLOY_REFUSED: HostStatus.DEPLOY_FAILED,
    Verdict.DEPLOY_RESTORED: HostStatus.DEPLOY_FAILED,
    Verdict.DEPLOY_FAILED: HostStatus.DEPLOY_FAILED,
    Verdict.RESTORE_FAILED: HostStatus.DEPLOY_FAILED,
    Verdict.ERROR: HostStatus.DEPLOY_FAILED,
    Verdict.LOCKED: HostStatus.LOCKED,
    Verdict.UNREACHABLE: HostStatus.UNREACHABLE,
    Verdict.LOST: HostStatus.LOST,
}


@pytest.mark.parametrize("verdict", list(Verdict))
@pytest.mark.parametrize("dropped", [False, True])
def test_host_status(verdict, dropped):
    lost = dropped and verdict in (Verdict.RESTORE_FAILED, Verdict.ROLLBACK_FAILED)
    assert host_status(verdict, dropped=dropped) is (HostStatus.LOST if lost else HOST_STATUS[verdict])


def test_every_host_status_is_reached():
    reached = {host_status(v, dropped=d) for v in Verdict for d in (True, False)}
    # the two the fleet sets itself: a partner undone, a batch never started
    assert reached | {HostStatus.PARTNER_FAILED, HostStatus.SKIPPED} == set(HostStatus)


def test_host_statuses_print_as_before():
    assert [str(s) for s in HostStatus] == ["passed", "failed", "deploy-failed", "unreachable", "lost", "locked",
                                            "partner-failed", "skipped"]
    assert f"{HostStatus.PARTNER_FAILED}" == "partner-failed" and HostStatus.PASSED == "passed"


@pytest.mark.parametrize("unreachable, ever_connected, verdict", [
    (True, False, Verdict.UNREACHABLE),  # never reached: nothing touched
    (True, True, Verdict.LOST),  # reached, then reconnecting failed
    (False, True, Verdict.LOST),  # the connection dropped
    (False, False, Verdict.LOST),
])
def test_cut_off_verdict(unreachable, ever_connected, verdict):
    assert cut_off_verdict(unreachable=unreachable, ever_connected=ever_connected) is verdict


@pytest.mark.parametrize("verdict, text", [
    (Verdict.ROLLED_BACK, "rolled back to r1: placement partner b failed"),
    (Verdict.FIRST_DEPLOY_STOPPED, "stopped (first deploy): placement partner b failed"),
    (Verdict.NOT_ROLLED_BACK, "kept (was already current before this run); placement partner b failed"),
    (Verdict.ROLLBACK_FAILED, "ROLLBACK FAILED after placement partner b failed: boom"),
])
def test_partner_decision(verdict, text):
    assert partner_decision(verdict, partner="b", previous="r1", failure="boom") == text


@pytest.mark.parametrize("statuses, attention, code", [
    ({"a": HostStatus.PASSED, "b": HostStatus.PASSED}, [False, False], 0),
    ({"a": HostStatus.PASSED, "b": HostStatus.FAILED}, [False, False], 1),
    ({"a": HostStatus.PASSED, "b": HostStatus.FAILED}, [False, True], 3),  # its rollback failed
    ({"a": HostStatus.LOST, "b": HostStatus.PASSED}, [True, False], 3),
    ({"a": HostStatus.UNREACHABLE}, [False], 1),
    ({}, [], 1),
])
def test_fleet_exit_code(statuses, attention, code):
    assert fleet_exit_code(fleet_verdict(statuses, stopped=None), attention) == code


# -- commands ending in outcomes, on a recording executor -----------------------------------------

ACQUIRED = ("ACQUIRED", Result(rc=0, stdout="ACQUIRED\n", stderr=""))
MANIFEST = 'release.json" 2>/dev/null || exit 4'  # in the command that reads a kept release's manifest


@pytest.fixture
def host():
    from sparkkit.deploy.apply import specs_of
    from sparkkit.inventory.build import build_config
    from sparkkit.inventory.layers import load_host_layers
    from sparkkit.release.render import render_release

    from .projects import REPO

    cfg = build_config(load_host_layers(REPO, "rehearsal"))
    release = render_release(cfg, SECRETS, REPO, key=RELEASE_KEY)
    return cfg, release, [s.name for s in specs_of(release, cfg)]


def ops(ex, cfg, lines=None) -> HostOps:
    return HostOps(ex, cfg, out=(lines.append if lines is not None else lambda _: None), secrets=SECRETS,
                   sleep=lambda _: None)


def test_a_held_lock_is_a_locked_outcome(host):
    cfg, release, _ = host
    held = 'HELD\n{"who": "bob@ci", "since": "t"}'
    ex = FakeHost([
        ("==sparkkit:docker==", Result(rc=0, stdout=preflight_text("r0ld", ["r0ld"], "[]", lock=held), stderr="")),
        (MANIFEST, Result(rc=0, stdout=release.manifest(cfg=cfg).content.decode(), stderr="")),
        ("ACQUIRED", Result(rc=0, stdout=held + "\n", stderr=""))])
    for result in (ops(ex, cfg).deploy(release), ops(ex, cfg).rollback("r0ld"), ops(ex, cfg).down()):
        assert result.outcome is Outcome.LOCKED and result.exit_code == 1
        assert "locked by bob@ci since t" in result.message and "--break-lock" in result.message


def test_a_rollback_to_a_release_not_kept_is_refused(host):
    cfg, _, _ = host
    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=preflight_text("r1", ["r1"], "[]"),
                                                           stderr=""))])
    result = ops(ex, cfg).rollback("r9")
    assert result.outcome is Outcome.REFUSED and "release 'r9' is not kept on the host (kept: r1)" in result.message
    # the facts are read under the lock; the refusal is audited as the lock is released; nothing started
    assert len(ex.commands) == 2 and "ACQUIRED" in ex.commands[0] and "==sparkkit:docker==" in ex.commands[0]
    assert '"result": "refused"' in ex.commands[1] and "$token" in ex.commands[1]


def test_down_is_a_stopped_outcome(host):
    cfg, _, _ = host
    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=preflight_text("r1", ["r1"], "[]"),
                                                           stderr="")), ACQUIRED])
    result = ops(ex, cfg).down()
    assert result.outcome is Outcome.STOPPED and result.exit_code == 0 and result.changed
    assert result.message == "rehearsal: stack stopped; releases kept (current: r1)"


def test_a_first_deploy_whose_service_fails_stops_its_stack(host):
    cfg, release, names = host
    ex = FakeHost([
        ("==sparkkit:docker==", Result(rc=0, stdout=preflight_text(None, [], "[]"), stderr="")),
        ACQUIRED,
        ("docker inspect $ids", Result(rc=0, stdout=inspect_json(names, health="unhealthy"), stderr="")),
    ])
    lines: list[str] = []
    result = ops(ex, cfg, lines).deploy(release)
    assert result.outcome is Outcome.FAILED_FIRST and result.exit_code == 1 and result.restored is None
    assert "healthcheck reports unhealthy" in result.message
    assert "stack stopped; no previous release" in result.message
    assert any(" down " in c for c in ex.commands)
    assert "no previous release: stopping the new one" in "\n".join(lines)


def test_a_failed_deploy_restores_the_previous_release(host):
    cfg, release, names = host

    def inspect(ran):  # the new release's services come up unhealthy; the previous release's healthy
        restoring = any("r0ld" in c and " up -d " in c for c in ex.commands)
        return inspect_json(names, health="healthy" if restoring else "unhealthy")

    ex = FakeHost([(MANIFEST, release.manifest(cfg=cfg).content.decode()),  # the previous release's manifest
                   (" logs --no-color ", "sim: starting\nsim: not healthy, token flow-secret\n"),
                   ("==sparkkit:docker==", Result(rc=0, stdout=preflight_text("r0ld", ["r0ld"], "[]"), stderr="")),
                   ("docker inspect $ids", inspect), ACQUIRED])
    result = ops(ex, cfg).deploy(release)
    assert result.outcome is Outcome.RESTORED and result.restored == "r0ld" and result.previous == "r0ld"
    assert "restored previous release r0ld, healthy" in result.message
    assert (f"healthcheck reports unhealthy\n  changed: started {', '.join(names[:-1])} of release "
            f"{release.id}\n  restored previous release r0ld, healthy\n  last log lines of ") in result.message
    assert result.message.endswith("    sim: starting\n    sim: not healthy, token ********")  # secrets masked


def test_ctrl_c_while_starting_is_an_interrupted_outcome(host):
    cfg, release, _ = host

    def ctrl_c(ran):
        raise KeyboardInterrupt

    ex = FakeHost([(" up -d ", ctrl_c),
                   ("==sparkkit:docker==", Result(rc=0, stdout=preflight_text("r0ld", ["r0ld"], "[]"), stderr="")),
                   ACQUIRED])
    result = ops(ex, cfg).deploy(release)
    assert result.outcome is Outcome.INTERRUPTED and result.exit_code == 130
    assert f"deploy of {release.id} interrupted during compose up" in result.message
    assert any("interrupted" in c for c in ex.commands)  # the audit line
    assert any("$token" in c for c in ex.commands)  # the lock released


def test_results_are_frozen():
    result = DeployResult(outcome=Outcome.LIVE, action="deploy", release="r1", message="m")
    with pytest.raises(AttributeError):
        result.outcome = Outcome.REFUSED  # type: ignore[misc]
