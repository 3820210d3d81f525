"""The remote worker shell that serves many commands over one SSH channel, and its local end.

Each SSH exec otherwise costs a channel open, an exec request and the login shell's start-up (its
rc files run for every command; on the rehearsal host that alone is ~0.2 s), so the worker pays
those once and each later command costs one network round trip.

The remote end reads framed requests on stdin and writes framed answers on stdout. Request: a
line "<nonce> <command bytes> <stdin bytes>", then the command line (shlex-joined argv, the very
text an exec request would carry) and the stdin bytes. Answer: a line "<nonce> <rc> <stdout bytes>
<stderr bytes>", both outputs, and the nonce again on a line of its own. The nonce is fresh for
each request. The worker checks that it read every byte it was sent (a full $TMPDIR cuts what
`head -c` writes) and exits when it did not; the local end checks the nonce and the byte counts
of every answer. Any mismatch means the stream is out of step: the worker is dropped (the
executor reports a lost connection and the next command starts another), never believed.
`head -c N` of GNU coreutils reads exactly N bytes from a pipe (other heads may read ahead), so
the worker refuses to start without it and the executor falls back.
"""

from __future__ import annotations

import secrets
import select
import time

WORKER_BANNER = "sparkkit-worker 2"
WORKER_SCRIPT = f"""
head --version 2>/dev/null | grep -q GNU || {{ echo "no GNU head"; exit 97; }}
t=$(mktemp -d "${{TMPDIR:-/tmp}}/sparkkit-worker.XXXXXX") || exit 98
trap 'rm -rf "$t"' EXIT
trap 'exit 1' HUP INT TERM PIPE
echo "{WORKER_BANNER}"
short() {{ echo "sparkkit-worker: short request ($1)" >&2; exit 96; }}
while IFS=' ' read -r nonce n_cmd n_in; do
  head -c "$n_cmd" > "$t/cmd" && [ "$(wc -c < "$t/cmd")" -eq "$n_cmd" ] || short command
  : > "$t/in"
  if [ "$n_in" -gt 0 ]; then
    head -c "$n_in" > "$t/in" && [ "$(wc -c < "$t/in")" -eq "$n_in" ] || short stdin
  fi
  sh "$t/cmd" < "$t/in" > "$t/out" 2> "$t/err"
  rc=$?
  printf '%s %s %s %s\n' "$nonce" "$rc" "$(wc -c < "$t/out")" "$(wc -c < "$t/err")"
  cat "$t/out" "$t/err"
  printf '%s\n' "$nonce"
done
"""


class FramingError(Exception):
    """The worker's answer is not the answer to this request: the stream is out of step."""


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
        nonce = secrets.token_hex(8).encode()
        self.chan.sendall(nonce + f" {len(command)} {len(stdin)}\n".encode() + command + stdin)
        head = self.line(deadline).split()
        if len(head) != 4 or head[0] != nonce or not all(x.isdigit() for x in head[2:]):
            raise FramingError(f"unexpected answer line {bytes(b' '.join(head))[:80]!r}")
        try:
            rc = int(head[1])
        except ValueError:
            raise FramingError(f"unexpected exit status {head[1][:20]!r}") from None
        out, err = self.exactly(int(head[2]), deadline), self.exactly(int(head[3]), deadline)
        if self.line(deadline) != nonce:
            raise FramingError("the answer did not end where its byte counts said")
        return rc, out, err

    def close(self) -> None:
        self.chan.close()
