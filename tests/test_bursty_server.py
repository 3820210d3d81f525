"""A server that delivers in bursts, as real vLLM did on a loaded machine: it decodes at a known
rate but holds the answer back, sends its first token, and 3 ms later all the rest at once, and
keeps vLLM's /metrics histograms of what it really did.
The probe gets a labelled decode figure, never an absurd one, the gate says which figure it used,
and the report shows the server's side beside the client's with the delivery gap."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sparkkit.probe.report import render_probe
from sparkkit.probe.runner import Target, probe_service
from sparkkit.probe.suites import Suite
from sparkkit.verify.gates import evaluate, service_metrics
from tests.test_gates import by_name, cfg

SERVER_TTFT_S = 0.040  # prefill, as the server counts it
ITL_S = 0.005  # the server decodes at 200 tok/s ...
TOKENS = 40  # ... and sends every token at once when the answer is complete
TRUE_TOK_S = 1 / ITL_S


class BurstHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each write leaves at once: the pieces arrive as they are sent

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/metrics" and self.server.metrics:
            self._send(200, self.server.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif self.path == "/health":
            self._send(200, b"", "text/plain")
        else:
            self._send(404, b'{"detail":"Not Found"}', "application/json")

    def do_POST(self):
        json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        start = time.perf_counter()
        time.sleep(SERVER_TTFT_S + (TOKENS - 1) * ITL_S)  # prefill, then every token, held back
        chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
        chunks += [{"choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}
                   for i in range(TOKENS)]
        chunks += [{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                   {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": TOKENS,
                                             "total_tokens": 9 + TOKENS}}]
        body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
        with self.server.lock:  # counted before it is sent, as vLLM does: a /metrics read after the answer sees it
            self.server.served.append(time.perf_counter() - start)
        self.send_response(200)  # the first token, then 3 ms later the rest at once (as a busy host sends)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        first = body.index(b"data: ", body.index(b'"w0 "'))  # the role chunk and the first token
        self.wfile.write(body[:first])
        time.sleep(0.003)
        self.wfile.write(body[first:])

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, OSError):
            self.close_connection = True


class BurstServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, metrics: bool):
        super().__init__(("127.0.0.1", 0), BurstHandler)
        self.metrics, self.served, self.lock = metrics, [], threading.Lock()

    def metrics_text(self) -> str:
        with self.lock:
            n, e2e = len(self.served), sum(self.served)
        label = 'engine="0",model_name="burst"'
        out = []
        for name, total, count in (("vllm:time_to_first_token_seconds", n * SERVER_TTFT_S, n),
                                   ("vllm:inter_token_latency_seconds", n * (TOKENS - 1) * ITL_S, n * (TOKENS - 1)),
                                   ("vllm:e2e_request_latency_seconds", e2e, n),
                                   ("vllm:request_queue_time_seconds", 0.0, n),
                                   ("vllm:request_prefill_time_seconds", n * SERVER_TTFT_S, n)):
            out += [f"# HELP {name} Histogram.", f"# TYPE {name} histogram",
                    f'{name}_bucket{{{label},le="+Inf"}} {float(count)}',
                    f"{name}_sum{{{label}}} {float(total)}", f"{name}_count{{{label}}} {float(count)}"]
        return "\n".join(out) + "\n"


@pytest.fixture(params=[True, False], ids=["with-metrics", "no-metrics"])
def burst(request):
    srv = BurstServer(metrics=request.param)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


SUITE = Suite(name="standard", kind="chat", source="test",
              data={"warmups": 1, "runs": 4, "cases": [{"id": "burst", "prompt": "Say forty words."}]})


def test_a_burst_delivering_server_gets_a_labelled_figure_never_an_absurd_one(burst):
    base = f"http://127.0.0.1:{burst.server_address[1]}"
    probe = probe_service(Target(service="vllm-nemotron", base_url=base, model="burst", suites=("standard",),
                                 metrics_path="/metrics"), {"standard": SUITE}, out=lambda line: None)
    records = [r for r in probe["results"][0]["records"] if not r["warmup"]]
    assert len(records) == 4 and all(r["ok"] for r in records), records
    for r in records:
        # the client saw every token at once: (tokens - 1) / (last - first) would be absurd
        assert r["decode_measurable"] is False and r["arrivals"] <= 2 and r["largest_burst_tokens"] >= TOKENS - 1
        assert r["token_span_ms"] < 50.0  # 3 ms as sent; a loaded machine reads later, never earlier
        if r["token_span_ms"] > 0:  # what (tokens - 1) / (last - first) would have said (about 15,000 tok/s)
            assert (TOKENS - 1) / (r["token_span_ms"] / 1000) > 3 * TRUE_TOK_S
    m = service_metrics(probe)
    gate = by_name(evaluate(cfg=cfg(), probes=[probe], headroom_gib=40.0, crashes=[], previous=None))[
        ("vllm-nemotron", "decode tok/s p50")]
    text = render_probe([probe])
    if burst.metrics:
        assert m["decode_source"] == "server" and m["decode_tok_s_p50"] == pytest.approx(TRUE_TOK_S, rel=0.01)
        assert gate.figure == "server" and gate.observed.endswith("(server)") and gate.passed
        timing = probe["results"][0]["server"]
        assert timing["server"]["requests"] == 5  # the suite's window: its warmup and its 4 runs
        assert timing["server"]["ttft_mean_ms"] == pytest.approx(SERVER_TTFT_S * 1000, rel=0.01)
        # what the client waited beyond the server's first token is delivery: the held-back decode
        assert timing["ttft_gap_ms"] >= (TOKENS - 1) * ITL_S * 1000 * 0.9
        assert "Server-side timing (standard, from vLLM /metrics)" in text and "(server)" in text
    else:
        assert m["decode_source"] == "e2e lower bound"
        assert 0 < m["decode_tok_s_p50"] <= TRUE_TOK_S  # a lower bound: never above the true rate
        assert gate.figure == "e2e lower bound" and gate.observed.startswith(">= ")
        assert "only a lower bound" in gate.why or "even its lower bound" in gate.why
        assert "Server-side timing (standard): not read — /metrics: HTTP 404" in text
        assert "(e2e lower bound)" in text
