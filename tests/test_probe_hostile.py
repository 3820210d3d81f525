"""Every misbehaviour of the hostile server (tests/hostile.py) through the real client and runner:
each ends within its deadline as a failed probe whose one-line reason names the field or limit, and
no exception escapes. Then `sparkkit probe --url` itself, as a subprocess, against the cases that
once crashed or hung it; the retry on a kept-alive connection the server closed (llama.cpp's way);
and the not-run rule for a server that stops answering.

The cases run at once, each with small deadlines and caps, so the whole file takes a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sparkkit.probe import answers
from sparkkit.probe.client import ProbeClient
from sparkkit.probe.fields import item
from sparkkit.probe.limits import Breach, Failure, Limits
from sparkkit.probe.report import render_probe
from sparkkit.probe.runner import NOT_RUN_AFTER, Target, chat_payload, probe_service
from sparkkit.probe.suites import Suite
from tests.hostile import CASES, HostileServer

LIMITS = Limits(connect_s=1.0, first_byte_s=0.6, between_events_s=0.5, total_s=1.5, line_bytes=64 << 10,
                event_bytes=64 << 10, body_bytes=1 << 20, json_depth=64)
SLACK_S = 1.5  # a loaded 2-core machine; a request that waited out a default deadline would take 30 s or more
PROBE_SLACK_S = 4.0  # the whole probe: 12 cases at once, five health pings each, on 2 busy cores
LIMIT_KEYS = {"connect_s": 1.0, "first_byte_s": 0.6, "between_events_s": 0.5, "total_s": 1.5,
              "line_bytes": 64 << 10, "event_bytes": 64 << 10, "body_bytes": 1 << 20, "json_depth": 64}
SUITES = {
    "chat": Suite(name="hostile-chat", kind="chat", source="test", data={
        "warmups": 0, "runs": 1, "cases": [{"id": "c", "prompt": "hi"}], "limits": LIMIT_KEYS}),
    "embed": Suite(name="hostile-embed", kind="embeddings", source="test", data={
        "warmups": 0, "runs": 1, "texts": ["x"], "limits": LIMIT_KEYS}),
    "search": Suite(name="hostile-search", kind="websearch", source="test", data={
        "warmups": 0, "runs": 1, "queries": ["q"], "limits": LIMIT_KEYS}),
}


@pytest.fixture(scope="module")
def hostile():
    with HostileServer() as server:
        yield server


def run_case(server: HostileServer, case) -> tuple[dict, float, str]:
    """(the measured record, seconds the whole probe took, the rendered tables)."""
    start = time.perf_counter()
    base = server.url(case.name)
    if case.endpoint in SUITES:
        suite = SUITES[case.endpoint]
        probe = probe_service(Target(service=case.name, base_url=base, model="m", suites=(suite.name,)),
                              {suite.name: suite}, out=lambda line: None)
        [result] = probe["results"]
        [record] = [r for r in result["records"] if not r["warmup"]]
        return record, time.perf_counter() - start, render_probe([probe])
    with ProbeClient(base, limits=LIMITS) as client:
        if case.endpoint == "chat_plain":
            payload = chat_payload("m", [{"role": "user", "content": "hi"}], thinking=None, max_tokens=5)
            record = client.chat({**payload, "stream": False})
        else:
            record = client.request("GET", "/v1/models")
            if record.ok:
                try:
                    answers.first_model(record.body)
                except Breach as exc:
                    record = record.failing(exc)
    return record.to_json(), time.perf_counter() - start, ""


def test_every_hostile_case_ends_in_time_as_a_failed_probe_with_its_reason(hostile):
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)
    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(pool.map(lambda c: run_case(hostile, c), CASES))  # an exception would surface here
    wrong = []
    for case, (record, wall_s, tables) in zip(CASES, outcomes):
        error = record["error"] or ""
        checks = {
            "failed": record["ok"] is False and record["result"] == "failed",
            "failure": record["failure"] == case.failure.value,
            "reason": case.says in error and "\n" not in error and 0 < len(error) <= 300,
            "in time": record["latency_ms"] is not None and record["latency_ms"] / 1000 <= LIMITS.total_s + SLACK_S,
            "probe in time": wall_s <= LIMITS.total_s + PROBE_SLACK_S,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            wrong.append(f"{case.name}: {bad}: {record['failure']}: {error}")
        assert "Traceback" not in tables
    print(f"\nhostile cases handled: {len(CASES) - len(wrong)}/{len(CASES)}")
    assert not wrong, "\n".join(wrong)
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert f"**{len(CASES)}/{len(CASES)} hostile-server cases**" in readme  # what the README promises
    assert hostile.requests["silent"] >= 1 and hostile.requests["drip"] >= 1  # they were reached


CLI_CASES = ["choices_a_number", "deeply_nested_json", "tool_index_a_list", "invalid_utf8", "huge_line",
             "endless_stream", "drip"]


def test_probe_url_exits_non_zero_without_a_traceback(hostile, tmp_path):
    """The command line as a user runs it, against the cases that crashed it (a traceback), passed
    (exit 0) or hung it (> 150 s) before. With --timeout 1 each request ends within 1 s, and after
    three in a row without an answer the rest of the suite is not run."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    start = time.perf_counter()
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "sparkkit", "probe", "--url", hostile.url(name) + "/v1", "--suite", "standard",
         "--timeout", "1", "--project-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env, text=True) for name in CLI_CASES}
    outputs = {name: (p.communicate(timeout=60)[0], p.returncode) for name, p in procs.items()}
    wall_s = time.perf_counter() - start
    for name, (text, code) in outputs.items():
        assert code == 1, f"{name}: exit {code}\n{text[-2000:]}"
        assert "Traceback" not in text, f"{name}:\n{text[-3000:]}"
        assert "measured request(s) failed" in text, name
    assert "not run" in outputs["endless_stream"][0] and "total deadline" in outputs["endless_stream"][0]
    assert "not run" in outputs["drip"][0]
    assert "choices: expected an array" in outputs["choices_a_number"][0]
    assert "invalid UTF-8" in outputs["invalid_utf8"][0]
    assert wall_s < 45, wall_s  # hung > 150 s each before


