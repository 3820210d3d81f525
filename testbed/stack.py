"""A stack on the rehearsal host (the sshd on 127.0.0.1:2222 and this machine's Docker engine, both
from `make testbed`): a copy of the project with its own sparkkit root, compose project and host
ports, so it never touches a stack a person deployed with `make deploy`, nor another stack."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# SPARKKIT_TESTBED: a testbed made by another checkout (worktrees share one sshd and dockerd)
TESTBED = Path(os.environ.get("SPARKKIT_TESTBED", REPO / ".testbed"))
SSH_PORT = 2222
# the containers' usual ports inside, and the host ports a stack publishes them on (before shifting)
INNER = {"vllm-annie": 8003, "vllm-nemotron": 8004, "ollama": 11434, "searxng": 8080, "context-engine": 8010,
         "audio-pipeline": 8020}
PORTS = {"vllm-annie": 18003, "vllm-nemotron": 18004, "ollama": 21434, "searxng": 18080,
         "context-engine": 18010, "audio-pipeline": 18020}
# Port offsets are multiples of this: two stacks whose offsets differ by a multiple of 50 (below 1000)
# never share a host port, since no two of PORTS differ by such an amount.
PORT_STEP = 50


def port_base() -> int:
    """SPARKKIT_IT_PORT_BASE shifts every host port (read when a stack is made), so two checkouts, or two
    test workers, can run stacks at once."""
    return int(os.environ.get("SPARKKIT_IT_PORT_BASE", "0"))


def docker(*args: str, timeout_s: float = 120) -> str:
    """Run the docker CLI; its stdout, or an error with its stderr."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def docker_problem() -> str | None:
    """Why the Docker engine cannot be used (None when it can)."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        return "Docker engine not reachable: run `make testbed`"
    return None


def images_problem(*images: str) -> str | None:
    """Why these images cannot be used (None when they are all there)."""
    problem = docker_problem()
    if problem is None and subprocess.run(["docker", "image", "inspect", *images], capture_output=True).returncode:
        problem = f"image(s) missing: {', '.join(images)}: run `make testbed`"
    return problem


def testbed_problem() -> str | None:
    """Why the rehearsal host cannot be used (None when it can): its key, its sshd, the Docker engine."""
    if not (TESTBED / "ssh" / "id_ed25519").exists():
        return f"no {TESTBED}/ssh/id_ed25519: run `make testbed`"
    try:
        socket.create_connection(("127.0.0.1", SSH_PORT), timeout=2).close()
    except OSError:
        return f"no sshd on 127.0.0.1:{SSH_PORT}: run `make testbed`"
    return docker_problem()


def compose_containers(project: str) -> dict[str, dict]:
    """`docker inspect` of every container of a compose project, by service name."""
    ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").split()
    if not ids:
        return {}
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in json.loads(docker("inspect", *ids))}


def remove_project(project: str, root: Path) -> None:
    """Remove a compose project's containers and network, and its sparkkit root on the host."""
    ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").split()
    if ids:
        docker("rm", "-f", *ids)
    subprocess.run(["docker", "network", "rm", f"{project}_default"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def read_current(root: Path) -> str | None:
    """The release the ``current`` link under a sparkkit root points at."""
    link = root / "current"
    return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None


def read_audit(root: Path) -> list[dict]:
    """The audit log under a sparkkit root, one dict a line."""
    path = root / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Stack:
    """A project copy aimed at the rehearsal host, and ways to look at the host directly.

    ``port_offset`` (a multiple of PORT_STEP) keeps apart several stacks of one run."""

    def __init__(self, base: Path, port_offset: int = 0):
        self.dir = base / "project"
        for name in ("inventory", "roles", "templates"):
            shutil.copytree(REPO / name, self.dir / name)
        self.tag = uuid.uuid4().hex[:8]
        self.root = Path(f"/tmp/sparkkit-it-{self.tag}")
        self.project = f"skit-{self.tag}"
        self.ports = {name: port + port_offset + port_base() for name, port in PORTS.items()}
        data = self._host_vars()
        data.update({
            "sparkkit_root": str(self.root),
            "compose_project": self.project,
            "ansible_ssh_private_key_file": str(TESTBED / "ssh" / "id_ed25519"),
            "ssh_known_hosts_file": str(TESTBED / "ssh" / "known_hosts"),
            "secrets_file": None,
        })
        for name, port in self.ports.items():
            data["services"][name]["port"] = port
            data["services"][name]["container_port"] = INNER[name]
        data["services"]["ollama"]["volumes"] = []  # no named volume left behind
        vllm_image = os.environ.get("SPARKKIT_IT_VLLM_IMAGE")  # a vLLM simulator image of one's own
        if vllm_image:
            for name in ("vllm-annie", "vllm-nemotron"):
                data["services"][name]["image"] = vllm_image
        self._write_host_vars(data)

    def _host_vars(self) -> dict:
        return yaml.safe_load((self.dir / "inventory" / "host_vars" / "rehearsal.yml").read_text())

    def _write_host_vars(self, data: dict) -> None:
        (self.dir / "inventory" / "host_vars" / "rehearsal.yml").write_text(yaml.safe_dump(data))

    def set_host(self, **values) -> None:
        """Change host-level settings in this stack's host_vars (mappings merge one level deep)."""
        data = self._host_vars()
        for key, value in values.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
        self._write_host_vars(data)

    def set_service(self, name: str, **values) -> None:
        """Change a service's settings in this stack's host_vars (deep-merged over what is there)."""
        data = self._host_vars()
        svc = data["services"].setdefault(name, {})
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(svc.get(key), dict):
                svc[key] = {**svc[key], **value}
            else:
                svc[key] = value
        self._write_host_vars(data)

    def args(self, command: str, *extra: str) -> list[str]:
        """A sparkkit command line for the rehearsal host, aimed at this project copy."""
        return [command, "rehearsal", "--project-dir", str(self.dir), *extra]

    def containers(self) -> dict[str, dict]:
        return compose_containers(self.project)

    def current(self) -> str | None:
        return read_current(self.root)

    def audit(self) -> list[dict]:
        return read_audit(self.root)

    def cleanup(self) -> None:
        remove_project(self.project, self.root)
