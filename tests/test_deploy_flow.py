"""Deploy sequencing on the fake host: which commands run, in which order, how many."""

import json
from pathlib import Path

import pytest

from sparkkit.host.commands import SECTION
from sparkkit.inventory.build import build_config
from sparkkit.deploy.apply import HostOps, specs_of
from sparkkit.deploy.outcome import Outcome, Verdict
from sparkkit.errors import OperationError
from sparkkit.host.executor import Result
from sparkkit.host.fake import FakeHost
from sparkkit.inventory.layers import load_host_layers
from sparkkit.release.render import render_release
from sparkkit.inventory.secrets import Secrets

REPO = Path(__file__).resolve().parent.parent
SECRETS = Secrets({"searxng_secret": "flow-secret"})
RELEASE_KEY = bytes(range(32))  # the host's release key in these tests (<root>/release.key)


def inspect_json(services, health="healthy", hashes=None):
    hashes = hashes or {}
    return json.dumps([{"Id": f"{name}0000000000", "Name": f"/p-{name}-1", "RestartCount": 0, "Image": "sha256:i",
                        "Config": {"Labels": {"com.docker.compose.service": name,
                                              "com.docker.compose.config-hash": hashes.get(name, "")},
                                   "Image": "img"},
                        "State": {"Status": "running", "Health": {"Status": health}, "ExitCode": 0,
                                  "StartedAt": "2026-11-27T08:00:00.123456789Z"},
                        "HostConfig": {"PortBindings": {}}} for name in services])


def preflight_text(current, releases, containers, missing=()):
    parts = {"docker": "20.10.24", "compose": "2.40.3", "runtimes": '{"runc":{}}',
             "disk": "/dev/vda 100 10 99999999 1% /", "ports": "",
             "images": "\n".join(f"missing {m}" for m in missing), "current": f"releases/{current}" if current else "",
             "releases": "\n".join(releases), "audit": "", "release-key": RELEASE_KEY.hex(), "secret-values": "",
             "containers": containers, "end": ""}
    return "\n".join(f"{SECTION.format(k)}\n{v}" for k, v in parts.items())


@pytest.fixture
def setup():
    cfg = build_config(load_host_layers(REPO, "rehearsal"))
    release = render_release(cfg, SECRETS, REPO, key=RELEASE_KEY)
    names = [s.name for s in specs_of(release, cfg)]
    return cfg, release, names


def test_noop_is_two_round_trips_and_starts_nothing(setup):
    cfg, release, names = setup
    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=preflight_text(
        release.id, [release.id], inspect_json(names)), stderr=""))])
    outcome = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS).deploy(release)
    assert not outcome.changed
    assert outcome.outcome is Outcome.UNCHANGED and outcome.exit_code == 0
    assert len(ex.commands) == 2  # preflight, audit
    assert not any("compose" in c and " up " in c for c in ex.commands)
    assert "noop" in ex.commands[-1]


def test_first_deploy_order(setup):
    cfg, release, names = setup
    ex = FakeHost([
        ("==sparkkit:docker==", Result(rc=0, stdout=preflight_text(None, [], "[]"), stderr="")),
        ("ACQUIRED", Result(rc=0, stdout="ACQUIRED\n", stderr="")),
        ("docker inspect $ids", Result(rc=0, stdout=inspect_json(names), stderr="")),
    ])
    outcome = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS, sleep=lambda _: None).deploy(release)
    assert outcome.changed
    assert outcome.outcome is Outcome.LIVE and outcome.previous is None
    assert outcome.message.endswith("is live (previous: none)")
    kinds = kinds_of(ex.commands)
    assert kinds == ["preflight", "lock", "upload", "up", "poll", "up", "poll", "switch+audit+prune", "unlock"]
    assert "--remove-orphans" in ex.commands[3] and "vllm-nemotron" not in ex.commands[3]
    assert ex.commands[5].endswith("vllm-nemotron")
    assert all("flow-secret" not in c for c in ex.commands)  # the secret travels only inside the archive


def kinds_of(commands):
    kinds = []
    for c in commands:
        if "==sparkkit:docker==" in c:
            kinds.append("preflight")
        elif "ACQUIRED" in c:
            kinds.append("lock")
        elif "base64 -d" in c:
            kinds.append("upload")
        elif " up -d " in c:
            kinds.append("up")
        elif "docker inspect $ids" in c:
            kinds.append("poll")
        elif "current.tmp" in c:
            kinds.append("switch+audit+prune")
        elif "$token" in c:
            kinds.append("unlock")
    return kinds


def test_a_later_wave_compose_would_not_change_is_skipped(setup):
    cfg, release, names = setup
    old = "r0ld"
    specs = specs_of(release, cfg)
    hashes = {n: f"hash-{n}" for n in names}
    running = {**hashes, "context-engine": "hash-before-the-edit"}  # the one edited service
    up_answer = "\n".join([SECTION.format("hashes"), *(f"{n} {h}" for n, h in hashes.items()),
                           SECTION.format("images"), *(f"{i} sha256:i" for i in {s.image for s in specs})])
    state = {"up": 0}

    def up(_ran):
        state["up"] += 1
        return up_answer

    def poll(_ran):
        return inspect_json(names, hashes=hashes if state["up"] else running)

    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=preflight_text(old, [old], inspect_json(names, hashes=running)),
                                              stderr="")),
                   ("ACQUIRED", Result(rc=0, stdout="ACQUIRED\n", stderr="")),
                   (" up -d ", up),
                   ("docker inspect $ids", poll)])
    lines = []
    outcome = HostOps(ex, cfg, out=lines.append, secrets=SECRETS, sleep=lambda _: None).deploy(release)
    assert outcome.changed
    assert kinds_of(ex.commands) == ["preflight", "lock", "upload", "up", "poll", "switch+audit+prune", "unlock"]
    assert "unchanged and ready: vllm-nemotron" in "\n".join(lines)


