"""Decode figures that stay honest on bursty delivery, and the server's timing beside the client's:
the arrival analysis, the Prometheus text parser (property tests and vLLM's captured text), the
window's means and delivery gap, Ollama's timings, and the gates that say which figure they used."""

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparkkit.probe.arrivals import (MAX_BURST_SHARE, MIN_ARRIVALS, DecodeSource, analyse, decode_figure,
                                     lower_bound)
from sparkkit.probe.prometheus import histogram, parse, parse_line
from sparkkit.probe.server import (client_window, ollama_timings, timing, window, with_server_decode)
from sparkkit.verify.gates import evaluate, service_metrics
from tests.test_gates import by_name, cfg
from tests.test_probe_stream import ROLE, delta, finish, run_stream, sse, usage

CAPTURED = Path(__file__).parent / "fixtures" / "captured" / "vllm" / "metrics-excerpt.txt"


# --- arrivals -------------------------------------------------------------------------------------

def test_a_steady_stream_is_measured_by_the_client():
    a = analyse([0.1 + i * 0.02 for i in range(50)])
    assert (a.token_chunks, a.arrivals, a.largest_burst_chunks) == (50, 50, 1) and a.measurable
    value, source = decode_figure(a, 50, end_s=1.2)
    assert source is DecodeSource.CLIENT and value == pytest.approx(49 / 0.98)


def test_the_whole_answer_within_2_ms_of_the_first_token_is_not_measurable():
    """The issue's case: (tokens - 1) / (last - first) would read 199 / 0.0019 = 104,737 tok/s."""
    times = [0.300 + i * 0.0019 / 199 for i in range(200)]
    a = analyse(times)
    assert a.arrivals == 1 and a.largest_burst_chunks == 200 and not a.measurable
    value, source = decode_figure(a, 200, end_s=4.0)
    assert source is DecodeSource.LOWER_BOUND and value == pytest.approx(199 / 4.0)
    assert decode_figure(a, 200, end_s=4.0, server_tok_s=48.0) == (48.0, DecodeSource.SERVER)


def test_first_token_alone_then_one_burst_is_not_measurable():
    a = analyse([0.2] + [0.5 + i * 1e-5 for i in range(99)])
    assert a.arrivals == 2 and a.largest_burst_chunks == 99 and a.burst_share > MAX_BURST_SHARE
    assert decode_figure(a, 100, end_s=0.6)[1] is DecodeSource.LOWER_BOUND


def test_a_burst_spanning_a_millisecond_boundary_is_one_arrival():
    a = analyse([0.0109, 0.0111, 0.0113])  # 0.2 ms apart, across the 11 ms tick
    assert a.arrivals == 1


def test_several_tokens_per_chunk_scale_the_burst_to_tokens():
    a = analyse([0.1, 0.2, 0.2, 0.3])
    assert a.largest_burst_chunks == 2 and a.largest_burst_tokens(8) == 4 and a.largest_burst_tokens(None) == 2


def test_fewer_than_two_tokens_have_no_decode_figure():
    assert decode_figure(analyse([0.1]), 1, end_s=0.2) == (None, None)
    assert decode_figure(analyse([0.1, 0.2]), None, end_s=0.3) == (None, None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=30.0, allow_nan=False), min_size=1, max_size=200),
       st.integers(min_value=2, max_value=4000), st.floats(min_value=0.0, max_value=5.0))
def test_the_figure_is_never_absurd(times, tokens, tail_s):
    """Whatever the arrival times: a client figure's span holds at least MIN_ARRIVALS - 1 gaps of
    1 ms, and the lower bound is at most (tokens - 1) / (the request's whole time)."""
    a = analyse(times)
    end_s = max(times) + tail_s + 1e-3
    value, source = decode_figure(a, tokens, end_s=end_s)
    assert a.arrivals <= a.token_chunks and a.largest_burst_chunks <= a.token_chunks
    if source is DecodeSource.CLIENT:
        assert a.span_s >= (MIN_ARRIVALS - 1) * 0.001 - 1e-12 and a.burst_share <= MAX_BURST_SHARE
        assert value == pytest.approx((tokens - 1) / a.span_s)
    else:
        assert source is DecodeSource.LOWER_BOUND and value == pytest.approx(lower_bound(tokens, end_s))
        assert value <= (tokens - 1) / end_s + 1e-9


