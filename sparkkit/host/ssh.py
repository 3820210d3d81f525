"""The SSH executor: run an argv on a host over one SSH connection, with bytes on stdin.

Only this module imports Fabric and Paramiko. Every remote command is an argv list, joined with
``shlex.join`` here and nowhere else, so no inventory value reaches a shell unquoted.

Commands run through one remote worker shell per connection (``host/worker.py``), so each costs
one network round trip; where the worker cannot start, each command gets its own channel.
"""

from __future__ import annotations

import base64
import hashlib
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from sparkkit.errors import ConnectionLost, HostUnreachable, OperationError, RemoteCommandError
from sparkkit.host.executor import Executor, Result
from sparkkit.host.relay import relay
from sparkkit.host.worker import WORKER_BANNER, WORKER_SCRIPT, Worker
from sparkkit.inventory.model import SshSettings

# Executor and Result live in host/executor.py; still importable from here (deploy/ imports Executor so)
__all__ = ["Executor", "HostKeyError", "Result", "SshExecutor", "fingerprint"]

# a connection that stops answering (a cut link) is dropped after about this long, not after the
# kernel's 15-minute retransmission timeout: TCP keepalive probes plus TCP_USER_TIMEOUT
DEAD_AFTER_S = 20


class HostKeyError(OperationError):
    """The host's key is unknown (and not accepted) or has changed."""


