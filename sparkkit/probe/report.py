"""Console tables laid out like the benchmark report's. Pure: probe results in, text out.

Decode tok/s is (completion_tokens - 1) / (last token - first token): the generation speed once
the first token is out, when the client could measure it; else the server's figure, marked
"(server)", or a lower bound, marked ">=" (``probe.arrivals``). End-to-end tok/s is
completion_tokens / whole request time. A suite with the server's own timing (vLLM /metrics,
Ollama's answers) gets a table of the server's means beside the client's and the delivery gap.
"""

from __future__ import annotations

from tabulate import tabulate


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _rate(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _p50(stat: dict | None):
    return None if not stat else stat.get("p50")


def _tokens(stat: dict | None) -> str:
    return "unknown" if stat is None or stat.get("p50") is None else f"{stat['p50']:.0f}"


def _ok(row: dict) -> str:
    """"3/5", or "3/5 (2 not run)" when the service stopped answering."""
    not_run = row.get("not_run") or 0
    return f"{row['ok']}/{row['n']}" + (f" ({not_run} not run)" if not_run else "")


def _decode(row: dict) -> str:
    """The row's decode p50, marked by its figures' sources: "51.0", "439.0 (server)", ">= 3.0 (e2e
    lower bound)", "48.0 (client 3, server 2)"."""
    value = _p50(row.get("decode_tok_s"))
    sources = row.get("decode_sources") or {}
    if value is None:
        return "-"
    if not sources or set(sources) == {"client"}:
        return f"{value:.1f}"
    if len(sources) == 1:
        (source,) = sources
        return f"{'>= ' if source == 'e2e lower bound' else ''}{value:.1f} ({source})"
    return f"{value:.1f} ({', '.join(f'{k} {v}' for k, v in sources.items())})"


def server_rows(timing: dict) -> list[list[str]]:
    """The server's means beside the client's over one suite's window, with the delivery gap."""
    server, client = timing.get("server") or {}, timing.get("client") or {}

    def row(name, s, c=None, gap=None):
        return [name, _ms(s), "-" if c is None else _ms(c), "-" if gap is None else f"{gap:+.0f} ms"]

    rows = [["requests", str(server.get("requests", "-")), str(client.get("requests", "-")), ""],
            row("TTFT mean", server.get("ttft_mean_ms"), client.get("ttft_mean_ms"), timing.get("ttft_gap_ms")),
            row("end-to-end mean", server.get("e2e_mean_ms"), client.get("latency_mean_ms"), timing.get("e2e_gap_ms"))]
    if "itl_mean_ms" in server:
        rows.insert(2, [
            "inter-token latency mean (decode tok/s)",
            f"{_ms(server.get('itl_mean_ms'))} ({_rate(server.get('decode_tok_s'))})",
            f"client decode p50 {_rate(client.get('decode_tok_s_p50'))}"
            + (f"; {client['bursty']} bursty" if client.get("bursty") else ""), ""])
        rows += [row("queue mean", server.get("queue_mean_ms")), row("prefill mean", server.get("prefill_mean_ms"))]
    if "load_mean_ms" in server:
        rows.append(row("load mean", server.get("load_mean_ms")))
    return [r for r in rows if r[0] == "requests" or any(cell not in ("-", "", "- (-)") for cell in r[1:])]


def _first_error(row: dict) -> str:
    errors = row.get("errors") or []
    return (errors[0][:70] + ("…" if len(errors[0]) > 70 else "")) if errors else ""


def service_tables(probe: dict, fmt: str = "simple", level: str = "###") -> str:
    """One service's tables; ``fmt`` is a tabulate format ("github" for the markdown report)."""
    title = (f"{probe['service']} ({probe['base_url']}, model {probe['model'] or '-'}) — "
             f"round trip p50 {_ms(_p50(probe['rtt_ms']))}")
    parts = [f"== {title} ==" if fmt == "simple" else f"## {title}"]

    def section(heading: str, table: list, head: list[str]) -> None:
        gap = "\n" if fmt == "simple" else "\n\n"  # markdown wants a blank line before a table
        parts.append(f"\n{level} {heading}{gap}" + tabulate(table, head, tablefmt=fmt))

    for res in probe["results"]:
        kind, rows, suite = res["kind"], res["summary"], res["suite"]
        if kind == "chat":
            table = [[r["case"], _ms(_p50(r["ttft_ms"])), _ms((r["ttft_ms"] or {}).get("p90")),
                      _ms(_p50(r["ttfo_ms"])), _decode(r), _rate(_p50(r["e2e_tok_s"])),
                      _tokens(r["completion_tokens"]), _ok(r), _first_error(r)] for r in rows]
            section(f"Latency & Throughput ({suite})", table,
                    ["Test", "TTFT p50", "TTFT p90", "TTFO p50", "decode tok/s p50", "e2e tok/s p50", "tokens p50",
                     "ok", "error"])
        elif kind == "conversation":
            table = [[r["case"], f"Turn {r['turn']}", _ms(_p50(r["ttft_ms"])), _ms(_p50(r["ttfo_ms"])),
                      _growth(r), _ok(r)] for r in rows]
            section(f"Multi-turn TTFT Scaling ({suite})", table,
                    ["Conversation", "Turn", "TTFT p50", "TTFO p50", "Growth", "ok"])
        elif kind == "tools":
            score = res["score"]
            table = [[r["case"], "pass" if r["passed"] else "FAIL", r["expected"], r["called"] or "-", r["reason"]]
                     for r in rows]
            section(f"Tool Calling ({suite}): {score['passed']}/{score['total']} ({score['accuracy'] * 100:.0f}%)",
                    table, ["Case", "Result", "Expected", "Called", "Why"])
        elif kind == "extraction":
            table = [[r["case"], "pass" if r["passed"] else "FAIL", "yes" if r["valid_json"] else "no",
                      f"{r['found']}/{r['expected']} ({r['recall'] * 100:.0f}%)", r["reason"]] for r in rows]
            section(f"Entity Extraction ({suite})", table, ["Case", "Result", "Valid JSON", "Recall", "Note"])
        elif kind == "embeddings":
            table = [[r["case"][:40], ",".join(map(str, r["dimension"])) or "-",
                      "yes" if r["deterministic"] else "no", "yes" if r["distinct"] else "no",
                      _ms(_p50(r["latency_ms"])), _ok(r), _first_error(r)] for r in rows]
            section(f"Embeddings ({suite})", table,
                    ["Text", "Dimension", "Deterministic", "Distinct", "Latency p50", "ok", "error"])
        elif kind == "websearch":
            table = [[r["case"], r["results_min"], _ms(_p50(r["latency_ms"])), _ok(r),
                      _first_error(r)] for r in rows]
            section(f"Web Search ({suite})", table, ["Query", "Results (min)", "Latency p50", "ok", "error"])
        if res.get("server"):
            timing = res["server"]
            if timing.get("server"):
                section(f"Server-side timing ({suite}, from {timing['source']})", server_rows(timing),
                        ["metric", "server", "client", "delivery gap"])
            else:
                parts.append(f"\nServer-side timing ({suite}): not read — {timing.get('error') or 'no figures'}")
        if kind == "health":
            table = [[r["case"], _ms(_p50(r["latency_ms"])), _ok(r), _first_error(r)] for r in rows]
            section("Health", table, ["Endpoint", "Latency p50", "ok", "error"])
    if probe["quality"]:
        table = [[g["gate"], f"{g['passed']}/{g['total']}", "pass" if g["passed"] == g["total"] else "FAIL",
                  (g["failures"][0][:80] if g["failures"] else "")] for g in probe["quality"]]
        section("Quality Gates", table, ["Gate", "Passed", "Result", "First failure"])
    return "\n".join(parts)


def _growth(row: dict) -> str:
    if row["turn"] == 1:
        return "baseline"
    return "-" if row["growth_pct"] is None else f"{row['growth_pct']:+.0f}%"


def render_probe(probes: list[dict]) -> str:
    note = ("\nTTFT: first token of any kind (reasoning counts); TTFO: first content or tool-call token. "
            "decode tok/s = (tokens - 1) / (last token - first token) when the client could measure it "
            "(tokens not delivered in bursts), else the server's figure \"(server)\" or a lower bound "
            "\">= (e2e lower bound)\" = (tokens - 1) / request time; e2e tok/s = tokens / request time. "
            "Server-side timing: the server's own means over the suite's window; delivery gap = client - server. "
            "Tokens come from the server's usage (\"unknown\" when it sent none).")
    return "\n\n".join(service_tables(p) for p in probes) + "\n" + note
