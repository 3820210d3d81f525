"""Memory facts and the per-service memory table: parsers on captured output, the accounting in
all three modes with totals computed by hand, the facts command run through a real sh."""

import shlex
import subprocess
from pathlib import Path

import pytest

from sparkkit.host.commands import SECTION
from sparkkit.host.memory_facts import (MEMORY_FACTS_SCRIPT, CgroupMemory, ContainerMemory, GpuMemory, GpuProcess,
                                        MemoryFacts, container_id_from_cgroup, memory_facts_command,
                                        parse_cgroup_mem, parse_compute_apps, parse_container_lines, parse_gpu_query,
                                        parse_meminfo, parse_memory_facts, parse_pid_cgroups)
from sparkkit.verify.memory import account, format_profile, memory_mode

FIXTURES = Path(__file__).parent / "fixtures"
GB10 = FIXTURES / "captured" / "gb10"
MEM = FIXTURES / "memory"

NEM = "751a16d8cb41ea83c7b7c76d8deaa859cb1d10760163b5f184be6a79ed913c85"
ANN = "71be92cbdfe91357146afad81827a981ec58f5a3e69e9bd4527acd74b1927938"
OLL = "76e3c7bfe641ea125c0c2e1c5f89349e17b352ed128d528de2443794e7acf870"
SRX = "7da65835ed9c2ecbfc55975b98a7aac390531c979dde6f1f87e50e11e2884262"
OTH = "d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa"
MiB = 1024 * 1024


def read(path: Path) -> str:
    return path.read_text()


# --- parsers on the captured GB10 output ------------------------------------------------------

def test_meminfo_captured_gb10():
    info = parse_meminfo(read(GB10 / "meminfo-excerpt.txt"))
    assert info == {"MemTotal": 127600748, "MemAvailable": 118566368}
    assert info["MemTotal"] / 1024 / 1024 == pytest.approx(121.69, abs=0.01)  # DESIGN: ≈ 121.7 GiB


def test_meminfo_lines_without_unit():
    info = parse_meminfo("HugePages_Total:       0\nHugepagesize:       2048 kB\nnot a line\n")
    assert info == {"HugePages_Total": 0, "Hugepagesize": 2048}


def test_gpu_query_captured_gb10_header_and_other_columns():
    # --format=csv with header, no index column, three more columns: memory is [N/A]
    assert parse_gpu_query(read(GB10 / "query-gpu.csv")) == [
        GpuMemory(index=0, total_mib=None, used_mib=None, free_mib=None)]


def test_compute_apps_captured_gb10_gpu_uuid_first():
    assert parse_compute_apps(read(GB10 / "compute-apps-noheader-nounits.csv")) == [
        GpuProcess(pid=114687, name="/usr/local/bin/python", used_mib=19135)]


def test_captured_gb10_table_says_memory_not_supported():
    # The human table on GB10: the Memory-Usage cell reads "Not Supported", which is why the
    # facts use --query-gpu (same information, parseable) and why the mode is "unified".
    table = read(GB10 / "nvidia-smi-table.txt")
    assert "NVIDIA GB10" in table and "Not Supported" in table
    facts = parse_memory_facts(_sections(meminfo=read(GB10 / "meminfo-excerpt.txt"),
                                         nvidia_smi="/usr/bin/nvidia-smi",
                                         gpu_query=read(MEM / "query-gpu-gb10-noheader.csv"),
                                         compute_apps=read(GB10 / "compute-apps-noheader-nounits.csv")))
    report = account(facts, gpu=True)
    assert report.mode == "unified"
    assert report.headroom_gib == pytest.approx(118566368 / 1024 / 1024)  # MemAvailable
    assert report.unattributed == (GpuProcess(pid=114687, name="/usr/local/bin/python", used_mib=19135),)
    assert report.total_mib == 19135


# --- parsers on the variants -----------------------------------------------------------------

def test_gpu_query_variants():
    assert parse_gpu_query(read(MEM / "query-gpu-gb10-noheader.csv")) == [
        GpuMemory(index=0, total_mib=None, used_mib=None, free_mib=None)]
    assert parse_gpu_query(read(MEM / "query-gpu-not-supported-variants.csv")) == [
        GpuMemory(index=0, total_mib=None, used_mib=None, free_mib=None),
        GpuMemory(index=1, total_mib=None, used_mib=None, free_mib=None)]
    assert parse_gpu_query(read(MEM / "query-gpu-h100x2.csv")) == [
        GpuMemory(index=0, total_mib=81559, used_mib=28160, free_mib=53399),
        GpuMemory(index=1, total_mib=81559, used_mib=50944, free_mib=30615)]
    assert parse_gpu_query(read(MEM / "query-gpu-h100-header-units.csv")) == [
        GpuMemory(index=0, total_mib=81559, used_mib=28160, free_mib=53399)]
    assert parse_gpu_query(read(MEM / "query-gpu-driver-failed.txt")) == []
    assert parse_gpu_query("") == []


