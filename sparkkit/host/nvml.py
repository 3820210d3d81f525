"""The GPU part of the memory facts through NVML, when sparkkit runs on the GPU host itself.

NVML comes from nvidia-ml-py (the maintained binding; the ``pynvml`` package name forwards to it),
imported as ``pynvml`` when first needed, so the kit runs without it: where it is not installed,
or the machine has no NVIDIA driver, ``NvmlUnavailable`` says so and nvidia-smi reads the GPUs as
it does over SSH (``memory_facts.memory_facts_command``).

What NVML answers matches what nvidia-smi prints: on GB10 (unified memory)
``nvmlDeviceGetMemoryInfo`` raises NOT_SUPPORTED where nvidia-smi prints ``[N/A]``, so the totals
are None; per-process memory works on the host (host PIDs; mapped to containers through this
machine's ``/proc/PID/cgroup``), and process names come from ``nvmlSystemGetProcessName`` as
nvidia-smi shows them. ``used_mib`` of a discrete GPU is NVML's v1 figure (total minus free, so
it includes memory the driver reserves); the accounting reads only total and free.

Every function takes the module as ``nvml=`` so tests hand in a stand-in fed with captured values.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

from sparkkit.errors import OperationError
from sparkkit.host.memory_facts import MIB, GpuMemory, GpuProcess, MemoryFacts, container_id_from_cgroup

PROC = Path("/proc")


class NvmlUnavailable(OperationError):
    """NVML cannot be used on this machine: nvidia-ml-py is not installed, or no NVIDIA driver."""


def import_pynvml() -> ModuleType:
    try:
        with warnings.catch_warnings():  # the old ``pynvml`` package warns that it only forwards
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml
    except ImportError as e:
        raise NvmlUnavailable("nvidia-ml-py (pynvml) is not installed: cannot read GPU memory through NVML") from e
    return pynvml


def _process_name(nvml: ModuleType, pid: int, proc_root: Path) -> str:
    """The name nvidia-smi shows; else the kernel's (``/proc/PID/comm``, 15 characters); else ""."""
    try:
        name = nvml.nvmlSystemGetProcessName(pid)
        return name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    except nvml.NVMLError:
        pass
    try:
        return (proc_root / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def local_pid_containers(pids: list[int], *, proc_root: Path = PROC) -> tuple[tuple[int, str | None], ...]:
    """GPU process PID -> container id from this machine's /proc/PID/cgroup (with ``nvml_facts``,
    for ``MemoryFacts.pid_containers``); PIDs that are gone are left out."""
    out = []
    for pid in sorted(set(pids)):
        try:
            text = (proc_root / str(pid) / "cgroup").read_text()
        except OSError:
            continue
        out.append((pid, container_id_from_cgroup(text)))
    return tuple(out)


def nvml_facts(*, nvml: ModuleType | None = None,
               proc_root: Path = PROC) -> tuple[list[GpuMemory], list[GpuProcess]]:
    """The GPUs' memory and their compute processes through NVML (host PIDs). Memory totals are
    None where NVML says NOT_SUPPORTED (GB10). Raises ``NvmlUnavailable`` where NVML does not
    load, ``OperationError`` where a query fails."""
    if nvml is None:
        nvml = import_pynvml()
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as e:
        raise NvmlUnavailable(f"NVML cannot load (no NVIDIA driver on this machine?): {e}") from e
    try:
        gpus, processes = [], []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            try:
                info = nvml.nvmlDeviceGetMemoryInfo(handle)
                gpus.append(GpuMemory(index=index, total_mib=info.total // MIB, used_mib=info.used // MIB,
                                      free_mib=info.free // MIB))
            except nvml.NVMLError_NotSupported:
                gpus.append(GpuMemory(index=index, total_mib=None, used_mib=None, free_mib=None))
            for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                used = p.usedGpuMemory
                processes.append(GpuProcess(pid=int(p.pid), name=_process_name(nvml, int(p.pid), proc_root),
                                            used_mib=None if used is None else used // MIB))
        return gpus, processes
    except nvml.NVMLError as e:
        raise OperationError(f"NVML query failed: {e}") from e
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass


@dataclass(frozen=True, kw_only=True)
class NvmlGpus:
    """The GPU part of ``MemoryFacts`` as NVML read it on this machine."""

    gpus: tuple[GpuMemory, ...]
    processes: tuple[GpuProcess, ...]
    pid_containers: tuple[tuple[int, str | None], ...]
    errors: tuple[str, ...]  # a query failed: reported as nvidia-smi's failures are

    def into(self, facts: MemoryFacts) -> MemoryFacts:
        """``facts`` read without nvidia-smi (``memory_facts_command(..., nvidia_smi=False)``),
        completed with this GPU part."""
        return replace(facts, gpu_reader="NVML", gpus=self.gpus, gpu_processes=self.processes,
                       gpu_errors=self.errors, pid_containers=self.pid_containers)


def read_nvml_gpus(*, nvml: ModuleType | None = None, proc_root: Path = PROC) -> NvmlGpus:
    """The GPUs, their processes and those processes' containers through NVML. Raises
    ``NvmlUnavailable`` where NVML cannot be used here (then nvidia-smi reads the GPUs)."""
    try:
        gpus, processes = nvml_facts(nvml=nvml, proc_root=proc_root)
    except NvmlUnavailable:
        raise
    except OperationError as e:
        return NvmlGpus(gpus=(), processes=(), pid_containers=(), errors=(str(e),))
    return NvmlGpus(gpus=tuple(gpus), processes=tuple(processes), errors=(),
                    pid_containers=local_pid_containers([p.pid for p in processes], proc_root=proc_root))
