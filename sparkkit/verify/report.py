"""The report a person reads at a glance: reports/<host>/<timestamp>-<release>/report.md with the
verdict on top, the gate table, the benchmark report's tables, charts, and report.json with everything."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tabulate import tabulate

from sparkkit.verify.charts import bar_chart, line_chart
from sparkkit.probe.report import service_tables
from sparkkit.verify.run import Verification

FMT = "github"


def _n(value, unit="", digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def verdict_line(run: Verification) -> str:
    if run.verdict.before_verification:
        return f"FAIL — the deploy itself failed ({run.decision})"
    failed = [g for g in run.gates if not g.passed]
    if not failed:
        return f"PASS — release {run.release} {run.decision}"
    names = ", ".join(f"{g.service}/{g.name}" for g in failed[:5])
    return f"FAIL — {len(failed)} gate(s) failed ({names}); {run.decision}"


def ttft_chart(run: Verification) -> str | None:
    series = {}
    for probe in run.probes:
        for res in probe["results"]:
            if res["kind"] != "conversation":
                continue
            by_conv: dict[str, list] = {}
            for row in res["summary"]:
                by_conv.setdefault(row["case"], []).append((row["turn"], (row["ttft_ms"] or {}).get("p50")))
            longest = max(by_conv, key=lambda k: len(by_conv[k]))
            series[f"{probe['service']} ({longest})"] = by_conv[longest]
    if not series:
        return None
    return line_chart(series, title="TTFT p50 per turn", x_label="turn", y_label="TTFT p50 (ms)")


def memory_chart(run: Verification) -> str | None:
    mem = run.memory or {}
    rows = mem.get("services") or []
    if not rows:
        return None
    items = [(r["service"], (r.get("used_mib") or 0) / 1024) for r in rows]
    headroom = mem.get("headroom_gib")
    return bar_chart(items, title="Memory per service (GiB)", y_label="GiB",
                     line=(f"headroom {headroom:.1f} GiB", headroom) if headroom is not None else None)


def render_markdown(run: Verification, charts: dict[str, str]) -> str:
    out = [f"# sparkkit report — {run.host} — release {run.release or 'none'}", "",
           f"**{verdict_line(run)}**", "",
           f"- action: {run.action}; started {run.started}, finished {run.finished}",
           f"- previous release: {run.previous or 'none'}"]
    if run.deploy_message:
        out.append(f"- deploy: {run.deploy_message}")
    if run.exposure:
        out += ["", "## Exposure warnings", "", *(f"- WARNING: {text}" for text in run.exposure)]
    if run.deploy_error:
        out += ["", "## Deploy failure", "", "```", run.deploy_error, "```"]
    if run.gates:
        rows = [["pass" if g.passed else "**FAIL**", g.service, g.name, g.observed, g.threshold, g.why]
                for g in run.gates]
        out += ["", "## Gates", "", tabulate(rows, ["result", "service", "gate", "observed", "threshold", "why"],
                                              tablefmt=FMT)]
    base = run.baseline
    if run.metrics:
        out += ["", f"## Compared with the last passing release ({base['release'] if base else 'none yet'})", ""]
        rows = []
        for svc, m in run.metrics.items():
            prev = (base or {}).get("metrics", {}).get(svc, {})
            for key, label, unit in (("ttft_p50_ms", "TTFT p50", " ms"), ("decode_tok_s_p50", "decode tok/s p50", "")):
                now, before = m.get(key), prev.get(key)
                if now is None and before is None:
                    continue
                change = f"{(now / before - 1) * 100:+.0f}%" if now is not None and before else "-"
                if key == "decode_tok_s_p50":  # which figure each is (a baseline without a label: the client's)
                    before_s = _n(before, unit) + (f" ({prev.get('decode_source') or 'client'})" if before else "")
                    now_s = _n(now, unit) + (f" ({m.get('decode_source')})" if now is not None else "")
                    rows.append([svc, label, before_s, now_s, change])
                    continue
                rows.append([svc, label, _n(before, unit), _n(now, unit), change])
        out.append(tabulate(rows, ["service", "metric", "previous", "now", "change"], tablefmt=FMT)
                   if rows else "No chat service was measured.")
    sides = [(svc, m) for svc, m in run.metrics.items() if m.get("server")]
    if sides:
        rows = [[svc, _n(m.get("ttft_p50_ms"), " ms"), _n(m["server"].get("ttft_mean_ms"), " ms"),
                 _n(m["server"].get("ttft_gap_ms"), " ms"),
                 f"{_n(m.get('decode_tok_s_p50'))} ({m.get('decode_source') or '-'})",
                 _n(m["server"].get("decode_tok_s")), _n(m["server"].get("queue_mean_ms"), " ms"),
                 _n(m["server"].get("prefill_mean_ms"), " ms")] for svc, m in sides]
        out += ["", "## Server-side and client-side timing", "",
                tabulate(rows, ["service", "client TTFT p50", "server TTFT mean", "delivery gap (TTFT)",
                                "decode tok/s (figure)", "server decode tok/s", "server queue mean",
                                "server prefill mean"], tablefmt=FMT),
                "", "The server's means are over the chat suites' windows (its /metrics before and after each "
                    "suite); the gap is the client's TTFT mean minus the server's over the same requests: "
                    "response delivery. Per suite in the service sections below."]
    mem = run.memory or {}
    if mem:
        out += ["", "## Memory Profile", ""]
        if "error" in mem:
            out.append(f"Could not read memory: {mem['error']}")
        else:
            rows = [[r["service"], _n(r.get("gpu_mib"), "", 0), _n(r.get("container_mib"), "", 0),
                     _n(r.get("used_mib"), "", 0)] for r in mem.get("services", [])]
            for p in mem.get("unattributed", []):
                rows.append([f"(no container) pid {p.get('pid')} {p.get('name', '')}", _n(p.get("used_mib"), "", 0),
                             "-", _n(p.get("used_mib"), "", 0)])
            out.append(tabulate(rows, ["service", "GPU MiB", "container MiB", "counted MiB"], tablefmt=FMT))
            out += ["", f"**Total {_n(mem.get('total_gib'), ' GiB')}, headroom {_n(mem.get('headroom_gib'), ' GiB')}** "
                        f"(mode: {mem.get('mode')})"]
            out += [f"- {note}" for note in mem.get("notes", [])]
        if "memory.svg" in charts:
            out += ["", "![Memory per service](memory.svg)"]
    if run.startup_s:
        rows = [[svc, "unchanged (not restarted)" if secs is None else f"{secs:.1f} s"]
                for svc, secs in run.startup_s.items()]
        out += ["", "## Startup Time (container start to healthy)", "",
                tabulate(rows, ["service", "startup"], tablefmt=FMT)]
    if run.crashes:
        rows = [[c.service, c.status, c.health, f"{c.restarts_before} → {c.restarts_after}",
                 "yes" if c.oom_killed else "no", "-" if c.exit_code is None else c.exit_code,
                 "; ".join(c.problems) or "ok"] for c in run.crashes]
        out += ["", "## Crash Facts", "", tabulate(rows, ["service", "state", "health", "restarts", "OOM",
                                                           "exit code", "problems"], tablefmt=FMT)]
        for c in run.crashes:
            if c.problems and c.last_logs:
                out += ["", f"Last log lines of {c.service}:", "", "```", *c.last_logs, "```"]
    if "ttft-per-turn.svg" in charts:
        out += ["", "## TTFT per turn", "", "![TTFT p50 per turn](ttft-per-turn.svg)"]
    for probe in run.probes:
        out += ["", service_tables(probe, fmt=FMT, level="###")]
    if run.stages:
        rows = [[name, f"{st['seconds']:.2f} s", st["round_trips"]] for name, st in run.stages.items()]
        total = sum(st["seconds"] for st in run.stages.values())
        out += ["", f"## Time to Verdict ({total:.1f} s in the stages below)", "",
                tabulate(rows, ["stage", "time", "SSH round trips"], tablefmt=FMT)]
    if run.settings:
        rows = [[s["service"], s["image"], " ".join(s["command"]) or "(image default)",
                 ", ".join(f"{k}={v}" for k, v in {**s["env"], **s["secret_env"]}.items()) or "-"]
                for s in run.settings]
        out += ["", "## Effective Settings", "", tabulate(rows, ["service", "image", "command", "env"], tablefmt=FMT)]
    out += ["", "TTFT: first token of any kind; TTFO: first content or tool-call token; decode tok/s = (tokens − 1) / "
                "(last token − first token) when the client could measure it (client), else the server's "
                "1 / mean inter-token latency (server), else (tokens − 1) / request time (e2e lower bound); "
                "e2e tok/s = tokens / request time; tokens from the server's usage.", ""]
    return "\n".join(out)


def write_report(run: Verification, reports_dir: Path, mask) -> Path:
    stamp = (run.started or "").replace(":", "").replace("-", "").replace("+0000", "Z").replace("+00:00", "Z")
    folder = Path(reports_dir) / run.host / f"{stamp}-{run.release or 'none'}"
    folder.mkdir(parents=True, exist_ok=True)
    charts = {}
    for name, svg in (("ttft-per-turn.svg", ttft_chart(run)), ("memory.svg", memory_chart(run))):
        if svg:
            (folder / name).write_text(svg)
            charts[name] = svg
    (folder / "report.md").write_text(mask(render_markdown(run, charts)))
    (folder / "report.json").write_text(mask(json.dumps(run.to_json(), indent=1, ensure_ascii=False, default=str)))
    latest = folder.parent / "latest"
    tmp = folder.parent / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(folder.name, tmp)
    os.replace(tmp, latest)
    return folder


def console_summary(run: Verification, folder: Path) -> str:
    lines = [verdict_line(run)]
    failed = [g for g in run.gates if not g.passed]
    for g in failed[:8]:
        lines.append(f"  FAIL {g.service}/{g.name}: {g.observed} (needs {g.threshold}) — {g.why}")
    for svc, m in run.metrics.items():
        if m.get("ttft_p50_ms") is not None:
            server = m.get("server") or {}
            lines.append(f"  {svc}: TTFT p50 {_n(m['ttft_p50_ms'], ' ms', 0)}, decode p50 "
                         f"{_n(m.get('decode_tok_s_p50'), ' tok/s')}"
                         + (f" ({m['decode_source']})" if m.get("decode_source") else "")
                         + (f"; server TTFT mean {_n(server['ttft_mean_ms'], ' ms', 0)}, delivery gap "
                            f"{_n(server.get('ttft_gap_ms'), ' ms', 0)}" if server.get("ttft_mean_ms") is not None
                            else ""))
    mem = run.memory or {}
    if mem.get("headroom_gib") is not None:
        lines.append(f"  memory: total {_n(mem.get('total_gib'), ' GiB')}, headroom {_n(mem['headroom_gib'], ' GiB')}")
    lines.append(f"  {sum(g.passed for g in run.gates)}/{len(run.gates)} gates passed; report: {folder / 'report.md'}")
    return "\n".join(lines)
