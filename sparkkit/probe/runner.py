"""Run suites against one service. A probe never raises; one failing case never stops the suite.

Each suite's requests run within its limits (``Suite.limits``: the kind's defaults, the suite's
``limits:``, then ``--timeout`` for the total). A service that stops answering, ``NOT_RUN_AFTER``
requests in a row ending without an answer (a deadline passed, or no connection), has its
remaining requests recorded as not run (``Failure.NOT_RUN``) with that reason, at once.

A target with a ``metrics_path`` (vLLM) has its Prometheus text read around each chat suite, on the
probes' connection: ``SuiteResult.server`` holds the server's means over the window beside the
client's (``probe.server``), and records the client could not measure get the server's decode. A
failed reading is noted there, never a failed request. Ollama's answers carry ``server_timing``.

May import: ``probe.limits``, ``probe.answers``, ``probe.client``, ``probe.metrics``, ``probe.scoring``,
``probe.stream``, ``probe.suites``, ``probe.quality``, ``probe.prometheus``, ``probe.server``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from sparkkit.probe import answers
from sparkkit.probe import client as http
from sparkkit.probe.limits import UNANSWERED, Breach, Failure, Limits, Result
from sparkkit.probe.metrics import summary
from sparkkit.probe.prometheus import Exposition, parse
from sparkkit.probe.quality import quality_gates
from sparkkit.probe.scoring import score_extraction, score_tool_call
from sparkkit.probe.server import ollama_timings, ollama_window, timing, window, with_server_decode
from sparkkit.probe.stream import ChatRecord, failed
from sparkkit.probe.suites import HEALTH, Suite

Printer = Callable[[str], None]
NOT_RUN_AFTER = 3  # requests in a row without an answer after which a service's remaining ones are not run


@dataclass(frozen=True, kw_only=True)
class Target:
    """One service to probe: how to reach it and what it serves."""

    service: str
    base_url: str
    model: str | None
    suites: tuple[str, ...]
    health_path: str = "/health"
    metrics_path: str | None = None  # vLLM's Prometheus /metrics, read around each suite


@dataclass
class SuiteResult:
    service: str
    suite: str
    kind: str
    summary: list[dict] = field(default_factory=list)  # one row per case / turn / query
    records: list[dict] = field(default_factory=list)  # every request, warmups included (marked)
    score: dict | None = None  # passed/total where the suite is scored
    server: dict | None = None  # the server's timing over the suite's window beside the client's (probe.server)

    def to_json(self) -> dict:
        return dict(self.__dict__)


class Session:
    """One service's client, the limits of the suite being run, and the not-run rule."""

    def __init__(self, target: Target, client: http.ProbeClient, out: Printer, *, limits: Limits | None = None):
        self.target = target
        self.client = client
        self.out = out
        self.limits = limits or Limits()
        self.unanswered = 0  # requests in a row that ended without an answer
        self.last_error = ""

    def _stopped(self) -> bool:
        return self.unanswered >= NOT_RUN_AFTER

    def _note(self, failure: Failure | None, error: str | None) -> None:
        if failure in UNANSWERED:
            self.unanswered += 1
            self.last_error = error or ""
        else:
            self.unanswered = 0

    def not_run(self) -> str:
        return (f"not run: {self.target.service} stopped answering ({NOT_RUN_AFTER} requests in a row without "
                f"an answer; last: {self.last_error})")

    def chat(self, payload: dict) -> ChatRecord:
        if self._stopped():
            return failed(self.not_run(), failure=Failure.NOT_RUN)
        record = self.client.chat(payload, limits=self.limits)
        self._note(record.failure, record.error)
        return record

    def request(self, method: str, path: str, **kw) -> http.HttpRecord:
        if self._stopped():
            return http.HttpRecord(ok=False, error=self.not_run(), failure=Failure.NOT_RUN, latency_ms=None,
                                   status=None, body=None)
        record = self.client.request(method, path, limits=self.limits, **kw)
        self._note(record.failure, record.error)
        return record


def _not_run(records: list) -> int:
    return sum(1 for r in records if r.result is Result.NOT_RUN)


def chat_payload(model: str | None, messages: list[dict], *, thinking: bool | None, max_tokens: int,
                 tools: list[dict] | None = None) -> dict:
    payload = {"messages": messages, "stream": True, "stream_options": {"include_usage": True},
               "max_tokens": max_tokens}
    if model:
        payload["model"] = model
    if thinking is not None:
        payload["chat_template_kwargs"] = {"enable_thinking": thinking}
    if tools:
        payload["tools"] = [{"type": "function", "function": t} for t in tools]
        payload["tool_choice"] = "auto"
    return payload