# --- the stream record ----------------------------------------------------------------------------

def test_a_burst_delivered_stream_record_says_so():
    words = [delta(content=f"w{i} ") for i in range(40)]
    raw = sse(ROLE, *words, finish("stop"), usage(10, 40))
    times = [0.25] * 43  # every chunk in one read, 250 ms after the request
    acc, done = run_stream(raw, times=times)
    rec = acc.record(end_s=0.251, done=done)
    assert rec.ok and rec.decode_measurable is False and rec.arrivals == 1 and rec.largest_burst_tokens == 40
    assert rec.decode_source is DecodeSource.LOWER_BOUND and rec.decode_tok_s == pytest.approx(39 / 0.251)
    assert rec.to_json()["decode_source"] == "e2e lower bound"


def test_a_paced_stream_record_is_the_clients():
    raw = sse(ROLE, *[delta(content=f"w{i} ") for i in range(10)], finish("stop"), usage(10, 10))
    times = [0.1] + [0.1 + 0.02 * i for i in range(10)] + [0.3, 0.3]
    acc, done = run_stream(raw, times=times)
    rec = acc.record(end_s=0.31, done=done)
    assert rec.decode_source is DecodeSource.CLIENT and rec.arrivals == 10 and rec.decode_measurable
    assert rec.decode_tok_s == pytest.approx(9 / 0.18) and rec.token_span_ms == pytest.approx(180)


# --- Prometheus text ------------------------------------------------------------------------------

def test_captured_vllm_metrics_text():
    expo = parse(CAPTURED.read_text())
    assert expo.skipped == 0
    assert expo.types["vllm:time_to_first_token_seconds"] == "histogram"
    running = next(s for s in expo.samples if s.name == "vllm:num_requests_running")
    assert running.value == 8.0 and running.label("model_name") == "meta-llama/Llama-3.1-8B-Instruct"
    success = [s for s in expo.samples if s.name == "vllm:request_success_total"]
    assert {s.label("finished_reason"): s.value for s in success} == {"length": 131.0, "abort": 0.0}
    ttft = histogram(expo, "vllm:time_to_first_token_seconds")
    assert ttft.count == 140.0 and ttft.sum is None  # the excerpt has no _sum line: no mean from it
    assert histogram(expo, "vllm:inter_token_latency_seconds") is None


def vllm_text(model="m", *, ttft=(0.0, 0), itl=(0.0, 0), e2e=(0.0, 0), queue=(0.0, 0), prefill=(0.0, 0),
              engines=("0",), old_itl=False):
    """Text in vLLM's format (v1 loggers.py: engine and model_name labels, buckets, _created)."""
    lines = ["# HELP vllm:num_requests_running Number of requests in model execution batches.",
             "# TYPE vllm:num_requests_running gauge"]
    itl_name = "vllm:time_per_output_token_seconds" if old_itl else "vllm:inter_token_latency_seconds"
    for name, (total, count) in (("vllm:time_to_first_token_seconds", ttft), (itl_name, itl),
                                 ("vllm:e2e_request_latency_seconds", e2e), ("vllm:request_queue_time_seconds", queue),
                                 ("vllm:request_prefill_time_seconds", prefill)):
        lines += [f"# HELP {name} Histogram.", f"# TYPE {name} histogram"]
        for engine in engines:
            labels = f'engine="{engine}",model_name="{model}"'
            share = len(engines)
            lines += [f'{name}_bucket{{{labels},le="0.01"}} 0.0', f'{name}_bucket{{{labels},le="+Inf"}} {count / share}',
                      f"{name}_count{{{labels}}} {count / share}", f"{name}_sum{{{labels}}} {total / share}",
                      f"{name}_created{{{labels}}} 1.7e9"]
    return "\n".join(lines) + "\n"


