"""Remote commands are argv lists; hostile values stay data when a shell runs them."""

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from sparkkit import commands as cmd
from sparkkit.deploy import chain

HOSTILE = [
    "; rm -rf /",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a'b\"c",
    "line1\nline2",
    "&& touch PWNED ||",
    "*",
    "-rf",
]


def test_compose_up_exact():
    argv = cmd.compose_up("sparkkit", "/opt/sparkkit/releases/r1/docker-compose.yml", ["vllm-annie", "ollama"],
                          remove_orphans=True)
    assert shlex.join(argv) == ("docker compose -p sparkkit -f /opt/sparkkit/releases/r1/docker-compose.yml "
                                "up -d --no-deps --remove-orphans vllm-annie ollama")


def test_compose_logs_and_down_exact():
    assert shlex.join(cmd.compose_logs("p", "/r/c.yml", "searxng", tail=30)) == \
        "docker compose -p p -f /r/c.yml logs --no-color --tail 30 searxng"
    assert shlex.join(cmd.compose_down("p", "/r/c.yml", timeout_s=30)) == \
        "docker compose -p p -f /r/c.yml down --timeout 30"


def test_scripts_take_values_as_arguments_only():
    argv = cmd.switch_current("/opt/x", "r123")
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["sh", "/opt/x", "r123"]
    assert "/opt/x" not in argv[2] and "r123" not in argv[2]


def _sh(argv, cwd):
    """Run an argv as sshd would: the user's shell gets one command line, built by shlex.join."""
    return subprocess.run(["sh", "-c", shlex.join(argv)], cwd=cwd, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_values_stay_data(tmp_path, value):
    root = tmp_path / f"root {value}"
    release = "rel" + value.replace("/", "_")
    (root / "releases" / release).mkdir(parents=True)

    assert _sh(cmd.switch_current(str(root), release), tmp_path).returncode == 0
    assert (root / "current").resolve() == (root / "releases" / release).resolve()

    line = json.dumps({"detail": value})
    assert _sh(cmd.append_audit(str(root), line), tmp_path).returncode == 0
    assert (root / "audit.log").read_text() == line + "\n"

    info = json.dumps({"who": value, "token": "tok"})
    out = _sh(cmd.acquire_lock(str(root), info, break_lock=False), tmp_path)
    assert out.stdout.splitlines()[0] == "ACQUIRED"
    assert json.loads((root / "lock" / "info.json").read_text())["who"] == value
    assert _sh(cmd.release_lock(str(root), "tok"), tmp_path).returncode == 0
    assert not (root / "lock").exists()

    assert _sh(chain(cmd.prune_releases(str(root), [release]), ["true"]), tmp_path).returncode == 0
    assert not (root / "releases" / release).exists()

    assert not list(tmp_path.rglob("PWNED")), "a value was executed by the shell"
    assert Path("/").exists()


def test_lock_is_exclusive_and_shows_holder(tmp_path):
    root = str(tmp_path / "root")
    first = _sh(cmd.acquire_lock(root, '{"who": "alice", "token": "t1"}', break_lock=False), tmp_path)
    second = _sh(cmd.acquire_lock(root, '{"who": "bob", "token": "t2"}', break_lock=False), tmp_path)
    assert first.stdout.startswith("ACQUIRED")
    assert second.stdout.startswith("HELD") and "alice" in second.stdout
    # another holder's token does not release it
    _sh(cmd.release_lock(root, "t2"), tmp_path)
    assert (tmp_path / "root" / "lock").exists()
    broken = _sh(cmd.acquire_lock(root, '{"who": "bob", "token": "t2"}', break_lock=True), tmp_path)
    assert broken.stdout.startswith("ACQUIRED")
    assert "bob" in (tmp_path / "root" / "lock" / "info.json").read_text()


def test_a_stale_token_breaks_only_the_lock_it_names(tmp_path):
    root = str(tmp_path / "root")
    _sh(cmd.acquire_lock(root, '{"who": "alice", "token": "t1"}', break_lock=False), tmp_path)
    # a run that thinks t0 is dead must not break alice's live lock
    refused = _sh(cmd.acquire_lock(root, '{"who": "bob", "token": "t2"}', break_lock=False, stale_token="t0"),
                  tmp_path)
    assert refused.stdout.startswith("HELD") and "alice" in refused.stdout
    taken = _sh(cmd.acquire_lock(root, '{"who": "bob", "token": "t2"}', break_lock=False, stale_token="t1"),
                tmp_path)
    assert taken.stdout.startswith("ACQUIRED")
    assert "bob" in (tmp_path / "root" / "lock" / "info.json").read_text()
