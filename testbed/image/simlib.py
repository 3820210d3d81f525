"""Shared code for the sparkkit rehearsal simulators (stdlib only).

Every simulator is a small ThreadingHTTPServer that:
  * speaks HTTP/1.1 with keep-alive; a route answers with a Response (Content-Length)
    or a Stream (Transfer-Encoding: chunked, each piece written and sent at once),
  * exits 0 at once on SIGTERM/SIGINT (so `docker stop` is fast),
  * logs one line per request except for health/probe paths (quiet logs),
  * honours the process-wide environment variables:
      SIM_STARTUP_DELAY_S=N   health endpoints answer 503 for the first N seconds
      SIM_NEVER_HEALTHY=1     health endpoints answer 503 forever
      SIM_EXIT_AFTER_S=N      the process dies with exit code 1 after N seconds,
                              printing "EngineDeadError: simulated crash" to stderr
      SIM_MEMORY_MIB=N        allocate N MiB at start-up, touch every page, hold it
  * and, through Faults, the per-request faults of its "work" endpoint (chat
    completions, embeddings, searches):
      SIM_5XX_RATE=r          the i-th request (1-based) fails with HTTP 500 when
                              floor(i*r) > floor((i-1)*r) (deterministic)
      SIM_HANG_AFTER_REQUESTS=N  requests after the N-th hang forever (health still answers)
      SIM_EXIT_AFTER_REQUESTS=N  after the N-th request is answered, exit 1 with
                              "EngineDeadError: simulated engine death" on stderr
"""
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STARTED = time.monotonic()

# Paths that are polled by health checks / probes / scrapers: never logged.
QUIET_PATHS = {"/health", "/healthz", "/api/version", "/api/tags", "/api/ps", "/v1/models",
               "/metrics"}

_BALLAST = None  # SIM_MEMORY_MIB: held for the life of the process


def log(message, err=False):
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


def env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def healthy():
    """False while SIM_STARTUP_DELAY_S has not elapsed, or if SIM_NEVER_HEALTHY=1."""
    if os.environ.get("SIM_NEVER_HEALTHY") == "1":
        return False
    return time.monotonic() - STARTED >= env_float("SIM_STARTUP_DELAY_S", 0.0)


def sleep_until(deadline):
    """Sleep until the monotonic clock reads `deadline` (no drift: callers pass absolute times)."""
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def hang_forever():
    while True:
        time.sleep(3600)


def die(message):
    """Print message on stderr and end the process with exit code 1 at once."""
    log(message, err=True)
    os._exit(1)


def _on_signal(signum, _frame):
    log(f"INFO sim received {signal.Signals(signum).name}, exiting")
    os._exit(0)


def allocate_ballast(mib):
    """Allocate mib MiB and write a non-zero byte into every 4 KiB page, so the memory is
    really resident (the container's cgroup shows it) rather than merely reserved."""
    global _BALLAST
    size = mib << 20
    _BALLAST = bytearray(size)
    pages = len(range(0, size, 4096))
    _BALLAST[::4096] = bytes(i % 251 + 1 for i in range(pages))
    log(f"INFO sim holding {mib} MiB of memory (SIM_MEMORY_MIB)")


def install_process_behaviour():
    """Signal handlers, the SIM_EXIT_AFTER_S crash timer and the SIM_MEMORY_MIB ballast."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    exit_after = os.environ.get("SIM_EXIT_AFTER_S")
    if exit_after:
        timer = threading.Timer(float(exit_after), die, ["EngineDeadError: simulated crash"])
        timer.daemon = True
        timer.start()
    mib = env_int("SIM_MEMORY_MIB", 0)
    if mib > 0:
        allocate_ballast(mib)


class Faults:
    """Per-request faults for one endpoint family, numbered by arrival (1-based)."""

    def __init__(self):
        self.rate = env_float("SIM_5XX_RATE", 0.0)
        self.hang_after = env_int("SIM_HANG_AFTER_REQUESTS", 0)
        self.exit_after = env_int("SIM_EXIT_AFTER_REQUESTS", 0)
        self._lock = threading.Lock()
        self._arrived = 0
        self._finished = 0

    def arrive(self):
        """Number this request; returns its 1-based index."""
        with self._lock:
            self._arrived += 1
            return self._arrived

    def fails(self, i):
        return self.rate > 0 and math.floor(i * self.rate) > math.floor((i - 1) * self.rate)

    def hangs(self, i):
        return self.hang_after > 0 and i > self.hang_after

    def finished(self):
        """Call once a request's response is completely sent (after-send hook)."""
        with self._lock:
            self._finished += 1
            done = self._finished
        if self.exit_after > 0 and done >= self.exit_after:
            die("EngineDeadError: simulated engine death")


