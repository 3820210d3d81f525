"""Deploy pipeline against the real testbed: sshd on 127.0.0.1:2222 and the Docker engine.

The tests run in order and share one stack (module scope): first deploy, no-op, one changed
service, diff, a failing service restored, rollback, lock, host keys, status, down.
"""

from __future__ import annotations

import json
import socket
import stat
import urllib.request

import pytest

from sparkkit.cli.main import main
from testbed.stack import PORTS

from .conftest import SECRET

pytestmark = pytest.mark.integration
SERVICES = set(PORTS)


def run(capsys, stack, command, *extra):
    code = main(stack.args(command, *extra))
    out, err = capsys.readouterr()
    assert SECRET not in out + err, "a secret value was printed"
    return code, out, err


def start_marks(stack) -> dict[str, tuple[str, str, int]]:
    return {name: (c["Id"], c["State"]["StartedAt"], c["RestartCount"]) for name, c in stack.containers().items()}


def http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def first(stack):
    """Release ids the ordered tests hand on to each other."""
    return {}


def test_first_deploy_brings_all_services_up(stack, capsys, first):
    code, out, err = run(capsys, stack, "deploy")
    assert code == 0, err
    containers = stack.containers()
    assert set(containers) == SERVICES
    for name, c in containers.items():
        assert c["State"]["Status"] == "running", name
        assert c["State"]["Health"]["Status"] == "healthy", name
    assert http_ok(stack.ports["vllm-nemotron"], "/health")
    assert http_ok(stack.ports["searxng"], "/healthz")
    release = stack.current()
    assert release and f"release {release} is live" in out
    # nemotron was started after annie was healthy
    annie = containers["vllm-annie"]["State"]["StartedAt"]
    nemo = containers["vllm-nemotron"]["State"]["StartedAt"]
    assert nemo > annie
    # release layout on the host
    rel_dir = stack.root / "releases" / release
    assert (rel_dir / "docker-compose.yml").exists() and (rel_dir / "release.json").exists()
    env_file = rel_dir / "env" / "searxng.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert SECRET in env_file.read_text()  # on the host, in the 0600 file only
    # the release id is keyed by the host's own random key, 0600, made by the first preflight
    key_file = stack.root / "release.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32
    [entry] = stack.audit()
    assert entry["action"] == "deploy" and entry["result"] == "ok" and entry["release"] == release
    assert entry["who"] and entry["ts"]
    assert not (stack.root / "lock").exists()
    # the simulator got the production flags
    cmd = containers["vllm-nemotron"]["Config"]["Cmd"]
    assert "--enforce-eager" in cmd and cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.35"
    first["release"] = release


def test_noop_redeploy_restarts_nothing(stack, capsys, first):
    before = start_marks(stack)
    code, out, err = run(capsys, stack, "deploy")
    assert code == 0, err
    assert "nothing restarted" in out
    assert start_marks(stack) == before
    assert stack.current() == first["release"]
    assert stack.audit()[-1]["result"] == "noop"


def test_diff_shows_a_change_and_touches_nothing(stack, capsys, first):
    before = start_marks(stack)
    releases = sorted(p.name for p in (stack.root / "releases").iterdir())
    code, out, err = run(capsys, stack, "diff", "-e", "services.context-engine.env.FEATURE=on")
    assert code == 0, err
    assert "+      \"FEATURE\": \"on\"" in out, out
    assert "docker-compose.yml" in out
    assert start_marks(stack) == before
    assert sorted(p.name for p in (stack.root / "releases").iterdir()) == releases
    code, out, _ = run(capsys, stack, "diff")
    assert code == 0 and "no changes" in out


def test_changed_env_recreates_only_that_service(stack, capsys, first):
    before = start_marks(stack)
    code, out, err = run(capsys, stack, "deploy", "-e", "services.context-engine.env.FEATURE=on")
    assert code == 0, err
    after = start_marks(stack)
    changed = {name for name in SERVICES if after[name] != before[name]}
    assert changed == {"context-engine"}
    assert "FEATURE=on" in stack.containers()["context-engine"]["Config"]["Env"]
    assert stack.current() != first["release"]
    first["second"] = stack.current()


def test_service_never_healthy_restores_previous_release(stack, capsys, first):
    code, out, err = run(capsys, stack, "deploy",
                         "-e", "services.audio-pipeline.env.SIM_NEVER_HEALTHY=1",
                         # long enough for the container to log its start on a busy machine (the logs are shown)
                         "-e", "services.audio-pipeline.start_timeout_s=10")
    assert code == 1
    assert "audio-pipeline" in err and "not healthy after" in err
    assert f"restored previous release {first['second']}" in err
    assert "last log lines of audio-pipeline" in err
    assert stack.current() == first["second"]
    c = stack.containers()["audio-pipeline"]
    assert "SIM_NEVER_HEALTHY=1" not in c["Config"]["Env"]
    assert c["State"]["Health"]["Status"] == "healthy"
    assert http_ok(stack.ports["audio-pipeline"], "/health")
    entry = stack.audit()[-1]
    assert entry["result"] == "failed" and entry["restored"] == first["second"]
    assert not (stack.root / "lock").exists()


