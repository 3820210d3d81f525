"""The fault matrix: break things on purpose during real deploys (real sshd, real dockerd) and check
the host afterwards. Every scenario must end in one of three consistent states — the new release
kept and healthy, the previous release restored and healthy, or the host untouched — with nothing
lost: kept releases, audit log lines and reports only ever grow. The last test scans everything the
kit printed and wrote during the matrix for the two known secret values.

Faults are real: a dropped connection is the sshd process serving the kit's connection killed with
SIGKILL; Ctrl-C is SIGINT sent to this process; a killed kit is a CLI process killed with SIGKILL.
Only *when* they happen is chosen by watching which remote command the kit is about to run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from sparkkit.cli.main import main
from sparkkit.host.ssh import SshExecutor
from testbed.stack import Stack, docker

from .conftest import SECRET

pytestmark = pytest.mark.integration

HF_TOKEN = "hf_faults" + uuid.uuid4().hex[:20]
TRANSCRIPT: list[str] = []  # everything the kit printed during the matrix, for the secrets scan
SPARKKIT = Path(sys.executable).parent / "sparkkit"

# which remote command marks which stage (a substring of the command line)
UPLOAD = "base64 -d"
COMPOSE_UP = "--no-deps"
HEALTH_POLL = "project=$2"
SWITCH = ".current.tmp"
LOCK = "ACQUIRED"
PREFLIGHT = "==sparkkit:docker=="


@pytest.fixture(scope="module")
def fs(testbed, tmp_path_factory):
    """A small stack (vllm-nemotron, searxng, audio-pipeline), two known secrets, all releases kept."""
    s = Stack(tmp_path_factory.mktemp("faults"), port_offset=200)
    for name in ("vllm-annie", "ollama", "context-engine"):
        s.set_service(name, enabled=False)
    s.set_service("vllm-nemotron", depends_on=[], secret_env={"HF_TOKEN": "hf_token"},
                  env={"SIM_TTFT_MS": "20", "SIM_DECODE_TOK_S": "2000", "SIM_MEMORY_MIB": "0"},
                  probe_suites=["standard"])
    s.set_service("audio-pipeline", start_timeout_s=120)  # the machine may be busy; faults set their own
    for name in ("vllm-nemotron", "searxng", "audio-pipeline"):  # a busy machine must not fail a health check
        s.set_service(name, healthcheck={"interval_s": 1, "timeout_s": 20, "retries": 10})
    s.set_host(keep_releases=50, gates={"regression_ttft_pct": 400, "regression_decode_pct": 90})
    saved = {k: os.environ.get(k) for k in ("SPARKKIT_SECRET_SEARXNG_SECRET", "SPARKKIT_SECRET_HF_TOKEN")}
    os.environ["SPARKKIT_SECRET_SEARXNG_SECRET"] = SECRET
    os.environ["SPARKKIT_SECRET_HF_TOKEN"] = HF_TOKEN
    s.reports = s.dir / "reports"
    yield s
    s.cleanup()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run(capsys, fs, command, *extra) -> tuple[int, str, str]:
    more = ("--reports-dir", str(fs.reports)) if command in ("deploy-and-verify", "verify") else ()
    code = main(fs.args(command, *more, *extra))
    out, err = capsys.readouterr()
    TRANSCRIPT.append(out + err)
    return code, out, err


def change(n: str) -> list[str]:
    """A one-service change: audio-pipeline gets a new env value (its container is recreated)."""
    return ["-e", f"services.audio-pipeline.env.FAULT_STEP={n}"]


# --- faults -------------------------------------------------------------------------------------

def sshd_pid_of(ex: SshExecutor) -> int:
    """The sshd process on the host side of this executor's connection."""
    port = ex._conn.client.get_transport().sock.getsockname()[1]
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :2222 and dport = :{port} )"],
                         capture_output=True, text=True).stdout
    pids = re.findall(r"pid=(\d+)", out)
    assert pids, f"no sshd found for local port {port}: {out!r}"
    return int(pids[0])


