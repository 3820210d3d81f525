"""The server's own timing beside the client's, over the same window. Pure: expositions and records in.

vLLM: /metrics is read before and after each suite (``probe.runner``); the window is the
difference (after - before) of each histogram's ``_sum`` and ``_count``, so its means cover exactly
the requests of that suite (its warmups included), whatever ran before. The families are the
real vLLM ones (``vllm/v1/metrics/loggers.py``): ``vllm:time_to_first_token_seconds``,
``vllm:inter_token_latency_seconds`` (older servers: ``vllm:time_per_output_token_seconds``),
``vllm:e2e_request_latency_seconds``, ``vllm:request_queue_time_seconds``,
``vllm:request_prefill_time_seconds``, ``vllm:request_decode_time_seconds``. A family missing on
either side, or whose count went down (the server restarted), gives no figure.

The client's side over the same window: the means of the suite's chat requests (warmups included,
as the server counts them). The delivery gap is client minus server: the TTFT gap is what response
delivery (network, proxies, a loaded host) adds to the first token; the end-to-end gap, to the
whole answer.

Ollama reports its timing in every answer (``total_duration``, ``load_duration``,
``prompt_eval_duration``, ``eval_count``, ``eval_duration``, in ns): ``ollama_timings``.

May import: ``probe.prometheus``, ``probe.arrivals``, ``probe.metrics``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sparkkit.probe.arrivals import DecodeSource
from sparkkit.probe.metrics import summary
from sparkkit.probe.prometheus import Exposition, histogram

FAMILIES: dict[str, tuple[str, ...]] = {
    "ttft": ("vllm:time_to_first_token_seconds",),
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "e2e": ("vllm:e2e_request_latency_seconds",),
    "queue": ("vllm:request_queue_time_seconds",),
    "prefill": ("vllm:request_prefill_time_seconds",),
    "decode": ("vllm:request_decode_time_seconds",),
}


@dataclass(frozen=True, kw_only=True)
class ServerWindow:
    """The server's means over one window (ms); None where it has no such family or no request."""

    requests: int | None  # finished requests in the window (e2e count, else TTFT count)
    ttft_mean_ms: float | None
    itl_mean_ms: float | None  # inter-token latency
    e2e_mean_ms: float | None
    queue_mean_ms: float | None
    prefill_mean_ms: float | None
    decode_mean_ms: float | None
    itl_family: str | None = None  # which family the inter-token latency came from

    @property
    def decode_tok_s(self) -> float | None:
        """1 / the mean inter-token latency."""
        return 1000 / self.itl_mean_ms if self.itl_mean_ms else None

    def to_json(self) -> dict:
        return {**asdict(self), "decode_tok_s": self.decode_tok_s}


def _delta(before: Exposition, after: Exposition, family: str) -> tuple[float, float] | None:
    """(sum, count) added in the window, None when missing or reset."""
    b, a = histogram(before, family), histogram(after, family)
    if a is None or b is None or a.sum is None or b.sum is None or a.count < b.count or a.sum < b.sum:
        return None
    return a.sum - b.sum, a.count - b.count


def window(before: Exposition, after: Exposition) -> ServerWindow | None:
    """The means over the window between two readings; None when neither has a family we read."""
    means: dict[str, float | None] = {}
    counts: dict[str, float] = {}
    itl_family = None
    for key, names in FAMILIES.items():
        means[key] = None
        for name in names:
            got = _delta(before, after, name)
            if got is None:
                continue
            total_s, count = got
            counts[key] = count
            means[key] = total_s / count * 1000 if count > 0 else None
            if key == "itl":
                itl_family = name
            break
    if not counts:
        return None
    requests = counts.get("e2e", counts.get("ttft"))
    return ServerWindow(requests=None if requests is None else int(requests), ttft_mean_ms=means["ttft"],
                        itl_mean_ms=means["itl"], e2e_mean_ms=means["e2e"], queue_mean_ms=means["queue"],
                        prefill_mean_ms=means["prefill"], decode_mean_ms=means["decode"], itl_family=itl_family)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def client_window(records: list[dict]) -> dict:
    """The client's side of a suite's window: its chat requests, warmups included."""
    chats = [r for r in records if "ttft_ms" in r]
    ok = [r for r in chats if r.get("ok")]
    return {"requests": len(chats), "ttft_mean_ms": _mean([r.get("ttft_ms") for r in ok]),
            "latency_mean_ms": _mean([r.get("latency_ms") for r in ok]),
            "decode_tok_s_p50": summary([r.get("decode_tok_s") for r in ok
                                         if r.get("decode_source") == DecodeSource.CLIENT.value])["p50"],
            "bursty": sum(1 for r in ok if r.get("decode_measurable") is False)}