def test_compute_apps_variants():
    assert parse_compute_apps(read(MEM / "compute-apps-multi-gpu-uuid.csv")) == [
        GpuProcess(pid=4242, name="/usr/bin/python3", used_mib=38912),
        GpuProcess(pid=4243, name="/usr/bin/python3", used_mib=38912),
        GpuProcess(pid=9001, name="/opt/app/bin/worker", used_mib=1024)]
    assert parse_compute_apps(read(MEM / "compute-apps-na.csv")) == [
        GpuProcess(pid=4242, name="VLLM::EngineCore", used_mib=None),
        GpuProcess(pid=6000, name="/usr/bin/ollama", used_mib=None)]
    assert parse_compute_apps(read(MEM / "compute-apps-header.csv")) == [
        GpuProcess(pid=114687, name="/usr/local/bin/python", used_mib=19135),
        GpuProcess(pid=5151, name="/opt/venv/bin/python,weird,name", used_mib=50432)]
    assert parse_compute_apps("No running processes found\n\n!error nvidia-smi exit 9\n") == []
    assert parse_compute_apps("pid, process_name, used_gpu_memory [MiB]\n") == []


@pytest.mark.parametrize("name, expected", [
    ("proc-cgroup-v1-docker.txt", "698c47976f85a88beb2fb43fab2cd19834518aaa85e684e459e8c9d18b2c4a1e"),
    ("proc-cgroup-v1-systemd-docker.txt", NEM),
    ("proc-cgroup-v2-docker.txt", ANN),
    ("proc-cgroup-v2-cgroupfs-docker.txt", OLL),
    ("proc-cgroup-kubepods-v1.txt", SRX),
    ("proc-cgroup-containerd-v2.txt", OTH),
    ("proc-cgroup-host.txt", None),
    ("proc-cgroup-host-v1.txt", None),
])
def test_container_id_from_cgroup(name, expected):
    assert container_id_from_cgroup(read(MEM / name)) == expected


def test_container_id_from_cgroup_edge_cases():
    assert container_id_from_cgroup("") is None
    # our own sandbox: a 32-hex name is not a container id
    assert container_id_from_cgroup("4:memory:/process_api/aed5154b6ce681eb21b24baad6f6097a\n0::/") is None
    # docker in docker: the innermost container
    assert container_id_from_cgroup(f"0::/docker/{NEM}/docker/{ANN}") == ANN
    # the memory controller's line wins over a stale name=systemd line
    assert container_id_from_cgroup(f"1:name=systemd:/docker/{OTH}\n4:memory:/docker/{NEM}") == NEM
    assert container_id_from_cgroup(f"12:crio:/crio-{SRX}.scope") == SRX


def test_container_and_cgroup_lines():
    assert parse_container_lines(f"{NEM} 4100 vllm-nemotron\n{SRX} 0 searxng\nbogus 1 x\n{OTH} 12\n") == [
        (NEM, 4100, "vllm-nemotron"), (SRX, None, "searxng"), (OTH, 12, "")]
    mem = parse_cgroup_mem(f"{NEM} v1 136314880 2097152\n{SRX} v2 268435456\n{OTH} missing\n")
    assert mem == {NEM: CgroupMemory(version="v1", usage_bytes=136314880, inactive_file_bytes=2097152),
                   SRX: CgroupMemory(version="v2", usage_bytes=268435456, inactive_file_bytes=None)}
    assert mem[NEM].working_set_bytes == 130 * MiB - 2 * MiB
    assert mem[SRX].working_set_bytes == 256 * MiB
    assert CgroupMemory(version="v1", usage_bytes=5, inactive_file_bytes=9).working_set_bytes == 0


def test_pid_cgroups():
    text = f"pid 4242\n0::/system.slice/docker-{NEM}.scope\npid 77\n0::/user.slice\npid 5\n"
    assert parse_pid_cgroups(text) == {4242: NEM, 77: None, 5: None}


def _sections(**parts):
    return "\n".join(f"{SECTION.format(k)}\n{v}" for k, v in parts.items()) + "\n" + SECTION.format("end")


