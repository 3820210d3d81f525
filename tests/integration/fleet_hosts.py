"""Fleet rehearsal hosts for the integration tests: network namespaces with their own address and
sshd (testbed/netns.sh), sharing this machine's Docker engine, and a project aimed at them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import yaml

from .conftest import PORT_BASE, REPO, TESTBED, docker

NETNS = REPO / "testbed" / "netns.sh"
FLEET_STATE = Path(os.environ.get("FLEET_STATE", REPO / ".testbed-fleet"))
HOSTS = 3
# small and fast: one vLLM simulator and one app per host
VLLM_PORT, APP_PORT = 18004 + PORT_BASE, 18010 + PORT_BASE
FAST = {"SIM_TTFT_MS": "30", "SIM_DECODE_TOK_S": "1000"}
SMOKE_SUITE = """\
suite: fleet-smoke
kind: chat
warmups: 0
runs: 2
thinking: false
max_tokens: 20
cases:
  - id: capital
    voice: true
    prompt: "What is the capital of France? Answer in one short sentence."
    expect_any: ["Paris"]
"""


def netns(*args: str) -> str:
    done = subprocess.run(["bash", str(NETNS), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SPARKKIT_TESTBED": str(TESTBED), "FLEET_STATE": str(FLEET_STATE)})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def netns_problem() -> str | None:
    if os.geteuid() != 0:
        return "fleet hosts need root (ip netns)"
    if shutil.which("ip") is None:
        return "fleet hosts need iproute2 (ip)"
    return None


def host_name(i: int) -> str:
    return f"skit-fleet-{i}"


def pub_addr(i: int) -> str:
    return f"10.77.0.{100 + i}"


class Fleet:
    """A project whose inventory has the group ``fleet`` of ``n`` namespace hosts (each with its own
    sparkkit root, compose project and publish address) and the group ``pair`` (hosts 1 and 2)."""

    def __init__(self, base: Path, n: int = HOSTS, start_timeout_s: int = 40):
        self.dir = base / "project"
        for name in ("roles", "templates"):
            shutil.copytree(REPO / name, self.dir / name)
        self.tag = uuid.uuid4().hex[:6]
        self.n = n
        inv = self.dir / "inventory"
        (inv / "group_vars").mkdir(parents=True)
        (inv / "host_vars").mkdir()
        hosts = {host_name(i): {"ansible_host": f"10.77.0.{10 + i}"} for i in range(1, n + 1)}
        tree = {"all": {"children": {"fleet": {"hosts": hosts},
                                     "pair": {"hosts": {host_name(1): None, host_name(2): None}}}}}
        (inv / "hosts.yml").write_text(yaml.safe_dump(tree, sort_keys=False))
        common = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(TESTBED / "ssh" / "id_ed25519"),
            "ssh_known_hosts_file": str(FLEET_STATE / "known_hosts"),
            "gpu": False, "host_memory_gib": 16.0, "required_headroom_gib": 1.0,
            "gates": {"min_headroom_gib": 1.0, "regression_ttft_pct": 1000, "regression_decode_pct": 99},
            "services": {
                "vllm": {"role": "vllm", "image": "sparkkit-rehearsal-vllm:latest", "model": "sim/model",
                         "port": VLLM_PORT, "container_port": 8000, "memory_gib": 0.25, "env": dict(FAST),
                         "flags": {"served-model-name": "smoke"}, "volumes": [], "ulimits": {"memlock": None},
                         "healthcheck": {"interval_s": 1, "start_period_s": 30}, "start_timeout_s": start_timeout_s,
                         "probe_suites": ["fleet-smoke"],
                         "gates": {"min_accuracy": {"fleet-smoke": 1.0}}},
                "app": {"role": "context_engine", "image": "sparkkit-rehearsal-app:latest", "port": APP_PORT,
                        "container_port": 8010, "memory_gib": 0.25, "healthcheck": {"interval_s": 1},
                        "start_timeout_s": start_timeout_s},
            },
        }
        (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(common, sort_keys=False))
        for i in range(1, n + 1):
            self.write_host(i, {})
        (self.dir / "suites").mkdir()
        (self.dir / "suites" / "fleet-smoke.yaml").write_text(SMOKE_SUITE)

    def root(self, i: int) -> Path:
        return Path(f"/tmp/sparkkit-fleet-{self.tag}-{i}")

    def project(self, i: int) -> str:
        return f"skf-{self.tag}-{i}"

    def write_host(self, i: int, extra: dict) -> None:
        data = {"sparkkit_root": str(self.root(i)), "compose_project": self.project(i),
                "bind_address": pub_addr(i), **extra}
        (self.dir / "inventory" / "host_vars" / f"{host_name(i)}.yml").write_text(yaml.safe_dump(data))

    def args(self, command: str, spec: str, *extra: str) -> list[str]:
        return [command, spec, "--project-dir", str(self.dir), "--reports-dir", str(self.dir / "reports"), *extra]

    def summary(self) -> dict:
        return json.loads((self.dir / "reports" / "fleet" / "latest" / "summary.json").read_text())

    def current(self, i: int) -> str | None:
        link = self.root(i) / "current"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None

    def audit(self, i: int) -> list[dict]:
        path = self.root(i) / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def containers(self, i: int) -> dict[str, dict]:
        ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project(i)}").split()
        if not ids:
            return {}
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in json.loads(docker("inspect", *ids))}

    def cleanup_host(self, i: int) -> None:
        ids = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project(i)}").split()
        if ids:
            docker("rm", "-f", *ids)
        subprocess.run(["docker", "network", "rm", f"{self.project(i)}_default"], capture_output=True)
        shutil.rmtree(self.root(i), ignore_errors=True)

    def cleanup(self) -> None:
        for i in range(1, self.n + 1):
            self.cleanup_host(i)
