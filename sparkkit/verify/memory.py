"""Memory facts of a host and the per-service memory table ("Production VRAM Profile").

A fact is a command plus parsers: ``memory_facts_command`` reads everything in one round trip,
``parse_memory_facts`` turns its output into ``MemoryFacts``, and ``account`` decides, in pure
code, what each service uses, the total and the headroom. ``nvml_facts`` reads the GPU part
through NVML when sparkkit runs on the host itself.

Three modes (``account(..., gpu=...)``):

* ``none`` (no GPU, the rehearsal host): a service uses its containers' cgroup memory;
  headroom is ``MemAvailable``.
* ``unified`` (GB10 / DGX Spark): the GPU reports no memory totals (nvidia-smi ``[N/A]`` /
  ``Not Supported``, NVML ``NOT_SUPPORTED``). GPU and CPU share one physical memory, so a
  service uses the larger of its GPU processes' memory and its containers' cgroup memory (never
  their sum); headroom is ``MemAvailable``.
* ``discrete`` (H100 and the like): a service uses its GPU processes' memory; headroom is the
  sum of the GPUs' free memory.

The cgroup figure is usage minus inactive file cache (v1: ``memory.usage_in_bytes`` minus
``total_inactive_file``; v2: ``memory.current`` minus ``inactive_file``), the working set that
``docker stats`` shows: raw usage counts page cache the kernel drops under pressure (a model
file just read would count gigabytes), while rss alone misses shmem and active cache.

Units: 1 GiB = 1024 MiB; /proc/meminfo's "kB" are KiB (kB / 1024 = MiB).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from sparkkit.host.commands import SECTION
from sparkkit.errors import OperationError
from sparkkit.host.facts import split_sections

MIB = 1024 * 1024

_SMI_GPU_QUERY = "--query-gpu=index,memory.total,memory.used,memory.free"
_SMI_APPS_QUERY = "--query-compute-apps=pid,process_name,used_memory"
_INSPECT_FORMAT = '{{.Id}} {{.State.Pid}} {{index .Config.Labels "com.docker.compose.service"}}'


def _section(name: str) -> str:
    return f'echo "{SECTION.format(name)}"'


# A constant script: its only input, the compose project, is the positional parameter $1.
# cgroup_mem prints "ID v1|v2 USAGE_BYTES INACTIVE_FILE_BYTES" (or "ID missing"); the subtraction
# is decided in Python. The container's cgroup is looked up from its main PID's /proc/PID/cgroup
# first (any cgroup driver, any cgroup-parent), then at docker's usual places.
MEMORY_FACTS_SCRIPT = "\n".join([
    'project="$1"',
    _section("cgroup_fs"),
    "stat -fc %T /sys/fs/cgroup 2>/dev/null || true",
    _section("meminfo"),
    "cat /proc/meminfo",
    _section("nvidia_smi"),
    "smi=$(command -v nvidia-smi 2>/dev/null || true)",
    'if [ -n "$smi" ]; then echo "$smi"; fi',
    _section("gpu_query"),
    'if [ -n "$smi" ]; then',
    f"  out=$(nvidia-smi {_SMI_GPU_QUERY} --format=csv,noheader,nounits 2>&1); rc=$?",
    '  if [ -n "$out" ]; then printf \'%s\\n\' "$out"; fi',
    '  if [ "$rc" -ne 0 ]; then echo "!error nvidia-smi --query-gpu exit $rc"; fi',
    "fi",
    _section("compute_apps"),
    'apps=""',
    'if [ -n "$smi" ]; then',
    f"  apps=$(nvidia-smi {_SMI_APPS_QUERY} --format=csv,noheader,nounits 2>&1); rc=$?",
    '  if [ -n "$apps" ]; then printf \'%s\\n\' "$apps"; fi',
    '  if [ "$rc" -ne 0 ]; then echo "!error nvidia-smi --query-compute-apps exit $rc"; fi',
    "fi",
    _section("containers"),
    'ids=$(docker ps -q --no-trunc --filter "label=com.docker.compose.project=$project" 2>/dev/null)',
    'info=""',
    f"if [ -n \"$ids\" ]; then info=$(docker inspect --format '{_INSPECT_FORMAT}' $ids 2>/dev/null); fi",
    'if [ -n "$info" ]; then printf \'%s\\n\' "$info"; fi',
    _section("cgroup_mem"),
    'printf \'%s\\n\' "$info" | while read -r id pid service; do',
    '  [ -n "$id" ] || continue',
    '  v1=""; v2=""',
    '  if [ -r "/proc/$pid/cgroup" ]; then',
    "    v1=$(sed -n 's/^[0-9]*:[^:]*memory[^:]*://p' \"/proc/$pid/cgroup\" | head -n 1)",
    "    v2=$(sed -n 's/^0:://p' \"/proc/$pid/cgroup\" | head -n 1)",
    "  fi",
    '  case "$v1" in *"$id"*) ;; *) v1=/nonexistent ;; esac',
    '  case "$v2" in *"$id"*) ;; *) v2=/nonexistent ;; esac',
    "  found=0",
    '  for d in "/sys/fs/cgroup/memory$v1" "/sys/fs/cgroup$v2" "/sys/fs/cgroup/system.slice/docker-$id.scope" \\',
    '           "/sys/fs/cgroup/docker/$id" "/sys/fs/cgroup/memory/docker/$id" \\',
    '           "/sys/fs/cgroup/memory/system.slice/docker-$id.scope"; do',
    '    if [ -r "$d/memory.current" ]; then',
    "      echo \"$id v2 $(cat \"$d/memory.current\") $(awk '$1==\"inactive_file\"{print $2}' \"$d/memory.stat\" 2>/dev/null)\"",
    "      found=1; break",
    '    elif [ -r "$d/memory.usage_in_bytes" ]; then',
    "      echo \"$id v1 $(cat \"$d/memory.usage_in_bytes\") $(awk '$1==\"total_inactive_file\"{print $2}' \"$d/memory.stat\" 2>/dev/null)\"",
    "      found=1; break",
    "    fi",
    "  done",
    '  [ "$found" = 1 ] || echo "$id missing"',
    "done",
    _section("pid_cgroups"),
    'printf \'%s\\n\' "$apps" | while IFS=, read -r pid rest; do',
    "  pid=$(printf '%s' \"$pid\" | tr -d ' ')",
    '  case "$pid" in ""|*[!0-9]*) continue ;; esac',
    '  if [ -r "/proc/$pid/cgroup" ]; then echo "pid $pid"; cat "/proc/$pid/cgroup"; fi',
    "done",
    _section("end"),
]) + "\n"


def memory_facts_command(project: str) -> list[str]:
    """One round trip: meminfo, the GPUs and their processes, the project's containers and
    their cgroup memory, and the cgroup of every GPU process."""
    return ["sh", "-c", MEMORY_FACTS_SCRIPT, "sh", str(project)]


# --- records ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class GpuMemory:
    index: int
    total_mib: int | None  # None: not supported (unified memory) or not reported
    used_mib: int | None
    free_mib: int | None


@dataclass(frozen=True, kw_only=True)
class GpuProcess:
    pid: int  # a host PID (NVIDIA's per-process figures only mean something on the host)
    name: str
    used_mib: int | None  # None: not reported ([N/A])


@dataclass(frozen=True, kw_only=True)
class CgroupMemory:
    version: str  # "v1" or "v2"
    usage_bytes: int
    inactive_file_bytes: int | None

    @property
    def working_set_bytes(self) -> int:
        """Usage minus inactive file cache, as ``docker stats`` shows it."""
        return max(0, self.usage_bytes - (self.inactive_file_bytes or 0))


@dataclass(frozen=True, kw_only=True)
class ContainerMemory:
    id: str  # full 64-hex container id
    pid: int | None  # the container's main process, host PID
    service: str
    cgroup: CgroupMemory | None  # None: no memory cgroup found

    @property
    def mib(self) -> float | None:
        return None if self.cgroup is None else self.cgroup.working_set_bytes / MIB


@dataclass(frozen=True, kw_only=True)
class MemoryFacts:
    cgroup_fs: str | None  # "cgroup2fs" (v2), "tmpfs" (v1 or hybrid)
    mem_total_kib: int | None
    mem_available_kib: int | None
    nvidia_smi: str | None  # its path, None when not installed
    gpus: tuple[GpuMemory, ...]
    gpu_processes: tuple[GpuProcess, ...]
    gpu_errors: tuple[str, ...]  # nvidia-smi failures
    containers: tuple[ContainerMemory, ...]
    pid_containers: tuple[tuple[int, str | None], ...]  # GPU process PID -> container id (None: none)


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


# --- parsers ---------------------------------------------------------------------------------

_NOT_AVAILABLE = {"[n/a]", "n/a", "[not supported]", "not supported", "[unknown error]", ""}
_MIB_RE = re.compile(r"^(\d+)(?:\s*MiB)?$", re.IGNORECASE)
_CONTAINER_ID_RE = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")


def _mib(field: str) -> int | None:
    """``19135``, ``19135 MiB`` -> 19135; ``[N/A]``, ``Not Supported`` and the like -> None."""
    field = field.strip()
    if field.lower() in _NOT_AVAILABLE:
        return None
    m = _MIB_RE.match(field)
    return int(m.group(1)) if m else None


def _csv_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("!"):
            rows.append([f.strip() for f in line.split(",")])
    return rows


def _column_name(header_field: str) -> str:
    """``memory.total [MiB]`` -> ``memory.total``; ``used_gpu_memory [MiB]`` -> ``used_memory``."""
    name = header_field.split("[", 1)[0].strip().lower()
    return "used_memory" if name == "used_gpu_memory" else name


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo -> {"MemTotal": kB, ...} (the kernel's "kB" are KiB)."""
    out = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0])
    return out