def drop_connection(ex: SshExecutor) -> None:
    os.kill(sshd_pid_of(ex), signal.SIGKILL)


def ctrl_c(_ex: SshExecutor) -> None:
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def sigint_raises():
    """Ctrl-C raises KeyboardInterrupt here, as at a terminal, also when the suite was started with
    SIGINT ignored (a background job: `make test &`, nohup, a CI runner without a terminal)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


@contextmanager
def fault(monkeypatch, marker: str, action, *, delay_s: float = 0.0, occurrence: int = 1):
    """Do ``action`` when the kit is about to run the ``occurrence``-th command containing ``marker``
    (after ``delay_s``, while that command runs). Yields a dict that says whether it fired."""
    original = SshExecutor.run
    state = {"seen": 0, "fired": False}

    def run_with_fault(self, argv, **kwargs):
        if not state["fired"] and marker in shlex.join(argv):
            state["seen"] += 1
            if state["seen"] == occurrence:
                state["fired"] = True
                if delay_s:
                    threading.Timer(delay_s, action, args=(self,)).start()
                else:
                    action(self)
        return original(self, argv, **kwargs)

    monkeypatch.setattr(SshExecutor, "run", run_with_fault)
    try:
        yield state
    finally:
        monkeypatch.setattr(SshExecutor, "run", original)


INJECTED = ["sh", "-c", "echo 'injected failure' >&2; exit 1"]


@contextmanager
def failing(monkeypatch, *steps: tuple[str, object]):
    """Make remote commands fail for real on the host, one after the other: for each (marker,
    replacement), the next command containing ``marker`` is replaced by ``replacement`` (an argv
    that fails there, e.g. a `docker inspect` of a container that does not exist). Yields a dict
    with how many fired."""
    original = SshExecutor.run
    state = {"fired": 0}

    def run_failing(self, argv, **kwargs):
        if state["fired"] < len(steps):
            marker, replacement = steps[state["fired"]]
            if marker in shlex.join(argv):
                state["fired"] += 1
                argv = replacement
        return original(self, argv, **kwargs)

    monkeypatch.setattr(SshExecutor, "run", run_failing)
    try:
        yield state
    finally:
        monkeypatch.setattr(SshExecutor, "run", original)


@contextmanager
def fault_while_probing(monkeypatch, action, delay_s: float):
    """Do ``action`` ``delay_s`` after the first probe tunnel opens (verification is under way)."""
    original = SshExecutor.forward
    state = {"fired": False}

    def forward(self, *args, **kwargs):
        if not state["fired"]:
            state["fired"] = True
            threading.Timer(delay_s, action, args=(self,)).start()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SshExecutor, "forward", forward)
    try:
        yield state
    finally:
        monkeypatch.setattr(SshExecutor, "forward", original)


# --- the host afterwards ------------------------------------------------------------------------

def snapshot(fs) -> dict:
    releases = fs.root / "releases"
    return {"audit": (fs.root / "audit.log").read_text().splitlines() if (fs.root / "audit.log").exists() else [],
            "releases": {p.name for p in releases.iterdir()} if releases.exists() else set(),
            "reports": {str(p) for p in fs.reports.rglob("*") if p.is_file()} if fs.reports.exists() else set()}


def drifted(fs, release: str) -> list[str]:
    """What compose itself would change to bring the project to ``release`` (its dry run names every
    container it would create or recreate; `config --hash` cannot be used: it ignores env_file)."""
    compose_file = fs.root / "releases" / release / "docker-compose.yml"
    out = subprocess.run(["docker", "compose", "--dry-run", "-p", fs.project, "-f", str(compose_file), "up", "-d",
                          "--no-deps"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.strip() for line in (out.stdout + out.stderr).splitlines()
            if re.search(r"\b(Create|Recreate|Creating|Recreating)\b", line)]


def assert_consistent(fs, before: dict, *, current: str | None, wait_s: float = 30.0) -> None:
    """One consistent state: ``current`` (or no release) live, every service of it running and healthy
    with exactly that release's configuration, no lock left, nothing lost."""
    assert not (fs.root / "lock").exists(), "the lock was left behind"
    assert fs.current() == current
    after = snapshot(fs)
    assert after["audit"][:len(before["audit"])] == before["audit"], "audit log lines were lost or changed"
    for line in after["audit"]:
        json.loads(line)
    assert before["releases"] <= after["releases"], "a kept release was lost"
    assert before["reports"] <= after["reports"], "a report was lost"
    if current is None:
        assert fs.containers() == {}
        return
    manifest = json.loads((fs.root / "releases" / current / "release.json").read_text())
    want = {s["name"] for s in manifest["services"]}
    assert drifted(fs, current) == [], f"the containers are not release {current}'s"
    deadline = time.monotonic() + wait_s  # a restored service may still be finishing its health check
    while True:
        containers = fs.containers()
        problems = [name for name in want
                    if name not in containers
                    or containers[name]["State"]["Status"] != "running"
                    or containers[name]["State"].get("Health", {}).get("Status") != "healthy"]
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not problems, f"not running and healthy: {problems}"
    assert set(containers) == want, f"stray containers: {set(containers) - want}"


