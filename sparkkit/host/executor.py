"""The executor seam: what every way of running commands on a host offers (SSH, local, fake).

Callers use these attributes and methods plainly; an executor that has no use for one (a local
one never drops a connection) still has it, with a value that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True, kw_only=True)
class Result:
    rc: int
    stdout: str
    stderr: str


class Executor(Protocol):
    host_name: str
    is_local: bool  # True only where commands run on this very machine (NVML can be read directly)
    notices: list[str]  # things the operator should hear about (a new host key, a reconnect)
    round_trips: int  # commands run, for the stage timings of the report and `make bench`
    connects: int  # connections opened; 0 after a HostUnreachable means nothing was touched
    dropped: int  # connections lost mid-command (a fleet tells 'lost' from 'failed')

    def open(self) -> None:
        """Connect now (``run`` does it on first use anyway)."""

    def run(self, argv: Sequence[str], *, stdin: bytes = b"", check: bool = True,
            timeout_s: float = 120.0, pty: bool = False) -> Result:
        """Run one argv with ``stdin`` bytes. Non-zero exit with ``check``: ``RemoteCommandError``;
        past ``timeout_s``: ``OperationError``; the connection dropped: ``ConnectionLost``.
        ``pty``: the command must not outlive the kit (over SSH it gets a terminal)."""

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> int:
        """A port on this machine's loopback that reaches ``remote_host:remote_port`` as the host
        sees it."""

    def close(self) -> None:
        """Close connections and forwards; the executor may be used again after."""