def _messages(system: str | None, prompt: str) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def _chat_row(case: str, records: list[ChatRecord], **extra) -> dict:
    ok = [r for r in records if r.ok]
    tokens = [r.completion_tokens for r in ok]
    row = {"case": case, "ok": len(ok), "n": len(records), "not_run": _not_run(records),
           "ttft_ms": summary([r.ttft_ms for r in ok]), "ttfo_ms": summary([r.ttfo_ms for r in ok]),
           "decode_tok_s": summary([r.decode_tok_s for r in ok]), "e2e_tok_s": summary([r.e2e_tok_s for r in ok]),
           "decode_sources": _sources(ok),
           "completion_tokens": summary(tokens) if all(t is not None for t in tokens) else None,
           "errors": sorted({r.error for r in records if r.error})}
    row.update(extra)
    return row


def _sources(records: list[ChatRecord]) -> dict[str, int]:
    """How many of the records' decode figures are of each source (client, server, lower bound)."""
    out: dict[str, int] = {}
    for r in records:
        if r.decode_source is not None:
            out[r.decode_source.value] = out.get(r.decode_source.value, 0) + 1
    return out


def _rec(record, **tags) -> dict:
    return {**tags, **record.to_json()}


def run_chat(s: Session, suite: Suite) -> SuiteResult:
    res = SuiteResult(service=s.target.service, suite=suite.name, kind=suite.kind)
    thinking = suite.get("thinking")
    warmups, runs = suite.get("warmups", 2), suite.get("runs", 5)
    system = suite.get("system")
    for case in suite.get("cases"):
        payload = chat_payload(s.target.model, _messages(system, case["prompt"]), thinking=thinking,
                               max_tokens=case.get("max_tokens", suite.get("max_tokens", 256)))
        measured = []
        for i in range(warmups + runs):
            record = s.chat(payload)
            warm = i < warmups
            res.records.append(_rec(record, case=case["id"], warmup=warm, voice=bool(case.get("voice")),
                                    expect_any=case.get("expect_any"), thinking=thinking))
            if not warm:
                measured.append(record)
        res.summary.append(_chat_row(case["id"], measured))
        skipped = f" ({_not_run(measured)} not run)" if _not_run(measured) else ""
        s.out(f"    {suite.name}/{case['id']}: {len([r for r in measured if r.ok])}/{len(measured)} ok{skipped}")
    return res


def run_conversation(s: Session, suite: Suite) -> SuiteResult:
    res = SuiteResult(service=s.target.service, suite=suite.name, kind=suite.kind)
    thinking = suite.get("thinking")
    user_turns = suite.get("user_turns")
    for conv in suite.get("conversations"):
        turns = int(conv.get("turns", len(user_turns)))
        per_turn: dict[int, list[ChatRecord]] = {t: [] for t in range(1, turns + 1)}
        for run in range(suite.get("warmups", 1) + suite.get("runs", 3)):
            warm = run < suite.get("warmups", 1)
            messages: list[dict] = []
            for turn in range(1, turns + 1):
                messages.append({"role": "user", "content": user_turns[(turn - 1) % len(user_turns)]})
                record = s.chat(chat_payload(s.target.model, list(messages), thinking=thinking,
                                             max_tokens=suite.get("max_tokens", 120)))
                messages.append({"role": "assistant", "content": record.text or "(no answer)"})
                res.records.append(_rec(record, case=conv["id"], turn=turn, warmup=warm, thinking=thinking))
                if not warm:
                    per_turn[turn].append(record)
        base = None
        for turn, records in per_turn.items():
            row = _chat_row(conv["id"], records, turn=turn)
            p50 = row["ttft_ms"]["p50"]
            if turn == 1:
                base = p50
            row["growth_pct"] = (p50 / base - 1) * 100 if p50 is not None and base else None
            res.summary.append(row)
        s.out(f"    {suite.name}/{conv['id']}: {turns} turns")
    return res


def run_tools(s: Session, suite: Suite) -> SuiteResult:
    res = SuiteResult(service=s.target.service, suite=suite.name, kind=suite.kind)
    tools = suite.get("tools")
    system = suite.get("system")
    passed = 0
    for case in suite.get("cases"):
        record = s.chat(chat_payload(s.target.model, _messages(system, case["prompt"]), thinking=suite.get("thinking"),
                                     max_tokens=suite.get("max_tokens", 256), tools=tools))
        expect = None if case.get("expect") in (None, "none") else case["expect"]
        verdict = score_tool_call(record, expect, tools)
        passed += verdict.passed
        res.records.append(_rec(record, case=case["id"], warmup=False, thinking=suite.get("thinking"),
                                expect_any=case.get("expect_any") if expect is None else None))
        res.summary.append({"case": case["id"], "passed": verdict.passed, "reason": verdict.reason,
                            "expected": expect["tool"] if expect else "(direct answer)",
                            "called": record.tool_calls[0].name if record.tool_calls else None,
                            "ttft_ms": record.ttft_ms})
    total = len(suite.get("cases"))
    res.score = {"passed": passed, "total": total, "accuracy": passed / total if total else None}
    s.out(f"    {suite.name}: {passed}/{total}")
    return res


