"""Two-host placement: the head renders a Ray head plus vLLM with the parallel flags, the worker a
Ray worker of the same image; bad placements are refused with the file and key."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from sparkkit.cli.main import main
from sparkkit.inventory.build import build_config
from sparkkit.errors import InputError
from sparkkit.fleet.plan import batches
from sparkkit.inventory.layers import load_host_layers
from sparkkit.inventory.placement import HEAD_SCRIPT, placement_groups
from sparkkit.probe.suites import load_suites
from sparkkit.probe.targets import targets_for
from sparkkit.release.render import COMPOSE_FILE, render_release
from sparkkit.inventory.secrets import Secrets

from .projects import make_project

HOSTS = """
all:
  children:
    pair:
      hosts:
        spark-a: {ansible_host: spark-a.local}
        spark-b: {ansible_host: spark-b.local}
    other:
      hosts:
        spark-c: {ansible_host: spark-c.local}
"""
ALL = """
gpu: true
host_memory_gib: 121.7
required_headroom_gib: 8
services:
  app: {role: context_engine, port: 8010}
"""
PAIR = """
services:
  big:
    role: vllm
    image: nvcr.io/nvidia/vllm:25.12.post1-py3
    model: Qwen/Qwen3-235B-A22B-FP8
    port: 8005
    memory_gib: 90
    env: {NCCL_SOCKET_IFNAME: enp1s0f1np1, GLOO_SOCKET_IFNAME: enp1s0f1np1}
    flags: {served-model-name: big, tensor-parallel-size: 8}
    placement:
      hosts: [spark-a, spark-b]
      addresses: {spark-a: 192.168.100.10, spark-b: 192.168.100.11}
