"""Pure deploy decisions: start order, start judgement, pruning, preflight verdicts."""

from datetime import datetime, timezone

import pytest

from sparkkit.host.facts import Container, HostFacts
from sparkkit.deploy.plan import (ServiceSpec, is_noop, judge_start, preflight_problems, prune_candidates,
                           rollback_target, services_to_start, start_waves)


def spec(name, deps=(), timeout=60, port=8000):
    return ServiceSpec(name=name, image="img", port=port, depends_on=tuple(deps), start_timeout_s=timeout)


def container(service="a", *, status="running", health="healthy", restarts=0, exit_code=0, oom=False,
              cid="c1", ports=(), config_hash="", image_id=""):
    return Container(service=service, id=cid, name=f"p-{service}-1", status=status, health=health,
                     restarts=restarts, started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), exit_code=exit_code,
                     oom_killed=oom, image="img", host_ports=tuple(ports), config_hash=config_hash,
                     image_id=image_id)


def facts(**kw):
    base = dict(docker_version="20.10.24", docker_error=None, compose_version="2.40.3", runtimes=("runc",),
                free_disk_bytes=10**10, listening_ports=frozenset(), images_present=frozenset(),
                images_missing=frozenset(), current_release=None, releases=(), activations=(), containers=())
    base.update(kw)
    return HostFacts(**base)


def test_vllms_start_one_after_the_other():
    waves = start_waves([spec("vllm-nemotron", ["vllm-annie"]), spec("vllm-annie"), spec("ollama"),
                         spec("app", ["vllm-nemotron"])])
    assert waves == [["ollama", "vllm-annie"], ["vllm-nemotron"], ["app"]]


def test_cycle_is_refused():
    with pytest.raises(ValueError):
        start_waves([spec("a", ["b"]), spec("b", ["a"])])


@pytest.mark.parametrize("c, elapsed, before, state, words", [
    (None, 5, None, "waiting", "no container"),
    (None, 61, None, "failed", "no container after 61s"),
    (container(), 5, 0, "ready", "healthy"),
    (container(health=""), 5, 0, "ready", "running"),
    (container(health="starting"), 5, 0, "waiting", "starting 5s/60s"),
    (container(health="starting"), 61, 0, "failed", "not healthy after 61s"),
    (container(health="unhealthy"), 5, 0, "failed", "unhealthy"),
    (container(status="exited", health="", exit_code=137, oom=True), 5, 0, "failed", "exit code 137 (OOM-killed)"),
    (container(status="restarting", health="starting", restarts=3), 5, 1, "failed", "restarted 2 time(s)"),
])
def test_judge_start(c, elapsed, before, state, words):
    st = judge_start(spec("a"), c, elapsed_s=elapsed, restarts_at_start=before)
    assert st.state == state
    assert words in st.detail


def test_prune_keeps_newest_and_protected():
    releases = ["r6", "r5", "r4", "r3", "r2", "r1"]  # newest first
    assert prune_candidates(releases, 3, {"r6"}) == ["r3", "r2", "r1"]
    assert prune_candidates(releases, 3, {"r6", "r1"}) == ["r3", "r2"]
    assert prune_candidates(releases[:2], 5, set()) == []


def test_preflight_problems():
    specs = [spec("a", port=8003), spec("b", port=8004)]
    assert preflight_problems(facts=facts(), specs=specs, gpu=False, project="p", release_bytes=1000) == []
    bad = preflight_problems(
        facts=facts(docker_version=None, docker_error="Cannot connect to the Docker daemon", compose_version=None,
                    free_disk_bytes=1024, listening_ports=frozenset({8003, 8004}),
                    containers=(container("b", ports=(8004,)),)),
        specs=specs, gpu=True, project="p", release_bytes=1000)
    text = "\n".join(bad)
    assert "Cannot connect to the Docker daemon" in text
    assert "Compose v2 not found" in text
    assert "not enough free disk" in text
    assert "host port 8003 (service a) is taken" in text
    assert "8004" not in text  # held by this project's own container
    assert len(bad) == 4  # no nvidia complaint while docker itself is unreachable


def test_gpu_host_needs_nvidia_runtime_and_new_compose():
    problems = preflight_problems(facts=facts(compose_version="2.17.0"), specs=[spec("a")], gpu=True,
                                  project="p", release_bytes=10)
    assert any("'nvidia' runtime" in p for p in problems)
    assert any("too old" in p for p in problems)
    ok = preflight_problems(facts=facts(runtimes=("nvidia", "runc")), specs=[spec("a")], gpu=True, project="p",
                            release_bytes=10)
    assert ok == []


def test_noop_only_when_same_release_and_all_ready():
    specs = [spec("a"), spec("b")]
    known = dict(current_hashes={"a": "ha", "b": "hb"}, image_ids={"img": "sha256:i"})

    def ok(name, **kw):
        return container(name, config_hash=f"h{name}", image_id="sha256:i", **kw)

    ready = (ok("a"), ok("b", cid="c2"))
    assert is_noop(facts(current_release="r1", containers=ready, **known), "r1", specs)
    assert not is_noop(facts(current_release="r0", containers=ready, **known), "r1", specs)
    assert not is_noop(facts(current_release="r1", containers=ready[:1], **known), "r1", specs)
    sick = (ok("a"), ok("b", cid="c2", health="unhealthy"))
    assert not is_noop(facts(current_release="r1", containers=sick, **known), "r1", specs)
    extra = ready + (container("orphan", cid="c3"),)
    assert not is_noop(facts(current_release="r1", containers=extra, **known), "r1", specs)


