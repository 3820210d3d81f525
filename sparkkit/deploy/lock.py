"""The host's lock: one run at a time changes a host. Taken with an atomic `mkdir` holding who,
when, what and a token; reentrant within a run; a lock left by a dead kit on this machine is
taken over by its token."""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager

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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_holder(holder: dict, me: str) -> bool:
    """A lock left by a kit on this machine whose process is gone (so it can be taken over safely)."""
    pid = holder.get("pid")
    return holder.get("who") == me and isinstance(pid, int) and pid > 0 and not pid_alive(pid)


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
        info = json.dumps({"who": who(), "pid": os.getpid(), "since": now_iso(), "action": action,
                           "release": release, "token": token})
        with s.stage("lock"):
            result = s.ex.run(cmd.acquire_lock(s.cfg.root, info, break_lock=break_lock))
            acquired, holder = parse_lock(result.stdout)
            if not acquired and stale_holder(holder, who()) and isinstance(holder.get("token"), str):
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
