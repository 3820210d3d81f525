"""The memory facts command against the real Docker engine: two containers that hold a known
amount of memory, measured through their cgroups, accounted with gpu=False (the rehearsal host).

Needs only the Docker engine and the rehearsal app image (``make testbed``), not the sshd.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
import uuid

from types import SimpleNamespace

import pytest

from sparkkit.host.memory_facts import memory_facts_command, parse_meminfo, parse_memory_facts
from sparkkit.verify.memory import account, read_memory_facts
from testbed.stack import images_problem

from .conftest import require

pytestmark = pytest.mark.integration

IMAGE = "sparkkit-rehearsal-app:latest"
ALLOCATED_MIB = {"mem-small": 96, "mem-large": 192}
SLACK_MIB = 64  # the interpreter and the server around the ballast


@pytest.fixture(scope="module")
def project(request):
    require(images_problem(IMAGE))
    name = f"skit-mem-{uuid.uuid4().hex[:8]}"
    ids: list[str] = []

    def cleanup():
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)

    request.addfinalizer(cleanup)
    for port, (service, mib) in enumerate(ALLOCATED_MIB.items(), start=18500):
        done = subprocess.run(
            ["docker", "run", "-d", "--rm", "--label", f"com.docker.compose.project={name}",
             "--label", f"com.docker.compose.service={service}",
             "-e", f"SIM_MEMORY_MIB={mib}", "-e", f"PORT={port}", IMAGE],
            capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())
    for cid, mib in zip(ids, ALLOCATED_MIB.values()):
        _wait_for_log(cid, f"holding {mib} MiB")
    return name


def _wait_for_log(cid: str, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True, timeout=30)
        if text in logs.stdout + logs.stderr:
            return
        time.sleep(0.2)
    pytest.fail(f"container {cid[:12]} never logged {text!r}")


def _docker_stats_mib(project: str) -> dict[str, float]:
    """What `docker stats` shows per service (MEM USAGE), for a cross-check."""
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    done = subprocess.run(["docker", "stats", "--no-stream", "--format",
                           '{{.ID}} {{.MemUsage}}', *ids], capture_output=True, text=True, timeout=60)
    units = {"B": 1 / 1024 / 1024, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    names = {}
    for cid in ids:
        names[cid] = subprocess.run(
            ["docker", "inspect", "--format", '{{index .Config.Labels "com.docker.compose.service"}}', cid],
            capture_output=True, text=True, timeout=30).stdout.strip()
    out = {}
    for line in done.stdout.splitlines():
        m = re.match(r"^(\w+) ([\d.]+)(B|KiB|MiB|GiB) /", line)
        if m:
            out[names[m.group(1)]] = float(m.group(2)) * units[m.group(3)]
    return out


def test_memory_of_two_containers_through_their_cgroups(project):
    argv = memory_facts_command(project)
    done = subprocess.run(["sh", "-c", shlex.join(argv)], capture_output=True, text=True, timeout=60)
    with open("/proc/meminfo") as f:
        available_now_kib = parse_meminfo(f.read())["MemAvailable"]
    assert done.returncode == 0, done.stderr
    stats = _docker_stats_mib(project)

    facts = parse_memory_facts(done.stdout)
    assert len(facts.containers) == 2 and all(c.cgroup is not None for c in facts.containers)
    report = account(facts, gpu=False)
    print(f"\ncgroup fs: {facts.cgroup_fs}; versions: {sorted({c.cgroup.version for c in facts.containers})}")
    for s in report.services:
        print(f"{s.service}: allocated {ALLOCATED_MIB[s.service]} MiB, measured {s.container_mib:.1f} MiB, "
              f"docker stats {stats.get(s.service, float('nan')):.1f} MiB")
    print(f"total {report.total_mib:.1f} MiB = {report.total_gib:.3f} GiB; headroom {report.headroom_gib:.2f} GiB; "
          f"MemAvailable just after {available_now_kib / 1024 / 1024:.2f} GiB")

    assert report.mode == "none" and report.warnings == () and report.unattributed == ()
    by = {s.service: s for s in report.services}
    assert set(by) == set(ALLOCATED_MIB)
    for service, allocated in ALLOCATED_MIB.items():
        measured = by[service].container_mib
        assert allocated <= measured <= allocated + SLACK_MIB, (service, measured)
        assert by[service].used_mib == measured and by[service].gpu_mib is None
        if service in stats:  # the same figure docker stats shows (both read the cgroup, moments apart)
            assert abs(stats[service] - measured) <= 4, (service, stats[service], measured)
    assert report.total_mib == pytest.approx(sum(s.used_mib for s in report.services))
    assert sum(ALLOCATED_MIB.values()) <= report.total_mib <= sum(ALLOCATED_MIB.values()) + 2 * SLACK_MIB
    assert report.headroom_gib == report.mem_available_gib
    assert abs(report.headroom_gib - available_now_kib / 1024 / 1024) <= 0.25  # other tests run beside


def test_an_unknown_project_has_no_services(project):
    done = subprocess.run(["sh", "-c", shlex.join(memory_facts_command(project + "-none"))],
                          capture_output=True, text=True, timeout=60)
    report = account(parse_memory_facts(done.stdout), gpu=False)
    assert report.services == () and report.total_mib == 0 and report.headroom_gib > 0


class _HereExecutor:
    """Runs each argv on this machine, as a local executor does."""

    def run(self, argv, *, stdin=b"", check=True, timeout_s=120.0, pty=False):
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)
        return SimpleNamespace(rc=done.returncode, stdout=done.stdout, stderr=done.stderr)


def test_read_memory_facts_on_this_machine_as_a_local_run_does(project):
    """The local path: NVML where it loads here, else nvidia-smi; the containers through their cgroups."""
    facts = read_memory_facts(_HereExecutor(), project, local=True)
    report = account(facts, gpu=False)
    assert facts.gpu_reader in ("NVML", "nvidia-smi") and report.warnings == ()
    by = {s.service: s for s in report.services}
    assert set(by) == set(ALLOCATED_MIB)
    for service, allocated in ALLOCATED_MIB.items():
        assert allocated <= by[service].container_mib <= allocated + SLACK_MIB, (service, by[service])