def test_parse_memory_facts_gb10():
    facts = parse_memory_facts(read(MEM / "facts-gb10.txt"))
    assert facts.cgroup_fs == "cgroup2fs" and facts.nvidia_smi == "/usr/bin/nvidia-smi"
    assert facts.mem_total_kib == 127600748 and facts.mem_available_kib == 16777216
    assert facts.gpus == (GpuMemory(index=0, total_mib=None, used_mib=None, free_mib=None),)
    assert [p.pid for p in facts.gpu_processes] == [4242, 5151, 6000, 114687]
    assert [(c.service, c.pid) for c in facts.containers] == [
        ("vllm-nemotron", 4100), ("vllm-annie", 5100), ("ollama", 6000), ("searxng", 7000)]
    assert facts.containers[0].mib == 3072
    assert dict(facts.pid_containers) == {4242: NEM, 5151: ANN, 6000: OLL, 114687: None}
    assert facts.gpu_errors == ()


def test_parse_memory_facts_records_nvidia_smi_failures():
    facts = parse_memory_facts(_sections(nvidia_smi="/usr/bin/nvidia-smi",
                                         gpu_query=read(MEM / "query-gpu-driver-failed.txt"),
                                         compute_apps="!error nvidia-smi --query-compute-apps exit 9"))
    assert facts.gpus == () and facts.gpu_processes == ()
    assert facts.gpu_errors == ("nvidia-smi --query-gpu exit 9", "nvidia-smi --query-compute-apps exit 9")
    assert facts.mem_available_kib is None
    report = account(facts, gpu=True)
    assert report.mode == "none" and report.headroom_gib is None
    assert any("nvidia-smi failed" in w for w in report.warnings)
    assert any("nvidia-smi lists no GPU" in w for w in report.warnings)
    assert any("MemAvailable" in w for w in report.warnings)


# --- account: the three modes, totals by hand ----------------------------------------------------

def test_account_unified_gb10():
    report = account(parse_memory_facts(read(MEM / "facts-gb10.txt")), gpu=True)
    assert report.mode == "unified"
    by = {s.service: s for s in report.services}
    assert list(by) == ["ollama", "searxng", "vllm-annie", "vllm-nemotron"]
    # nemotron: GPU 27,648 MiB; cgroup 4096 - 1024 = 3,072 MiB -> the larger, 27,648 (not added)
    assert (by["vllm-nemotron"].gpu_mib, by["vllm-nemotron"].container_mib, by["vllm-nemotron"].used_mib) == (
        27648, 3072, 27648)
    assert (by["vllm-annie"].gpu_mib, by["vllm-annie"].container_mib, by["vllm-annie"].used_mib) == (
        50432, 1536, 50432)
    # ollama: GPU 5,632 MiB; cgroup 7168 - 1024 = 6,144 MiB -> 6,144
    assert (by["ollama"].gpu_mib, by["ollama"].container_mib, by["ollama"].used_mib) == (5632, 6144, 6144)
    assert (by["searxng"].gpu_mib, by["searxng"].container_mib, by["searxng"].used_mib) == (None, 256, 256)
    assert by["vllm-nemotron"].gpu_pids == (4242,) and by["vllm-nemotron"].container_ids == (NEM,)
    # the host's python (pid 114687, captured on a GB10) is in no container: listed and counted
    assert report.unattributed == (GpuProcess(pid=114687, name="/usr/local/bin/python", used_mib=19135),)
    # 27648 + 50432 + 6144 + 256 + 19135 = 103,615 MiB = 101.1865234375 GiB
    assert report.total_mib == 103615
    assert report.total_gib == pytest.approx(101.1865234375)
    # MemAvailable 16,777,216 kB = 16 GiB exactly
    assert report.headroom_gib == report.mem_available_gib == 16.0
    assert report.mem_total_gib == pytest.approx(127600748 / 1024 / 1024)
    assert report.gpu_total_gib is None and report.warnings == ()
    assert "GPU memory totals not supported (unified memory): headroom is MemAvailable" in report.notes
    assert any("1 GPU process(es) in no container" in n and "19,135 MiB" in n for n in report.notes)


