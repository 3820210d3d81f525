"""Parsers for what remote commands print. Pure functions, tested on captured output."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sparkkit.host.commands import SECTION

_SECTION_RE = re.compile("^" + re.escape(SECTION).replace(r"\{\}", "(.+)") + "$")


@dataclass(frozen=True, kw_only=True)
class Container:
    service: str
    id: str
    name: str
    status: str  # created, running, restarting, exited, dead, paused
    health: str  # healthy, unhealthy, starting, or "" when the service has no healthcheck
    restarts: int
    started_at: datetime | None
    exit_code: int
    oom_killed: bool
    image: str
    host_ports: tuple[int, ...]
    image_id: str = ""  # the image the container was created from (sha256:...)
    config_hash: str = ""  # compose's com.docker.compose.config-hash label
    release: str = ""  # the release whose compose file created it (compose's config_files label)

    @property
    def ready(self) -> bool:
        return self.status == "running" and self.health in ("healthy", "")


@dataclass(frozen=True, kw_only=True)
class HostFacts:
    docker_version: str | None
    docker_error: str | None
    compose_version: str | None
    runtimes: tuple[str, ...]
    free_disk_bytes: int | None
    listening_ports: frozenset[int]
    images_present: frozenset[str]
    images_missing: frozenset[str]
    current_release: str | None
    releases: tuple[str, ...]  # kept releases, most recently touched first
    activations: tuple[str, ...]  # releases that went live (deploy or rollback ok), oldest first
    containers: tuple[Container, ...]
    image_ids: dict[str, str] = field(default_factory=dict)  # present image -> its id (sha256:...)
    # service -> the config hash its container had when the current release went live (live.txt)
    current_hashes: dict[str, str] = field(default_factory=dict)
    unrestored: str | None = None  # the last deploy/rollback failed and could not put this release back
    release_key: bytes | None = field(default=None, repr=False)  # keys the release id; None: none readable
    secret_values: tuple[str, ...] = field(default=(), repr=False)  # in kept env files; only for masking


def split_sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = _SECTION_RE.match(line)
        if m:
            current = m.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def parse_docker_time(text: str) -> datetime | None:
    """Docker's RFC 3339 times with nanoseconds; the zero time means never."""
    if not text or text.startswith("0001-01-01"):
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz).astimezone(timezone.utc)


def parse_containers(text: str) -> tuple[Container, ...]:
    """``docker inspect`` JSON for compose containers -> records, by service name."""
    text = text.strip()
    if not text:
        return ()
    data = json.loads(text)
    out = []
    for item in data:
        labels = (item.get("Config") or {}).get("Labels") or {}
        state = item.get("State") or {}
        health = (state.get("Health") or {}).get("Status", "")
        ports = set()
        for bindings in ((item.get("HostConfig") or {}).get("PortBindings") or {}).values():
            for b in bindings or []:
                if str(b.get("HostPort", "")).isdigit():
                    ports.add(int(b["HostPort"]))
        out.append(Container(
            service=labels.get("com.docker.compose.service", ""),
            id=item.get("Id", "")[:12],
            name=item.get("Name", "").lstrip("/"),
            status=state.get("Status", "unknown"),
            health=health,
            restarts=int(item.get("RestartCount", 0)),
            started_at=parse_docker_time(state.get("StartedAt", "")),
            exit_code=int(state.get("ExitCode", 0)),
            oom_killed=bool(state.get("OOMKilled", False)),
            image=(item.get("Config") or {}).get("Image", ""),
            host_ports=tuple(sorted(ports)),
            image_id=item.get("Image", ""),
            config_hash=labels.get("com.docker.compose.config-hash", ""),
            release=release_of(labels.get("com.docker.compose.project.config_files", "")),
        ))
    return tuple(sorted(out, key=lambda c: c.service))


def release_of(config_files: str) -> str:
    """The release id in a compose file path ``<root>/releases/<id>/docker-compose.yml`` ("" if none)."""
    m = re.search(r"/releases/([^/,]+)/[^/,]+$", config_files.split(",")[0].strip())
    return m.group(1) if m else ""


def parse_listening_ports(proc_net_tcp: str) -> frozenset[int]:
    """Local ports in LISTEN state (0A) from /proc/net/tcp and tcp6."""
    ports = set()
    for line in proc_net_tcp.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] == "sl" or ":" not in parts[1]:
            continue
        if parts[3] == "0A":
            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return frozenset(ports)


def parse_df_free_bytes(line: str) -> int | None:
    """Last line of ``df -Pk``: the 4th column is available 1K blocks."""
    parts = line.split()
    if len(parts) >= 4 and parts[3].isdigit():
        return int(parts[3]) * 1024
    return None


def _version(text: str) -> str | None:
    text = text.strip()
    m = re.search(r"\d+\.\d+(\.\d+)?", text)
    if "ERROR" in text or not m or len(text.splitlines()) > 1:
        return None
    return text.lstrip("v")


