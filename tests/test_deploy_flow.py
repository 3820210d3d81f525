"""Deploy sequencing on the fake host: which commands run, in which order, how many."""

import base64
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


def inspect_json(services, health="healthy", hashes=None, image_ids=None):
    hashes = hashes or {}
    image_ids = image_ids or {}
    return json.dumps([{"Id": f"{name}0000000000", "Name": f"/p-{name}-1", "RestartCount": 0,
                        "Image": image_ids.get(name, "sha256:i"),
                        "Config": {"Labels": {"com.docker.compose.service": name,
                                              "com.docker.compose.config-hash": hashes.get(name, "")},
                                   "Image": "img"},
                        "State": {"Status": "running", "Health": {"Status": health}, "ExitCode": 0,
                                  "StartedAt": "2026-11-27T08:00:00.123456789Z"},
                        "HostConfig": {"PortBindings": {}}} for name in services])


def preflight_text(current, releases, containers, missing=(), current_hashes=None, current_images=None,
                   lock="ACQUIRED"):
    """What the preflight prints; a deploy, rollback or down reads it in the round trip that takes
    the lock, whose answer (``lock``) comes first, in section "lock". ``current_hashes``: service ->
    the config hash the current release went live with (its live.txt); ``current_images``: image ->
    id (both what the preflight reads of the current release, for drift)."""
    parts = {"lock": lock, "docker": "20.10.24", "compose": "2.40.3", "runtimes": '{"runc":{}}',
             "disk": "/dev/vda 100 10 99999999 1% /", "ports": "",
             "images": "\n".join(f"missing {m}" for m in missing), "current": f"releases/{current}" if current else "",
             "releases": "\n".join(releases), "audit": "", "release-key": RELEASE_KEY.hex(), "secret-values": "",
             "containers": containers,
             "current_live": "\n".join(f"{k} {v} img" for k, v in (current_hashes or {}).items()),
             "current_images": "\n".join(f"present {k} {v}" for k, v in (current_images or {}).items()),
             "end": ""}
    return "\n".join(f"{SECTION.format(k)}\n{v}" for k, v in parts.items())


@pytest.fixture
def setup():
    cfg = build_config(load_host_layers(REPO, "rehearsal"))
    release = render_release(cfg, SECRETS, REPO, key=RELEASE_KEY)
    names = [s.name for s in specs_of(release, cfg)]
    return cfg, release, names


def in_step(release, cfg, names):
    """What the preflight of a host that runs exactly ``release`` reads: each container carries the
    config hash the release gives it, from the image the release's tag names."""
    hashes = {name: f"hash-{name}" for name in names}
    images = {s.image: "sha256:i" for s in specs_of(release, cfg)}
    return hashes, images


def test_noop_is_two_round_trips_and_starts_nothing(setup):
    cfg, release, names = setup
    hashes, images = in_step(release, cfg, names)
    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=preflight_text(
        release.id, [release.id], inspect_json(names, hashes=hashes), current_hashes=hashes,
        current_images=images), stderr=""))])
    outcome = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS).deploy(release)
    assert not outcome.changed
    assert outcome.outcome is Outcome.UNCHANGED and outcome.exit_code == 0
    assert len(ex.commands) == 2  # lock + preflight, audit + unlock
    assert kinds_of(ex.commands) == ["lock+preflight", "audit+unlock"]
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
    assert kinds == ["lock+preflight", "upload", "up", "poll", "up", "poll", "switch+prune", "audit+unlock"]
    assert "--remove-orphans" in ex.commands[2] and "vllm-nemotron" not in ex.commands[2]
    assert ex.commands[4].endswith("vllm-nemotron")
    assert all("flow-secret" not in c for c in ex.commands)  # the secret travels only inside the archive


def kinds_of(commands):
    kinds = []
    for c in commands:
        if "==sparkkit:docker==" in c and "ACQUIRED" in c:
            kinds.append("lock+preflight")
        elif "==sparkkit:docker==" in c:
            kinds.append("preflight")
        elif "$token" in c and "audit.log" in c:
            kinds.append("audit+unlock")
        elif "ACQUIRED" in c:
            kinds.append("lock")
        elif "base64 -d" in c:
            kinds.append("upload")
        elif " up -d " in c:
            kinds.append("up")
        elif "docker inspect $ids" in c:
            kinds.append("poll")
        elif "current.tmp" in c:
            kinds.append("switch+prune")
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
    assert kinds_of(ex.commands) == ["lock+preflight", "upload", "up", "poll", "switch+prune", "audit+unlock"]
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
    assert kinds_of(ex.commands) == ["lock+preflight", "upload", "up", "poll", "up", "poll", "switch+prune",
                                     "audit+unlock"]
    assert ex.commands[4].endswith("up -d --no-deps vllm-nemotron")