def test_account_discrete_h100x2():
    report = account(parse_memory_facts(read(MEM / "facts-h100x2.txt")), gpu=True)
    assert report.mode == "discrete"
    by = {s.service: s for s in report.services}
    assert by["vllm-nemotron"].used_mib == 27648 and by["vllm-annie"].used_mib == 50432
    # a service with no GPU process counts nothing against GPU memory; its cgroup figure is shown
    assert (by["searxng"].gpu_mib, by["searxng"].container_mib, by["searxng"].used_mib) == (None, 256, 0)
    # the benchmark's pair: 27,648 + 50,432 = 78,080 MiB = 76.25 GiB ("76.2 GiB")
    assert report.total_mib == 78080 and report.total_gib == 76.25
    # headroom: free 53,399 + 30,615 = 84,014 MiB = 82.044921875 GiB, not MemAvailable (192 GiB)
    assert report.headroom_gib == pytest.approx(82.044921875)
    assert report.mem_available_gib == 192.0
    assert report.gpu_total_gib == pytest.approx(163118 / 1024)
    assert report.unattributed == () and report.warnings == ()


def test_account_none_rehearsal_v1():
    report = account(parse_memory_facts(read(MEM / "facts-rehearsal-v1.txt")), gpu=False)
    assert report.mode == "none"
    by = {s.service: s for s in report.services}
    assert by["vllm-nemotron"].used_mib == 128  # 130 MiB usage - 2 MiB inactive file
    assert by["searxng"].used_mib == 17  # 18 - 1
    assert by["audio-pipeline"].container_mib is None and by["audio-pipeline"].used_mib == 0
    assert report.total_mib == 145
    assert report.headroom_gib == pytest.approx(23831784 / 1024 / 1024)  # ≈ 22.73 GiB
    assert report.warnings == (f"audio-pipeline: no memory cgroup found for container {OTH[:12]}",)


def _facts(**kw) -> MemoryFacts:
    base = dict(cgroup_fs="cgroup2fs", mem_total_kib=8 * 1024 * 1024, mem_available_kib=6 * 1024 * 1024,
                nvidia_smi="/usr/bin/nvidia-smi", gpus=(), gpu_processes=(), gpu_errors=(), containers=(),
                pid_containers=())
    base.update(kw)
    return MemoryFacts(**base)


def _container(cid, pid, service, mib):
    return ContainerMemory(id=cid, pid=pid, service=service,
                           cgroup=CgroupMemory(version="v2", usage_bytes=mib * MiB, inactive_file_bytes=0))


def test_account_matches_a_containers_main_pid_and_sums_replicas():
    facts = _facts(gpus=(GpuMemory(index=0, total_mib=None, used_mib=None, free_mib=None),),
                   gpu_processes=(GpuProcess(pid=300, name="ollama", used_mib=1000),
                                  GpuProcess(pid=301, name="runner", used_mib=500),
                                  GpuProcess(pid=999, name="elsewhere", used_mib=None)),
                   containers=(_container(OLL, 300, "ollama", 800), _container(OTH, 400, "ollama", 900)),
                   pid_containers=((301, OTH), (999, SRX)))  # 999 runs in a container of another project
    report = account(facts, gpu=True)
    (ollama,) = report.services
    # pid 300 by main PID, pid 301 by cgroup; GPU 1500 MiB vs containers 800 + 900 = 1700 MiB
    assert ollama.gpu_pids == (300, 301) and ollama.gpu_mib == 1500 and ollama.container_mib == 1700
    assert ollama.used_mib == 1700 and ollama.container_ids == (OLL, OTH)
    assert report.unattributed == (GpuProcess(pid=999, name="elsewhere", used_mib=None),)
    assert report.total_mib == 1700
    assert report.headroom_gib == 6.0
    assert any("pid 999" in w and "not reported" in w for w in report.warnings)


def test_account_unified_per_process_na_is_a_warning_not_a_zero_silently():
    facts = _facts(gpus=(GpuMemory(index=0, total_mib=None, used_mib=None, free_mib=None),),
                   gpu_processes=(GpuProcess(pid=4242, name="VLLM::EngineCore", used_mib=None),),
                   containers=(_container(NEM, 4100, "vllm-nemotron", 3000),),
                   pid_containers=((4242, NEM),))
    report = account(facts, gpu=True)
    assert report.services[0].gpu_mib == 0 and report.services[0].used_mib == 3000
    assert report.warnings == ("vllm-nemotron: GPU memory of pid 4242 (VLLM::EngineCore) not reported; counted as 0",)


def test_account_gpu_false_ignores_gpus_and_says_so():
    facts = _facts(gpus=(GpuMemory(index=0, total_mib=81559, used_mib=1000, free_mib=80559),),
                   gpu_processes=(GpuProcess(pid=1, name="x", used_mib=1000),),
                   containers=(_container(SRX, 7000, "searxng", 100),))
    report = account(facts, gpu=False)
    assert report.mode == "none" and report.unattributed == () and report.total_mib == 100
    assert report.headroom_gib == 6.0
    assert any("configured without one" in n for n in report.notes)