"""


def project(tmp_path, pair=PAIR, overlay=None):
    return make_project(tmp_path, {"inventory/hosts.yml": HOSTS, "inventory/group_vars/all.yml": ALL,
                                   "inventory/group_vars/pair.yml": pair}, overlay)


def compose(proj, host):
    cfg = build_config(load_host_layers(proj, host))
    release = render_release(cfg, Secrets({}), proj)
    text = next(f.content for f in release.files if f.path.endswith(COMPOSE_FILE)).decode()
    return cfg, yaml.safe_load(text)["services"]


def test_the_head_starts_ray_then_vllm_with_the_parallel_flags(tmp_path):
    cfg, services = compose(project(tmp_path), "spark-a")
    big = services["big"]
    assert big["image"] == "nvcr.io/nvidia/vllm:25.12.post1-py3"
    # compose reads $$ as a literal $ (the kit escapes every $ it renders)
    assert big["entrypoint"] == ["sh", "-c", HEAD_SCRIPT.replace("$", "$$"), "6379"]
    cmd = big["command"]
    assert cmd[:3] == ["vllm", "serve", "Qwen/Qwen3-235B-A22B-FP8"]
    # the inventory's own tensor-parallel-size is replaced by the number of hosts
    assert cmd.count("--tensor-parallel-size") == 1
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2"
    assert cmd[cmd.index("--distributed-executor-backend") + 1] == "ray"
    # Ray needs many ports between the nodes: the host's network by default, nothing published
    assert big["network_mode"] == "host" and "ports" not in big
    assert cmd[cmd.index("--port") + 1] == "8005"  # on the host's network vLLM listens on the service port
    assert big["environment"]["VLLM_HOST_IP"] == "192.168.100.10"
    assert big["environment"]["NCCL_SOCKET_IFNAME"] == "enp1s0f1np1"
    assert big["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    # the single endpoint: the probe suite measures the head
    assert [s.name for s, _ in targets_for(cfg, load_suites(tmp_path / "proj"))] == ["app", "big"]


def test_the_worker_runs_a_ray_worker_of_the_same_image(tmp_path):
    cfg, services = compose(project(tmp_path), "spark-b")
    big = services["big"]
    assert big["image"] == "nvcr.io/nvidia/vllm:25.12.post1-py3"
    assert big["entrypoint"] == ["ray"]
    assert big["command"] == ["start", "--address=192.168.100.10:6379", "--node-ip-address=192.168.100.11",
                              "--block"]
    assert big["healthcheck"]["test"] == ["CMD", "ray", "health-check", "--address", "192.168.100.10:6379"]
    assert big["environment"]["VLLM_HOST_IP"] == "192.168.100.11"
    assert big["network_mode"] == "host"
    assert "--tensor-parallel-size" not in " ".join(big["command"])
    # no API on a worker: nothing to probe there
    assert [s.name for s, _ in targets_for(cfg, load_suites(tmp_path / "proj"))] == ["app"]


def test_pipeline_parallel_and_bridge_networking_with_another_ray_port(tmp_path):
    proj = project(tmp_path, overlay={"inventory/group_vars/pair.yml": """
        services: {big: {container_port: 8000, placement: {parallel: pipeline, ray_port: 6380, network: bridge}}}"""})
    _, head = compose(proj, "spark-a")
    cmd = head["big"]["command"]
    assert cmd[cmd.index("--pipeline-parallel-size") + 1] == "2"
    assert "network_mode" not in head["big"]
    # the API on bind_address as usual, and the Ray port on the head's link address for the workers
    assert head["big"]["ports"] == ["127.0.0.1:8005:8000", "192.168.100.10:6380:6380"]
    assert head["big"]["entrypoint"][-1] == "6380"
    _, worker = compose(proj, "spark-b")
    assert worker["big"]["command"][1] == "--address=192.168.100.10:6380"


def test_the_head_script_keeps_its_arguments_as_arguments(tmp_path):
    # run the real shell with a stand-in `ray`: the port and vLLM's argv arrive unchanged
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ray").write_text('#!/bin/sh\nprintf "ray:%s\\n" "$@"\n')
    (bin_dir / "ray").chmod(0o755)
    hostile = "x; touch /tmp/pwned-placement $(id)"
    out = subprocess.run(["sh", "-c", HEAD_SCRIPT, "6379", "printf", "arg:%s\\n", hostile],
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "VLLM_HOST_IP": "10.0.0.1"},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["ray:start", "ray:--head", "ray:--port=6379", "ray:--node-ip-address=10.0.0.1",
                   "ray:--dashboard-host=127.0.0.1", "ray:--disable-usage-stats", f"arg:{hostile}"]


@pytest.mark.parametrize("pair,message", [
    ("services: {big: {placement: {hosts: [spark-a]}}}", "placement.hosts: a placement needs at least 2 hosts"),
    ("services: {big: {placement: {hosts: [spark-a, spark-a]}}}", "placement.hosts: a host is listed twice"),
    ("services: {big: {placement: {parallel: expert}}}", "placement.parallel: expected tensor or pipeline"),
    ("services: {big: {placement: {addresses: {spark-b: 'x; reboot'}}}}",
     "placement.addresses.spark-b: expected an IP address"),
    ("services: {big: {placement: {addresses: {spark-z: 10.0.0.9}}}}", "placement.addresses.spark-z: unknown key"),
    ("services: {big: {placement: {ray_port: 0}}}", "placement.ray_port: must be a port number"),
    ("services: {big: {placement: {network: overlay}}}", "placement.network: expected host or bridge"),
])
def test_bad_placements_name_the_file_and_key(tmp_path, pair, message):
    proj = project(tmp_path, overlay={"inventory/group_vars/pair.yml": pair})
    with pytest.raises(InputError) as err:
        build_config(load_host_layers(proj, "spark-a"))
    assert str(err.value).startswith("inventory/group_vars/pair.yml: services.big.")
    assert message in str(err.value)


def test_a_host_outside_the_placement_is_refused(tmp_path):
    proj = project(tmp_path, overlay={"inventory/group_vars/all.yml": PAIR})
    with pytest.raises(InputError, match="services.big.placement.hosts: host 'spark-c' is not one of placement.hosts"):
        build_config(load_host_layers(proj, "spark-c"))


def test_the_hosts_of_a_placement_are_deployed_together(tmp_path, capsys):
    proj = project(tmp_path)
    cfgs = [build_config(load_host_layers(proj, h)) for h in ("spark-a", "spark-b", "spark-c")]
    together = placement_groups(cfgs, selected=("spark-c", "spark-a", "spark-b"))
    assert together == [("spark-a", "spark-b")]
    assert batches(("spark-c", "spark-a", "spark-b"), 1, together) == [("spark-c",), ("spark-a", "spark-b")]
    # naming only one of them is bad input, before any connection
    code = main(["deploy-and-verify", "spark-a,spark-c", "--project-dir", str(proj)])
    assert code == 2
    err = capsys.readouterr().err
    assert "services.big.placement.hosts: service 'big' is placed on spark-a, spark-b: deploy them together" in err
