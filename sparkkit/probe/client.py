"""HTTP probes. Each function returns a record and never raises: failures are counted, not lost."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass

import httpx

from sparkkit.probe.sse import SSEDecoder
from sparkkit.probe.stream import ChatRecord, StreamAccumulator, consume, failed, record_from_message


def make_client(base_url: str, *, timeout_s: float = 120.0, connect_timeout_s: float = 10.0,
                max_connections: int = 32) -> httpx.Client:
    """One client per service: keep-alive connections, no proxies from the environment."""
    return httpx.Client(base_url=base_url, trust_env=False,
                        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
                        limits=httpx.Limits(max_connections=max_connections,
                                            max_keepalive_connections=max_connections))


def _error_text(exc: Exception) -> str:
    name = type(exc).__name__
    text = str(exc) or name
    return f"{name}: {text}" if name not in text else text


def chat(client: httpx.Client, payload: dict, *, path: str = "/v1/chat/completions") -> ChatRecord:
    """A chat completion, streamed when ``payload["stream"]`` is true. Times run from the moment
    the request is handed to the connection (its JSON is encoded before the clock starts)."""
    start = time.perf_counter()
    try:
        if not payload.get("stream"):
            resp = client.post(path, json=payload)
            elapsed = time.perf_counter() - start
            if resp.status_code != 200:
                return failed(f"HTTP {resp.status_code}: {resp.text[:200]}", http_status=resp.status_code,
                              latency_ms=elapsed * 1000)
            return record_from_message(resp.json(), latency_s=elapsed)
        acc = StreamAccumulator()
        decoder = SSEDecoder()
        done = False
        request = client.build_request("POST", path, json=payload)
        start = time.perf_counter()
        resp = client.send(request, stream=True)
        with contextlib.closing(resp):
            if resp.status_code != 200:
                body = resp.read().decode("utf-8", "replace")
                return failed(f"HTTP {resp.status_code}: {body[:200]}", http_status=resp.status_code,
                              latency_ms=(time.perf_counter() - start) * 1000)
            for raw in resp.iter_raw():
                done = consume(acc, decoder.feed(raw), time.perf_counter() - start) or done
            done = consume(acc, decoder.close(), time.perf_counter() - start) or done
        return acc.record(end_s=time.perf_counter() - start, done=done)
    except (httpx.HTTPError, OSError, ValueError) as exc:
        elapsed = (time.perf_counter() - start) * 1000
        partial = ""
        if "acc" in locals() and acc.chunks:
            partial = f" after {acc.chunks} chunk(s)"
        return failed(f"{_error_text(exc)}{partial}", latency_ms=elapsed)


@dataclass(frozen=True, kw_only=True)
class HttpRecord:
    """A plain request: embeddings, web search, health, round trip."""

    ok: bool
    error: str | None
    latency_ms: float | None
    status: int | None
    body: object  # parsed JSON when the answer is JSON, else the text (truncated)

    def to_json(self) -> dict:
        return dict(self.__dict__)


def request(client: httpx.Client, method: str, path: str, *, json_body: dict | None = None,
            params: dict | None = None, expect_json: bool = True) -> HttpRecord:
    start = time.perf_counter()
    try:
        resp = client.request(method, path, json=json_body, params=params)
        elapsed = (time.perf_counter() - start) * 1000
        body: object = resp.text[:2000]
        if expect_json and resp.status_code == 200:
            try:
                body = resp.json()
            except (json.JSONDecodeError, ValueError):
                return HttpRecord(ok=False, error="answer is not JSON", latency_ms=elapsed, status=200, body=body)
        ok = resp.status_code == 200
        return HttpRecord(ok=ok, error=None if ok else f"HTTP {resp.status_code}: {resp.text[:200]}",
                          latency_ms=elapsed, status=resp.status_code, body=body)
    except (httpx.HTTPError, OSError) as exc:
        return HttpRecord(ok=False, error=_error_text(exc), latency_ms=(time.perf_counter() - start) * 1000,
                          status=None, body=None)