def test_noop_is_refused_when_a_container_drifted_from_the_current_release():
    specs = [spec("a"), spec("b")]
    known = dict(current_hashes={"a": "ha", "b": "hb"}, image_ids={"img": "sha256:i"})
    other_config = (container("a", config_hash="ha", image_id="sha256:i"),
                    container("b", cid="c2", config_hash="h-by-hand", image_id="sha256:i"))
    assert not is_noop(facts(current_release="r1", containers=other_config, **known), "r1", specs)
    other_image = (container("a", config_hash="ha", image_id="sha256:i"),
                   container("b", cid="c2", config_hash="hb", image_id="sha256:old"))
    assert not is_noop(facts(current_release="r1", containers=other_image, **known), "r1", specs)
    # what the release says could not be read (no hashes): not proven unchanged, so not a no-op
    ready = (container("a", config_hash="ha", image_id="sha256:i"),
             container("b", cid="c2", config_hash="hb", image_id="sha256:i"))
    assert not is_noop(facts(current_release="r1", containers=ready, image_ids={"img": "sha256:i"}), "r1", specs)
    assert is_noop(facts(current_release="r1", containers=ready, **known), "r1", specs)


def test_rollback_target_is_the_last_live_release_still_kept():
    history = ("r1", "r2", "r3", "r2")  # r3 went live, then a rollback to r2
    assert rollback_target(history, "r2", ("r4", "r2", "r3", "r1")) == "r3"  # r4 was uploaded, never live
    assert rollback_target(history, "r2", ("r2", "r1")) == "r1"  # r3 was pruned
    assert rollback_target(("r1",), "r1", ("r1",)) is None
    assert rollback_target((), None, ("r1",)) is None


def test_rollback_target_after_a_restore_that_failed():
    """A deploy of r2 failed and could not put r1 back (r1 was the only release ever live): the host
    may run part of r2 whatever `current` names. `rollback` puts r1 back."""
    assert rollback_target(("r1",), "r1", ("r2", "r1"), unrestored="r1") == "r1"
    assert rollback_target(("r1",), "r1", ("r2", "r1")) is None
    assert rollback_target(("r1",), "r1", ("r2",), unrestored="r1") is None  # not kept


def test_the_audit_log_says_which_release_a_failed_restore_left_out():
    from sparkkit.host.facts import parse_unrestored

    ok = '{"action": "deploy", "release": "r1", "result": "ok"}'
    failed = '{"action": "deploy", "release": "r2", "result": "failed", "restore": "r1", "restore_result": "failed"}'
    restored = '{"action": "deploy", "release": "r3", "result": "failed", "restored": "r1"}'
    assert parse_unrestored("\n".join([ok, failed])) == "r1"
    assert parse_unrestored("\n".join([ok, failed, '{"action": "verify", "result": "fail"}', "not json"])) == "r1"
    assert parse_unrestored("\n".join([ok, failed, ok])) is None  # a later release went live
    assert parse_unrestored("\n".join([ok, restored])) is None
    assert parse_unrestored("") is None


def test_a_container_names_the_release_it_was_created_from():
    from sparkkit.host.facts import release_of

    assert release_of("/opt/sparkkit/releases/r2a9/docker-compose.yml") == "r2a9"
    assert release_of("/a/releases/r1/docker-compose.yml,/a/other.yml") == "r1"
    assert release_of("") == "" and release_of("/tmp/docker-compose.yml") == ""


def test_only_services_compose_would_change_are_started():
    specs = [spec("same"), spec("edited"), spec("sick"), spec("gone"), spec("new-image"), spec("no-label")]
    seen = {"same": container("same", config_hash="h1", image_id="sha256:i"),
            "edited": container("edited", config_hash="old", image_id="sha256:i"),
            "sick": container("sick", health="unhealthy", config_hash="h1", image_id="sha256:i"),
            "new-image": container("new-image", config_hash="h1", image_id="sha256:older"),
            "no-label": container("no-label", image_id="sha256:i")}
    hashes = {name: "h1" for name in ("same", "edited", "sick", "gone", "new-image", "no-label")}
    assert services_to_start(specs, seen, hashes=hashes, image_ids={"img": "sha256:i"}) == \
        ["edited", "sick", "gone", "new-image", "no-label"]


def test_unknown_hashes_or_images_start_everything():
    specs = [spec("a"), spec("b")]
    seen = {n: container(n, config_hash="h", image_id="sha256:i") for n in ("a", "b")}
    assert services_to_start(specs, seen, hashes={}, image_ids={"img": "sha256:i"}) == ["a", "b"]
    assert services_to_start(specs, seen, hashes={"a": "h", "b": "h"}, image_ids={}) == ["a", "b"]
    assert services_to_start(specs, seen, hashes={"a": "h", "b": "h"}, image_ids={"img": "sha256:i"}) == []
