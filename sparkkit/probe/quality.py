"""The quality gates over one service's chat records: non-empty, no markdown in voice answers,
factually correct, no thinking leak, every request succeeded. Pure: suite results in, gate rows out.

May import: ``probe.scoring``.
"""

from __future__ import annotations

from sparkkit.probe.scoring import factually_correct, markdown_found, thinking_leak


def quality_gates(results: list) -> list[dict]:
    """Over every chat record of one service: non-empty, no markdown in voice answers, factually
    correct where a case names the answer, and no thinking leak when thinking was off."""
    chats = [r for res in results if res.kind in ("chat", "conversation", "tools", "extraction")
             for r in res.records if not r.get("warmup") and "ttft_ms" in r]
    gates = []

    def gate(name: str, pool: list[dict], check) -> None:
        failures = []
        for r in pool:
            why = check(r)
            if why:
                failures.append(f"{r['case']}: {why}")
        if pool:
            gates.append({"gate": name, "passed": len(pool) - len(failures), "total": len(pool),
                          "failures": failures[:10]})

    gate("non-empty answer", chats, lambda r: None if not r["ok"] or r["text"].strip() or r["tool_calls"]
         else "empty content")
    gate("no markdown in voice answers", [r for r in chats if r.get("voice") and r["ok"]],
         lambda r: (f"markdown ({markdown_found(r['text'])})" if markdown_found(r["text"]) else None))
    gate("factually correct", [r for r in chats if r.get("expect_any")],
         lambda r: None if r["ok"] and factually_correct(r["text"], r["expect_any"])
         else (f"expected one of {r['expect_any']}" if r["ok"] else f"failed: {r['error']}"))
    gate("no thinking leak", [r for r in chats if r.get("thinking") is False and r["ok"]],
         lambda r: thinking_leak(r["text"], r["reasoning"]))
    gate("every request succeeded", [r for res in results for r in res.records if not r.get("warmup")],
         lambda r: None if r["ok"] else r["error"])
    return gates