def test_a_drifted_service_of_the_current_release_is_no_noop_and_only_it_is_started(setup):
    """The release is current, but vllm-nemotron's container was recreated by hand from another config:
    the deploy says so, is not a no-op, starts only that service in its wave, and switches."""
    cfg, release, names = setup
    hashes, images = in_step(release, cfg, names)
    by_hand = {**hashes, "vllm-nemotron": "hash-by-hand"}
    up_answer = "\n".join([SECTION.format("hashes"), *(f"{n} {h}" for n, h in hashes.items()),
                           SECTION.format("images"), *(f"{i} {x}" for i, x in images.items())])
    state = {"ups": []}

    def up(ran):
        state["ups"].append(ran)
        return up_answer

    def poll(_ran):  # the second `up` (nemotron's wave) puts the release's config back
        return inspect_json(names, hashes=hashes if len(state["ups"]) > 1 else by_hand)

    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=preflight_text(
                       release.id, [release.id], inspect_json(names, hashes=by_hand), current_hashes=hashes,
                       current_images=images), stderr="")),
                   ("ACQUIRED", Result(rc=0, stdout="ACQUIRED\n", stderr="")),
                   (" up -d ", up),
                   ("docker inspect $ids", poll)])
    lines = []
    outcome = HostOps(ex, cfg, out=lines.append, secrets=SECRETS, sleep=lambda _: None).deploy(release)
    assert outcome.outcome is Outcome.LIVE, outcome.message
    assert f"  drift: vllm-nemotron runs config hash-by-hand, release {release.id} says hash-vllm-ne" in lines
    assert sum(line.startswith("  drift: ") for line in lines) == 1
    assert kinds_of(ex.commands) == ["lock+preflight", "up", "poll", "up", "poll", "switch+prune", "audit+unlock"]
    assert ex.commands[3].endswith("up -d --no-deps vllm-nemotron")  # only the drifted one in its wave
    # once all are ready, what each container now carries is recorded as what the release runs
    [record] = [r for r in ex.ran if "$f.tmp" in r.line]
    assert record.number == 6 and record.argv[4:6] == (cfg.root, release.id)
    rows = list(zip(*[iter(record.argv[6:])] * 3))
    assert rows == [(s.name, hashes[s.name], s.image) for s in specs_of(release, cfg)]


def test_a_record_that_cannot_be_written_fails_no_deploy(setup):
    cfg, release, names = setup
    hashes, images = in_step(release, cfg, names)
    up_answer = "\n".join([SECTION.format("hashes"), *(f"{n} {h}" for n, h in hashes.items()),
                           SECTION.format("images"), *(f"{i} {x}" for i, x in images.items())])
    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=preflight_text("r0ld", ["r0ld"], "[]"), stderr="")),
                   ("ACQUIRED", Result(rc=0, stdout="ACQUIRED\n", stderr="")),
                   (" up -d ", Result(rc=0, stdout=up_answer, stderr="")),
                   ("docker inspect $ids", Result(rc=0, stdout=inspect_json(names, hashes=hashes), stderr="")),
                   ("$f.tmp", Result(rc=1, stdout="", stderr="No space left on device"))])
    lines = []
    outcome = HostOps(ex, cfg, out=lines.append, secrets=SECRETS, sleep=lambda _: None).deploy(release)
    assert outcome.outcome is Outcome.LIVE, outcome.message
    assert any("could not record" in line and "No space left" in line for line in lines)


