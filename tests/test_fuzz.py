"""Fuzzing with hypothesis: the YAML loading and validation of inventories and suites, and the SSE
decoder, for crashes (anything but InputError) and hangs (a deadline per example)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkkit.inventory.build import build_config
from sparkkit.errors import InputError
from sparkkit.inventory.layers import HostLayers, Layer, parse_override, parse_yaml_mapping
from sparkkit.probe.sse import SSEDecoder
from sparkkit.probe.stream import StreamAccumulator, parse_event
from sparkkit.probe.suites import _check

REPO = Path(__file__).resolve().parent.parent
FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# YAML-ish text: the characters YAML gives meaning to, plus anything
yaml_text = st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#%@` \n\t,?0123456789abcxyz.\\")) | st.characters(),
                    max_size=300)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
keys = st.sampled_from(["services", "port", "image", "role", "env", "flags", "gpu", "host_memory_gib",
                        "ansible_host", "keep_releases", "memory_gib", "healthcheck", "gates", "depends_on",
                        "sparkkit_root", "compose_project", "llm", "search", "vllm", "searxng", "x"]) | st.text(
    max_size=10)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                         max_leaves=25)


@FUZZ
@given(yaml_text)
def test_yaml_text_loads_or_is_refused_cleanly(text):
    try:
        data = parse_yaml_mapping(text, "fuzz.yml")
    except InputError as exc:
        assert str(exc).startswith("fuzz.yml: ")
    else:
        assert isinstance(data, dict)


@FUZZ
@given(st.text(max_size=120))
def test_extra_vars_parse_or_are_refused_cleanly(text):
    try:
        parse_override(text)
    except InputError as exc:
        assert "command line -e" in str(exc) or str(exc)


def layers_with(data) -> HostLayers:
    base = yaml.safe_load((REPO / "inventory" / "group_vars" / "all.yml").read_text())
    return HostLayers(host="box", groups=("all",), project_dir=REPO,
                      layers=(Layer(source="inventory/group_vars/all.yml", data=base),
                              Layer(source="inventory/host_vars/box.yml",
                                    data={"ansible_host": "box.example", "host_memory_gib": 128.0, "gpu": True,
                                          **(data if isinstance(data, dict) else {"x": data})})))


@FUZZ
@given(documents)
def test_any_inventory_document_builds_or_is_refused_with_file_and_key(data):
    try:
        build_config(layers_with(data))
    except InputError as exc:
        assert exc.source, str(exc)
        assert "\n" not in str(exc)


@FUZZ
@given(st.dictionaries(st.sampled_from(["suite", "kind", "cases", "runs", "warmups", "tools", "texts", "queries",
                                        "conversations", "user_turns", "max_tokens", "x"]), documents, max_size=6))
def test_any_suite_document_is_accepted_or_refused_cleanly(data):
    try:
        _check(data, "suites/fuzz.yaml")
    except InputError as exc:
        assert str(exc).startswith("suites/fuzz.yaml")


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(min_value=1, max_value=64), max_size=40))
def test_sse_decoder_never_crashes_and_any_split_gives_the_same_events(raw, cuts):
    whole = SSEDecoder()
    expected = whole.feed(raw) + whole.close()
    pieces, i = [], 0
    for n in cuts:
        pieces.append(raw[i:i + n])
        i += n
    pieces.append(raw[i:])
    split = SSEDecoder()
    got = []
    for piece in pieces:
        got += split.feed(piece)
    got += split.close()
    assert got == expected
    assert all(isinstance(e, str) for e in got)


sse_events = st.lists(st.one_of(
    st.builds(lambda t: {"choices": [{"index": 0, "delta": {"content": t}}]}, st.text(max_size=8)),
    st.builds(lambda t: {"choices": [{"index": 0, "delta": {"reasoning": t}}]}, st.text(max_size=8)),
    st.builds(lambda name, args: {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"name": name, "arguments": args}}]}}]}, st.text(max_size=6), st.text(max_size=6)),
    st.builds(lambda n: {"choices": [], "usage": {"completion_tokens": n, "prompt_tokens": 3}},
              st.integers(min_value=0, max_value=10**6)),
    documents,
), max_size=30)


@FUZZ
@given(sse_events, st.booleans())
def test_a_stream_of_odd_chunks_gives_a_record_not_an_exception(events, done):
    raw = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    if done:
        raw += b"data: [DONE]\n\n"
    acc = StreamAccumulator()
    finished = False
    decoder = SSEDecoder()
    for i, data in enumerate(decoder.feed(raw) + decoder.close()):
        chunk, is_done = parse_event(data)
        finished = finished or is_done
        if chunk is not None:
            acc.add(chunk, at_s=0.01 * (i + 1))
    record = acc.record(end_s=1.0, done=finished)
    assert record.to_json()["ok"] in (True, False)
