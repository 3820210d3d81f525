"""The one seam that touches hosts: run an argv over SSH, with bytes on stdin.

Only this module imports Fabric and Paramiko. Every remote command is an argv list, joined with
``shlex.join`` here and nowhere else, so no inventory value reaches a shell unquoted.

Commands run through one remote worker shell per connection (``WORKER_SCRIPT``): each SSH exec
otherwise costs a channel open, an exec request and the login shell's start-up (its rc files run
for every command; on the rehearsal host that alone is ~0.2 s), so the worker pays those once and
each later command costs one network round trip. Where the worker cannot start, each command
gets its own channel as before.
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
from typing import Protocol, Sequence

from sparkkit.inventory.model import SshSettings
from sparkkit.errors import ConnectionLost, HostUnreachable, OperationError, RemoteCommandError

# a connection that stops answering (a cut link) is dropped after about this long, not after the
# kernel's 15-minute retransmission timeout: TCP keepalive probes plus TCP_USER_TIMEOUT
DEAD_AFTER_S = 20


@dataclass(frozen=True, kw_only=True)
class Result:
    rc: int
    stdout: str
    stderr: str


class Executor(Protocol):
    def run(self, argv: Sequence[str], *, stdin: bytes = b"", check: bool = True,
            timeout_s: float = 120.0, pty: bool = False) -> Result: ...

    def close(self) -> None: ...


class HostKeyError(OperationError):
    """The host's key is unknown (and not accepted) or has changed."""


def fingerprint(key) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# The remote end of the worker: framed requests on stdin, framed answers on stdout. Request: a
# line "<command bytes> <stdin bytes>", then the command line (shlex-joined argv, the very text
# an exec request would carry) and the stdin bytes. Answer: a line "<rc> <stdout bytes> <stderr
# bytes>", then both outputs. `head -c N` of GNU coreutils reads exactly N bytes from a pipe (other
# heads may read ahead), so the worker refuses to start without it and the executor falls back.
WORKER_BANNER = "sparkkit-worker 1"
WORKER_SCRIPT = f"""
head --version 2>/dev/null | grep -q GNU || {{ echo "no GNU head"; exit 97; }}
t=$(mktemp -d "${{TMPDIR:-/tmp}}/sparkkit-worker.XXXXXX") || exit 98
trap 'rm -rf "$t"' EXIT
trap 'exit 1' HUP INT TERM PIPE
echo "{WORKER_BANNER}"
while IFS=' ' read -r n_cmd n_in; do
  head -c "$n_cmd" > "$t/cmd"
  if [ "$n_in" -gt 0 ]; then head -c "$n_in" > "$t/in"; else : > "$t/in"; fi
  sh "$t/cmd" < "$t/in" > "$t/out" 2> "$t/err"
  rc=$?
  printf '%s %s %s\n' "$rc" "$(wc -c < "$t/out")" "$(wc -c < "$t/err")"
  cat "$t/out" "$t/err"
done
"""


class _Worker:
    """The local end of one remote worker shell: one SSH channel, one command at a time."""

    def __init__(self, chan):
        self.chan = chan
        self.buf = bytearray()

    def _fill(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError
        readable, _, _ = select.select([self.chan], [], [], min(1.0, max(0.0, deadline - time.monotonic())))
        while self.chan.recv_stderr_ready():  # the worker's own stderr (the login shell's noise): drained,
            self.chan.recv_stderr(65536)  # so it never holds the channel's window shut
        if readable or self.chan.recv_ready():
            data = self.chan.recv(262144)
            if not data:
                raise EOFError
            self.buf += data
        elif self.chan.closed or self.chan.eof_received:
            raise EOFError

    def line(self, deadline: float) -> bytes:
        while b"\n" not in self.buf:
            self._fill(deadline)
        i = self.buf.index(b"\n")
        out = bytes(self.buf[:i])
        del self.buf[:i + 1]
        return out

    def exactly(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def call(self, command: bytes, stdin: bytes, deadline: float) -> tuple[int, bytes, bytes]:
        self.chan.sendall(f"{len(command)} {len(stdin)}\n".encode() + command + stdin)
        head = self.line(deadline).split()
        rc, n_out, n_err = (int(x) for x in head)
        return rc, self.exactly(n_out, deadline), self.exactly(n_err, deadline)

    def close(self) -> None:
        self.chan.close()


@dataclass
class SshExecutor:
    """One SSH connection (Fabric) per kit command; each ``run`` is one channel on it.

    A dropped connection fails the command in flight with ``ConnectionLost`` (its effect on the host
    is unknown, so it is never retried here); the next command opens a new connection, so the caller
    can restore the host and release its lock. ``pty=True`` gives the command a terminal, so that it
    dies (SIGHUP) when the connection drops or the kit is interrupted, instead of running on unseen.
    """

    settings: SshSettings
    host_name: str
    notices: list[str] = field(default_factory=list)
    round_trips: int = 0
    connects: int = 0
    dropped: int = 0  # connections that were lost mid-command (a fleet tells 'lost' from 'failed')
    use_worker: bool = True  # False: one channel per command (the fallback, also for comparison)
    _conn: object = None
    _forwards: list = field(default_factory=list)
    _worker: _Worker | None = None
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
        client = conn.client
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
        try:
            conn.open()
        except HostKeyError:
            raise
        except paramiko.BadHostKeyException as exc:
            raise HostKeyError(
                f"{self.host_name}: the host key of {self.settings.address} has CHANGED (now "
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

    def _start_worker(self, conn) -> _Worker | None:
        """The connection's worker shell, started on first use; None where it cannot run."""
        if self._worker is not None or self._worker_failed:
            return self._worker
        try:
            chan = conn.client.get_transport().open_session()
            chan.exec_command(shlex.join(["sh", "-c", WORKER_SCRIPT]))
            worker = _Worker(chan)
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

    def _run_in_worker(self, worker: _Worker, command: str, stdin: bytes, timeout_s: float):
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
        conn = self._connection()
        transport = conn.client.get_transport()
        transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        self._forwards.append(server)

        def serve() -> None:
            while True:
                try:
                    sock, peer = server.accept()
                except OSError:
                    return
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on small writes
                try:
                    chan = transport.open_channel("direct-tcpip", (remote_host, remote_port), peer)
                except Exception:
                    sock.close()
                    continue
                threading.Thread(target=_pump, args=(sock, chan), daemon=True).start()

        threading.Thread(target=serve, daemon=True, name=f"forward-{remote_port}").start()
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


def _pump(sock: socket.socket, chan) -> None:
    """Copy bytes both ways between a local socket and an SSH channel until either side closes."""
    try:
        while True:
            readable, _, _ = select.select([sock, chan], [], [], 30)
            if sock in readable:
                data = sock.recv(65536)
                if not data:
                    break
                chan.sendall(data)
            if chan in readable:
                data = chan.recv(65536)
                if not data:
                    break
                sock.sendall(data)
    except OSError:
        pass
    finally:
        chan.close()
        sock.close()
