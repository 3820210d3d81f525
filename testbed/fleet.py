"""Fleet rehearsal hosts: network namespaces with their own address and sshd (testbed/netns.sh),
sharing this machine's Docker engine, and a project aimed at them. The namespaces have fixed names
(skit-fleet-N): only one fleet may be up on a machine at a time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import yaml

from .stack import REPO, TESTBED, compose_containers, port_base, read_audit, read_current, remove_project

NETNS = REPO / "testbed" / "netns.sh"
FLEET_STATE = Path(os.environ.get("FLEET_STATE", REPO / ".testbed-fleet"))
HOSTS = 3
# small and fast: one vLLM simulator and one app per host (host ports before SPARKKIT_IT_PORT_BASE)
VLLM_PORT, APP_PORT = 18004, 18010
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
    """testbed/netns.sh with these arguments (up N, down, cut I, heal I, status); its stdout."""
    done = subprocess.run(["bash", str(NETNS), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SPARKKIT_TESTBED": str(TESTBED), "FLEET_STATE": str(FLEET_STATE)})
    if done.returncode != 0:
        raise RuntimeError(f"netns.sh {' '.join(args)} failed: {done.stdout + done.stderr}")
    return done.stdout


def netns_problem() -> str | None:
    """Why fleet hosts cannot be made here (None when they can)."""
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
        self.vllm_port, self.app_port = VLLM_PORT + port_base(), APP_PORT + port_base()
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
                         "port": self.vllm_port, "container_port": 8000, "memory_gib": 0.25, "env": dict(FAST),
                         "flags": {"served-model-name": "smoke"}, "volumes": [], "ulimits": {"memlock": None},
                         "healthcheck": {"interval_s": 1, "start_period_s": 30}, "start_timeout_s": start_timeout_s,
                         "probe_suites": ["fleet-smoke"],
                         "gates": {"min_accuracy": {"fleet-smoke": 1.0}}},
                "app": {"role": "context_engine", "image": "sparkkit-rehearsal-app:latest", "port": self.app_port,
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
        return read_current(self.root(i))

    def audit(self, i: int) -> list[dict]:
        return read_audit(self.root(i))

    def containers(self, i: int) -> dict[str, dict]:
        return compose_containers(self.project(i))

    def cleanup_host(self, i: int) -> None:
        remove_project(self.project(i), self.root(i))

    def cleanup(self) -> None:
        for i in range(1, self.n + 1):
            self.cleanup_host(i)
