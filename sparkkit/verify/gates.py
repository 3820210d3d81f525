"""Pure decisions of deploy-and-verify: crash facts, per-service metrics, and every gate's verdict.

Decode is judged on one labelled figure per service (``decode_figure``): the client's p50 when the
client measured most requests (``probe.arrivals``), else the server's (vLLM's inter-token latency
over the suite's window), else the p50 of the end-to-end lower bounds. The decode gate and the
decode regression gate say which figure they used; the regression compares figures of the same
source only (a lower bound at or above the limit proves there was none).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from sparkkit.inventory.model import HostConfig
from sparkkit.host.facts import Container
from sparkkit.probe.arrivals import DecodeSource

CHAT_KINDS = ("chat",)  # the suites whose requests the TTFT and decode gates and the regression read


@dataclass(frozen=True, kw_only=True)
class Gate:
    name: str
    service: str  # "host" for host-wide gates
    observed: str
    threshold: str
    passed: bool
    why: str
    figure: str | None = None  # which figure a decode gate used (a DecodeSource value)

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True, kw_only=True)
class CrashFacts:
    service: str
    status: str
    health: str
    restarts_before: int | None
    restarts_after: int | None
    oom_killed: bool
    exit_code: int | None
    signature_hits: tuple[str, ...]  # log lines that matched a crash signature
    last_logs: tuple[str, ...]  # kept for the report when the service crashed

    @property
    def problems(self) -> list[str]:
        out = []
        if self.status == "missing":
            out.append("container missing")
        elif self.status != "running":
            out.append(f"{self.status} (exit code {self.exit_code})")
        if self.oom_killed:
            out.append("OOM-killed")
        if self.restarts_before is not None and self.restarts_after is not None \
                and self.restarts_after > self.restarts_before:
            out.append(f"restarted {self.restarts_after - self.restarts_before} time(s)")
        if self.health == "unhealthy":
            out.append("unhealthy after the suite")
        if self.signature_hits:
            out.append(f"crash signature in the logs: {self.signature_hits[0][:120]}")
        return out

    def to_json(self) -> dict:
        return {**self.__dict__, "problems": self.problems}


def parse_logs(text: str, nonce: str) -> dict[str, str]:
    """Each service's log lines, split at the markers that carry this run's ``nonce``; a marker
    printed by a container (without the nonce) is just a line of its service's log."""
    marker = re.compile(rf"^==sparkkit:logs:{re.escape(nonce)}:(.+)==$")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        m = marker.match(line)
        if m:
            current = sections.setdefault(m.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def crash_facts(*, services: list[str], before: dict[str, Container], after: dict[str, Container],
                logs: dict[str, str], signatures: dict[str, tuple[str, ...]]) -> list[CrashFacts]:
    out = []
    for name in services:
        a, b = after.get(name), before.get(name)
        lines = logs.get(name, "").splitlines()
        patterns = [re.compile(p, re.I) for p in signatures.get(name, ())]
        hits = tuple(line for line in lines if any(p.search(line) for p in patterns))
        if a is None or b is None:
            after_restarts = a.restarts if a else None
        elif a.id == b.id:
            after_restarts = a.restarts
        else:  # recreated during verification: that is a restart too
            after_restarts = b.restarts + 1 + a.restarts
        out.append(CrashFacts(
            service=name, status=a.status if a else "missing", health=(a.health or "-") if a else "-",
            restarts_before=b.restarts if b else None, restarts_after=after_restarts,
            oom_killed=bool(a and a.oom_killed), exit_code=a.exit_code if a else None, signature_hits=hits,
            last_logs=tuple(lines[-15:])))
    return out


def _measured(probe: dict, kinds=CHAT_KINDS) -> list[dict]:
    return [r for res in probe["results"] if res["kind"] in kinds for r in res["records"]
            if not r.get("warmup") and r.get("ok")]


def decode_figure(records: list[dict]) -> tuple[float | None, DecodeSource | None, dict[str, int]]:
    """The service's decode figure over its measured chat records, which one it is, and how many
    records had each kind: the client's p50 when at least half of the records with a figure were
    measured by the client (a record without a ``decode_source`` is the client's, as before the
    label existed); else the p50 of the server's figures; else of the lower bounds."""
    by: dict[DecodeSource, list[float]] = {src: [] for src in DecodeSource}
    for r in records:
        if r.get("decode_tok_s") is None:
            continue
        by[DecodeSource(r.get("decode_source") or DecodeSource.CLIENT.value)].append(r["decode_tok_s"])
    counts = {src.value: len(v) for src, v in by.items() if v}
    total = sum(counts.values())
    if not total:
        return None, None, counts
    if len(by[DecodeSource.CLIENT]) * 2 >= total:
        source = DecodeSource.CLIENT
    elif by[DecodeSource.SERVER]:
        source = DecodeSource.SERVER
    else:
        source = DecodeSource.LOWER_BOUND
    return statistics.median(by[source]), source, counts


def server_side(probe: dict, kinds=CHAT_KINDS) -> dict | None:
    """The server's timing over the service's chat suites, pooled by request count (None without any)."""
    windows = [res["server"] for res in probe["results"] if res["kind"] in kinds and (res.get("server") or {}).get("server")]
    if not windows:
        return None
    out = {}
    for key in ("ttft_mean_ms", "itl_mean_ms", "e2e_mean_ms", "queue_mean_ms", "prefill_mean_ms"):
        pairs = [(w["server"][key], w["server"]["requests"] or 0) for w in windows if w["server"].get(key) is not None]
        weight = sum(n for _, n in pairs)
        out[key] = sum(v * n for v, n in pairs) / weight if weight else None
    gaps = [(w["ttft_gap_ms"], w["server"]["requests"] or 0) for w in windows if w.get("ttft_gap_ms") is not None]
    weight = sum(n for _, n in gaps)
    out["ttft_gap_ms"] = sum(v * n for v, n in gaps) / weight if weight else None
    out["decode_tok_s"] = 1000 / out["itl_mean_ms"] if out["itl_mean_ms"] else None
    return out


def service_metrics(probe: dict) -> dict:
    """Pooled p50s over the measured requests of a service's chat suites (None without any); the
    decode figure with its source; the server's side where it was read."""
    records = _measured(probe)
    ttft = [r["ttft_ms"] for r in records if r.get("ttft_ms") is not None]
    decode, source, counts = decode_figure(records)
    failed = sum(1 for res in probe["results"] for r in res["records"] if not r.get("warmup") and not r.get("ok"))
    out = {"ttft_p50_ms": statistics.median(ttft) if ttft else None,
           "decode_tok_s_p50": decode, "decode_source": source.value if source else None,
           "decode_sources": counts,
           "failed_requests": failed,
           "accuracy": {res["suite"]: res["score"]["accuracy"] for res in probe["results"] if res.get("score")}}
    server = server_side(probe)
    if server is not None:
        out["server"] = server
    return out


_LABELS = {DecodeSource.CLIENT: "client p50", DecodeSource.SERVER: "server, 1 / mean inter-token latency",
           DecodeSource.LOWER_BOUND: "e2e lower bound p50"}


def _decode_note(m: dict) -> str:
    """Which decode figure, and over what: "client p50 of 5 requests", ..."""
    source = DecodeSource(m["decode_source"])
    counts = m.get("decode_sources") or {}
    n = counts.get(source.value, 0)
    others = ", ".join(f"{v} {k}" for k, v in counts.items() if k != source.value)
    why = {DecodeSource.CLIENT: "", DecodeSource.SERVER: "; the client could not measure decode (bursty delivery)",
           DecodeSource.LOWER_BOUND: "; the client could not measure decode (bursty delivery) and the server "
                                     "gave no figure"}[source]
    return f"{_LABELS[source]} ({n} request(s){'; also ' + others if others else ''}){why}"


def _decode_gate(name: str, m: dict, minimum: float) -> Gate:
    source = DecodeSource(m["decode_source"])
    ok = m["decode_tok_s_p50"] >= minimum
    if ok:
        why = "fast enough" if source is not DecodeSource.LOWER_BOUND else "fast enough: even its lower bound is"
    else:
        why = ("decoding too slow" if source is not DecodeSource.LOWER_BOUND
               else "decoding too slow, or delivery: only a lower bound could be measured, and it is below")
    observed = _fmt(m["decode_tok_s_p50"], " tok/s") if source is not DecodeSource.LOWER_BOUND \
        else f">= {m['decode_tok_s_p50']:.1f} tok/s"
    return Gate(name=name, service=m["service"], observed=f"{observed} ({source.value})",
                threshold=f">= {minimum:.0f} tok/s", passed=ok, why=f"{why} — {_decode_note(m)}", figure=source.value)


def _decode_regression(name: str, m: dict, prev: dict, pct: float, release: str) -> Gate:
    """No decode regression: compared with the last pass's figure of the same source."""
    now_src = DecodeSource(m["decode_source"])
    prev_src = DecodeSource(prev.get("decode_source") or DecodeSource.CLIENT.value)
    limit = prev["decode_tok_s_p50"] * (1 - pct / 100)
    threshold = (f">= {limit:.1f} tok/s (-{pct:.0f}% of {prev['decode_tok_s_p50']:.1f} ({prev_src.value}) "
                 f"in {release})")
    observed = f"{_fmt(m['decode_tok_s_p50'], ' tok/s')} ({now_src.value})"
    ok = m["decode_tok_s_p50"] >= limit
    if now_src is prev_src:
        why = "no regression" if ok else "slower decoding than the last pass"
    elif now_src is DecodeSource.LOWER_BOUND and ok:
        why = "no regression: even the lower bound is above the limit"
    else:
        ok, why = True, (f"not compared: the last pass's figure is the {prev_src.value}'s, this run's the "
                         f"{now_src.value}'s")
    return Gate(name=name, service=m["service"], observed=observed, threshold=threshold, passed=ok,
                why=f"{why} — {_decode_note(m)}", figure=now_src.value)


def _not_run_note(probe: dict) -> str:
    """" (N not run)" when the service stopped answering and N measured requests were not sent."""
    n = sum(1 for res in probe["results"] for r in res["records"]
            if not r.get("warmup") and r.get("result") == "not run")
    return f" ({n} not run)" if n else ""


def _fmt(value, unit="") -> str:
    if value is None:
        return "-"
    return f"{value:.1f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def evaluate(*, cfg: HostConfig, probes: list[dict], headroom_gib: float | None, crashes: list[CrashFacts],
             previous: dict | None) -> list[Gate]:
    """Every gate: memory headroom, zero crashes, zero failed requests, per-service performance,
    accuracy and quality, and no regression against the last release that passed on this host."""
    hg = cfg.gates
    gates: list[Gate] = []
    if headroom_gib is None:
        gates.append(Gate(name="memory headroom", service="host", observed="unknown",
                          threshold=f">= {hg.min_headroom_gib:.1f} GiB", passed=False,
                          why="the host's memory could not be read"))
    else:
        ok = headroom_gib >= hg.min_headroom_gib
        gates.append(Gate(name="memory headroom", service="host", observed=f"{headroom_gib:.1f} GiB",
                          threshold=f">= {hg.min_headroom_gib:.1f} GiB", passed=ok,
                          why="enough memory left" if ok else
                          f"{hg.min_headroom_gib - headroom_gib:.1f} GiB short after the probe suite"))
    crashed = [c for c in crashes if c.problems]
    gates.append(Gate(name="zero crashes", service="host", observed=str(len(crashed)),
                      threshold=f"<= {hg.max_crashes}", passed=len(crashed) <= hg.max_crashes,
                      why="; ".join(f"{c.service}: {', '.join(c.problems)}" for c in crashed) or "no crash"))
    metrics = {p["service"]: service_metrics(p) for p in probes}
    by_service = {p["service"]: p for p in probes}
    failed = sum(m["failed_requests"] for m in metrics.values())
    gates.append(Gate(name="failed requests", service="host", observed=str(failed),
                      threshold=f"<= {hg.max_failed_requests}", passed=failed <= hg.max_failed_requests,
                      why=", ".join(f"{s}: {m['failed_requests']}{_not_run_note(by_service[s])}"
                                    for s, m in metrics.items() if m["failed_requests"]) or "every request succeeded"))
    prev_metrics = (previous or {}).get("metrics", {})
    for probe in probes:
        name = probe["service"]
        svc = cfg.service(name) if any(s.name == name for s in cfg.services) else None
        if svc is None:
            continue
        g, m = svc.gates, metrics[name]
        server_ttft = (m.get("server") or {}).get("ttft_mean_ms")
        if g.ttft_p50_max_ms is not None and g.ttft_source == "server" and server_ttft is not None:
            ok = server_ttft <= g.ttft_p50_max_ms
            gates.append(Gate(name="TTFT (server mean)", service=name, observed=f"{server_ttft:.1f} ms (server)",
                              threshold=f"<= {g.ttft_p50_max_ms:.0f} ms", passed=ok, figure="server",
                              why=("fast enough" if ok else "first tokens too slow") + " — the server's own TTFT "
                                  f"mean (ttft_source: server); the client's p50 was {_fmt(m['ttft_p50_ms'], ' ms')}"))
        elif g.ttft_p50_max_ms is not None and m["ttft_p50_ms"] is not None:
            ok = m["ttft_p50_ms"] <= g.ttft_p50_max_ms
            note = (" — the client's p50: the server's TTFT could not be read (ttft_source: server)"
                    if g.ttft_source == "server" else "")
            gates.append(Gate(name="TTFT p50", service=name, observed=_fmt(m["ttft_p50_ms"], " ms"),
                              threshold=f"<= {g.ttft_p50_max_ms:.0f} ms", passed=ok,
                              why=("fast enough" if ok else "first tokens too slow") + note))
        if g.decode_tok_s_p50_min is not None and m["decode_tok_s_p50"] is not None:
            gates.append(_decode_gate("decode tok/s p50", {**m, "service": name}, g.decode_tok_s_p50_min))
        for suite, minimum in sorted(g.min_accuracy.items()):
            res = next((r for r in probe["results"] if r["suite"] == suite and r.get("score")), None)
            if res is None:
                continue
            score = res["score"]
            ok = (score["accuracy"] or 0) >= minimum
            failing = [r["case"] for r in res["summary"] if r.get("passed") is False]
            gates.append(Gate(name=f"{suite} accuracy", service=name,
                              observed=f"{score['passed']}/{score['total']} ({(score['accuracy'] or 0) * 100:.0f}%)",
                              threshold=f">= {minimum * 100:.0f}%", passed=ok,
                              why="accurate enough" if ok else f"failing: {', '.join(failing[:6])}"))
        if g.quality:
            quality = [q for q in probe["quality"] if q["gate"] != "every request succeeded"]
            bad = [q for q in quality if q["passed"] < q["total"]]
            if quality:
                gates.append(Gate(name="quality gates", service=name,
                                  observed=f"{len(quality) - len(bad)}/{len(quality)}", threshold="all pass",
                                  passed=not bad, why="; ".join(f"{q['gate']}: {q['failures'][0]}" for q in bad)
                                  or "all pass"))
        prev = prev_metrics.get(name)
        if prev and m["ttft_p50_ms"] is not None and prev.get("ttft_p50_ms"):
            limit = prev["ttft_p50_ms"] * (1 + hg.regression_ttft_pct / 100)
            ok = m["ttft_p50_ms"] <= limit
            gates.append(Gate(name="no TTFT regression", service=name, observed=_fmt(m["ttft_p50_ms"], " ms"),
                              threshold=f"<= {limit:.1f} ms (+{hg.regression_ttft_pct:.0f}% of "
                                        f"{prev['ttft_p50_ms']:.1f} in {previous['release']})",
                              passed=ok, why="no regression" if ok else "slower first token than the last pass"))
        if prev and m["decode_tok_s_p50"] is not None and prev.get("decode_tok_s_p50"):
            gates.append(_decode_regression("no decode regression", {**m, "service": name}, prev,
                                            hg.regression_decode_pct, previous["release"]))
    return gates
