"""The host's lock: one run at a time changes a host. Taken with an atomic `mkdir` holding who,
when, what, a random token and the holder's process identity; reentrant within a run. A lock is
taken over without --break-lock only on proof that its holder is gone: the same machine, boot and
PID namespace as this run, and the holder's pid dead or reused by another process."""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from typing import Callable

from sparkkit.deploy.session import HostSession, now_iso, who
from sparkkit.errors import OperationError
from sparkkit.host import commands as cmd
from sparkkit.host.facts import parse_lock


class LockHeld(OperationError):
    """Another run holds the lock; ``holder`` is what its lock file says."""

    def __init__(self, host: str, holder: dict):
        self.holder = holder
        super().__init__(
            f"{host}: locked by {holder.get('who', '?')} since {holder.get('since', '?')} "
            f"({holder.get('action', '?')} {holder.get('release') or ''}). If that run is dead, "
            f"rerun with --break-lock")


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot; None when there is no such process)."""
    stat = _read(f"/proc/{pid}/stat")
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name before ")" may hold spaces
    except (IndexError, ValueError):
        return None


def process_identity() -> dict:
    """What proves, later, that this run's process is gone: the machine, the boot, the PID namespace
    (two containers, or two machines, can share a hostname and reuse pids), the pid and its start."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    return {"machine": _read("/etc/machine-id"), "boot": _read("/proc/sys/kernel/random/boot_id"),
            "pidns": pidns, "pid": os.getpid(), "start": start_ticks(os.getpid())}


def stale_holder(holder: dict, me: dict, started: Callable[[int], int | None] = start_ticks) -> bool:
    """The lock's holder is provably gone: it ran in this run's machine, boot and PID namespace, and
    its pid is dead or now another process (``started``: a pid's start time, None when dead)."""
    them = holder.get("process")
    if not isinstance(them, dict) or not isinstance(holder.get("token"), str):
        return False
    if not all(isinstance(them.get(k), str) and them.get(k) and them.get(k) == me.get(k)
               for k in ("machine", "boot", "pidns")):
        return False
    pid = them.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or pid == me.get("pid"):
        return False
    now = started(pid)
    return now is None or now != them.get("start")


class HostLock:
    def __init__(self, session: HostSession):
        self.s = session
        self._depth = 0

    @contextmanager
    def held(self, action: str, release: str | None, *, break_lock: bool):
        """Hold the host's lock (raises LockHeld when another run has it); reentrant, so
        deploy-and-verify can hold it across deploy, verification and rollback while each of those
        takes it too."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        s = self.s
        token = uuid.uuid4().hex
        me = process_identity()
        info = json.dumps({"who": who(), "pid": os.getpid(), "since": now_iso(), "action": action,
                           "release": release, "token": token, "process": me})
        with s.stage("lock"):
            result = s.ex.run(cmd.acquire_lock(s.cfg.root, info, break_lock=break_lock))
            acquired, holder = parse_lock(result.stdout)
            if not acquired and stale_holder(holder, me):
                s.out(f"{s.cfg.name}: the lock was left by a run that died (pid {holder['pid']} on this "
                      f"machine, {holder.get('action', '?')} since {holder.get('since', '?')}); taking it over")
                result = s.ex.run(cmd.acquire_lock(s.cfg.root, info, break_lock=False,
                                                   stale_token=holder["token"]))
                acquired, holder = parse_lock(result.stdout)
        if not acquired:
            raise LockHeld(s.cfg.name, holder)
        if break_lock:
            s.out(f"{s.cfg.name}: lock broken and taken over (--break-lock)")
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            try:
                with s.stage("lock"):
                    s.ex.run(cmd.release_lock(s.cfg.root, token), check=False)
            except OperationError as exc:
                s.out(f"{s.cfg.name}: WARNING: could not release the lock ({exc}); "
                      f"the next run needs --break-lock")