def run_extraction(s: Session, suite: Suite) -> SuiteResult:
    res = SuiteResult(service=s.target.service, suite=suite.name, kind=suite.kind)
    passed = 0
    min_recall = suite.get("min_recall", 0.8)
    for case in suite.get("cases"):
        prompt = f"{suite.get('instruction', '').strip()}\n\nTranscript:\n{case['transcript']}"
        record = s.chat(chat_payload(s.target.model, _messages(None, prompt),
                                     thinking=suite.get("thinking"), max_tokens=suite.get("max_tokens", 400)))
        score = score_extraction(record, case.get("expect") or {})
        ok = score.valid_json and score.recall >= min_recall
        passed += ok
        res.records.append(_rec(record, case=case["id"], warmup=False, thinking=suite.get("thinking")))
        res.summary.append({"case": case["id"], "passed": ok, "valid_json": score.valid_json,
                            "recall": score.recall, "found": score.found, "expected": score.expected,
                            "reason": score.reason, "latency_ms": record.latency_ms})
    total = len(suite.get("cases"))
    res.score = {"passed": passed, "total": total, "accuracy": passed / total if total else None}
    return res


def _vector_key(vec) -> str:
    return json.dumps(vec[:16]) + str(len(vec))


def run_embeddings(s: Session, suite: Suite) -> SuiteResult:
    res = SuiteResult(service=s.target.service, suite=suite.name, kind=suite.kind)
    warmups, runs = suite.get("warmups", 1), suite.get("runs", 5)
    seen: dict[str, str] = {}
    for text in suite.get("texts"):
        latencies, dims, keys, errors, not_run = [], set(), set(), set(), 0
        for i in range(warmups + runs):
            rec = s.request("POST", "/api/embed", json_body={"model": s.target.model, "input": text})
            vectors = None
            if rec.ok:
                try:
                    vectors = answers.embeddings(rec.body)
                except Breach as exc:
                    rec = rec.failing(exc)
            res.records.append({"case": text, "warmup": i < warmups, **{k: v for k, v in rec.to_json().items()
                                                                       if k != "body"},
                                "server_timing": ollama_timings(rec.body) if rec.ok else None})
            if not rec.ok:
                errors.add(rec.error)
                not_run += i >= warmups and rec.result is Result.NOT_RUN
                continue
            dims.add(len(vectors[0]))
            keys.add(_vector_key(vectors[0]))
            if i >= warmups:
                latencies.append(rec.latency_ms)
        key = next(iter(keys)) if len(keys) == 1 else None
        distinct = key is not None and key not in seen.values()
        if key is not None:
            seen[text] = key
        res.summary.append({"case": text, "ok": len(latencies), "n": runs, "not_run": not_run,
                            "dimension": sorted(dims), "deterministic": len(keys) == 1, "distinct": distinct,
                            "latency_ms": summary(latencies), "errors": sorted(errors)})
    passed = sum(1 for row in res.summary if row["ok"] == row["n"] and row["deterministic"] and row["distinct"]
                 and len(row["dimension"]) == 1)
    res.score = {"passed": passed, "total": len(res.summary), "accuracy": passed / len(res.summary)}
    return res


def run_websearch(s: Session, suite: Suite) -> SuiteResult:
    res = SuiteResult(service=s.target.service, suite=suite.name, kind=suite.kind)
    warmups, runs = suite.get("warmups", 1), suite.get("runs", 5)
    min_results = suite.get("min_results", 1)
    for query in suite.get("queries"):
        latencies, counts, errors, not_run = [], [], set(), 0
        for i in range(warmups + runs):
            rec = s.request("GET", "/search", params={"q": query, "format": "json"})
            if rec.status == 403:
                rec = http.HttpRecord(ok=False, latency_ms=rec.latency_ms, status=403, body=None,
                                      failure=Failure.HTTP_STATUS, retried=rec.retried,
                                      error="HTTP 403: the json format is not enabled in SearXNG's settings.yml")
            found = None
            if rec.ok:
                try:
                    found = answers.search_results(rec.body)
                except Breach as exc:
                    rec = rec.failing(exc)
            res.records.append({"case": query, "warmup": i < warmups,
                                **{k: v for k, v in rec.to_json().items() if k != "body"},
                                "results": found.results if found else None})
            if not rec.ok:
                errors.add(rec.error)
                not_run += i >= warmups and rec.result is Result.NOT_RUN
            elif i >= warmups:
                latencies.append(rec.latency_ms)
                counts.append(found.complete)
        res.summary.append({"case": query, "ok": len(latencies), "n": runs, "not_run": not_run,
                            "results_min": min(counts) if counts else 0, "latency_ms": summary(latencies),
                            "errors": sorted(errors)})
    passed = sum(1 for row in res.summary if row["ok"] == row["n"] and row["results_min"] >= min_results)
    res.score = {"passed": passed, "total": len(res.summary), "accuracy": passed / len(res.summary)}
    return res


