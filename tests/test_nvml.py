"""GPU memory through NVML when sparkkit runs on the GPU host itself, tested on captured output: a
stand-in ``pynvml`` module fed with the values the real nvidia-smi printed (``fixtures/captured/gb10``,
copied from ../shared/fixtures) gives the same facts, so the same accounting, as nvidia-smi over SSH.

On GB10 nvidia-smi prints ``[N/A]`` / ``Not Supported`` for memory totals, and NVML's
``nvmlDeviceGetMemoryInfo`` raises NVMLError_NotSupported there: the stand-in does the same.
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import replace
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from sparkkit.errors import OperationError
from sparkkit.host.commands import SECTION
from sparkkit.host.memory_facts import GpuMemory, GpuProcess, memory_facts_command, parse_memory_facts
from sparkkit.host.nvml import NvmlUnavailable, local_pid_containers, nvml_facts, read_nvml_gpus
from sparkkit.verify.memory import account, memory_mode, read_memory_facts

FIXTURES = Path(__file__).parent / "fixtures"
GB10 = FIXTURES / "captured" / "gb10"
MEM = FIXTURES / "memory"
MiB = 1024 * 1024
ANN = "71be92cbdfe91357146afad81827a981ec58f5a3e69e9bd4527acd74b1927938"


# --- a stand-in for the pynvml module ------------------------------------------------------------

class NVMLError(Exception):
    """Like pynvml's: the message is the error's text ("Not Supported", "GPU is lost")."""

    text = "Unknown Error"

    def __str__(self) -> str:
        return self.text


class NVMLError_NotSupported(NVMLError):
    text = "Not Supported"


class NVMLError_LibraryNotFound(NVMLError):
    text = "NVML Shared Library Not Found"


class NVMLError_GpuIsLost(NVMLError):
    text = "GPU is lost"


NOT_SUPPORTED = "not supported"


def fake_pynvml(*, memory, processes=None, names=None, init_error=None, count_error=None) -> ModuleType:
    """``memory``: per GPU, (total, used, free) in bytes or NOT_SUPPORTED; ``processes``: GPU index ->
    [(pid, used bytes or None)]; ``names``: pid -> the name NVML gives (others raise NVMLError).
    ``module.calls`` records init and shutdown."""
    nvml = ModuleType("pynvml")
    nvml.calls = []
    nvml.NVMLError = NVMLError
    nvml.NVMLError_NotSupported = NVMLError_NotSupported

    def init():
        nvml.calls.append("init")
        if init_error is not None:
            raise init_error

    def count():
        if count_error is not None:
            raise count_error
        return len(memory)

    def memory_info(handle):
        if memory[handle] == NOT_SUPPORTED:
            raise NVMLError_NotSupported()
        total, used, free = memory[handle]
        return SimpleNamespace(total=total, used=used, free=free)

    def process_name(pid):
        if pid not in (names or {}):
            raise NVMLError()
        return names[pid]

    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: nvml.calls.append("shutdown")
    nvml.nvmlDeviceGetCount = count
    nvml.nvmlDeviceGetHandleByIndex = lambda index: index
    nvml.nvmlDeviceGetMemoryInfo = memory_info
    nvml.nvmlDeviceGetComputeRunningProcesses = lambda handle: [
        SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in (processes or {}).get(handle, [])]
    nvml.nvmlSystemGetProcessName = process_name
    return nvml


# What the captured GB10 output says, as NVML answers it:
# query-gpu.csv "[N/A], [N/A], [N/A], ..." and the table's "Not Supported" -> NOT_SUPPORTED;
# compute-apps-noheader-nounits.csv "GPU-..., 114687, /usr/local/bin/python, 19135".
GB10_NVML = dict(memory=[NOT_SUPPORTED], processes={0: [(114687, 19135 * MiB)]},
                 names={114687: "/usr/local/bin/python"})


class FakeExecutor:
    """Prints ``stdout`` for the one command it expects; records what it ran."""

    def __init__(self, stdout: str):
        self.stdout = stdout
        self.commands: list[list[str]] = []

    def run(self, argv, *, stdin=b"", check=True, timeout_s=120.0, pty=False):
        self.commands.append(list(argv))
        return SimpleNamespace(rc=0, stdout=self.stdout, stderr="")


def read(path: Path) -> str:
    return path.read_text()


def sections(**parts) -> str:
    return "\n".join(f"{SECTION.format(k)}\n{v}" for k, v in parts.items()) + "\n" + SECTION.format("end")


def without_gpu_part(text: str) -> str:
    """What the facts command prints with ``nvidia_smi=False``: the GPU sections empty."""
    for name in ("nvidia_smi", "gpu_query", "compute_apps", "pid_cgroups"):
        text = re.sub(rf"(?ms)^{re.escape(SECTION.format(name))}\n.*?(?=^==sparkkit:)",
                      SECTION.format(name) + "\n", text)
    return text


def proc_tree(root: Path, cgroups: dict[int, str], comms: dict[int, str] = {}) -> Path:
    """A stand-in /proc: ``PID/cgroup`` and ``PID/comm`` files."""
    for pid, text in cgroups.items():
        (root / str(pid)).mkdir(parents=True, exist_ok=True)
        (root / str(pid) / "cgroup").write_text(text)
    for pid, text in comms.items():
        (root / str(pid)).mkdir(parents=True, exist_ok=True)
        (root / str(pid) / "comm").write_text(text)
    return root


# --- both paths, the same accounting --------------------------------------------------------------

def test_captured_gb10_both_paths_give_the_same_facts_and_accounting(tmp_path):
    proc = proc_tree(tmp_path, {114687: read(MEM / "proc-cgroup-host.txt")})
    meminfo = read(GB10 / "meminfo-excerpt.txt")
    over_ssh = FakeExecutor(sections(meminfo=meminfo, nvidia_smi="/usr/bin/nvidia-smi",
                                     gpu_query=read(GB10 / "query-gpu.csv"),
                                     compute_apps=read(GB10 / "compute-apps-noheader-nounits.csv"),
                                     containers="", cgroup_mem="",
                                     pid_cgroups="pid 114687\n" + read(MEM / "proc-cgroup-host.txt")))
    local = FakeExecutor(sections(meminfo=meminfo, nvidia_smi="", gpu_query="", compute_apps="", containers="",
                                  cgroup_mem="", pid_cgroups=""))
    nvml = fake_pynvml(**GB10_NVML)

    smi = read_memory_facts(over_ssh, "proj", local=False, nvml=nvml, proc_root=proc)
    via_nvml = read_memory_facts(local, "proj", local=True, nvml=nvml, proc_root=proc)

    assert over_ssh.commands == [memory_facts_command("proj")]
    assert local.commands == [memory_facts_command("proj", nvidia_smi=False)]
    assert nvml.calls == ["init", "shutdown"]  # NVML was asked once, for the local read only
    assert smi.gpu_reader == "nvidia-smi" and via_nvml.gpu_reader == "NVML"
    assert via_nvml.gpus == (GpuMemory(index=0, total_mib=None, used_mib=None, free_mib=None),)
    assert via_nvml.gpu_processes == (GpuProcess(pid=114687, name="/usr/local/bin/python", used_mib=19135),)
    assert replace(via_nvml, gpu_reader="nvidia-smi", nvidia_smi="/usr/bin/nvidia-smi") == smi

    report = account(via_nvml, gpu=True)
    assert report == account(smi, gpu=True)
    assert report.mode == "unified" and report.total_mib == 19135 and report.warnings == ()
    assert report.headroom_gib == pytest.approx(118566368 / 1024 / 1024)  # MemAvailable


def _pid_cgroups(text: str) -> dict[int, str]:
    """The ``pid_cgroups`` section of a whole facts fixture, as /proc/PID/cgroup files."""
    body = text.split(SECTION.format("pid_cgroups") + "\n", 1)[1].split("==sparkkit:", 1)[0]
    out, pid = {}, None
    for line in body.splitlines():
        if line.startswith("pid "):
            pid = int(line.split()[1])
            out[pid] = ""
        else:
            out[pid] += line + "\n"
    return out


@pytest.mark.parametrize("fixture, nvml_values", [
    # unified: the GPU has no totals; four processes, three in containers of the project
    ("facts-gb10.txt", dict(memory=[NOT_SUPPORTED],
                            processes={0: [(4242, 27648 * MiB), (5151, 50432 * MiB), (6000, 5632 * MiB),
                                           (114687, 19135 * MiB)]},
                            names={4242: "VLLM::EngineCore", 5151: "VLLM::EngineCore", 6000: "/usr/bin/ollama",
                                   114687: "/usr/local/bin/python"})),
    # discrete: two GPUs with totals (NVML counts bytes; nvidia-smi printed MiB)
    ("facts-h100x2.txt", dict(memory=[(81559 * MiB, 28160 * MiB, 53399 * MiB + 4096),
                                      (81559 * MiB, 50944 * MiB, 30615 * MiB)],
                              processes={0: [(4242, 27648 * MiB)], 1: [(5151, 50432 * MiB)]},
                              names={4242: "VLLM::EngineCore", 5151: "VLLM::EngineCore"})),
])
def test_whole_stack_both_paths_give_the_same_accounting(tmp_path, fixture, nvml_values):
    text = read(MEM / fixture)
    proc = proc_tree(tmp_path, _pid_cgroups(text))
    smi = read_memory_facts(FakeExecutor(text), "proj", local=False)
    via_nvml = read_memory_facts(FakeExecutor(without_gpu_part(text)), "proj", local=True,
                                 nvml=fake_pynvml(**nvml_values), proc_root=proc)
    assert via_nvml.gpu_processes == smi.gpu_processes and via_nvml.pid_containers == smi.pid_containers
    assert via_nvml.containers == smi.containers and via_nvml.gpus == smi.gpus
    assert account(via_nvml, gpu=True) == account(smi, gpu=True)
    # configured without a GPU: the same figures; the note names what saw the GPUs
    smi_notes = account(smi, gpu=False).notes
    assert account(via_nvml, gpu=False) == replace(account(smi, gpu=False), notes=tuple(
        n.replace("nvidia-smi sees", "NVML sees") for n in smi_notes))
    assert any(n.startswith("nvidia-smi sees") for n in smi_notes)
    assert account(via_nvml, gpu=True).total_mib == {"facts-gb10.txt": 103615, "facts-h100x2.txt": 78080}[fixture]


# --- where NVML cannot be used or fails -------------------------------------------------------------

def test_local_without_an_nvidia_driver_reads_the_gpus_with_nvidia_smi(tmp_path):
    text = read(MEM / "facts-gb10.txt")
    ex = FakeExecutor(text)
    nvml = fake_pynvml(memory=[], init_error=NVMLError_LibraryNotFound())
    facts = read_memory_facts(ex, "proj", local=True, nvml=nvml, proc_root=tmp_path)
    assert ex.commands == [memory_facts_command("proj")]
    assert facts == parse_memory_facts(text) and facts.gpu_reader == "nvidia-smi"


def test_local_without_nvidia_ml_py_reads_the_gpus_with_nvidia_smi(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with pytest.raises(NvmlUnavailable, match="nvidia-ml-py .* is not installed"):
        nvml_facts()
    ex = FakeExecutor(read(MEM / "facts-rehearsal-v1.txt"))
    facts = read_memory_facts(ex, "proj", local=True)
    assert ex.commands == [memory_facts_command("proj")] and facts.gpu_reader == "nvidia-smi"


def test_a_failed_nvml_query_is_reported_as_a_failed_nvidia_smi_is(tmp_path):
    ex = FakeExecutor(without_gpu_part(read(MEM / "facts-gb10.txt")))
    nvml = fake_pynvml(memory=[NOT_SUPPORTED], count_error=NVMLError_GpuIsLost())
    facts = read_memory_facts(ex, "proj", local=True, nvml=nvml, proc_root=tmp_path)
    assert ex.commands == [memory_facts_command("proj", nvidia_smi=False)]
    assert facts.gpu_reader == "NVML" and facts.gpus == () and facts.gpu_processes == ()
    assert facts.gpu_errors == ("NVML query failed: GPU is lost",)
    report = account(facts, gpu=True)
    assert report.mode == "none" and report.headroom_gib == 16.0  # MemAvailable still counts
    assert report.warnings == ("NVML failed: NVML query failed: GPU is lost",
                               "the host should have a GPU but NVML lists no GPU: GPU memory is not counted")
    assert account(facts, gpu=False).warnings == ()


# --- nvml_facts on its own ----------------------------------------------------------------------------

def test_nvml_unified_memory_not_supported(tmp_path):
    proc = proc_tree(tmp_path, {}, comms={4242: "VLLM::EngineCor\n"})
    nvml = fake_pynvml(memory=[NOT_SUPPORTED], processes={0: [(4242, 27648 * MiB), (4243, None)]})
    gpus, procs = nvml_facts(nvml=nvml, proc_root=proc)
    assert gpus == [GpuMemory(index=0, total_mib=None, used_mib=None, free_mib=None)]
    # NVML gives no name here: the kernel's (15 characters), else none
    assert procs == [GpuProcess(pid=4242, name="VLLM::EngineCor", used_mib=27648),
                     GpuProcess(pid=4243, name="", used_mib=None)]
    assert nvml.calls == ["init", "shutdown"]
    facts = parse_memory_facts(sections(nvidia_smi="", gpu_query="", compute_apps=""))
    assert memory_mode(replace(facts, gpus=tuple(gpus), gpu_processes=tuple(procs)), gpu=True) == "unified"


def test_nvml_process_names_as_nvidia_smi_shows_them(tmp_path):
    proc = proc_tree(tmp_path, {}, comms={4242: "VLLM::EngineCor\n"})
    nvml = fake_pynvml(memory=[NOT_SUPPORTED], processes={0: [(4242, MiB), (77, MiB)]},
                       names={4242: "VLLM::EngineCore", 77: b"/usr/bin/python3"})  # old bindings give bytes
    _, procs = nvml_facts(nvml=nvml, proc_root=proc)
    assert [p.name for p in procs] == ["VLLM::EngineCore", "/usr/bin/python3"]


def test_nvml_discrete(tmp_path):
    info = (81559 * MiB, 28160 * MiB, 53399 * MiB + 12345)
    nvml = fake_pynvml(memory=[info, info], processes={1: [(7, 1 * MiB)]})
    gpus, procs = nvml_facts(nvml=nvml, proc_root=tmp_path)
    assert gpus == [GpuMemory(index=i, total_mib=81559, used_mib=28160, free_mib=53399) for i in (0, 1)]
    assert procs == [GpuProcess(pid=7, name="", used_mib=1)]


def test_nvml_library_not_found():
    nvml = fake_pynvml(memory=[], init_error=NVMLError_LibraryNotFound())
    with pytest.raises(NvmlUnavailable, match="no NVIDIA driver") as caught:
        nvml_facts(nvml=nvml)
    assert isinstance(caught.value, OperationError)
    assert nvml.calls == ["init"]  # nothing to shut down
    with pytest.raises(NvmlUnavailable):
        read_nvml_gpus(nvml=nvml)


def test_nvml_query_failure_still_shuts_down():
    nvml = fake_pynvml(memory=[], count_error=NVMLError_GpuIsLost())
    with pytest.raises(OperationError, match="NVML query failed: GPU is lost") as caught:
        nvml_facts(nvml=nvml)
    assert not isinstance(caught.value, NvmlUnavailable)
    assert nvml.calls == ["init", "shutdown"]


def test_nvml_for_real_on_this_machine():
    """No stand-in: on a machine without the NVIDIA driver the real pynvml fails to load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import pynvml
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        with pytest.raises(OperationError, match="NVML cannot load"):
            nvml_facts()
        return
    pynvml.nvmlShutdown()
    gpus, _ = nvml_facts()  # a GPU host: the real thing answers
    assert gpus and all(g.index == i for i, g in enumerate(gpus))


def test_local_pid_containers(tmp_path):
    proc = proc_tree(tmp_path, {4242: read(MEM / "proc-cgroup-v2-docker.txt"),
                                114687: read(MEM / "proc-cgroup-host.txt")})
    assert local_pid_containers([114687, 4242, 4242, 31337], proc_root=proc) == ((4242, ANN), (114687, None))