def parse_preflight(text: str) -> HostFacts:
    s = split_sections(text)
    docker_raw = s.get("docker", "").strip()
    docker_version = _version(docker_raw)
    images = [line.split(" ") + [""] for line in s.get("images", "").splitlines() if " " in line]
    current_images = [line.split(" ") + [""] for line in s.get("current_images", "").splitlines() if " " in line]
    try:
        runtimes = tuple(sorted(json.loads(s.get("runtimes", "{}") or "{}")))
    except json.JSONDecodeError:
        runtimes = ()
    current = s.get("current", "").strip()
    return HostFacts(
        docker_version=docker_version,
        docker_error=None if docker_version else (docker_raw or "docker did not answer"),
        compose_version=_version(s.get("compose", "")),
        runtimes=runtimes,
        free_disk_bytes=parse_df_free_bytes(s.get("disk", "").strip()),
        listening_ports=parse_listening_ports(s.get("ports", "")),
        images_present=frozenset(name for state, name, *_ in images if state == "present"),
        images_missing=frozenset(name for state, name, *_ in images if state == "missing"),
        current_release=current.rsplit("/", 1)[-1] if current else None,
        releases=tuple(line.strip() for line in s.get("releases", "").splitlines() if line.strip()),
        activations=parse_activations(s.get("audit", "")),
        unrestored=parse_unrestored(s.get("audit", "")),
        containers=parse_containers(s.get("containers", "")),
        image_ids={name: rest[0] for state, name, *rest in current_images + images
                   if state == "present" and rest[0]},
        current_hashes=parse_live(s.get("current_live", "")),
        release_key=parse_release_key(s.get("release-key", "")),
        secret_values=parse_env_values(s.get("secret-values", "")),
    )


def parse_live(text: str) -> dict[str, str]:
    """A release's ``live.txt`` (``commands.record_live``): service -> the config hash it went live with."""
    return {parts[0]: parts[1] for parts in (line.split() for line in text.splitlines()) if len(parts) == 3}


def _hashes(text: str) -> dict[str, str]:
    """``docker compose config --hash '*'``: one ``service hash`` a line."""
    return dict(line.split(None, 1) for line in text.splitlines() if len(line.split()) == 2)


_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_ENV_LINE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*='([^']+)'$")


def parse_release_key(text: str) -> bytes | None:
    """The release key file's text (64 hex digits) -> its 32 bytes; None when missing or malformed."""
    text = text.strip()
    return bytes.fromhex(text) if _KEY_RE.match(text) else None


def parse_env_values(text: str) -> tuple[str, ...]:
    """The values of ``NAME='value'`` lines (the env files the kit writes), for masking."""
    return tuple(sorted({m.group(1) for line in text.splitlines() if (m := _ENV_LINE_RE.match(line))}))


def parse_activations(audit_lines: str) -> tuple[str, ...]:
    """Release ids that went live, oldest first, from audit log lines (bad lines are skipped)."""
    out = []
    for line in audit_lines.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (isinstance(entry, dict) and entry.get("result") == "ok"
                and entry.get("action") in ("deploy", "rollback") and entry.get("release")):
            out.append(str(entry["release"]))
    return tuple(out)


def parse_unrestored(audit_lines: str) -> str | None:
    """The release a failed deploy or rollback could not put back (its line says ``restore_result:
    failed``), unless a later deploy or rollback went live."""
    out = None
    for line in audit_lines.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict) or entry.get("action") not in ("deploy", "rollback"):
            continue
        if entry.get("result") == "ok":
            out = None
        elif entry.get("restore_result") == "failed" and entry.get("restore"):
            out = str(entry["restore"])
    return out


def parse_lock(text: str) -> tuple[bool, dict]:
    """Output of the lock script -> (acquired, holder info)."""
    lines = text.strip().splitlines()
    if lines and lines[0] == "ACQUIRED":
        return True, {}
    try:
        holder = json.loads("\n".join(lines[1:])) if len(lines) > 1 else {}
    except json.JSONDecodeError:
        holder = {"raw": "\n".join(lines[1:])[:200]}
    return False, holder if isinstance(holder, dict) else {}


def parse_cat_files(text: str) -> dict[str, bytes | None]:
    import base64

    out: dict[str, bytes | None] = {}
    current = None
    chunks: list[str] = []
    for line in text.splitlines() + ["==sparkkit:file:=="]:
        if line.startswith("==sparkkit:file:") and line.endswith("=="):
            if current is not None:
                body = "".join(chunks)
                out[current] = None if body == "!missing" else base64.b64decode(body)
            current = line[len("==sparkkit:file:"):-2]
            chunks = []
        else:
            chunks.append(line.strip())
    return out


def parse_hashed_up(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """Output of ``compose_up_hashed`` -> (service -> config hash, image -> id)."""
    s = split_sections(text)
    hashes = _hashes(s.get("hashes", ""))
    images = dict(line.split(None, 1) for line in s.get("images", "").splitlines() if len(line.split()) == 2)
    return hashes, images
