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

from sparkkit.deploy.session import HostSession, brief, now_iso, who
from sparkkit.errors import OperationError
from sparkkit.host import commands as cmd
from sparkkit.host.facts import parse_lock, split_sections


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
        self._closing: list[str] | None = None  # the attempt's audit line, written with the unlock

    def close_with(self, audit_argv: list[str]) -> None:
        """Write this audit line when the current holder lets go: in the unlock's round trip at the
        outermost level, alone when an inner (reentrant) holder ends."""
        self._closing = audit_argv

    @contextmanager
    def held(self, action: str, release: str | None, *, break_lock: bool, then: list[str] | None = None):
        """Hold the host's lock (raises LockHeld when another run has it); reentrant, so
        deploy-and-verify can hold it across deploy, verification and rollback while each of those
        takes it too. ``then``: a read (the preflight) run once the lock is ours, in the lock's own
        round trip where it is taken here; yields its output (None without ``then``).

        Every attempt leaves an audit line: a holder that set none with ``close_with`` and did
        not finish (an exception) gets a "failed" (or "interrupted") one, and so does a failed
        round trip taking the lock, whose unlock (this run's token only) is then tried anyway."""
        if self._depth:
            self._depth += 1
            try:
                yield self._read(then, action, release) if then else None
            except BaseException as exc:
                if self._closing is None:
                    self._closing = self.s.audit_argv(action, release, _ended(exc), stage=self.s.current_stage,
                                                      reason=_why(exc))
                raise
            finally:
                self._depth -= 1
                self._flush()
            return
        s = self.s
        token = uuid.uuid4().hex
        me = process_identity()
        info = json.dumps({"who": who(), "pid": os.getpid(), "since": now_iso(), "action": action,
                           "release": release, "token": token, "process": me})
        self._closing = None
        with s.stage("preflight" if then else "lock"):
            try:
                acquire = cmd.acquire_lock(s.cfg.root, info, break_lock=break_lock)
                text = s.ex.run(cmd.locked(acquire, then) if then else acquire, timeout_s=60).stdout
                acquired, holder = parse_lock(split_sections(text).get("lock", "") if then else text)
                if not acquired and stale_holder(holder, me):
                    s.out(f"{s.cfg.name}: the lock was left by a run that died (pid {holder['pid']} on this "
                          f"machine, {holder.get('action', '?')} since {holder.get('since', '?')}); taking it over")
                    result = s.ex.run(cmd.acquire_lock(s.cfg.root, info, break_lock=False,
                                                       stale_token=holder["token"]))
                    acquired, holder = parse_lock(result.stdout)
                    if acquired and then:
                        text = s.ex.run(then, timeout_s=60).stdout
            except BaseException as exc:
                self._closing = s.audit_argv(action, release, _ended(exc), stage=s.current_stage,
                                             reason=_why(exc))
                if s.ex.connects:  # else the command never reached the host: nothing to write or release
                    self._release(token)
                self._closing = None
                raise
        if not acquired:
            try:
                s.audit(action, release, "locked", holder=holder.get("who", "?"))
            except Exception:  # the attempt is refused all the same
                pass
            raise LockHeld(s.cfg.name, holder)
        if break_lock:
            s.out(f"{s.cfg.name}: lock broken and taken over (--break-lock)")
        self._depth = 1
        try:
            yield text if then else None
        except BaseException as exc:
            if self._closing is None:
                self._closing = s.audit_argv(action, release, _ended(exc), stage=s.current_stage, reason=_why(exc))
            raise
        finally:
            self._depth = 0
            self._release(token)

    def _read(self, then: list[str], action: str, release: str | None) -> str:
        try:
            return self.s.ex.run(then, timeout_s=60).stdout
        except BaseException as exc:
            self._closing = self.s.audit_argv(action, release, _ended(exc), stage="preflight", reason=_why(exc))
            raise

    def _flush(self) -> None:
        """An inner holder ended: its audit line now (the outer holder's comes with the unlock)."""
        closing, self._closing = self._closing, None
        if closing:
            try:
                self.s.run_repeatable(closing)
            except Exception as exc:
                self.s.out(f"{self.s.cfg.name}: WARNING: could not write the audit line ({brief(exc)})")

    def _release(self, token: str) -> None:
        """Unlock (and write the attempt's audit line in the same round trip); tried twice."""
        s = self.s
        closing, self._closing = self._closing, None
        unlock = cmd.release_lock(s.cfg.root, token)
        argv = cmd.closing(closing, unlock) if closing else unlock
        try:
            with s.stage("lock"):
                try:
                    out = s.run_repeatable(argv).stdout
                except KeyboardInterrupt:  # Ctrl-C right now: let go of the host all the same, then stop
                    s.out(f"{s.cfg.name}: interrupted (Ctrl-C) while releasing the lock; releasing it all the same")
                    s.run_repeatable(argv)
                    raise
        except Exception as exc:
            s.out(f"{s.cfg.name}: WARNING: could not release the lock ({brief(exc)}); "
                  f"the next run needs --break-lock")
            return
        if closing and "AUDIT-FAILED" in out:
            self._closing = closing
            self._flush()


def _ended(exc: BaseException) -> str:
    return "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"


def _why(exc: BaseException) -> str:
    return "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else brief(exc)
