"""The kit run on the host itself (``ansible_connection: local``): the rehearsal stack deployed
straight to this machine's Docker engine, no sshd in between.

The tests run in order and share one stack (module scope): first deploy, no-op, status, down —
as tests/integration/test_deploy.py does over SSH.
"""

from __future__ import annotations

import json
import stat

import pytest

from sparkkit.host.ssh import SshExecutor

from testbed.stack import PORTS

from .test_deploy import http_ok, run, start_marks

pytestmark = pytest.mark.integration
SERVICES = set(PORTS)


@pytest.fixture(scope="module")
def local(stack):
    # an address and port where nothing answers: only the local executor can reach this host
    stack.set_host(ansible_connection="local", ansible_host="127.0.0.1", ansible_port=1)
    return stack


@pytest.fixture(autouse=True)
def no_ssh(monkeypatch):
    def refuse(self):
        raise AssertionError("an SSH connection was attempted")

    monkeypatch.setattr(SshExecutor, "_connect", refuse)


@pytest.fixture(scope="module")
def first():
    return {}


def test_first_deploy_brings_all_services_up(local, capsys, first):
    code, out, err = run(capsys, local, "deploy")
    assert code == 0, err
    containers = local.containers()
    assert set(containers) == SERVICES
    for name, c in containers.items():
        assert c["State"]["Status"] == "running", name
        assert c["State"]["Health"]["Status"] == "healthy", name
    assert http_ok(local.ports["vllm-nemotron"], "/health")
    release = local.current()
    assert release and f"release {release} is live" in out
    env_file = local.root / "releases" / release / "env" / "searxng.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    [entry] = local.audit()
    assert entry["action"] == "deploy" and entry["result"] == "ok" and entry["release"] == release
    assert not (local.root / "lock").exists()
    assert "SSH" not in out + err
    first["release"] = release


def test_noop_redeploy_restarts_nothing(local, capsys, first):
    before = start_marks(local)
    code, out, err = run(capsys, local, "deploy")
    assert code == 0, err
    assert "nothing restarted" in out
    assert start_marks(local) == before
    assert local.current() == first["release"]
    assert local.audit()[-1]["result"] == "noop"


def test_status_json(local, capsys, first):
    code, out, err = run(capsys, local, "status", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["current_release"] == first["release"]
    rows = {r["service"]: r for r in data["services"]}
    assert set(rows) == SERVICES
    assert all(r["state"] == "running" and r["health"] == "healthy" for r in rows.values())


def test_down_stops_the_stack_and_keeps_releases(local, capsys, first):
    code, out, err = run(capsys, local, "down")
    assert code == 0, err
    assert local.containers() == {}
    assert first["release"] in {p.name for p in (local.root / "releases").iterdir()}
    assert local.audit()[-1]["action"] == "down"
