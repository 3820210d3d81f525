"""The local executor: run the kit on the host itself (Ansible's ``ansible_connection: local``).

Each argv runs as a process on this machine, as the user the kit runs as, with the kit's
environment; no shell sits in between, so argv items reach the command exactly as the SSH
executor's quoting delivers them there.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Sequence

from sparkkit.errors import OperationError, RemoteCommandError
from sparkkit.host.executor import Result
from sparkkit.host.relay import relay


@dataclass
class LocalExecutor:
    """No connection to open or lose: ``connects`` is 1 once used, ``dropped`` stays 0."""

    is_local = True  # a class attribute, not a field

    host_name: str
    notices: list[str] = field(default_factory=list)
    round_trips: int = 0
    connects: int = 0
    dropped: int = 0
    _forwards: list = field(default_factory=list)

    def open(self) -> None:
        self.connects = max(self.connects, 1)

    def run(self, argv: Sequence[str], *, stdin: bytes = b"", check: bool = True,
            timeout_s: float = 120.0, pty: bool = False) -> Result:
        """``pty`` needs nothing here: the command runs in a process group of its own, killed as a
        whole on a timeout or Ctrl-C, so it does not run on unseen (a kit killed with SIGKILL, which
        runs no code, is the exception: what it started keeps running, as without a pty over SSH)."""
        self.open()
        self.round_trips += 1
        command = shlex.join(argv)
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:  # no such program (or not runnable): what a shell answers
            out, err = b"", f"{argv[0]}: {exc.strerror}\n".encode()
            rc = 127 if isinstance(exc, FileNotFoundError) else 126
        else:
            with proc:
                try:
                    out, err = proc.communicate(stdin, timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    raise OperationError(f"{self.host_name}: command timed out after {timeout_s:.0f}s: "
                                         f"{command[:200]}") from None
                except BaseException:  # Ctrl-C: the command goes with the kit
                    _kill_group(proc)
                    raise
            rc = proc.returncode
        result = Result(rc=rc, stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"))
        if check and rc != 0:
            raise RemoteCommandError(command[:300], rc, result.stderr or result.stdout)
        return result

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> int:
        """The port itself where the service listens on loopback or every address; elsewhere (a
        service bound to one of this machine's other addresses) a relay from a loopback port."""
        if _reachable_on_loopback(remote_host):
            return remote_port
        server = relay(lambda _peer: socket.create_connection((remote_host, remote_port), timeout=15),
                       name=f"relay-{remote_port}")
        self._forwards.append(server)
        return server.getsockname()[1]

    def close(self) -> None:
        for server in self._forwards:
            server.close()
        self._forwards.clear()


def _reachable_on_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address == "localhost"
    return ip.is_loopback or ip.is_unspecified


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the command and whatever it started (``sh -c`` scripts start docker and more)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # something that left the group still holds the pipes
        pass