def test_window_means_over_two_readings():
    before = parse(vllm_text(ttft=(1.0, 10), itl=(2.0, 100), e2e=(30.0, 10), queue=(0.1, 10), prefill=(0.5, 10),
                             engines=("0", "1")))
    after = parse(vllm_text(ttft=(1.4, 14), itl=(2.5, 200), e2e=(38.0, 14), queue=(0.14, 14), prefill=(0.7, 14),
                            engines=("0", "1")))
    w = window(before, after)
    assert w.requests == 4 and w.ttft_mean_ms == pytest.approx(100) and w.itl_mean_ms == pytest.approx(5)
    assert w.decode_tok_s == pytest.approx(200) and w.e2e_mean_ms == pytest.approx(2000)
    assert w.queue_mean_ms == pytest.approx(10) and w.prefill_mean_ms == pytest.approx(50)
    assert w.itl_family == "vllm:inter_token_latency_seconds" and w.decode_mean_ms is None


def test_older_vllm_time_per_output_token_and_a_restart():
    w = window(parse(vllm_text(itl=(1.0, 50), old_itl=True)), parse(vllm_text(itl=(2.0, 100), old_itl=True)))
    assert w.itl_family == "vllm:time_per_output_token_seconds" and w.itl_mean_ms == pytest.approx(20)
    restarted = window(parse(vllm_text(ttft=(5.0, 50))), parse(vllm_text(ttft=(0.1, 1))))
    assert restarted.ttft_mean_ms is None  # the count went down: the server restarted, no figure
    assert window(parse("up 1\n"), parse("up 1\n")) is None


def test_delivery_gap_is_client_minus_server():
    server = window(parse(vllm_text(ttft=(0.0, 0), e2e=(0.0, 0))), parse(vllm_text(ttft=(0.2, 4), e2e=(4.0, 4))))
    records = [{"ok": True, "ttft_ms": 300.0, "latency_ms": 1500.0, "decode_tok_s": 50.0, "decode_source": "client",
                "decode_measurable": True, "warmup": i < 1} for i in range(4)]
    t = timing(server, records, source="vLLM /metrics")
    assert t["ttft_gap_ms"] == pytest.approx(250.0) and t["e2e_gap_ms"] == pytest.approx(500.0)
    assert t["client"]["requests"] == 4 and t["client"]["decode_tok_s_p50"] == 50.0
    assert timing(None, records, source="vLLM /metrics", error="/metrics: HTTP 404")["ttft_gap_ms"] is None


_label_value = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True),
       st.dictionaries(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True), _label_value, max_size=4),
       st.floats(allow_nan=False, allow_infinity=True, width=64))
def test_any_sample_round_trips(name, labels, value):
    esc = {k: v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in labels.items()}
    text = name + ("{" + ",".join(f'{k}="{v}"' for k, v in esc.items()) + "}" if labels else "") + f" {value!r}"
    if math.isinf(value):
        text = text.replace("inf", "Inf")
    sample = parse_line(text)
    assert sample is not None and sample.name == name and dict(sample.labels) == labels and sample.value == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_the_parser_never_raises(text):
    expo = parse(text)
    assert expo.skipped + len(expo.samples) <= len(text.splitlines())


def test_odd_lines_are_skipped_not_fatal():
    expo = parse('a{x="1"} 2\nb{x="unterminated} 3\nc{x="1"}4\nd 1 2 3\ne NaN\nf 1 1700000000000\n# EOF\n')
    assert [s.name for s in expo.samples] == ["a", "e", "f"] and expo.skipped == 3


# --- Ollama ---------------------------------------------------------------------------------------

def test_ollama_timings_from_its_answer():
    t = ollama_timings({"total_duration": 5_000_000_000, "load_duration": 1_000_000, "prompt_eval_duration": 300_000_000,
                        "eval_count": 100, "eval_duration": 2_000_000_000, "embeddings": [[0.1]]})
    assert t == {"total_ms": 5000.0, "load_ms": 1.0, "prompt_eval_ms": 300.0, "eval_ms": 2000.0, "eval_count": 100,
                 "decode_tok_s": 50.0}
    assert ollama_timings({"embeddings": []}) is None and ollama_timings(["x"]) is None
    assert ollama_timings({"total_duration": "5", "eval_count": True}) is None


# --- the server's figure given to the records, and the gates -------------------------------------