def run_health(s: Session, suite: Suite) -> SuiteResult:
    res = SuiteResult(service=s.target.service, suite=suite.name, kind=suite.kind)
    warmups, runs = suite.get("warmups", 1), suite.get("runs", 5)
    latencies, errors, not_run = [], set(), 0
    for i in range(warmups + runs):
        rec = s.request("GET", s.target.health_path, expect_json=False)
        res.records.append({"case": s.target.health_path, "warmup": i < warmups,
                            **{k: v for k, v in rec.to_json().items() if k != "body"}})
        if not rec.ok:
            errors.add(rec.error)
            not_run += i >= warmups and rec.result is Result.NOT_RUN
        elif i >= warmups:
            latencies.append(rec.latency_ms)
    res.summary.append({"case": s.target.health_path, "ok": len(latencies), "n": runs, "not_run": not_run,
                        "latency_ms": summary(latencies), "errors": sorted(errors)})
    res.score = {"passed": int(len(latencies) == runs), "total": 1, "accuracy": float(len(latencies) == runs)}
    return res


def read_metrics(s: Session, path: str) -> tuple[Exposition | None, str | None]:
    """The server's Prometheus text, parsed; (None, why) when it could not be read. Within the health
    probe's limits (15 s), and not tried once the service has stopped answering."""
    if s._stopped():
        return None, f"{path}: not read ({s.target.service} stopped answering)"
    rec = s.client.request("GET", path, expect_json=False, text_chars=None, limits=METRICS_LIMITS)
    if not rec.ok:
        return None, f"{path}: {rec.error}"
    expo = parse(rec.body if isinstance(rec.body, str) else "")
    return (expo, None) if expo.samples else (None, f"{path}: no Prometheus samples")


CHAT_KINDS = ("chat", "conversation", "tools", "extraction")
METRICS_LIMITS = HEALTH.limits().merged({"body_bytes": 16 << 20})  # a big server's /metrics text is large


def run_suite(s: Session, suite: Suite) -> SuiteResult:
    """One suite, with the server's timing around it where the target has a metrics path."""
    path = s.target.metrics_path if suite.kind in CHAT_KINDS else None
    before, error = read_metrics(s, path) if path else (None, None)
    res = RUNNERS[suite.kind](s, suite)
    if path:
        after, error_after = read_metrics(s, path) if before is not None else (None, None)
        server = window(before, after) if before is not None and after is not None else None
        error = error or error_after or (None if server else f"{path}: none of vLLM's timing histograms")
        res.server = timing(server, res.records, source=f"vLLM {path}", error=error)
        with_server_decode(res.records, res.summary, server.decode_tok_s if server else None)
    elif suite.kind == "embeddings":
        res.server = ollama_window(res.records)
    return res


RUNNERS = {"chat": run_chat, "conversation": run_conversation, "tools": run_tools, "extraction": run_extraction,
           "embeddings": run_embeddings, "websearch": run_websearch, "health": run_health}


def probe_service(target: Target, suites: dict[str, Suite], *, out: Printer,
                  only: str | None = None, timeout_s: float | None = None) -> dict:
    """Run the target's suites; returns {"service", "rtt_ms", "results": [...], "quality": [...]}.
    ``timeout_s`` replaces every suite's total deadline (None: the suites' own)."""
    names = [only] if only else list(target.suites)
    with http.ProbeClient(target.base_url) as client:
        s = Session(target, client, out, limits=HEALTH.limits().with_total(timeout_s))
        rtts = []
        for _ in range(5):
            rec = s.request("GET", target.health_path, expect_json=False)
            if rec.ok:
                rtts.append(rec.latency_ms)
        results = []
        for name in names:
            suite = suites[name]
            out(f"  {target.service}: suite {name}")
            s.limits = suite.limits().with_total(timeout_s)
            results.append(run_suite(s, suite))
    return {"service": target.service, "base_url": target.base_url, "model": target.model,
            "rtt_ms": summary(rtts), "results": [r.to_json() for r in results],
            "quality": quality_gates(results)}