def fingerprint(key) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass
class SshExecutor:
    """One SSH connection (Fabric) per kit command; each ``run`` is one channel on it.

    A dropped connection fails the command in flight with ``ConnectionLost`` (its effect on the host
    is unknown, so it is never retried here); the next command opens a new connection, so the caller
    can restore the host and release its lock. ``pty=True`` gives the command a terminal, so that it
    dies (SIGHUP) when the connection drops or the kit is interrupted, instead of running on unseen.
    """

    is_local = False  # a class attribute, not a field

    settings: SshSettings
    host_name: str
    notices: list[str] = field(default_factory=list)
    round_trips: int = 0
    connects: int = 0
    dropped: int = 0  # connections that were lost mid-command (a fleet tells 'lost' from 'failed')
    use_worker: bool = True  # False: one channel per command (the fallback, also for comparison)
    _conn: object = None
    _forwards: list = field(default_factory=list)
    _worker: Worker | None = None
    _worker_failed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _known_hosts_path(self, conn) -> Path:
        if self.settings.known_hosts_file is not None:
            return self.settings.known_hosts_file
        configured = conn.ssh_config.get("userknownhostsfile")
        first = configured.split()[0] if configured else "~/.ssh/known_hosts"
        return Path(first).expanduser()

    def _connect(self):
        import fabric
        import paramiko

        kwargs: dict = {"banner_timeout": 30, "auth_timeout": 30}
        if self.settings.key_file is not None:
            if not self.settings.key_file.exists():
                raise OperationError(f"{self.host_name}: SSH key {self.settings.key_file} does not exist")
            # the inventory names the key: offer only it (no agent, no ~/.ssh key hunt), one attempt
            kwargs.update(key_filename=[str(self.settings.key_file)], look_for_keys=False, allow_agent=False)
        conn = fabric.Connection(host=self.settings.address, user=self.settings.user,
                                 port=self.settings.port, connect_timeout=15, connect_kwargs=kwargs)
        known_hosts = self._known_hosts_path(conn)
        # every hop of a ProxyJump chain is an SSH connection of its own (Fabric builds one Connection
        # per hop, each trusting any key): each gets the same known_hosts and the same policy
        for client in _clients_of(conn, fabric.Connection):
            self._check_host_keys(client, known_hosts, paramiko)
        try:
            conn.open()
        except HostKeyError:
            raise
        except paramiko.BadHostKeyException as exc:
            hop = "" if exc.hostname in (conn.host, f"[{conn.host}]:{conn.port}") \
                else f" (a ProxyJump hop to {self.settings.address})"
            raise HostKeyError(
                f"{self.host_name}: the host key of {exc.hostname}{hop} has CHANGED (now "
                f"{fingerprint(exc.key)}); refusing to connect. If the host was reinstalled, remove "
                f"its old line from {known_hosts}") from None
        except paramiko.AuthenticationException as exc:
            raise OperationError(f"{self.host_name}: SSH authentication failed for "
                                 f"{conn.user}@{self.settings.address}:{conn.port}: {exc}") from None
        except (OSError, paramiko.SSHException) as exc:
            raise HostUnreachable(f"{self.host_name}: cannot connect to {self.settings.address}:"
                                  f"{conn.port}: {exc}") from None
        _detect_dead_link(conn.client.get_transport().sock)
        self._conn = conn
        self.connects += 1
        return conn

    def _check_host_keys(self, client, known_hosts: Path, paramiko) -> None:
        """Check the server's key against ``known_hosts``: a changed key is always refused (Paramiko
        raises BadHostKeyException for a known host whose key differs); an unknown one is refused,
        or recorded with --accept-new-host-key."""
        if known_hosts.exists():
            client.load_host_keys(str(known_hosts))
        executor = self

        class RecordNewKey(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client, hostname, key):
                known_hosts.parent.mkdir(parents=True, exist_ok=True)
                client.get_host_keys().add(hostname, key.get_name(), key)
                with open(known_hosts, "a", encoding="ascii") as fh:
                    fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
                executor.notices.append(f"accepted new host key for {hostname} ({key.get_name()} "
                                        f"{fingerprint(key)}) and recorded it in {known_hosts}")

        class RefuseNewKey(paramiko.MissingHostKeyPolicy):
            def missing_host_key(self, client, hostname, key):
                raise HostKeyError(
                    f"{executor.host_name}: unknown host key for {hostname} ({key.get_name()} "
                    f"{fingerprint(key)}); not in {known_hosts}. Check the fingerprint, then rerun with "
                    f"--accept-new-host-key (or set ssh_accept_new_host_key: true) to record it")

        client.set_missing_host_key_policy(RecordNewKey() if self.settings.accept_new_host_key else RefuseNewKey())

    def _lost(self, message: str) -> ConnectionLost:
        self.dropped += 1
        return ConnectionLost(message)

    def _connection(self):
        """The open connection; a new one when the last one dropped (said in ``notices``)."""
        if self._conn is not None:
            transport = self._conn.client.get_transport()
            if transport is not None and transport.is_active():
                return self._conn
            self._drop_worker()
            self._conn.close()
            self._conn = None
            self.notices.append(f"{self.host_name}: the SSH connection had dropped; reconnected")
        return self._connect()

    def open(self) -> None:
        """Connect and start the worker now (``run`` does it on first use anyway)."""
        with self._lock:
            conn = self._connection()
            if self.use_worker:
                self._start_worker(conn)

    def run(self, argv: Sequence[str], *, stdin: bytes = b"", check: bool = True,
            timeout_s: float = 120.0, pty: bool = False) -> Result:
        command = shlex.join(argv)
        with self._lock:
            conn = self._connection()
            self.round_trips += 1
            # a command on a pty gets its own channel, so that it is hung up with it
            worker = self._start_worker(conn) if self.use_worker and not pty else None
            if worker is not None:
                rc, out, err = self._run_in_worker(worker, command, stdin, timeout_s)
            else:
                rc, out, err = self._run_in_channel(conn, command, stdin, timeout_s, pty=pty)
        result = Result(rc=rc, stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"))
        if check and rc != 0:
            raise RemoteCommandError(command[:300], rc, result.stderr or result.stdout)
        return result

    def _start_worker(self, conn) -> Worker | None:
        """The connection's worker shell, started on first use; None where it cannot run."""
        if self._worker is not None or self._worker_failed:
            return self._worker
        try:
            chan = conn.client.get_transport().open_session()
            chan.exec_command(shlex.join(["sh", "-c", WORKER_SCRIPT]))
            worker = Worker(chan)
            banner = worker.line(time.monotonic() + 30).decode("utf-8", "replace").strip()
        except Exception:  # noqa: BLE001 - whatever stops the worker, the per-command channels remain
            banner = None
        if banner != WORKER_BANNER:
            self._worker_failed = True
            self.notices.append(f"remote worker shell unavailable ({banner or 'no answer'}); "
                                f"one SSH channel per command")
            return None
        self._worker = worker
        return worker

    def _run_in_worker(self, worker: Worker, command: str, stdin: bytes, timeout_s: float):
        try:
            return worker.call(command.encode(), stdin, time.monotonic() + timeout_s)
        except TimeoutError:
            self._drop_worker()
            raise OperationError(f"{self.host_name}: remote command timed out after "
                                 f"{timeout_s:.0f}s: {command[:200]}") from None
        except Exception as exc:  # noqa: BLE001 - EOF, a bad frame, a dropped connection: the worker is gone
            self._drop_worker()
            raise self._lost(f"{self.host_name}: SSH connection lost during: {command[:200]}"
                             f"{f' ({exc})' if str(exc) else ''}") from None
        except BaseException:  # Ctrl-C mid-command: the worker's answer would come to the next command
            self._drop_worker()
            raise

    def _drop_worker(self) -> None:
        """A worker in an unknown state (timeout, lost): close it; the next command starts another."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def _run_in_channel(self, conn, command: str, stdin: bytes, timeout_s: float, *, pty: bool = False):
        try:
            chan = conn.client.get_transport().open_session(timeout=DEAD_AFTER_S)
        except Exception as exc:  # the connection dropped
            raise self._lost(f"{self.host_name}: SSH connection lost: {exc}") from None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout_s
        try:
            if pty:
                chan.get_pty(term="dumb", width=200)
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            while True:
                if chan.recv_ready():
                    out += chan.recv(65536)
                    continue
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    continue
                # EOF comes after the last data; the exit status may come before it
                if chan.eof_received and chan.exit_status_ready():
                    break
                if chan.closed:
                    if chan.exit_status_ready():
                        break
                    raise self._lost(f"{self.host_name}: SSH connection lost during: {command[:200]}")
                if time.monotonic() > deadline:
                    raise OperationError(f"{self.host_name}: remote command timed out after "
                                         f"{timeout_s:.0f}s: {command[:200]}")
                select.select([chan], [], [], 0.2)
            rc = chan.recv_exit_status()
            if rc == -1:  # paramiko's value for a channel closed without an exit status
                raise self._lost(f"{self.host_name}: SSH connection lost during: {command[:200]}")
        except OperationError:
            raise
        except Exception as exc:
            raise self._lost(f"{self.host_name}: SSH connection lost: {exc}") from None
        finally:  # also on Ctrl-C: closing the channel hangs up a command that has a pty
            chan.close()
        return rc, bytes(out), bytes(err)

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> int:
        """A local port that reaches ``remote_host:remote_port`` as seen from the host, through this
        SSH connection (for service ports bound to the host's loopback). Returns the local port."""
        transport = self._connection().client.get_transport()
        transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = relay(lambda peer: transport.open_channel("direct-tcpip", (remote_host, remote_port), peer),
                       name=f"forward-{remote_port}")
        self._forwards.append(server)
        return server.getsockname()[1]

    def close(self) -> None:
        for server in self._forwards:
            server.close()
        self._forwards.clear()
        self._drop_worker()
        self._worker_failed = False
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def connections(self) -> int:
        return 0 if self._conn is None else 1


def _clients_of(conn, connection_type) -> list:
    """The Paramiko clients of a connection and of every ProxyJump hop before it (a ProxyCommand
    gateway is a string: OpenSSH checks that hop's key itself)."""
    clients = []
    while isinstance(conn, connection_type):
        clients.append(conn.client)
        conn = conn.gateway
    return clients


def _detect_dead_link(sock) -> None:
    """Make the kernel drop a connection whose peer stopped answering within DEAD_AFTER_S."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_AFTER_S * 1000)
    except (AttributeError, OSError):  # not Linux, or not a TCP socket (a proxy command)
        pass