def last_audit(fs) -> dict:
    return json.loads((fs.root / "audit.log").read_text().splitlines()[-1])


@pytest.fixture(scope="module")
def base(fs):
    """Release ids the ordered scenarios hand on to each other."""
    return {}


# --- the matrix ---------------------------------------------------------------------------------

def test_first_release(fs, capsys, base):
    code, _, err = run(capsys, fs, "deploy")
    assert code == 0, err
    base["A"] = fs.current()
    assert_consistent(fs, {"audit": [], "releases": set(), "reports": set()}, current=base["A"])


@pytest.mark.parametrize("marker, delay_s, stage", [
    (UPLOAD, 0.0, "upload"),
    (COMPOSE_UP, 0.4, "compose up"),
    (HEALTH_POLL, 0.0, "health wait"),
    (SWITCH, 0.0, "switch"),
])
def test_connection_dropped_during_deploy_restores_the_previous_release(fs, capsys, base, monkeypatch,
                                                                        marker, delay_s, stage):
    before = snapshot(fs)
    with fault(monkeypatch, marker, drop_connection, delay_s=delay_s) as state:
        code, out, err = run(capsys, fs, "deploy", *change(f"drop-{stage}"))
    assert state["fired"]
    assert code == 1, err
    assert "SSH connection lost" in err and "reconnected" in err, err
    assert f"restored previous release {base['A']}" in err
    assert_consistent(fs, before, current=base["A"])
    entry = last_audit(fs)
    assert entry["result"] == "failed" and entry["restored"] == base["A"]


def test_connection_dropped_during_verification_rolls_back(fs, capsys, base, monkeypatch):
    before = snapshot(fs)
    with fault_while_probing(monkeypatch, drop_connection, delay_s=0.3) as state:
        code, out, err = run(capsys, fs, "deploy-and-verify", *change("drop-verify"))
    assert state["fired"]
    assert code == 1, err
    assert f"rolled back to {base['A']}" in out + err
    assert_consistent(fs, before, current=base["A"])
    report = json.loads((fs.reports / "rehearsal" / "latest" / "report.json").read_text())
    assert report["passed"] is False and report["decision"].startswith("rolled back")


def test_a_docker_inspect_failing_in_the_health_wait_restores_the_previous_release(fs, capsys, base, monkeypatch):
    """The one failure path: a real `docker inspect` that fails (no such container) while the new
    release's services start: every container back on the previous release, `current` with it, the
    audit line, exit 1 (before, the kit exited 1 leaving a mix of old and new)."""
    before = snapshot(fs)
    with failing(monkeypatch, (HEALTH_POLL, ["docker", "inspect", "sparkkit-no-such-container"])) as state:
        code, out, err = run(capsys, fs, "deploy", *change("inspect-fails"))
    assert state["fired"] == 1
    assert code == 1, err
    assert "health wait failed: exit 1" in err and f"restored previous release {base['A']}, healthy" in err, err
    assert "changed: started" in err
    assert_consistent(fs, before, current=base["A"])
    entry = last_audit(fs)
    assert entry["action"] == "deploy" and entry["result"] == "failed" and entry["restored"] == base["A"]
    assert sum(json.loads(line)["action"] == "deploy" for line in snapshot(fs)["audit"][len(before["audit"]):]) == 1