def _gap(client: float | None, server: float | None) -> float | None:
    return None if client is None or server is None else client - server


def timing(server: ServerWindow | None, records: list[dict], *, source: str, error: str | None = None) -> dict:
    """One suite's server-side and client-side timing and the delivery gap, for the report."""
    client = client_window(records)
    s = server.to_json() if server else None
    return {"source": source, "error": error, "server": s, "client": client,
            "ttft_gap_ms": _gap(client["ttft_mean_ms"], s and s["ttft_mean_ms"]),
            "e2e_gap_ms": _gap(client["latency_mean_ms"], s and s["e2e_mean_ms"])}


def with_server_decode(records: list[dict], rows: list[dict], tok_s: float | None) -> None:
    """Give the records the client could not measure the server's decode figure (in place), and
    their rows' decode summaries again. A row is matched by its case (and turn)."""
    if not tok_s:
        return
    changed = False
    for r in records:
        if r.get("ok") and r.get("decode_source") == DecodeSource.LOWER_BOUND.value:
            r["decode_tok_s"], r["decode_source"] = tok_s, DecodeSource.SERVER.value
            changed = True
    if changed:
        for row in rows:
            if "decode_tok_s" in row:
                row.update(decode_row(records, case=row["case"], turn=row.get("turn")))


def decode_row(records: list[dict], *, case: str | None = None, turn: int | None = None) -> dict:
    """A row's decode figures: p50 of the measured records' labelled figures and how many of each."""
    mine = [r for r in records if not r.get("warmup") and r.get("ok") and (case is None or r.get("case") == case)
            and (turn is None or r.get("turn") == turn)]
    sources: dict[str, int] = {}
    for r in mine:
        if r.get("decode_source"):
            sources[r["decode_source"]] = sources.get(r["decode_source"], 0) + 1
    return {"decode_tok_s": summary([r.get("decode_tok_s") for r in mine]), "decode_sources": sources}


def ollama_timings(body: object) -> dict | None:
    """Ollama's own timing from one answer (ms; ``decode_tok_s`` from eval_count / eval_duration);
    None when it sent none."""
    if not isinstance(body, dict):
        return None

    def ns(key: str) -> float | None:
        v = body.get(key)
        return v / 1e6 if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None

    out = {"total_ms": ns("total_duration"), "load_ms": ns("load_duration"),
           "prompt_eval_ms": ns("prompt_eval_duration"), "eval_ms": ns("eval_duration")}
    count = body.get("eval_count")
    out["eval_count"] = count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None
    out["decode_tok_s"] = (out["eval_count"] / out["eval_ms"] * 1000
                           if out["eval_count"] and out["eval_ms"] else None)
    return out if any(v is not None for v in out.values()) else None


def ollama_window(records: list[dict]) -> dict | None:
    """An embeddings suite's server side from Ollama's own timings (``server_timing`` per record)."""
    rows = [r for r in records if r.get("server_timing")]
    if not rows:
        return None
    s_mean = _mean([r["server_timing"].get("total_ms") for r in rows])
    c_mean = _mean([r.get("latency_ms") for r in rows])
    return {"source": "Ollama's answers", "error": None, "requests": len(rows),
            "server": {"requests": len(rows), "e2e_mean_ms": s_mean, "load_mean_ms": _mean([r["server_timing"].get("load_ms") for r in rows])},
            "client": {"requests": len(rows), "latency_mean_ms": c_mean}, "ttft_gap_ms": None,
            "e2e_gap_ms": _gap(c_mean, s_mean)}
