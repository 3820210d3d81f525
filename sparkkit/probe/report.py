"""Console tables laid out like the benchmark report's. Pure: probe results in, text out.

Decode tok/s is (completion_tokens - 1) / (last token - first token): the generation speed once
the first token is out. End-to-end tok/s is completion_tokens / whole request time.
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
                      _ms(_p50(r["ttfo_ms"])), _rate(_p50(r["decode_tok_s"])), _rate(_p50(r["e2e_tok_s"])),
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
        elif kind == "health":
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
            "decode tok/s = (tokens - 1) / (last token - first token); e2e tok/s = tokens / request time. "
            "Tokens come from the server's usage (\"unknown\" when it sent none).")
    return "\n\n".join(service_tables(p) for p in probes) + "\n" + note