def test_a_failing_switch_restores_the_previous_release(fs, capsys, base, monkeypatch):
    """The switch of `current` fails after every service runs the new release: they go back to the
    previous one, which stays current; no "ok" line for the new release."""
    before = snapshot(fs)
    with failing(monkeypatch, (SWITCH, INJECTED)) as state:
        code, out, err = run(capsys, fs, "deploy", *change("switch-fails"))
    assert state["fired"] == 1
    assert code == 1, err
    assert "switch failed: exit 1: injected failure" in err and f"restored previous release {base['A']}" in err, err
    assert_consistent(fs, before, current=base["A"])
    added = [json.loads(line) for line in snapshot(fs)["audit"][len(before["audit"]):]]
    assert [(e["action"], e["result"]) for e in added] == [("deploy", "failed")], added


def test_a_failing_switch_whose_restore_fails_says_what_runs_and_rollback_puts_it_right(fs, capsys, base,
                                                                                        monkeypatch):
    """The switch fails, then so does the restore's `compose up`: exit 3 with the host's state (what
    `current` names, the release each container was created from); a plain `rollback` then has a
    target (the release the failed restore left out) and brings it back."""
    before = snapshot(fs)
    with failing(monkeypatch, (SWITCH, INJECTED), (COMPOSE_UP, INJECTED)) as state:
        code, out, err = run(capsys, fs, "deploy", *change("switch-and-restore-fail"))
    assert state["fired"] == 2
    assert code == 3, err
    assert "THE HOST NEEDS ATTENTION" in err and f"restoring {base['A']} failed" in err, err
    assert f"`current` names {base['A']}; containers: " in err and "created from r" in err, err
    assert not (fs.root / "lock").exists()
    entry = last_audit(fs)
    assert entry["restore_result"] == "failed" and entry["restore"] == base["A"]
    code, out, err = run(capsys, fs, "rollback")
    assert code == 0, err
    assert f"release {base['A']} is live" in out, out
    assert_consistent(fs, before, current=base["A"])


@pytest.mark.parametrize("marker, delay_s, stage", [
    (PREFLIGHT, 0.0, "preflight"),
    (LOCK, 0.0, "lock"),
    (UPLOAD, 0.0, "upload"),
    (COMPOSE_UP, 0.4, "compose up"),
    (HEALTH_POLL, 0.2, "health wait"),
    (SWITCH, 0.0, "switch"),
])
def test_ctrl_c_releases_the_lock_says_where_and_a_rerun_converges(fs, capsys, base, monkeypatch, sigint_raises,
                                                                    marker, delay_s, stage):
    before, previous = snapshot(fs), fs.current()
    with fault(monkeypatch, marker, ctrl_c, delay_s=delay_s) as state:
        code, out, err = run(capsys, fs, "deploy", *change(f"sigint-{stage}"))
    assert state["fired"]
    assert code == 130, err
    assert "interrupted" in err.lower()
    assert not (fs.root / "lock").exists()
    if stage not in ("preflight", "lock"):
        assert f"interrupted during {stage}" in err
        assert last_audit(fs)["result"] == "interrupted"
    # whatever state the services were left in, the same command again finishes the job
    code, out, err = run(capsys, fs, "deploy", *change(f"sigint-{stage}"))
    assert code == 0, err
    assert_consistent(fs, before, current=fs.current())
    assert fs.current() != previous


def test_ctrl_c_during_verification_keeps_a_report_and_the_release(fs, capsys, base, monkeypatch, sigint_raises):
    before, previous = snapshot(fs), fs.current()
    with fault_while_probing(monkeypatch, ctrl_c, delay_s=0.3):
        code, out, err = run(capsys, fs, "deploy-and-verify", *change("sigint-verify"))
    assert code == 130, err
    new = fs.current()
    assert new != previous
    assert_consistent(fs, before, current=new)
    report = json.loads((fs.reports / "rehearsal" / "latest" / "report.json").read_text())
    assert report["interrupted"] is True and "unverified" in report["decision"]


