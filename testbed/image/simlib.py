"""Shared code for the sparkkit rehearsal stand-in servers (stdlib only).

Every stand-in is a tiny ThreadingHTTPServer that:
  * binds 0.0.0.0 (unless told otherwise) and serves a handful of GET routes,
  * exits 0 at once on SIGTERM/SIGINT (so `docker stop` is fast),
  * logs one line per request except for health/probe paths (quiet logs),
  * honours the fault-injection environment variables:
      SIM_STARTUP_DELAY_S=N   health endpoints answer 503 for the first N seconds
      SIM_NEVER_HEALTHY=1     health endpoints answer 503 forever
      SIM_EXIT_AFTER_S=N      the process dies with exit code 1 after N seconds,
                              printing "EngineDeadError: simulated crash" to stderr
"""
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STARTED = time.monotonic()

# Paths that are polled by health checks / probes: never logged.
QUIET_PATHS = {"/health", "/healthz", "/api/version", "/api/tags", "/v1/models"}


def log(message, err=False):
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


def healthy():
    """False while SIM_STARTUP_DELAY_S has not elapsed, or if SIM_NEVER_HEALTHY=1."""
    if os.environ.get("SIM_NEVER_HEALTHY") == "1":
        return False
    delay = float(os.environ.get("SIM_STARTUP_DELAY_S") or 0)
    return time.monotonic() - STARTED >= delay


def _on_signal(signum, _frame):
    log(f"INFO sim received {signal.Signals(signum).name}, exiting")
    os._exit(0)


def _crash():
    log("EngineDeadError: simulated crash", err=True)
    os._exit(1)


def install_process_behaviour():
    """Signal handlers and the SIM_EXIT_AFTER_S crash timer."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    exit_after = os.environ.get("SIM_EXIT_AFTER_S")
    if exit_after:
        timer = threading.Timer(float(exit_after), _crash)
        timer.daemon = True
        timer.start()


class Response:
    """What a route returns: status plus a body (dict/list -> JSON, str -> text)."""

    def __init__(self, status=200, body=b"", content_type=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":")).encode()
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            body = body.encode()
            content_type = content_type or "text/plain; charset=utf-8"
        self.status = status
        self.body = body
        self.content_type = content_type


def health_response(ok_body="", bad_body=""):
    """200 with ok_body when healthy(), else 503 with bad_body."""
    return Response(200, ok_body) if healthy() else Response(503, bad_body)


class Handler(BaseHTTPRequestHandler):
    server_version = "sim/0"
    get_routes = {}   # path -> callable(query: dict) -> Response
    post_routes = {}  # path -> callable(payload) -> Response

    def _send(self, resp):
        self.send_response(resp.status)
        if resp.content_type:
            self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def _dispatch(self, routes, arg_fn):
        url = urlsplit(self.path)
        route = routes.get(url.path)
        if route is None:
            self._send(Response(404, {"error": "not found (sim)", "path": url.path}))
            return
        try:
            self._send(route(arg_fn(url)))
        except Exception as exc:  # keep the server alive, report the error
            self._send(Response(500, {"error": f"{type(exc).__name__}: {exc}"}))

    def do_GET(self):
        self._dispatch(self.get_routes, lambda url: parse_qs(url.query))

    do_HEAD = do_GET

    def do_POST(self):
        def payload(_url):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw or b"{}")
            except ValueError:
                return {}
        self._dispatch(self.post_routes, payload)

    def log_message(self, fmt, *args):
        if urlsplit(getattr(self, "path", "")).path in QUIET_PATHS:
            return
        log(f"{self.address_string()} {fmt % args}")


def serve(port, get_routes, banner, host="0.0.0.0", post_routes=None):
    """Run the server forever (until a signal or the crash timer ends the process)."""
    install_process_behaviour()
    handler = type("RouteHandler", (Handler,), {
        "get_routes": dict(get_routes),
        "post_routes": dict(post_routes or {}),
    })
    try:
        httpd = ThreadingHTTPServer((host, int(port)), handler)
    except OSError as exc:
        log(f"ERROR sim cannot listen on {host}:{port}: {exc}", err=True)
        sys.exit(1)
    httpd.daemon_threads = True
    log(banner)
    httpd.serve_forever()