def parse_gpu_query(text: str) -> list[GpuMemory]:
    """``nvidia-smi --query-gpu=index,memory.total,memory.used,memory.free --format=csv,noheader,nounits``.

    Also reads output with the header kept (columns are then found by name, in any order, the
    index being the row number where it is not queried) and values with units ("81559 MiB").
    Lines that are not GPU rows (nvidia-smi's error text) are skipped.
    """
    rows = _csv_rows(text)
    columns = ["index", "memory.total", "memory.used", "memory.free"]
    if rows and any(f.lower().startswith("memory.") or f.lower() == "index" for f in rows[0]):
        columns = [_column_name(f) for f in rows[0]]
        rows = rows[1:]
    out = []
    for number, row in enumerate(rows):
        if len(row) != len(columns):
            continue
        fields = dict(zip(columns, row))
        index = fields.get("index", str(number))
        if not index.isdigit():
            continue
        out.append(GpuMemory(index=int(index), total_mib=_mib(fields.get("memory.total", "")),
                             used_mib=_mib(fields.get("memory.used", "")),
                             free_mib=_mib(fields.get("memory.free", ""))))
    return out


def parse_compute_apps(text: str) -> list[GpuProcess]:
    """``nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits``.

    Tolerates the header line (``pid, process_name, used_gpu_memory [MiB]``), a leading
    ``gpu_uuid`` column, units, ``[N/A]`` memory, and commas inside the process name.
    """
    rows = _csv_rows(text)
    columns = ["pid", "process_name", "used_memory"]
    if rows and rows[0] and _column_name(rows[0][0]) in ("pid", "gpu_uuid", "gpu_name", "gpu_bus_id"):
        columns = [_column_name(f) for f in rows[0]]
        rows = rows[1:]
    out = []
    for row in rows:
        cols = columns
        if cols == ["pid", "process_name", "used_memory"] and row and row[0].upper().startswith("GPU-"):
            cols = ["gpu_uuid", *cols]
        extra = len(row) - len(cols)
        if extra < 0 or (extra > 0 and "process_name" not in cols):
            continue
        if extra:  # the name held commas: glue its pieces back together
            at = cols.index("process_name")
            row = row[:at] + [",".join(row[at:at + extra + 1])] + row[at + extra + 1:]
        fields = dict(zip(cols, row))
        pid = fields.get("pid", "")
        if not pid.isdigit():
            continue
        out.append(GpuProcess(pid=int(pid), name=fields.get("process_name", ""),
                              used_mib=_mib(fields.get("used_memory", ""))))
    return out


