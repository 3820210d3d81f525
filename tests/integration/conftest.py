"""The rehearsal testbed: a real sshd on 127.0.0.1:2222 and a real Docker engine (make testbed).

Each test module gets its own copy of the project with its own sparkkit root, compose project and
host ports, so it never touches a stack a person deployed with `make deploy`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# SPARKKIT_TESTBED: a testbed made by another checkout (worktrees share one sshd and dockerd)
TESTBED = Path(os.environ.get("SPARKKIT_TESTBED", REPO / ".testbed"))
# SPARKKIT_IT_PORT_BASE: shifts every host port, so two checkouts can run their tests at once
PORT_BASE = int(os.environ.get("SPARKKIT_IT_PORT_BASE", "0"))
SECRET = "it-secret-" + uuid.uuid4().hex[:16]
# host ports for the test stack; the containers keep their usual ports inside
INNER = {"vllm-annie": 8003, "vllm-nemotron": 8004, "ollama": 11434, "searxng": 8080, "context-engine": 8010,
         "audio-pipeline": 8020}
PORTS = {"vllm-annie": 18003, "vllm-nemotron": 18004, "ollama": 21434, "searxng": 18080,
         "context-engine": 18010, "audio-pipeline": 18020}


def _testbed_problem() -> str | None:
    if not (TESTBED / "ssh" / "id_ed25519").exists():
        return "no .testbed/ssh/id_ed25519: run `make testbed`"
    try:
        socket.create_connection(("127.0.0.1", 2222), timeout=2).close()
    except OSError:
        return "no sshd on 127.0.0.1:2222: run `make testbed`"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "Docker engine not reachable: run `make testbed`"
    return None


def require(problem: str | None) -> None:
    """A missing testbed fails under CI=true and skips (with the reason) elsewhere."""
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"integration testbed missing in CI: {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def testbed():
    require(_testbed_problem())


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


class Stack:
    """A project copy aimed at the rehearsal host, and ways to look at the host directly."""

    def __init__(self, base: Path, port_offset: int = 0):
        self.dir = base / "project"
        for name in ("inventory", "roles", "templates"):
            shutil.copytree(REPO / name, self.dir / name)
        self.tag = uuid.uuid4().hex[:8]
        self.root = Path(f"/tmp/sparkkit-it-{self.tag}")
        self.project = f"skit-{self.tag}"
        host_vars = self.dir / "inventory" / "host_vars" / "rehearsal.yml"
        data = yaml.safe_load(host_vars.read_text())
        data.update({
            "sparkkit_root": str(self.root),
            "compose_project": self.project,
            "ansible_ssh_private_key_file": str(TESTBED / "ssh" / "id_ed25519"),
            "ssh_known_hosts_file": str(TESTBED / "ssh" / "known_hosts"),
            "secrets_file": None,
        })
        self.ports = {name: port + port_offset + PORT_BASE for name, port in PORTS.items()}
        for name, port in self.ports.items():
            data["services"][name]["port"] = port
            data["services"][name]["container_port"] = INNER[name]
        data["services"]["ollama"]["volumes"] = []  # no named volume left behind
        host_vars.write_text(yaml.safe_dump(data))

    def set_host(self, **values) -> None:
        """Change host-level settings in this stack's host_vars (mappings merge one level deep)."""
        host_vars = self.dir / "inventory" / "host_vars" / "rehearsal.yml"
        data = yaml.safe_load(host_vars.read_text())
        for key, value in values.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
        host_vars.write_text(yaml.safe_dump(data))

    def set_service(self, name: str, **values) -> None:
        """Change a service's settings in this stack's host_vars (deep-merged over what is there)."""
        host_vars = self.dir / "inventory" / "host_vars" / "rehearsal.yml"
        data = yaml.safe_load(host_vars.read_text())
        svc = data["services"].setdefault(name, {})
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(svc.get(key), dict):
                svc[key] = {**svc[key], **value}
            else:
                svc[key] = value
        host_vars.write_text(yaml.safe_dump(data))

    def args(self, command: str, *extra: str) -> list[str]:
        return [command, "rehearsal", "--project-dir", str(self.dir), *extra]

    def containers(self) -> dict[str, dict]:
        ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}").split()
        if not ids:
            return {}
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in json.loads(docker("inspect", *ids))}

    def current(self) -> str | None:
        link = self.root / "current"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None

    def audit(self) -> list[dict]:
        path = self.root / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def cleanup(self) -> None:
        ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}").split()
        if ids:
            docker("rm", "-f", *ids)
        subprocess.run(["docker", "network", "rm", f"{self.project}_default"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(testbed, tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"))
    old = os.environ.get("SPARKKIT_SECRET_SEARXNG_SECRET")
    os.environ["SPARKKIT_SECRET_SEARXNG_SECRET"] = SECRET
    yield s
    s.cleanup()
    if old is None:
        os.environ.pop("SPARKKIT_SECRET_SEARXNG_SECRET", None)
    else:
        os.environ["SPARKKIT_SECRET_SEARXNG_SECRET"] = old
