"""The remote worker shell that serves many commands over one SSH channel, and its local end.

Each SSH exec otherwise costs a channel open, an exec request and the login shell's start-up (its
rc files run for every command; on the rehearsal host that alone is ~0.2 s), so the worker pays
those once and each later command costs one network round trip.

The remote end reads framed requests on stdin and writes framed answers on stdout. Request: a
line "<command bytes> <stdin bytes>", then the command line (shlex-joined argv, the very text an
exec request would carry) and the stdin bytes. Answer: a line "<rc> <stdout bytes> <stderr
bytes>", then both outputs. `head -c N` of GNU coreutils reads exactly N bytes from a pipe (other
heads may read ahead), so the worker refuses to start without it and the executor falls back.
"""

from __future__ import annotations

import select
import time

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


class Worker:
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
