"""Memory facts of a host: one command and the parsers for what it prints (pyinfra's "facts read
state"). ``memory_facts_command`` reads everything in one round trip: ``/proc/meminfo``, the GPUs
and their compute processes (nvidia-smi), the compose project's containers, their cgroup memory,
and the cgroup of every GPU process; ``parse_memory_facts`` turns that into ``MemoryFacts``.
Deciding what the figures mean is ``sparkkit.verify.memory``'s job; reading the GPU part through
NVML instead, on the GPU host itself, is ``sparkkit.host.nvml``'s.

On GB10 (DGX Spark, unified memory) nvidia-smi prints ``[N/A]`` / ``Not Supported`` for memory
totals: those read as None. Per-process figures are host PIDs, mapped to containers through
``/proc/PID/cgroup``.

The cgroup figure is usage minus inactive file cache (v1: ``memory.usage_in_bytes`` minus
``total_inactive_file``; v2: ``memory.current`` minus ``inactive_file``), the working set that
``docker stats`` shows: raw usage counts page cache the kernel drops under pressure (a model
file just read would count gigabytes), while rss alone misses shmem and active cache.

Units: 1 GiB = 1024 MiB; /proc/meminfo's "kB" are KiB (kB / 1024 = MiB).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sparkkit.host.commands import section
from sparkkit.host.facts import split_sections

MIB = 1024 * 1024

_SMI_GPU_QUERY = "--query-gpu=index,memory.total,memory.used,memory.free"
_SMI_APPS_QUERY = "--query-compute-apps=pid,process_name,used_memory"
_INSPECT_FORMAT = '{{.Id}} {{.State.Pid}} {{index .Config.Labels "com.docker.compose.service"}}'


SKIP_NVIDIA_SMI = "skip-nvidia-smi"

# A constant script: its inputs are positional parameters, the compose project ($1) and, where the
# GPU part is read through NVML instead, SKIP_NVIDIA_SMI ($2).
# cgroup_mem prints "ID v1|v2 USAGE_BYTES INACTIVE_FILE_BYTES" (or "ID missing"); the subtraction
# is decided in Python. The container's cgroup is looked up from its main PID's /proc/PID/cgroup
# first (any cgroup driver, any cgroup-parent), then at docker's usual places.
MEMORY_FACTS_SCRIPT = "\n".join([
    'project="$1"',
    section("cgroup_fs"),
    "stat -fc %T /sys/fs/cgroup 2>/dev/null || true",
    section("meminfo"),
    "cat /proc/meminfo",
    section("nvidia_smi"),
    'smi=""',
    f'if [ "$2" != {SKIP_NVIDIA_SMI} ]; then smi=$(command -v nvidia-smi 2>/dev/null || true); fi',
    'if [ -n "$smi" ]; then echo "$smi"; fi',
    section("gpu_query"),
    'if [ -n "$smi" ]; then',
    f"  out=$(nvidia-smi {_SMI_GPU_QUERY} --format=csv,noheader,nounits 2>&1); rc=$?",
    '  if [ -n "$out" ]; then printf \'%s\\n\' "$out"; fi',
    '  if [ "$rc" -ne 0 ]; then echo "!error nvidia-smi --query-gpu exit $rc"; fi',
    "fi",
    section("compute_apps"),
    'apps=""',
    'if [ -n "$smi" ]; then',
    f"  apps=$(nvidia-smi {_SMI_APPS_QUERY} --format=csv,noheader,nounits 2>&1); rc=$?",
    '  if [ -n "$apps" ]; then printf \'%s\\n\' "$apps"; fi',
    '  if [ "$rc" -ne 0 ]; then echo "!error nvidia-smi --query-compute-apps exit $rc"; fi',
    "fi",
    section("containers"),
    'ids=$(docker ps -q --no-trunc --filter "label=com.docker.compose.project=$project" 2>/dev/null)',
    'info=""',
    f"if [ -n \"$ids\" ]; then info=$(docker inspect --format '{_INSPECT_FORMAT}' $ids 2>/dev/null); fi",
    'if [ -n "$info" ]; then printf \'%s\\n\' "$info"; fi',
    section("cgroup_mem"),
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
    section("pid_cgroups"),
    'printf \'%s\\n\' "$apps" | while IFS=, read -r pid rest; do',
    "  pid=$(printf '%s' \"$pid\" | tr -d ' ')",
    '  case "$pid" in ""|*[!0-9]*) continue ;; esac',
    '  if [ -r "/proc/$pid/cgroup" ]; then echo "pid $pid"; cat "/proc/$pid/cgroup"; fi',
    "done",
    section("end"),
]) + "\n"


def memory_facts_command(project: str, *, nvidia_smi: bool = True) -> list[str]:
    """One round trip: meminfo, the GPUs and their processes, the project's containers and
    their cgroup memory, and the cgroup of every GPU process. ``nvidia_smi=False``: everything
    but the GPUs, their processes and those processes' cgroups (read through NVML instead)."""
    return ["sh", "-c", MEMORY_FACTS_SCRIPT, "sh", str(project), *(() if nvidia_smi else (SKIP_NVIDIA_SMI,))]


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
    nvidia_smi: str | None  # its path; None when not installed, or not looked for (NVML read the GPUs)
    gpus: tuple[GpuMemory, ...]
    gpu_processes: tuple[GpuProcess, ...]
    gpu_errors: tuple[str, ...]  # failures of the GPU reader
    containers: tuple[ContainerMemory, ...]
    pid_containers: tuple[tuple[int, str | None], ...]  # GPU process PID -> container id (None: none)
    gpu_reader: str = "nvidia-smi"  # what read the GPU part: "nvidia-smi" (over SSH) or "NVML" (locally)


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