def container_id_from_cgroup(text: str) -> str | None:
    """The 64-hex container id in /proc/PID/cgroup, or None for a process in no container.

    Reads cgroup v1 (``12:memory:/docker/ID``), v2 (``0::/system.slice/docker-ID.scope``),
    Kubernetes (``/kubepods/burstable/pod.../ID``) and containerd/CRI-O
    (``cri-containerd-ID.scope``, ``crio-ID.scope``). The memory controller's line wins, then
    the v2 line, then any; within a path the innermost id wins.
    """
    lines = [line.split(":", 2) for line in text.splitlines() if line.count(":") >= 2]

    def rank(parts: list[str]) -> int:
        if "memory" in parts[1].split(","):
            return 0
        return 1 if parts[0] == "0" and parts[1] == "" else 2

    for parts in sorted(lines, key=rank):
        ids = _CONTAINER_ID_RE.findall(parts[2])
        if ids:
            return ids[-1]
    return None


def parse_container_lines(text: str) -> list[tuple[str, int | None, str]]:
    """``ID PID SERVICE`` lines -> (id, main pid or None when not running, service)."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and _CONTAINER_ID_RE.fullmatch(parts[0]):
            pid = int(parts[1]) if parts[1].isdigit() and parts[1] != "0" else None
            out.append((parts[0], pid, parts[2].strip() if len(parts) > 2 else ""))
    return out


def parse_cgroup_mem(text: str) -> dict[str, CgroupMemory]:
    """``ID v1|v2 USAGE_BYTES [INACTIVE_FILE_BYTES]`` lines (``ID missing`` is skipped)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in ("v1", "v2") and parts[2].isdigit():
            inactive = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else None
            out[parts[0]] = CgroupMemory(version=parts[1], usage_bytes=int(parts[2]),
                                         inactive_file_bytes=inactive)
    return out