def test_status_and_diff_show_drift_per_service(setup):
    from sparkkit.deploy.diff import diff_against_host

    cfg, release, names = setup
    hashes, images = in_step(release, cfg, names)
    manifest = release.manifest(cfg=cfg).content
    ids = {**{n: "sha256:i" for n in names}, "ollama": "sha256:older"}
    preflight = preflight_text(release.id, [release.id],
                               inspect_json([n for n in names if n != "searxng"], hashes=hashes, image_ids=ids),
                               current_hashes=hashes, current_images=images)
    on_host = {f"releases/{release.id}/release.json": manifest, **{f.path: f.content for f in release.files}}

    def cat_files(ran):  # argv: sh -c SCRIPT sh ROOT PATH...
        return "\n".join(f"==sparkkit:file:{p}==\n{base64.b64encode(on_host[p]).decode()}" for p in ran.argv[5:])

    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=preflight, stderr="")),
                   ("/release.json\" 2>/dev/null || exit 4", Result(rc=0, stdout=manifest.decode(), stderr="")),
                   ("==sparkkit:file:", cat_files)])
    ops = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS)
    status = ops.status()
    rows = {r["service"]: r for r in status["services"]}
    assert status["drifted"] == ["ollama", "searxng"]
    assert rows["ollama"]["drift"] == "image differs" and rows["searxng"]["drift"] == "missing"
    assert "runs image older" in rows["ollama"]["drift_detail"]
    assert all(rows[n]["drift"] == "ok" and rows[n]["drift_detail"] is None
               for n in names if n not in ("ollama", "searxng"))

    facts = ops.facts()
    text = diff_against_host(ex, cfg, release, SECRETS, release.id, facts=facts)
    assert text.splitlines() == [
        f"drift: ollama runs image older, release {release.id}'s image sparkkit-rehearsal-ollama:latest is i",
        f"drift: searxng has no container, release {release.id} runs it",
        "drift: the next `sparkkit deploy` puts these services back as the release says"]


def test_preflight_problem_touches_nothing(setup):
    cfg, release, _ = setup
    text = preflight_text(None, [], "[]").replace("2.40.3", "ERROR")
    ex = FakeHost([("==sparkkit:docker==", Result(rc=0, stdout=text, stderr=""))])
    result = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS).deploy(release)
    assert result.outcome is Outcome.REFUSED and result.exit_code == 1
    assert "Compose v2 not found" in result.message and "preflight failed, nothing was changed" in result.message
    assert kinds_of(ex.commands) == ["lock+preflight", "audit+unlock"]  # the refusal is audited; nothing else ran
    assert '"result": "refused"' in ex.commands[1]


def test_deploy_and_verify_takes_the_lock_first_and_stops_when_held(setup):
    from sparkkit.verify.run import deploy_and_verify

    cfg, release, _ = setup
    ex = FakeHost([("ACQUIRED", Result(rc=0, stdout='HELD\n{"who": "bob@ci", "since": "t"}\n', stderr=""))])
    run = deploy_and_verify(HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS), release, {})
    assert run.decision == "not started: the host is locked" and "locked by bob@ci" in run.deploy_error
    assert run.verdict is Verdict.LOCKED and run.exit_code == 1
    assert len(ex.commands) == 2 and "ACQUIRED" in ex.commands[0]
    assert "audit.log" in ex.commands[1] and '"result": "locked"' in ex.commands[1]  # the attempt's line


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
    ends in an OperationError or a restore, and the lock is released last (an unlock removes only
    this run's lock, so it is also tried when the round trip taking it failed; a failed unlock is
    tried once more). tests/test_fault_sweep.py checks the whole end state at every position."""
    cfg, release, names = setup
    clean = FakeHost(changing_deploy_script(release, names))
    assert HostOps(clean, cfg, out=lambda _: None, secrets=SECRETS, sleep=lambda _: None).deploy(release).changed
    steps = len(clean.commands)
    lock_at = kinds_of(clean.commands).index("lock+preflight") + 1
    assert steps > 5
    for n in range(1, steps + 1):
        ex = FakeHost(changing_deploy_script(release, names), **{fault: n})
        try:
            outcome = HostOps(ex, cfg, out=lambda _: None, secrets=SECRETS, sleep=lambda _: None).deploy(release)
        except OperationError:
            outcome = None
        assert ex.ran[n - 1].fault, n
        kinds = kinds_of(ex.commands)
        assert kinds[-1] in ("unlock", "audit+unlock"), (n, kinds)
        unlocks = [k for k in kinds if k in ("unlock", "audit+unlock")]
        assert len(unlocks) == (2 if n == steps else 1), (n, kinds)  # the last: the failed unlock, then again
        if n == lock_at:
            assert outcome is None and kinds == ["lock+preflight", "audit+unlock"], n
        if fault == "drop_at" and n < steps:
            assert ex.dropped == 1 and ex.connects == 2, n