class Response:
    """What a route returns: status plus a body (dict/list -> JSON, str -> text).
    `after` (optional) runs once the response has been sent."""

    def __init__(self, status=200, body=b"", content_type=None, after=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":")).encode()
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            body = body.encode()
            content_type = content_type or "text/plain; charset=utf-8"
        self.status = status
        self.body = body
        self.content_type = content_type
        self.after = after


class Stream:
    """A chunked response: `pieces` yields bytes; each piece goes out as one HTTP chunk the
    moment it is yielded. If the client goes away the generator is closed (GeneratorExit
    at its yield). `after` runs once the whole stream has been sent."""

    def __init__(self, pieces, content_type="text/event-stream", status=200, after=None):
        self.pieces = pieces
        self.content_type = content_type
        self.status = status
        self.after = after


def health_response(ok_body="", bad_body=""):
    """200 with ok_body when healthy(), else 503 with bad_body."""
    return Response(200, ok_body) if healthy() else Response(503, bad_body)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; streams use chunked transfer encoding
    server_version = "sim/1"
    get_routes = {}   # path -> callable(query: dict) -> Response | Stream
    post_routes = {}  # path -> callable(payload) -> Response | Stream
    not_found = None    # callable(method, path) -> Response: a path no route serves
    not_allowed = None  # callable(method, path) -> Response: a route of the other method
    bad_body = None     # callable(raw: bytes) -> Response: a POST body that is no JSON object

    def setup(self):
        super().setup()
        # every SSE event is its own small write: do not let Nagle hold it back
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, resp):
        if isinstance(resp, Stream):
            self._send_stream(resp)
        else:
            self.send_response(resp.status)
            if resp.content_type:
                self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)
            self.wfile.flush()
        if resp.after:
            resp.after()

    def _send_stream(self, stream):
        self.send_response(stream.status)
        self.send_header("Content-Type", stream.content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for piece in stream.pieces:
                if piece:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except Exception as exc:  # client went away (OSError) or a simulator bug
            stream.pieces.close()
            self.close_connection = True
            if not isinstance(exc, OSError):
                log(f"ERROR sim stream failed: {type(exc).__name__}: {exc}", err=True)
            raise OSError("stream aborted") from exc

    def _dispatch(self, routes, arg):
        url = urlsplit(self.path)
        route = routes.get(url.path)
        if route is None:
            other = self.post_routes if routes is self.get_routes else self.get_routes
            if url.path in other and self.not_allowed:
                self._send(self.not_allowed(self.command, url.path))
            elif self.not_found:
                self._send(self.not_found(self.command, url.path))
            else:
                self._send(Response(404, {"error": "not found (sim)", "path": url.path}))
            return
        try:
            resp = route(arg(url))
        except Exception as exc:  # keep the server alive, report the error
            resp = Response(500, {"error": f"{type(exc).__name__}: {exc}"})
        try:
            self._send(resp)
        except OSError:
            self.close_connection = True

    def do_GET(self):
        self._dispatch(self.get_routes, lambda url: parse_qs(url.query))

    do_HEAD = do_GET

    def do_POST(self):
        # Read the body before anything else, so a keep-alive connection stays in step.
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._send(self.bad_body(raw) if self.bad_body else
                       Response(400, {"error": "request body must be a JSON object"}))
            return
        self._dispatch(self.post_routes, lambda _url: payload)

    def log_message(self, fmt, *args):
        if urlsplit(getattr(self, "path", "")).path in QUIET_PATHS:
            return
        log(f"{self.address_string()} {fmt % args}")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # one line instead of a traceback: logs are scanned for crash signatures
        exc = sys.exc_info()[1]
        log(f"WARNING sim connection from {client_address[0]}: {type(exc).__name__}: {exc}")


def serve(port, get_routes, banner, host="0.0.0.0", post_routes=None, not_found=None,
          not_allowed=None, bad_body=None):
    """Run the server forever (until a signal or a fault ends the process). not_found,
    not_allowed and bad_body (optional) shape the answers to requests no route takes."""
    install_process_behaviour()
    handler = type("RouteHandler", (Handler,), {
        "get_routes": dict(get_routes),
        "post_routes": dict(post_routes or {}),
        "not_found": staticmethod(not_found) if not_found else None,
        "not_allowed": staticmethod(not_allowed) if not_allowed else None,
        "bad_body": staticmethod(bad_body) if bad_body else None,
    })
    try:
        httpd = Server((host, int(port)), handler)
    except OSError as exc:
        log(f"ERROR sim cannot listen on {host}:{port}: {exc}", err=True)
        sys.exit(1)
    log(banner)
    httpd.serve_forever()