def test_account_gpu_expected_but_no_nvidia_smi():
    report = account(_facts(nvidia_smi=None, containers=(_container(SRX, 7000, "searxng", 100),)), gpu=True)
    assert report.mode == "none" and report.total_mib == 100
    assert report.warnings == ("the host should have a GPU but nvidia-smi is not installed: GPU memory is not counted",)


def test_account_discrete_gpu_without_free_figure_is_left_out_with_a_warning():
    facts = _facts(gpus=(GpuMemory(index=0, total_mib=81559, used_mib=1559, free_mib=80000),
                         GpuMemory(index=1, total_mib=None, used_mib=None, free_mib=None)))
    assert memory_mode(facts, gpu=True) == "discrete"
    report = account(facts, gpu=True)
    assert report.headroom_gib == pytest.approx(80000 / 1024)
    assert report.warnings == ("1 GPU(s) report no free memory: headroom leaves them out",)


def test_format_profile_gb10():
    text = format_profile(account(parse_memory_facts(read(MEM / "facts-gb10.txt")), gpu=True))
    assert "| vllm-nemotron | 27,648 MiB | 3,072 MiB | 27,648 MiB |" in text
    assert "| pid 114687 /usr/local/bin/python (no container) | 19,135 MiB | – | 19,135 MiB |" in text
    assert "| **Total** | | | **101.2 GiB** |" in text
    assert "| **Headroom** | | | **16.0 GiB** (MemAvailable) |" in text


# --- the command: argv shape, and a real sh ------------------------------------------------------

def test_command_is_a_constant_script_with_the_project_as_argument():
    argv = memory_facts_command("my-proj")
    assert argv == ["sh", "-c", MEMORY_FACTS_SCRIPT, "sh", "my-proj"]
    assert "my-proj" not in MEMORY_FACTS_SCRIPT
    for name in ("meminfo", "gpu_query", "compute_apps", "containers", "cgroup_mem", "pid_cgroups", "end"):
        assert SECTION.format(name) in MEMORY_FACTS_SCRIPT


def test_command_runs_through_sh_and_a_hostile_project_is_only_data(tmp_path):
    hostile = "x; touch PWNED; $(touch PWNED2) `touch PWNED3` '\"; touch PWNED4"
    argv = memory_facts_command(hostile)
    assert hostile not in MEMORY_FACTS_SCRIPT
    done = subprocess.run(["sh", "-c", shlex.join(argv)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was created: the name was never run
    facts = parse_memory_facts(done.stdout)
    assert facts.mem_total_kib and facts.mem_available_kib  # this machine's real /proc/meminfo
    assert facts.containers == ()  # no compose project has that name
    assert done.stdout.rstrip().endswith(SECTION.format("end"))


def test_command_with_the_plain_hostile_name(tmp_path):
    done = subprocess.run(["sh", "-c", shlex.join(memory_facts_command("; touch PWNED"))], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not (tmp_path / "PWNED").exists()


def test_command_without_nvidia_smi_leaves_the_gpu_part_to_nvml(tmp_path):
    # a stand-in nvidia-smi on PATH: found and run by the plain command, not looked for with nvidia_smi=False
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(
        '#!/bin/sh\ntouch "$MARK"\ncase "$*" in\n  *query-gpu*) echo "0, 81559, 28160, 53399" ;;\n'
        '  *query-compute-apps*) echo "4242, VLLM::EngineCore, 27648" ;;\nesac\n')
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "MARK": str(tmp_path / "ran")}
    assert memory_facts_command("p", nvidia_smi=False) == ["sh", "-c", MEMORY_FACTS_SCRIPT, "sh", "p",
                                                           "skip-nvidia-smi"]

    def facts(**kw):
        done = subprocess.run(["sh", "-c", shlex.join(memory_facts_command("no-such-project", **kw))],
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        return parse_memory_facts(done.stdout)

    skipped = facts(nvidia_smi=False)
    assert skipped.nvidia_smi is None and skipped.gpus == () and skipped.gpu_processes == ()
    assert skipped.mem_available_kib and not (tmp_path / "ran").exists()
    plain = facts()
    assert plain.nvidia_smi == str(bin_dir / "nvidia-smi") and (tmp_path / "ran").exists()
    assert plain.gpus == (GpuMemory(index=0, total_mib=81559, used_mib=28160, free_mib=53399),)
    assert plain.gpu_processes == (GpuProcess(pid=4242, name="VLLM::EngineCore", used_mib=27648),)