def test_a_later_wave_is_started_when_its_container_differs(setup):
    cfg, release, names = setup
    specs = specs_of(release, cfg)
    hashes = {n: f"hash-{n}" for n in names}
    stale = {**hashes, "vllm-nemotron": "hash-of-an-older-file"}
    up_answer = "\n".join([SECTION.format("hashes"), *(f"{n} {h}" for n, h in hashes.items()),
                           SECTION.format("images"), *(f"{i} sha256:i" for i in {s.image for s in specs})])
    ex = FakeHost([
        ("==sparkkit:docker==", Result(rc=0, stdout=preflight_text("r0ld", ["r0ld"], "[]"), stderr="")),
        ("ACQUIRED", Result(rc=0, stdout="ACQUIRED\n", stderr="")),
        (" up -d ", Result(rc=0, stdout=up_answer, stderr="")),
        ("docker inspect $ids", Result(rc=0, stdout=inspect_json(names, hashes=stale), stderr="")),
    ])
    HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS, sleep=lambda _: None).deploy(release)
    assert kinds_of(ex.commands) == ["preflight", "lock", "upload", "up", "poll", "up", "poll", "switch+audit+prune",
                                     "unlock"]
    assert ex.commands[5].endswith("up -d --no-deps vllm-nemotron")


def test_preflight_problem_touches_nothing(setup):
    cfg, release, _ = setup
    text = preflight_text(None, [], "[]").replace("2.40.3", "ERROR")
    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=text, stderr=""))])
    result = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS).deploy(release)
    assert result.outcome is Outcome.REFUSED and result.exit_code == 1
    assert "Compose v2 not found" in result.message and "preflight failed, nothing was changed" in result.message
    assert len(ex.commands) == 1


def test_deploy_and_verify_takes_the_lock_first_and_stops_when_held(setup):
    from sparkkit.verify.run import deploy_and_verify

    cfg, release, _ = setup
    ex = FakeHost([("ACQUIRED", Result(rc=0, stdout='HELD\n{"who": "bob@ci", "since": "t"}\n', stderr=""))])
    run = deploy_and_verify(HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS), release, {})
    assert run.decision == "not started: the host is locked" and "locked by bob@ci" in run.deploy_error
    assert run.verdict is Verdict.LOCKED and run.exit_code == 1
    assert len(ex.commands) == 1 and "ACQUIRED" in ex.commands[0]


def test_the_lock_is_reentrant_and_released_once(setup):
    cfg, release, _ = setup
    ex = FakeHost([("ACQUIRED", Result(rc=0, stdout="ACQUIRED\n", stderr=""))])
    ops = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS)
    with ops.locked("outer", None, break_lock=False):
        with ops.locked("inner", None, break_lock=False):
            pass
        assert not any("$token" in c for c in ex.commands)  # still held
    assert sum("ACQUIRED" in c for c in ex.commands) == 1
    assert sum("$token" in c for c in ex.commands) == 1


def changing_deploy_script(release, names):
    """A host running release r0ld that takes the new release cleanly."""
    return [("==sparkkit:docker==", preflight_text("r0ld", ["r0ld"], inspect_json(names))),
            ("ACQUIRED", "ACQUIRED\n"),
            ("docker inspect $ids", inspect_json(names))]


@pytest.mark.parametrize("fault", ["fail_at", "drop_at"])
def test_a_fault_at_any_command_leaves_the_lock_released(setup, fault):
    """Walk a failed command (or a dropped connection) through every step of a deploy: the deploy
    ends in an OperationError or a restore, and once the lock was taken it is released last."""
    cfg, release, names = setup
    clean = FakeHost(changing_deploy_script(release, names))
    assert HostOps(clean, cfg, out=lambda _: None, secrets=SECRETS, sleep=lambda _: None).deploy(release).changed
    steps = len(clean.commands)
    lock_at = kinds_of(clean.commands).index("lock") + 1
    assert steps > 5
    for n in range(1, steps + 1):
        ex = FakeHost(changing_deploy_script(release, names), **{fault: n})
        try:
            outcome = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS, sleep=lambda _: None).deploy(release)
        except OperationError:
            outcome = None
        assert ex.ran[n - 1].fault, n
        if n > lock_at:
            assert kinds_of(ex.commands).count("unlock") == 1, (n, kinds_of(ex.commands))
            assert kinds_of(ex.commands[-1:]) == ["unlock"], (n, ex.commands[-1])
        else:
            assert outcome is None and "unlock" not in kinds_of(ex.commands), n
        if fault == "drop_at" and n < steps:
            assert ex.dropped == 1 and (ex.connects == 2 or len(ex.commands) == n), n
