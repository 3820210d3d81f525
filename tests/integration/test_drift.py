"""Drift against the real testbed: containers made to run something other than the current release
(by hand, as an operator or a half-finished restore would leave them) are seen by `diff` and `status`,
make `deploy` no no-op, and are repaired by it, exactly they; the next deploy is a no-op again.

Two kinds, one per path of a deploy: vllm-nemotron (a later wave: the kit decides what to start)
is recreated by hand from the release's compose file plus an override; context-engine (the first
wave: `compose up` decides) runs an image its tag no longer names (a tag of this module's own,
moved to a new build, so the shared testbed images are never touched).
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from testbed.stack import docker

from .test_deploy import run, start_marks  # the same CLI run (secret checked) and start marks

pytestmark = pytest.mark.integration


def build_image(tag: str, marker: str) -> str:
    """A new image (a new id) under ``tag``, behaving like the rehearsal app: the app plus a label."""
    dockerfile = f"FROM sparkkit-rehearsal-app:latest\nLABEL sparkkit.drift-test={marker}\n"
    done = subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return docker("image", "inspect", "--format", "{{.Id}}", tag).strip()


def wait_healthy(stack, service: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        c = stack.containers().get(service)
        if c and (c["State"].get("Health") or {}).get("Status") == "healthy":
            return c
        assert time.monotonic() < deadline, f"{service} not healthy: {c and c['State']}"
        time.sleep(1)


@pytest.fixture(scope="module")
def drift_image(stack):
    """This module's own image tag for context-engine; its builds are removed afterwards (after the
    stack's containers, which use them)."""
    tag = f"sparkkit-drift-{stack.tag}:latest"
    yield tag
    stack.cleanup()
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    for marker in ("old", "new"):
        ids = docker("images", "-q", "--filter", f"label=sparkkit.drift-test={stack.tag}-{marker}").split()
        if ids:
            subprocess.run(["docker", "rmi", "-f", *ids], capture_output=True)


@pytest.fixture(scope="module")
def seen(stack):
    """What the ordered tests hand on to each other."""
    return {}


def test_a_release_that_runs_as_it_says_has_no_drift(stack, capsys, seen, drift_image):
    seen["first_id"] = build_image(drift_image, f"{stack.tag}-old")
    stack.set_service("context-engine", image=drift_image)
    code, out, err = run(capsys, stack, "deploy")
    assert code == 0, err
    seen["release"] = stack.current()
    code, out, err = run(capsys, stack, "status", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["drifted"] == []
    assert {r["drift"] for r in data["services"]} == {"ok"}
    code, out, _ = run(capsys, stack, "diff")
    assert code == 0 and "no changes" in out and "drift" not in out


def test_containers_made_to_drift_by_hand_are_seen_by_diff_and_status(stack, capsys, seen, drift_image,
                                                                      tmp_path_factory):
    release = seen["release"]
    compose_file = stack.root / "releases" / release / "docker-compose.yml"
    before = stack.containers()
    # vllm-nemotron: recreated from the release's file plus an override, as a person might
    override = tmp_path_factory.mktemp("drift") / "override.yml"
    override.write_text("services:\n  vllm-nemotron:\n    environment:\n      DRIFTED_BY_HAND: '1'\n")
    done = subprocess.run(["docker", "compose", "-p", stack.project, "-f", str(compose_file), "-f", str(override),
                           "up", "-d", "--no-deps", "vllm-nemotron"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    nemotron = wait_healthy(stack, "vllm-nemotron")
    assert nemotron["Id"] != before["vllm-nemotron"]["Id"]
    # context-engine: its tag now names another build; the container still runs the first
    seen["second_id"] = build_image(drift_image, f"{stack.tag}-new")
    assert seen["second_id"] != seen["first_id"] == stack.containers()["context-engine"]["Image"]
    seen["marks"] = start_marks(stack)

    code, out, err = run(capsys, stack, "diff")
    assert code == 0, err
    assert "no changes" not in out
    by_hand = nemotron["Config"]["Labels"]["com.docker.compose.config-hash"]
    assert f"drift: vllm-nemotron runs config {by_hand[:12]}, release {release} says " in out, out
    assert (f"drift: context-engine runs image {seen['first_id'].removeprefix('sha256:')[:12]}, release {release}'s "
            f"image {drift_image} is {seen['second_id'].removeprefix('sha256:')[:12]}") in out, out
    assert len([line for line in out.splitlines() if line.startswith("drift: ")]) == 3  # two services + the hint

    code, out, err = run(capsys, stack, "status", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["drifted"] == ["context-engine", "vllm-nemotron"]
    rows = {r["service"]: r for r in data["services"]}
    assert rows["vllm-nemotron"]["drift"] == "config differs" and rows["context-engine"]["drift"] == "image differs"
    assert {r["drift"] for name, r in rows.items() if name not in data["drifted"]} == {"ok"}
    code, out, err = run(capsys, stack, "status")
    assert code == 0, err
    assert "drift" in out.splitlines()[1]  # the table's header
    assert "drift: vllm-nemotron runs config" in out and "drift: context-engine runs image" in out
    assert start_marks(stack) == seen["marks"]  # diff and status changed nothing


def test_deploy_is_no_noop_and_repairs_exactly_the_drifted_services(stack, capsys, seen):
    code, out, err = run(capsys, stack, "deploy")
    assert code == 0, err
    assert "nothing restarted" not in out
    assert "drift: vllm-nemotron runs config" in err and "drift: context-engine runs image" in err  # progress
    after = start_marks(stack)
    changed = {name for name in after if after[name] != seen["marks"][name]}
    assert changed == {"context-engine", "vllm-nemotron"}
    containers = stack.containers()
    assert not any(e.startswith("DRIFTED_BY_HAND=") for e in containers["vllm-nemotron"]["Config"]["Env"])
    assert containers["context-engine"]["Image"] == seen["second_id"]
    assert stack.current() == seen["release"]
    assert stack.audit()[-1]["result"] == "ok"


def test_after_the_repair_the_next_deploy_is_a_noop_again(stack, capsys, seen):
    before = start_marks(stack)
    code, out, err = run(capsys, stack, "deploy")
    assert code == 0, err
    assert "nothing restarted" in out
    assert start_marks(stack) == before
    assert stack.audit()[-1]["result"] == "noop"
    code, out, _ = run(capsys, stack, "diff")
    assert code == 0 and "no changes" in out and "drift" not in out