def bursty_records(n=5, *, lower=3.0):
    return [{"case": "c", "ok": True, "warmup": False, "ttft_ms": 200.0, "decode_tok_s": lower,
             "decode_source": "e2e lower bound", "decode_measurable": False} for _ in range(n)]


def test_records_the_client_could_not_measure_get_the_servers_figure():
    records = bursty_records(4) + [{"case": "c", "ok": True, "warmup": False, "decode_tok_s": 51.0,
                                    "decode_source": "client"}]
    rows = [{"case": "c", "decode_tok_s": {"p50": 3.0}}]
    with_server_decode(records, rows, 48.0)
    assert [r["decode_source"] for r in records] == ["server"] * 4 + ["client"]
    assert rows[0]["decode_tok_s"]["p50"] == 48.0 and rows[0]["decode_sources"] == {"server": 4, "client": 1}


def probe_of(records, server=None):
    return {"service": "vllm-nemotron", "results": [
        {"suite": "standard", "kind": "chat", "records": records, "summary": [], "score": None, "server": server}],
        "quality": []}


def gates_for(records, previous=None, server=None):
    return by_name(evaluate(cfg=cfg(), probes=[probe_of(records, server)], headroom_gib=40.0, crashes=[],
                            previous=previous))


def test_the_decode_gate_says_it_judged_a_lower_bound():
    gate = gates_for(bursty_records(lower=3.0))[("vllm-nemotron", "decode tok/s p50")]
    assert not gate.passed and gate.figure == "e2e lower bound" and gate.observed == ">= 3.0 tok/s (e2e lower bound)"
    assert "only a lower bound" in gate.why and "bursty delivery" in gate.why
    proven = gates_for(bursty_records(lower=30.0))[("vllm-nemotron", "decode tok/s p50")]
    assert proven.passed and "even its lower bound" in proven.why


def test_the_decode_gate_says_it_judged_the_servers_figure():
    records = bursty_records()
    with_server_decode(records, [], 439.0)
    gate = gates_for(records)[("vllm-nemotron", "decode tok/s p50")]
    assert gate.passed and gate.figure == "server" and gate.observed == "439.0 tok/s (server)"
    assert "inter-token latency" in gate.why


def test_most_requests_measured_by_the_client_give_the_clients_p50():
    records = bursty_records(2) + [{"ok": True, "warmup": False, "ttft_ms": 100.0, "decode_tok_s": v,
                                    "decode_source": "client"} for v in (40.0, 50.0, 60.0)]
    m = service_metrics(probe_of(records))
    assert (m["decode_tok_s_p50"], m["decode_source"]) == (50.0, "client")
    assert m["decode_sources"] == {"client": 3, "e2e lower bound": 2}


@pytest.mark.parametrize("prev_source, now_records, passed, words", [
    ("client", "client", False, "slower decoding"),
    ("client", "server", True, "not compared"),
    ("server", "lower-high", True, "even the lower bound is above"),
    ("server", "lower-low", True, "not compared"),
])
def test_the_regression_gate_compares_figures_of_one_source(prev_source, now_records, passed, words):
    previous = {"release": "rold", "metrics": {"vllm-nemotron": {"ttft_p50_ms": 200.0, "decode_tok_s_p50": 100.0,
                                                                 "decode_source": prev_source}}}
    if now_records == "client":
        records = [{"ok": True, "warmup": False, "ttft_ms": 200.0, "decode_tok_s": 80.0, "decode_source": "client"}]
    elif now_records == "server":
        records = bursty_records()
        with_server_decode(records, [], 80.0)
    else:
        records = bursty_records(lower=95.0 if now_records == "lower-high" else 30.0)
    gate = gates_for(records, previous)[("vllm-nemotron", "no decode regression")]
    assert gate.passed is passed and words in gate.why and f"({prev_source})" in gate.threshold


def test_a_baseline_without_a_source_is_the_clients():
    previous = {"release": "rold", "metrics": {"vllm-nemotron": {"ttft_p50_ms": 200.0, "decode_tok_s_p50": 100.0}}}
    records = [{"ok": True, "warmup": False, "ttft_ms": 200.0, "decode_tok_s": 95.0}]
    gate = gates_for(records, previous)[("vllm-nemotron", "no decode regression")]
    assert gate.passed and gate.figure == "client" and "(client)" in gate.threshold


