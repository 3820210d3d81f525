"""Property-based tests (hypothesis, each example under a deadline) of the SSE decoder with its caps
and of every reader of what a server sends; and a measure that the decoder is linear in its input."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkkit.probe import answers
from sparkkit.probe.fields import depth, loads_json
from sparkkit.probe.limits import Breach, Failure
from sparkkit.probe.sse import SSEDecoder
from sparkkit.probe.stream import StreamAccumulator, record_from_message

QUICK = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
LINE, EVENT = 48, 96

scalars = st.none() | st.booleans() | st.integers(min_value=-10**18, max_value=10**18) | st.floats(
    allow_nan=False) | st.text(max_size=12)
names = st.sampled_from(["choices", "delta", "content", "reasoning", "reasoning_content", "tool_calls", "index",
                         "id", "function", "name", "arguments", "finish_reason", "usage", "completion_tokens",
                         "prompt_tokens", "message", "embeddings", "results", "url", "title", "data", "error"])
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=5),
                         max_leaves=30)
sse_bytes = st.lists(st.sampled_from([b"data: ", b"data:", b": c", b"event: x", b"\n", b"\r", b"\r\n", b"x" * 30,
                                      b"{\"a\": 1}", b"\xff", b"[DONE]"]) | st.binary(max_size=20), max_size=40)


def outcome(raw: bytes, cuts: list[int]) -> tuple[list[str], Failure | None]:
    decoder = SSEDecoder(max_line_bytes=LINE, max_event_bytes=EVENT)
    events, i = [], 0
    try:
        for n in cuts:
            events += decoder.feed(raw[i:i + n])
            i += n
        events += decoder.feed(raw[i:])
        events += decoder.close()
    except Breach as exc:
        assert exc.failure in (Failure.LINE_CAP, Failure.EVENT_CAP) and "cap" in exc.reason
        return [], exc.failure
    return events, None


@QUICK
@given(sse_bytes, st.lists(st.integers(min_value=1, max_value=50), max_size=20))
def test_the_capped_decoder_gives_the_same_outcome_however_the_bytes_are_split(pieces, cuts):
    raw = b"".join(pieces)
    whole = outcome(raw, [])
    assert outcome(raw, cuts) == whole
    assert outcome(raw, [1] * len(raw)) == whole
    if whole[1] is None:  # no line over the cap and no event over its cap
        assert all(len(e.encode()) <= EVENT for e in whole[0])


@QUICK
@given(st.integers(min_value=0, max_value=LINE * 3), st.integers(min_value=1, max_value=64))
def test_a_line_over_the_cap_is_refused_before_it_ends(length, piece):
    decoder = SSEDecoder(max_line_bytes=LINE)
    raw = b"data: " + b"a" * length
    try:
        for i in range(0, len(raw), piece):
            decoder.feed(raw[i:i + piece])
        refused = False
    except Breach as exc:
        refused = exc.failure is Failure.LINE_CAP
    # no newline ever came: the buffer never holds more than the cap and a byte
    assert refused == (len(raw) > LINE + 1)


@QUICK
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                 documents.map(json.dumps)))
def test_json_loads_or_is_refused_with_a_reason(text):
    try:
        loads_json(text, max_depth=8)
    except Breach as exc:
        assert exc.failure in (Failure.BAD_JSON, Failure.JSON_DEPTH) and exc.reason


@QUICK
@given(st.binary(max_size=100))
def test_invalid_utf8_is_refused_not_replaced(raw):
    try:
        raw.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    try:
        loads_json(raw, max_depth=8)
        refused = None
    except Breach as exc:
        refused = exc.failure
    assert (refused is Failure.BAD_UTF8) == (not valid)


@QUICK
@given(st.integers(min_value=0, max_value=3000), st.booleans())
def test_nesting_is_refused_exactly_past_the_depth_cap(levels, arrays):
    text = "[" * levels + "1" + "]" * levels if arrays else '{"a":' * levels + "1" + "}" * levels
    try:
        value = loads_json(text, max_depth=64)
        refused = False
    except Breach as exc:
        assert exc.failure is Failure.JSON_DEPTH and "64" in exc.reason
        refused = True
    assert refused == (levels > 64)
    if not refused:
        assert depth(value) == levels


@QUICK
@given(documents)
def test_every_reader_returns_or_names_the_field(doc):
    for read in (answers.embeddings, answers.search_results, answers.first_model):
        try:
            read(doc)
        except Breach as exc:
            assert exc.failure in (Failure.WRONG_TYPE, Failure.MISSING, Failure.EMPTY) and ":" in exc.reason
    record = record_from_message(doc, latency_s=0.1)  # never raises
    assert record.ok == (record.failure is None)
    acc = StreamAccumulator()
    acc.add_event(json.dumps(doc), 0.1)
    acc.add_event(json.dumps({"choices": [{"delta": {"content": "x"}}]}), 0.2)
    rec = acc.record(end_s=0.3, done=False)  # never raises
    assert not rec.ok and rec.failure is not None and rec.error


def _feed_time(raw: bytes, piece: int) -> float:
    decoder = SSEDecoder(max_line_bytes=len(raw) + 8, max_event_bytes=len(raw) + 8)
    start = time.perf_counter()
    for i in range(0, len(raw), piece):
        decoder.feed(raw[i:i + piece])
    decoder.close()
    return time.perf_counter() - start


@pytest.mark.timing
def test_the_decoder_is_linear_in_its_input():
    """Four times the input takes about four times as long (quadratic would be sixteen), for many
    short events in big pieces and for one long line in small pieces; best of three each."""
    event = b'data: {"choices": [{"index": 0, "delta": {"content": "tok"}}]}\n\n'
    for make, piece in ((lambda n: event * (n // len(event)), 1 << 20), (lambda n: b"data: " + b"a" * n + b"\n\n", 64)):
        small, large = make(256 << 10), make(1 << 20)
        t_small = min(_feed_time(small, piece) for _ in range(3))
        t_large = min(_feed_time(large, piece) for _ in range(3))
        assert t_large / t_small < 8, (piece, t_small, t_large)