def parse_pid_cgroups(text: str) -> dict[int, str | None]:
    """``pid N`` followed by /proc/N/cgroup, repeated -> {pid: container id or None}."""
    blocks: dict[int, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^pid (\d+)$", line.strip())
        if m:
            current = int(m.group(1))
            blocks[current] = []
        elif current is not None:
            blocks[current].append(line)
    return {pid: container_id_from_cgroup("\n".join(lines)) for pid, lines in blocks.items()}


def parse_memory_facts(text: str) -> MemoryFacts:
    s = split_sections(text)
    meminfo = parse_meminfo(s.get("meminfo", ""))
    cgroups = parse_cgroup_mem(s.get("cgroup_mem", ""))
    errors = [line[1:].removeprefix("error ").strip()
              for name in ("gpu_query", "compute_apps") for line in s.get(name, "").splitlines()
              if line.startswith("!")]
    return MemoryFacts(
        cgroup_fs=s.get("cgroup_fs", "").strip() or None,
        mem_total_kib=meminfo.get("MemTotal"),
        mem_available_kib=meminfo.get("MemAvailable"),
        nvidia_smi=s.get("nvidia_smi", "").strip() or None,
        gpus=tuple(parse_gpu_query(s.get("gpu_query", ""))),
        gpu_processes=tuple(parse_compute_apps(s.get("compute_apps", ""))),
        gpu_errors=tuple(errors),
        containers=tuple(ContainerMemory(id=cid, pid=pid, service=service, cgroup=cgroups.get(cid))
                         for cid, pid, service in parse_container_lines(s.get("containers", ""))),
        pid_containers=tuple(sorted(parse_pid_cgroups(s.get("pid_cgroups", "")).items())),
    )


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


def account(facts: MemoryFacts, *, gpu: bool) -> MemoryReport:
    mode = memory_mode(facts, gpu=gpu)
    notes: list[str] = []
    problems: list[str] = [f"nvidia-smi failed: {e}" for e in facts.gpu_errors] if gpu else []
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
                                + ("nvidia-smi is not installed" if facts.nvidia_smi is None
                                   else "nvidia-smi lists no GPU") + ": GPU memory is not counted")
            elif facts.gpus:
                notes.append(f"nvidia-smi sees {len(facts.gpus)} GPU(s) but the host is configured without "
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


# --- NVML, when sparkkit runs on the GPU host itself -------------------------------------------

def _process_name(pid: int, proc_root: Path) -> str:
    try:
        return (proc_root / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def local_pid_containers(pids: list[int], *, proc_root: Path = Path("/proc")) -> tuple[tuple[int, str | None], ...]:
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


def nvml_facts(*, proc_root: Path = Path("/proc")) -> tuple[list[GpuMemory], list[GpuProcess]]:
    """The GPUs' memory and their compute processes through NVML (host PIDs; names from
    /proc/PID/comm). Memory totals are None where NVML says NOT_SUPPORTED (GB10)."""
    try:
        with warnings.catch_warnings():  # the pynvml shim warns that it is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml
    except ImportError as e:
        raise OperationError("pynvml is not installed: cannot read GPU memory through NVML") from e
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise OperationError(f"NVML cannot load (no NVIDIA driver on this machine?): {e}") from e
    try:
        gpus, processes = [], []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            try:
                info = pynvml.nvmlDeviceGetMemoryInfo(handle)
                gpus.append(GpuMemory(index=index, total_mib=info.total // MIB, used_mib=info.used // MIB,
                                      free_mib=info.free // MIB))
            except pynvml.NVMLError_NotSupported:
                gpus.append(GpuMemory(index=index, total_mib=None, used_mib=None, free_mib=None))
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                used = p.usedGpuMemory
                processes.append(GpuProcess(pid=int(p.pid), name=_process_name(int(p.pid), proc_root),
                                            used_mib=None if used is None else used // MIB))
        return gpus, processes
    except pynvml.NVMLError as e:
        raise OperationError(f"NVML query failed: {e}") from e
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