def cli(fs, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(SPARKKIT), *fs.args(*args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=os.environ.copy())


def test_two_deploys_at_once_one_waits_out_nothing_breaks(fs, base):
    before, before_current = snapshot(fs), fs.current()
    slow = ["-e", "services.audio-pipeline.env.SIM_STARTUP_DELAY_S=3", *change("twice")]
    first = cli(fs, "deploy", *slow)
    time.sleep(0.3)
    second = cli(fs, "deploy", *slow)
    outcomes = []
    for p in (first, second):
        out, err = p.communicate(timeout=120)
        TRANSCRIPT.append(out + err)
        outcomes.append((p.returncode, err))
    codes = sorted(code for code, _ in outcomes)
    # either the second found the lock held, or it came after and found nothing to do
    loser = [err for code, err in outcomes if code == 1]
    assert codes == [0, 1] and "locked by" in loser[0], outcomes
    assert_consistent(fs, before, current=fs.current())
    assert fs.current() != before_current


def test_a_killed_kit_leaves_a_stale_lock_the_next_run_takes_over(fs, capsys, base):
    before = snapshot(fs)
    proc = cli(fs, "deploy", "-e", "services.audio-pipeline.env.SIM_STARTUP_DELAY_S=4", *change("killed"))
    lines = []
    for line in proc.stderr:  # wait until it is starting services, then kill it hard
        lines.append(line)
        if "starting" in line:
            break
    proc.kill()
    proc.wait()
    TRANSCRIPT.append("".join(lines))
    assert (fs.root / "lock").exists(), "the killed run should have left its lock"
    code, out, err = run(capsys, fs, "deploy")
    assert code == 0, err
    assert "left by a run that died" in err and "taking it over" in err
    assert_consistent(fs, before, current=base["A"])


@pytest.mark.parametrize("env, why", [
    ({"SIM_EXIT_AFTER_S": "0.3", "SIM_STARTUP_DELAY_S": "5"}, "crash loop"),
    ({"SIM_STARTUP_DELAY_S": "60"}, "start slower than its timeout"),
])
def test_a_service_that_cannot_start_restores_the_previous_release(fs, capsys, base, env, why):
    before = snapshot(fs)
    extra = [f"services.audio-pipeline.env.{k}={v}" for k, v in env.items()]
    code, out, err = run(capsys, fs, "deploy", *sum((["-e", e] for e in extra), []),
                         "-e", "services.audio-pipeline.start_timeout_s=8")
    assert code == 1, err
    assert "audio-pipeline" in err and f"restored previous release {base['A']}" in err
    assert_consistent(fs, before, current=base["A"])


def test_a_storm_of_5xx_fails_the_gates_and_rolls_back(fs, capsys, base):
    before = snapshot(fs)
    code, out, err = run(capsys, fs, "deploy-and-verify", "-e", "services.vllm-nemotron.env.SIM_5XX_RATE=1")
    assert code == 1, err
    assert f"rolled back to {base['A']}" in out + err
    assert_consistent(fs, before, current=base["A"])


def test_a_damaged_previous_release_is_refused_by_rollback_and_nothing_changes(fs, capsys, base):
    code, _, err = run(capsys, fs, "deploy", *change("B"))
    assert code == 0, err
    b = fs.current()
    before = snapshot(fs)
    ids = {name: c["Id"] for name, c in fs.containers().items()}
    manifest = fs.root / "releases" / base["A"] / "release.json"
    saved = manifest.read_bytes()
    manifest.write_text("{not json")
    try:
        code, out, err = run(capsys, fs, "rollback", "--to", base["A"])
        assert code == 1
        assert f"release {base['A']} has a damaged release.json" in err
        assert {name: c["Id"] for name, c in fs.containers().items()} == ids  # nothing restarted
        assert_consistent(fs, before, current=b)
    finally:
        manifest.write_bytes(saved)
    base["B"] = b


def test_restore_impossible_exits_3_and_does_no_further_damage(fs, capsys, base):
    """The new release fails and the previous one (current) is damaged: say so loudly, exit 3, keep
    the damaged release's files and the log, release the lock."""
    b = base["B"]
    manifest = fs.root / "releases" / b / "release.json"
    saved = manifest.read_bytes()
    manifest.unlink()
    try:
        code, out, err = run(capsys, fs, "deploy", "-e", "services.audio-pipeline.env.SIM_NEVER_HEALTHY=1",
                             "-e", "services.audio-pipeline.start_timeout_s=4")
        assert code == 3, err
        assert "THE HOST NEEDS ATTENTION" in err and f"restoring {b} failed" in err
        assert fs.current() == b and (fs.root / "releases" / b / "docker-compose.yml").exists()
        assert not (fs.root / "lock").exists()
        entry = last_audit(fs)
        assert entry["result"] == "failed" and entry["restore_result"] == "failed"
    finally:
        manifest.write_bytes(saved)
    before = snapshot(fs)
    code, _, err = run(capsys, fs, "deploy", *change("B"))  # the repaired release comes back
    assert code == 0, err
    assert_consistent(fs, before, current=b)


def test_a_rollback_that_fails_exits_3_and_restores_what_ran(fs, capsys, base):
    """Roll back to a kept release whose service never becomes healthy: ROLLBACK FAILED, exit 3,
    and the release that was running comes back."""
    code, _, err = run(capsys, fs, "deploy", "-e", "services.audio-pipeline.env.SIM_NEVER_HEALTHY=1",
                       "-e", "services.audio-pipeline.start_timeout_s=4")
    assert code == 1, err
    bad = last_audit(fs)["release"]
    before = snapshot(fs)
    code, out, err = run(capsys, fs, "rollback", "--to", bad)
    assert code == 3, err
    assert "ROLLBACK FAILED" in err and f"restored previous release {base['B']}" in err
    assert_consistent(fs, before, current=base["B"])


def test_no_disk_space_for_the_release_leaves_the_host_untouched(testbed, tmp_path_factory, capsys):
    s = Stack(tmp_path_factory.mktemp("tiny"), port_offset=150)
    tiny = Path(f"/tmp/skit-tiny-{uuid.uuid4().hex[:8]}")
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)], check=True)
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={tiny}/fill", "bs=4k", "count=15"], capture_output=True)
        s.set_host(sparkkit_root=str(tiny / "root"))
        s.root = tiny / "root"
        code = main(s.args("deploy"))
        out, err = capsys.readouterr()
        TRANSCRIPT.append(out + err)
        assert code == 1
        assert "not enough free disk for the release" in err and "nothing was changed" in err
        assert s.containers() == {}
        assert not (tiny / "root" / "releases").exists() and not (tiny / "root" / "lock").exists()
    finally:
        s.cleanup()
        subprocess.run(["umount", str(tiny)])
        tiny.rmdir()


# --- secrets ------------------------------------------------------------------------------------

def test_no_secret_in_anything_the_kit_printed_or_wrote(fs):
    """Runs after the matrix: the kit's console output, the audit log, every report and every file
    it wrote on the host hold neither secret; only the 0600 env files the services read do."""
    secrets = [SECRET, HF_TOKEN]
    assert len(TRANSCRIPT) >= 20
    for text in TRANSCRIPT:
        for secret in secrets:
            assert secret not in text
    holders = []
    for path in [*fs.root.rglob("*"), *fs.reports.rglob("*")]:
        if not path.is_file():
            continue
        data = path.read_bytes()
        if any(s.encode() in data for s in secrets):
            holders.append(path)
            assert path.suffix == ".env" and path.stat().st_mode & 0o777 == 0o600, path
    assert holders, "the env files should hold the secrets (else this scan proves nothing)"
    assert any(p.name.endswith(".env") for p in holders)
    docker("ps")  # the engine is still there
