"""The per-service memory table ("Production VRAM Profile"): from the memory facts of a host
(``sparkkit.host.memory_facts``), ``account`` decides, in pure code, what each service uses, the
total and the headroom; ``format_profile`` draws the table. ``read_memory_facts`` is the one call
that reads the facts: nvidia-smi over SSH, NVML (``sparkkit.host.nvml``) when sparkkit runs on the
GPU host itself. Both give the same facts, so the same accounting.

Three modes (``account(..., gpu=...)``):

* ``none`` (no GPU, the rehearsal host): a service uses its containers' cgroup memory;
  headroom is ``MemAvailable``.
* ``unified`` (GB10 / DGX Spark): the GPU reports no memory totals (nvidia-smi ``[N/A]`` /
  ``Not Supported``, NVML ``NOT_SUPPORTED``). GPU and CPU share one physical memory, so a
  service uses the larger of its GPU processes' memory and its containers' cgroup memory (never
  their sum); headroom is ``MemAvailable``.
* ``discrete`` (H100 and the like): a service uses its GPU processes' memory; headroom is the
  sum of the GPUs' free memory.

A container's cgroup figure is its working set (usage minus inactive file cache, as ``docker
stats``). Units: 1 GiB = 1024 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from sparkkit.host.memory_facts import GpuProcess, MemoryFacts, memory_facts_command, parse_memory_facts
from sparkkit.host.nvml import PROC, NvmlUnavailable, read_nvml_gpus

if TYPE_CHECKING:
    from sparkkit.host.executor import Executor


def read_memory_facts(ex: Executor, project: str, *, local: bool, nvml: ModuleType | None = None,
                      proc_root: Path = PROC) -> MemoryFacts:
    """The memory facts of the host ``ex`` runs on, in one round trip. ``local``: sparkkit runs on
    that host, so the GPU part comes through NVML (``nvml``: the module, imported when None);
    where NVML cannot be used there (not installed, no driver), and over SSH, from nvidia-smi."""
    gpus = None
    if local:
        try:
            gpus = read_nvml_gpus(nvml=nvml, proc_root=proc_root)
        except NvmlUnavailable:
            gpus = None
    text = ex.run(memory_facts_command(project, nvidia_smi=gpus is None), timeout_s=60).stdout
    facts = parse_memory_facts(text)
    return facts if gpus is None else gpus.into(facts)


# --- records ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ServiceMemory:
    service: str
    container_ids: tuple[str, ...]
    gpu_pids: tuple[int, ...]
    gpu_mib: int | None  # sum over its GPU processes; None when it has none
    container_mib: float | None  # sum of its containers' cgroup working sets; None when unknown
    used_mib: float  # the figure that counts (see the module docstring)


@dataclass(frozen=True, kw_only=True)
class MemoryReport:
    mode: str  # "none", "unified" or "discrete"
    services: tuple[ServiceMemory, ...]
    unattributed: tuple[GpuProcess, ...]  # GPU processes in no container of the project
    total_mib: float
    total_gib: float
    headroom_gib: float | None
    mem_total_gib: float | None
    mem_available_gib: float | None
    gpu_total_gib: float | None  # discrete GPUs only
    notes: tuple[str, ...]
    warnings: tuple[str, ...]  # the figures are incomplete; say why


# --- decisions -------------------------------------------------------------------------------

def memory_mode(facts: MemoryFacts, *, gpu: bool) -> str:
    """"none" without a GPU (or none seen), "unified" when no GPU reports memory totals,
    "discrete" when one does."""
    if not gpu or not facts.gpus:
        return "none"
    return "discrete" if any(g.free_mib is not None for g in facts.gpus) else "unified"


def gpu_process_containers(facts: MemoryFacts) -> dict[int, str]:
    """GPU process PID -> id of the project container it runs in (through its cgroup, or being
    a container's main process). PIDs in no container of the project are left out."""
    ours = {c.id for c in facts.containers}
    main_pids = {c.pid: c.id for c in facts.containers if c.pid is not None}
    by_cgroup = dict(facts.pid_containers)
    out = {}
    for p in facts.gpu_processes:
        cid = by_cgroup.get(p.pid) or main_pids.get(p.pid)
        if cid in ours:
            out[p.pid] = cid
    return out


def counted_mib(mode: str, *, gpu_mib: int | None, container_mib: float | None) -> float:
    """The figure that counts for a service in a mode."""
    if mode == "discrete":
        return float(gpu_mib or 0)
    if mode == "unified":  # one physical memory: the larger view, never the sum
        return float(max(gpu_mib or 0, container_mib or 0))
    return float(container_mib or 0)


def _gib(mib: float | None) -> float | None:
    return None if mib is None else mib / 1024


def _no_gpu_seen(facts: MemoryFacts) -> str:
    if facts.gpu_reader == "nvidia-smi" and facts.nvidia_smi is None:
        return "nvidia-smi is not installed"
    return f"{facts.gpu_reader} lists no GPU"


def account(facts: MemoryFacts, *, gpu: bool) -> MemoryReport:
    mode = memory_mode(facts, gpu=gpu)
    notes: list[str] = []
    problems: list[str] = [f"{facts.gpu_reader} failed: {e}" for e in facts.gpu_errors] if gpu else []
    use_gpu = mode != "none"
    processes = facts.gpu_processes if use_gpu else ()
    owner = gpu_process_containers(facts) if use_gpu else {}

    services = []
    for name in sorted({c.service for c in facts.containers}):
        containers = [c for c in facts.containers if c.service == name]
        ids = {c.id for c in containers}
        procs = [p for p in processes if owner.get(p.pid) in ids]
        for p in procs:
            if p.used_mib is None:
                problems.append(f"{name}: GPU memory of pid {p.pid} ({p.name}) not reported; counted as 0")
        for c in containers:
            if c.cgroup is None:
                problems.append(f"{name}: no memory cgroup found for container {c.id[:12]}")
        gpu_mib = sum(p.used_mib or 0 for p in procs) if procs else None
        known = [c.mib for c in containers if c.mib is not None]
        container_mib = sum(known) if known else None
        services.append(ServiceMemory(
            service=name, container_ids=tuple(c.id for c in containers), gpu_pids=tuple(p.pid for p in procs),
            gpu_mib=gpu_mib, container_mib=container_mib,
            used_mib=counted_mib(mode, gpu_mib=gpu_mib, container_mib=container_mib)))

    unattributed = tuple(p for p in processes if p.pid not in owner)
    for p in unattributed:
        if p.used_mib is None:
            problems.append(f"GPU memory of pid {p.pid} ({p.name}, in no container of the project) not reported")
    total_mib = sum(s.used_mib for s in services) + sum(p.used_mib or 0 for p in unattributed)

    mem_total_gib = _gib(None if facts.mem_total_kib is None else facts.mem_total_kib / 1024)
    mem_available_gib = _gib(None if facts.mem_available_kib is None else facts.mem_available_kib / 1024)
    gpu_total_gib = None
    if mode == "discrete":
        free = [g.free_mib for g in facts.gpus if g.free_mib is not None]
        headroom_gib = _gib(sum(free))
        gpu_total_gib = _gib(sum(g.total_mib for g in facts.gpus if g.total_mib is not None))
        notes.append(f"discrete GPU memory ({len(facts.gpus)} GPU(s)): headroom is the GPUs' free memory; "
                     "a service counts its GPU processes' memory")
        if len(free) < len(facts.gpus):
            problems.append(f"{len(facts.gpus) - len(free)} GPU(s) report no free memory: headroom leaves them out")
    else:
        headroom_gib = mem_available_gib
        if mode == "unified":
            notes.append("GPU memory totals not supported (unified memory): headroom is MemAvailable")
            notes.append("a service counts the larger of its GPU processes' memory and its containers' cgroup "
                         "memory (one physical memory: not added)")
        else:
            notes.append("no GPU: a service counts its containers' cgroup memory (usage minus inactive file "
                         "cache, as docker stats); headroom is MemAvailable")
            if gpu:
                problems.append("the host should have a GPU but "
                                + _no_gpu_seen(facts) + ": GPU memory is not counted")
            elif facts.gpus:
                notes.append(f"{facts.gpu_reader} sees {len(facts.gpus)} GPU(s) but the host is configured without "
                             "one: GPU memory is not counted")
        if facts.mem_available_kib is None:
            problems.append("no MemAvailable in /proc/meminfo: headroom unknown")
    if unattributed:
        notes.append(f"{len(unattributed)} GPU process(es) in no container of the project: "
                     f"{sum(p.used_mib or 0 for p in unattributed):,} MiB counted in the total")
    return MemoryReport(
        mode=mode, services=tuple(services), unattributed=unattributed,
        total_mib=total_mib, total_gib=total_mib / 1024, headroom_gib=headroom_gib,
        mem_total_gib=mem_total_gib, mem_available_gib=mem_available_gib, gpu_total_gib=gpu_total_gib,
        notes=tuple(notes), warnings=tuple(problems))


def format_profile(report: MemoryReport) -> str:
    """The report's memory table (Markdown), like the benchmark's "Production VRAM Profile"."""
    def mib(value: float | None) -> str:
        return "–" if value is None else f"{value:,.0f} MiB"

    def gib(value: float | None) -> str:
        return "unknown" if value is None else f"{value:.1f} GiB"

    lines = ["| Service | GPU memory | Container memory | Counted |", "|---|---|---|---|"]
    for s in report.services:
        lines.append(f"| {s.service} | {mib(s.gpu_mib)} | {mib(s.container_mib)} | {mib(s.used_mib)} |")
    for p in report.unattributed:
        lines.append(f"| pid {p.pid} {p.name} (no container) | {mib(p.used_mib)} | – | {mib(p.used_mib or 0)} |")
    source = "GPU free memory" if report.mode == "discrete" else "MemAvailable"
    lines.append(f"| **Total** | | | **{gib(report.total_gib)}** |")
    lines.append(f"| **Headroom** | | | **{gib(report.headroom_gib)}** ({source}) |")
    return "\n".join(lines) + "\n"