def test_rollback_to_a_named_release(stack, capsys, first):
    code, out, err = run(capsys, stack, "rollback", "--to", first["release"])
    assert code == 0, err
    assert stack.current() == first["release"]
    env = stack.containers()["context-engine"]["Config"]["Env"]
    assert "FEATURE=on" not in env
    assert stack.audit()[-1]["action"] == "rollback"
    code, out, err = run(capsys, stack, "rollback", "--to", "r000000000000")
    assert code == 1 and "not kept on the host" in err


def test_missing_image_changes_nothing(stack, capsys, first):
    before = start_marks(stack)
    code, out, err = run(capsys, stack, "deploy", "-e", "services.context-engine.image=sparkkit-missing:nope")
    assert code == 1
    assert "sparkkit-missing:nope" in err and "neither present nor pullable" in err
    assert start_marks(stack) == before and stack.current() == first["release"]
    assert not (stack.root / "lock").exists()
    assert stack.audit()[-1]["result"] == "failed" and stack.audit()[-1]["reason"] == "image pull"


def test_foreign_process_on_a_port_fails_preflight(stack, capsys, first):
    before = start_marks(stack)
    audit = stack.audit()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code, out, err = run(capsys, stack, "deploy", "-e", f"services.audio-pipeline.port={port}")
    assert code == 1
    assert f"host port {port} (service audio-pipeline) is taken" in err and "nothing was changed" in err
    assert start_marks(stack) == before and stack.current() == first["release"]
    after = stack.audit()  # preflight wrote nothing but the attempt's audit line: refused
    assert after[:len(audit)] == audit and len(after) == len(audit) + 1
    assert after[-1]["result"] == "refused" and after[-1]["reason"] == "preflight"


def test_lock_contention_shows_holder_and_break_lock(stack, capsys, first):
    lock = stack.root / "lock"
    lock.mkdir()
    (lock / "info.json").write_text(json.dumps({"who": "alice@laptop", "since": "2026-11-27T08:00:00+00:00",
                                                "action": "deploy", "release": "rabc", "token": "t"}))
    code, out, err = run(capsys, stack, "deploy", "-e", "services.context-engine.env.FEATURE=again")
    assert code == 1
    assert "locked by alice@laptop since 2026-11-27T08:00:00+00:00" in err and "--break-lock" in err
    assert stack.current() == first["release"]  # nothing changed
    code, out, err = run(capsys, stack, "rollback", "--break-lock")  # default: the one before current
    assert code == 0, err
    assert "lock broken" in err
    assert stack.current() == first["second"]
    assert not lock.exists()


def test_unknown_host_key_is_refused_unless_accepted(stack, capsys, tmp_path):
    known = tmp_path / "known_hosts"
    code, out, err = run(capsys, stack, "status", "-e", f"ssh_known_hosts_file={known}")
    assert code == 1 and "unknown host key" in err and "--accept-new-host-key" in err
    assert not known.exists()
    code, out, err = run(capsys, stack, "status", "-e", f"ssh_known_hosts_file={known}", "--accept-new-host-key")
    assert code == 0, err
    assert "[127.0.0.1]:2222 ssh-ed25519" in known.read_text()
    code, out, err = run(capsys, stack, "status", "-e", f"ssh_known_hosts_file={known}")
    assert code == 0, err


def test_changed_host_key_is_always_refused(stack, capsys, tmp_path):
    known = tmp_path / "known_hosts"
    # a valid ed25519 key that is not the testbed's
    known.write_text("[127.0.0.1]:2222 ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    for extra in ((), ("--accept-new-host-key",)):
        code, out, err = run(capsys, stack, "status", "-e", f"ssh_known_hosts_file={known}", *extra)
        assert code == 1 and "CHANGED" in err


def test_status_json(stack, capsys, first):
    code, out, err = run(capsys, stack, "status", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["current_release"] == first["second"]
    rows = {r["service"]: r for r in data["services"]}
    assert set(rows) == SERVICES
    assert all(r["state"] == "running" and r["health"] == "healthy" for r in rows.values())
    assert all(isinstance(r["restarts"], int) and r["uptime_s"] is not None for r in rows.values())
    code, out, err = run(capsys, stack, "status")
    assert code == 0 and "vllm-nemotron" in out and "healthy" in out


def test_down_stops_the_stack_and_keeps_releases(stack, capsys, first):
    code, out, err = run(capsys, stack, "down")
    assert code == 0, err
    assert stack.containers() == {}
    kept = {p.name for p in (stack.root / "releases").iterdir()}
    assert {first["release"], first["second"]} <= kept
    assert stack.audit()[-1]["action"] == "down"
    # everything the kit wrote on the host, except the 0600 env files, is free of the secret
    for path in stack.root.rglob("*"):
        if path.is_file() and not path.name.endswith(".env"):
            assert SECRET not in path.read_text(errors="replace"), path
