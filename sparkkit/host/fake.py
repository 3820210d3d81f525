"""A scriptable fake host for tests and fault injection (as httpx ships ``MockTransport``).

    host = FakeHost(script=[("==sparkkit:docker==", preflight_text), ("ACQUIRED", "ACQUIRED\\n")],
                    fail_at=7)
    HostOps(host, cfg, ...).deploy(release)
    host.commands  # every command line, in order

Answers come from the first script entry whose pattern is found in the command line (the
``shlex.join`` of the argv, as the SSH executor sends it); a command no entry matches succeeds
with no output. An answer is a ``Result``, a string (stdout, exit 0), or a callable that gets the
``Ran`` record and returns either (for answers that depend on what ran before).

Faults, counted over every command from 1, so a test can walk one through every step:
``fail_at=N`` the Nth command fails, with exit code ``fail_with`` (an int: ``RemoteCommandError``
when checked, as for a real failure) or by raising it (an exception: a timeout's
``OperationError``, a ``KeyboardInterrupt`` for Ctrl-C, ...); ``drop_at=N`` the connection drops
during the Nth command (``ConnectionLost``, as the SSH executor raises), and the next command
reconnects; ``unreachable=True`` no connection can be opened at all (``HostUnreachable``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

from sparkkit.errors import ConnectionLost, HostUnreachable, RemoteCommandError
from sparkkit.host.executor import Result


@dataclass(frozen=True, kw_only=True)
class Ran:
    """One command as the fake host received it."""

    number: int  # counted from 1 over the executor's life
    argv: tuple[str, ...]
    line: str  # shlex.join(argv)
    stdin_bytes: int
    stdin: bytes
    pty: bool
    timeout_s: float
    fault: str | None = None  # "fail" or "drop" where the script put a fault on this command


Answer = Union[Result, str, Callable[[Ran], Union[Result, str]]]


@dataclass
class FakeHost:
    """An ``Executor`` that runs nothing: it answers from a script and records what it was asked."""

    is_local = False  # a class attribute, not a field

    script: Sequence[tuple[str, Answer]] = ()
    fail_at: int | None = None
    fail_with: int | BaseException = 1
    drop_at: int | None = None
    unreachable: bool = False
    host_name: str = "fake"
    ran: list[Ran] = field(default_factory=list)
    forwarded: list[tuple[str, int]] = field(default_factory=list)  # (remote_host, remote_port)
    notices: list[str] = field(default_factory=list)
    round_trips: int = 0
    connects: int = 0
    dropped: int = 0
    closed: int = 0  # close() calls
    _connected: bool = False
    _lost: bool = False  # the last connection dropped: the next one says so in notices

    @property
    def commands(self) -> list[str]:
        """Every command line run, in order."""
        return [r.line for r in self.ran]

    def open(self) -> None:
        if self._connected:
            return
        if self.unreachable:
            raise HostUnreachable(f"{self.host_name}: cannot connect (fake host, unreachable)")
        if self._lost:
            self.notices.append(f"{self.host_name}: the SSH connection had dropped; reconnected")
        self._connected, self._lost = True, False
        self.connects += 1

    def run(self, argv: Sequence[str], *, stdin: bytes = b"", check: bool = True,
            timeout_s: float = 120.0, pty: bool = False) -> Result:
        self.open()
        self.round_trips += 1
        number = len(self.ran) + 1
        fault = "drop" if number == self.drop_at else "fail" if number == self.fail_at else None
        line = shlex.join(argv)
        ran = Ran(number=number, argv=tuple(argv), line=line, stdin_bytes=len(stdin), stdin=bytes(stdin),
                  pty=pty, timeout_s=timeout_s, fault=fault)
        self.ran.append(ran)
        if fault == "drop":
            self._connected, self._lost = False, True
            self.dropped += 1
            raise ConnectionLost(f"{self.host_name}: SSH connection lost during: {line[:200]}")
        if fault == "fail" and isinstance(self.fail_with, BaseException):
            raise self.fail_with
        if fault == "fail":
            result = Result(rc=self.fail_with, stdout="", stderr=f"fake failure of command {number}")
        else:
            result = self._answer(ran)
        if check and result.rc != 0:
            raise RemoteCommandError(line[:300], result.rc, result.stderr or result.stdout)
        return result

    def _answer(self, ran: Ran) -> Result:
        for pattern, answer in self.script:
            if pattern in ran.line:
                if callable(answer):
                    answer = answer(ran)
                return Result(rc=0, stdout=answer, stderr="") if isinstance(answer, str) else answer
        return Result(rc=0, stdout="", stderr="")

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> int:
        """The port itself: a test serves what the host would on this machine's loopback."""
        self.open()
        self.forwarded.append((remote_host, remote_port))
        return remote_port

    def close(self) -> None:
        self.closed += 1
        self._connected = False