def test_service_metrics_carry_the_servers_side():
    server = {"server": {"requests": 7, "ttft_mean_ms": 40.0, "itl_mean_ms": 2.0, "e2e_mean_ms": 900.0,
                         "queue_mean_ms": 1.0, "prefill_mean_ms": 30.0}, "ttft_gap_ms": 210.0}
    m = service_metrics(probe_of(bursty_records(), server=server))
    assert m["server"]["ttft_mean_ms"] == 40.0 and m["server"]["decode_tok_s"] == pytest.approx(500.0)
    assert m["server"]["ttft_gap_ms"] == 210.0
    assert client_window(bursty_records())["bursty"] == 5


def test_the_report_shows_both_sides_and_which_figure():
    from sparkkit.deploy.outcome import Verdict
    from sparkkit.verify.report import console_summary, render_markdown
    from sparkkit.verify.run import Verification

    records = bursty_records()
    with_server_decode(records, [], 439.0)
    server = {"server": {"requests": 7, "ttft_mean_ms": 40.0, "itl_mean_ms": 1000 / 439.0, "e2e_mean_ms": 900.0,
                         "queue_mean_ms": 1.5, "prefill_mean_ms": 30.0}, "ttft_gap_ms": 160.0}
    probe = probe_of(records, server=server)
    gates = evaluate(cfg=cfg(), probes=[probe], headroom_gib=40.0, crashes=[], previous=None)
    previous = {"release": "rold", "metrics": {"vllm-nemotron": {"ttft_p50_ms": 190.0, "decode_tok_s_p50": 50.0}}}
    run = Verification(host="h", action="verify", release="r1", verdict=Verdict.VERIFIED, decision="verified",
                       gates=gates, metrics={"vllm-nemotron": service_metrics(probe)}, baseline=previous)
    text = render_markdown(run, {})
    assert "## Server-side and client-side timing" in text
    section = text.split("## Server-side and client-side timing")[1]
    row = next(line for line in section.splitlines() if line.startswith("| vllm-nemotron"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == ["200.0 ms", "40.0 ms", "160.0 ms", "439.0 (server)"]  # client TTFT, server TTFT, gap
    assert "50.0 (client)" in text and "439.0 (server)" in text  # the baseline's figure and this run's, labelled
    assert "439.0 tok/s (server)" in text  # the gate's observed figure
    summary = console_summary(run, Path("/r"))
    assert "decode p50 439.0 tok/s (server); server TTFT mean 40 ms, delivery gap 160 ms" in summary


def test_the_ttft_gate_may_judge_the_servers_ttft():
    server = {"server": {"requests": 7, "ttft_mean_ms": 40.0, "itl_mean_ms": 20.0}, "ttft_gap_ms": 360.0}
    records = [{"ok": True, "warmup": False, "ttft_ms": 400.0, "decode_tok_s": 50.0, "decode_source": "client"}]
    client = by_name(evaluate(cfg=cfg(), probes=[probe_of(records, server)], headroom_gib=40.0, crashes=[],
                              previous=None))
    assert not client[("vllm-nemotron", "TTFT p50")].passed  # the default: what the user waits for
    on_server = cfg("services.vllm-nemotron.gates.ttft_source=server")
    gates = by_name(evaluate(cfg=on_server, probes=[probe_of(records, server)], headroom_gib=40.0, crashes=[],
                             previous=None))
    gate = gates[("vllm-nemotron", "TTFT (server mean)")]
    assert gate.passed and gate.figure == "server" and gate.observed == "40.0 ms (server)"
    assert "the client's p50 was 400.0 ms" in gate.why and ("vllm-nemotron", "TTFT p50") not in gates
    unread = by_name(evaluate(cfg=on_server, probes=[probe_of(records)], headroom_gib=40.0, crashes=[],
                              previous=None))[("vllm-nemotron", "TTFT p50")]
    assert not unread.passed and "the server's TTFT could not be read" in unread.why


def test_ttft_source_is_checked():
    from sparkkit.errors import InputError

    with pytest.raises(InputError, match="expected client or server"):
        cfg("services.vllm-nemotron.gates.ttft_source=both")