def _chat_suite(runs: int) -> Suite:
    return Suite(name="hostile-chat", kind="chat", source="test", data={
        "warmups": 0, "runs": runs, "cases": [{"id": "c", "prompt": "hi"}], "limits": LIMIT_KEYS})


def test_a_kept_alive_connection_closed_after_each_answer_is_retried_and_recorded(hostile):
    """As llama.cpp does: each connection answers one request; the next request sent on it is read
    and the connection closed with no answer. Every request succeeds, sent again on a new
    connection, and its record says so: the server never saw it answered, so it is not a failure."""
    suite = _chat_suite(5)
    before = hostile.requests.get("closes_kept_alive", 0)
    probe = probe_service(Target(service="llama", base_url=hostile.url("closes_kept_alive"), model="m",
                                 suites=(suite.name,)), {suite.name: suite}, out=lambda line: None)
    records = probe["results"][0]["records"]
    assert [r["ok"] for r in records] == [True] * 5, [r["error"] for r in records]
    # the first chat request went out on the connection the health pings had kept alive: all five retried
    assert [r["retried"] for r in records] == [True] * 5
    assert hostile.requests["closes_kept_alive"] - before == 5 + 2 * 5  # 5 pings; each chat twice
    gate = next(g for g in probe["quality"] if g["gate"] == "every request succeeded")
    assert gate["passed"] == gate["total"] == 5


def test_a_server_that_stops_answering_has_its_remaining_probes_not_run(hostile):
    suite = _chat_suite(3 + NOT_RUN_AFTER)
    start = time.perf_counter()
    probe = probe_service(Target(service="mute", base_url=hostile.url("silent"), model="m", suites=(suite.name,)),
                          {suite.name: suite}, out=lambda line: None)
    wall_s = time.perf_counter() - start
    records = probe["results"][0]["records"]
    waited = records[:NOT_RUN_AFTER]
    skipped = records[NOT_RUN_AFTER:]
    assert all(r["failure"] == Failure.FIRST_BYTE_DEADLINE.value and r["result"] == "failed" for r in waited)
    assert len(skipped) == 3
    assert all(r["result"] == "not run" and r["failure"] == "not run" and r["latency_ms"] is None for r in skipped)
    assert all(r["error"].startswith("not run: mute stopped answering") and "first-byte deadline" in r["error"]
               for r in skipped)
    assert wall_s < NOT_RUN_AFTER * (LIMITS.first_byte_s + SLACK_S)  # not one more deadline waited out
    row = probe["results"][0]["summary"][0]
    assert row["ok"] == 0 and row["not_run"] == 3
    assert "0/6 (3 not run)" in render_probe([probe])


def test_a_burst_of_5xx_is_answers_not_silence(hostile):
    """HTTP errors are the server answering: each counts as failed, none makes the rest not run."""
    suite = _chat_suite(2 * NOT_RUN_AFTER)
    probe = probe_service(Target(service="busy", base_url=hostile.url("status_503"), model="m", suites=(suite.name,)),
                          {suite.name: suite}, out=lambda line: None)
    records = probe["results"][0]["records"]
    assert len(records) == 2 * NOT_RUN_AFTER
    assert all(r["result"] == "failed" and r["failure"] == "HTTP status" and r["http_status"] == 503
               and r["error"] == "HTTP 503: busy" for r in records)


def test_suite_limits_replace_the_kinds_defaults_and_bad_ones_are_refused():
    from sparkkit.errors import InputError
    from sparkkit.probe.limits import DEFAULTS
    from sparkkit.probe.suites import _check

    suite = _check({"suite": "s", "kind": "chat", "cases": [{"id": "a", "prompt": "p"}],
                    "limits": {"total_s": 7, "line_bytes": 4096}}, "suites/s.yaml")
    assert suite.limits() == DEFAULTS["chat"].merged({"total_s": 7, "line_bytes": 4096})
    assert suite.limits().with_total(3).total_s == 3 and suite.limits().first_byte_s == DEFAULTS["chat"].first_byte_s
    for bad, key in (({"total": 1}, "limits.total"), ({"total_s": -1}, "limits.total_s"),
                     ({"line_bytes": 1.5}, "limits.line_bytes"), ("fast", "limits")):
        with pytest.raises(InputError) as exc:
            _check({"suite": "s", "kind": "chat", "cases": [{"id": "a", "prompt": "p"}], "limits": bad},
                   "suites/s.yaml")
        assert exc.value.key == key


def test_a_reader_names_the_field_and_its_type():
    with pytest.raises(Breach) as exc:
        item(True, int, "usage.completion_tokens")
    assert exc.value.failure is Failure.WRONG_TYPE and exc.value.reason == (
        "usage.completion_tokens: expected an integer, got a boolean")
