"""A stateful model of a host, for the fault sweep (tests/test_fault_sweep.py).

``ModelHost.executor(**faults)`` is a ``FakeHost`` whose one answer interprets the kit's own
commands (the builders of ``sparkkit/host/commands.py``, recognised by their script constants and
argv shapes, never by guessing) and keeps the state they change: the kept releases (unpacked from
the uploaded archive), ``current``, each service's container and the release whose compose file
created it, the lock, and the audit log. A fault from the FakeHost (``fail_at``, ``drop_at``)
means the command did not run: the model's state stays as it was; ``drop_after=N`` runs the Nth
command, then drops the connection before its answer comes back.

Every container is running and healthy at once; ``mem_available_kib`` is what the memory facts
report (the gate on headroom passes or fails with it). A command the model does not know fails the
test (``UnknownCommand``), so a new command cannot slip past the sweep unmodelled.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import tarfile
from dataclasses import dataclass, field

from sparkkit.errors import ConnectionLost
from sparkkit.host import commands as cmd
from sparkkit.host.executor import Result
from sparkkit.host.fake import FakeHost, Ran
from sparkkit.host.facts import release_of
from sparkkit.host.memory_facts import MEMORY_FACTS_SCRIPT

OK = Result(rc=0, stdout="", stderr="")


class UnknownCommand(AssertionError):
    """The kit sent a command the model does not interpret."""


@dataclass
class Container:
    release: str  # the release whose compose file created it
    serial: int  # a new number for each container created


@dataclass
class ModelHost:
    root: str
    project: str
    current: str | None = None
    releases: dict[str, str] = field(default_factory=dict)  # id -> release.json, oldest touched first
    containers: dict[str, Container] = field(default_factory=dict)  # service -> its container
    lock: str | None = None  # the holder's info JSON
    audit: list[str] = field(default_factory=list)
    results: dict[str, str] = field(default_factory=dict)
    release_key: str = "5e" * 32  # <root>/release.key, as the preflight prints it
    live: dict[str, str] = field(default_factory=dict)  # release -> its live.txt (``commands.record_live``)
    mem_available_kib: int = 200 * 1024 * 1024
    serial: int = 0
    drop_after: int | None = None  # the connection drops after this command ran, before its answer

    def executor(self, **faults) -> FakeHost:
        return FakeHost(script=[("", self.answer)], **faults)

    def answer(self, ran: Ran) -> Result:
        result = self.run(list(ran.argv), ran.stdin)
        if ran.number == self.drop_after:
            raise ConnectionLost(f"model: SSH connection lost after command {ran.number} ran")
        return result

    # -- what the host looks like ----------------------------------------------------------------
    def running(self) -> dict[str, str]:
        """service -> the release its container was created from."""
        return {name: c.release for name, c in self.containers.items()}

    def services_of(self, release: str) -> list[dict]:
        return json.loads(self.releases[release])["services"]

    def audit_entries(self) -> list[dict]:
        return [json.loads(line) for line in self.audit]

    # -- the interpreter ----------------------------------------------------------------------------
    def run(self, argv: list[str], stdin: bytes = b"") -> Result:
        if argv[:2] == ["sh", "-c"] and len(argv) == 3:
            return self._chain(argv[2])
        if argv[:2] == ["sh", "-c"] and len(argv) >= 4 and argv[3] == "sh":
            return self._script(argv[2], argv[4:], stdin)
        if argv[:2] == ["docker", "compose"]:
            return self._compose(argv)
        if argv[:2] == ["rm", "-f"] and argv[2] == f"{self.root}/current":
            self.current = None
            return OK
        raise UnknownCommand(shlex.join(argv)[:300])

    def _chain(self, line: str) -> Result:
        """``commands.chain``: argvs joined by ``&&``, each run only if those before succeeded."""
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        argvs, current = [], []
        for token in lex:
            if token == "&&":
                argvs.append(current)
                current = []
            else:
                current.append(token)
        argvs.append(current)
        out = []
        for argv in argvs:
            result = self.run(argv)
            out.append(result.stdout)
            if result.rc != 0:
                return Result(rc=result.rc, stdout="".join(out), stderr=result.stderr)
        return Result(rc=0, stdout="".join(out), stderr="")

    def _script(self, script: str, args: list[str], stdin: bytes) -> Result:
        handlers = {
            cmd.PREFLIGHT_SCRIPT: self._preflight,
            cmd.LOCK_SCRIPT: self._lock,
            cmd.LOCKED_SCRIPT: self._locked,
            cmd.UNLOCK_SCRIPT: self._unlock,
            cmd.CLOSING_SCRIPT: self._closing,
            cmd.AUDIT_SCRIPT: self._audit,
            cmd.SWITCH_SCRIPT: self._switch,
            cmd.PRUNE_SCRIPT: self._prune,
            cmd.READ_RELEASE_SCRIPT: self._read_manifest,
            cmd.HASHED_UP_SCRIPT: self._hashed_up,
            cmd.CRASH_LOGS_SCRIPT: self._crash_logs,
            cmd.READ_RESULTS_SCRIPT: self._read_last_pass,
            cmd.WRITE_RESULTS_SCRIPT: self._write_results,
            cmd.RECORD_LIVE_SCRIPT: self._record_live,
            cmd.containers("")[2]: lambda args: Result(rc=0, stdout=self._inspect(), stderr=""),
            cmd.ensure_images([])[2]: lambda args: OK,  # every image is present
            cmd.stop_project("")[2]: self._stop_project,
            MEMORY_FACTS_SCRIPT: self._memory,
        }
        if script == cmd.INSTALL_SCRIPT:
            return self._install(args, stdin)
        if script not in handlers:
            raise UnknownCommand(script[:200])
        return handlers[script](args)

    # -- reads ---------------------------------------------------------------------------------------
    def _preflight(self, args: list[str]) -> Result:
        _root, _project, _runtimes, *images = args
        parts = {
            "disk": "/dev/model 100000000 1000 99999000 1% /", "ports": "",
            "current": f"releases/{self.current}" if self.current else "",
            "releases": "\n".join(reversed(self.releases)), "audit": "\n".join(self.audit[-200:]),
            "docker": "27.5.1", "compose": "2.40.3", "runtimes": '{"runc":{}}',
            "images": "\n".join(f"present {i} sha256:i" for i in images),
            "release-key": self.release_key, "secret-values": "",
            "containers": self._inspect(),
            "current_live": self.live.get(self.current, "").rstrip("\n"),
            "current_images": "\n".join(f"present {i} sha256:i" for i in sorted(
                {line.split()[2] for line in self.live.get(self.current, "").splitlines()} - set(images))),
            "end": ""}
        return Result(rc=0, stdout="".join(f"{cmd.SECTION.format(k)}\n{v}\n" for k, v in parts.items()), stderr="")

    def _inspect(self) -> str:
        items = []
        for name, c in sorted(self.containers.items()):
            spec = next(s for s in self.services_of(c.release) if s["name"] == name)
            items.append({
                "Id": f"{c.serial:012d}", "Name": f"/{self.project}-{name}-1", "RestartCount": 0, "Image": "sha256:i",
                "Config": {"Image": spec["image"], "Labels": {
                    "com.docker.compose.service": name,
                    "com.docker.compose.config-hash": f"{c.release}:{name}",
                    "com.docker.compose.project.config_files": self._compose_file(c.release)}},
                "State": {"Status": "running", "Health": {"Status": "healthy"}, "ExitCode": 0,
                          "StartedAt": "2026-12-01T08:00:00.000000000Z", "OOMKilled": False},
                "HostConfig": {"PortBindings": {}}})
        return json.dumps(items)

    def _read_manifest(self, args: list[str]) -> Result:
        _root, release = args
        if release not in self.releases:
            return Result(rc=4, stdout="", stderr="")
        return Result(rc=0, stdout=self.releases[release], stderr="")

    def _crash_logs(self, args: list[str]) -> Result:
        _project, _since, _tail, nonce = args
        return Result(rc=0, stdout="".join(f"==sparkkit:logs:{nonce}:{name}==\n" for name in sorted(self.containers)),
                      stderr="")

    def _memory(self, args: list[str]) -> Result:
        text = (f"{cmd.SECTION.format('meminfo')}\nMemTotal: {256 * 1024 * 1024} kB\n"
                f"MemAvailable: {self.mem_available_kib} kB\n{cmd.SECTION.format('end')}\n")
        return Result(rc=0, stdout=text, stderr="")

    def _record_live(self, args: list[str]) -> Result:
        _root, release, *rows = args
        if release not in self.releases:
            return Result(rc=1, stdout="", stderr="no such release directory")
        self.live[release] = "".join(f"{a} {b} {c}\n" for a, b, c in zip(rows[0::3], rows[1::3], rows[2::3]))
        return OK

    def _read_last_pass(self, args: list[str]) -> Result:
        return OK

    def _write_results(self, args: list[str]) -> Result:
        _root, release, _passed = args
        self.results[release] = _passed
        return OK

    # -- the lock and the audit log -------------------------------------------------------------
    def _lock(self, args: list[str]) -> Result:
        _root, info, breaking = args
        if breaking == "*" or (breaking and self.lock and breaking in self.lock):
            self.lock = None
        if self.lock is None:
            self.lock = info
            return Result(rc=0, stdout="ACQUIRED\n", stderr="")
        return Result(rc=0, stdout=f"HELD\n{self.lock}\n", stderr="")

    def _locked(self, args: list[str]) -> Result:
        lock_line, then_line = args
        taken = self.run(shlex.split(lock_line))
        out = f"{cmd.SECTION.format('lock')}\n{taken.stdout}"
        if taken.stdout.startswith("ACQUIRED"):
            then = self.run(shlex.split(then_line))
            return Result(rc=then.rc, stdout=out + then.stdout, stderr=then.stderr)
        return Result(rc=0, stdout=out, stderr="")

    def _unlock(self, args: list[str]) -> Result:
        _root, token = args
        if self.lock and token in self.lock:
            self.lock = None
        return OK

    def _closing(self, args: list[str]) -> Result:
        first = self.run(shlex.split(args[0]))
        second = self.run(shlex.split(args[1]))
        return Result(rc=second.rc, stdout=("AUDIT-FAILED\n" if first.rc else "") + second.stdout, stderr="")

    def _audit(self, args: list[str]) -> Result:
        _root, line = args
        if line not in self.audit:
            self.audit.append(line)
        return OK

    # -- releases ------------------------------------------------------------------------------------
    def _install(self, args: list[str], stdin: bytes) -> Result:
        _root, release = args
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(stdin)), mode="r:gz") as tar:
            manifest = tar.extractfile(f"releases/{release}/release.json").read().decode()
        self.releases.pop(release, None)
        self.releases[release] = manifest
        return OK

    def _switch(self, args: list[str]) -> Result:
        _root, release = args
        if release in self.releases:
            self.releases[release] = self.releases.pop(release)  # touched: the newest
        self.current = release
        return OK

    def _prune(self, args: list[str]) -> Result:
        for release in args[1:]:
            self.releases.pop(release, None)
            self.live.pop(release, None)
        return OK

    # -- containers ----------------------------------------------------------------------------------
    def _compose_file(self, release: str) -> str:
        return f"{self.root}/releases/{release}/docker-compose.yml"

    def _up(self, compose_file: str, services: list[str], *, remove_orphans: bool) -> Result:
        release = release_of(compose_file)
        if release not in self.releases:
            return Result(rc=1, stdout="", stderr=f"open {compose_file}: no such file or directory")
        names = {s["name"] for s in self.services_of(release)}
        if remove_orphans:
            self.containers = {k: v for k, v in self.containers.items() if k in names}
        for name in services:
            self.serial += 1
            self.containers[name] = Container(release=release, serial=self.serial)
        return OK

    def _hashed_up(self, args: list[str]) -> Result:
        _project, compose_file, nimg, *rest = args
        images, rest = rest[:int(nimg)], rest[int(nimg):]
        remove_orphans = "--remove-orphans" in rest
        services = [a for a in rest if a != "--remove-orphans"]
        result = self._up(compose_file, services, remove_orphans=remove_orphans)
        if result.rc:
            return result
        release = release_of(compose_file)
        text = "\n".join([cmd.SECTION.format("hashes"),
                          *(f"{s['name']} {release}:{s['name']}" for s in self.services_of(release)),
                          cmd.SECTION.format("images"), *(f"{i} sha256:i" for i in images)])
        return Result(rc=0, stdout=text + "\n", stderr="")

    def _compose(self, argv: list[str]) -> Result:
        # docker compose -p PROJECT -f FILE VERB ...
        compose_file, verb, rest = argv[5], argv[6], argv[7:]
        if verb == "up":
            flags = [a for a in rest if a.startswith("-")]
            return self._up(compose_file, [a for a in rest if not a.startswith("-")],
                            remove_orphans="--remove-orphans" in flags)
        if verb == "down":
            release = release_of(compose_file)
            if release not in self.releases:
                return Result(rc=1, stdout="", stderr=f"open {compose_file}: no such file or directory")
            names = {s["name"] for s in self.services_of(release)}
            self.containers = {k: v for k, v in self.containers.items() if k not in names}
            return OK
        if verb == "logs":
            return Result(rc=0, stdout="model: a log line\n", stderr="")
        raise UnknownCommand(shlex.join(argv)[:300])

    def _stop_project(self, args: list[str]) -> Result:
        self.containers = {}
        return OK
