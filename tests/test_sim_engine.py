"""The vLLM simulator's pure parts (testbed/image/vllm_parsers.py, vllm_engine.py,
vllm_metrics.py and the flag reading of testbed/image/vllm), each against what real vLLM does
under the flags the inventory renders (issue #17): the reasoning parsers none, qwen3,
deepseek_r1 and nano_v3, the tool parsers hermes and qwen3_coder, the model-length limit and
its 400, and the /metrics families with their labels."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
import sys

import pytest

from testbed.local_sim import IMAGE_DIR

sys.path.insert(0, str(IMAGE_DIR))
import vllm_engine  # noqa: E402
import vllm_metrics  # noqa: E402
import vllm_parsers  # noqa: E402
from vllm_parsers import split_reasoning, stream_pieces, tokenize  # noqa: E402

_loader = importlib.machinery.SourceFileLoader("vllm_cli", str(IMAGE_DIR / "vllm"))
_spec = importlib.util.spec_from_loader("vllm_cli", _loader)
vllm_cli = importlib.util.module_from_spec(_spec)
_loader.exec_module(vllm_cli)

TOOLS = [{"type": "function", "function": {"name": "shot", "parameters": {"type": "object", "properties": {
    "full_page": {"type": "boolean"}, "limit": {"type": "integer"}, "fields": {"type": "array"},
    "query": {"type": "string"}}}}}]


def seen(tokens, reasoning="qwen3", tool=None, thinking=True, tools=TOOLS):
    """What the client sees: [(kind, text)] over the whole stream, and which tokens showed nothing."""
    pieces = stream_pieces(tokens, reasoning_parser=reasoning, tool_parser=tool, thinking=thinking, tools=tools)
    return [p for ps in pieces for p in ps], [t for t, ps in zip(tokens, pieces) if not ps]


def joined(pieces, kind):
    return "".join(text for k, text in pieces if k == kind)


def test_tokenize_keeps_markup_tags_whole():
    assert tokenize("Hm, ok.</think>\n\nHi there") == ["Hm, ", "ok.", "</think>\n\n", "Hi ", "there"]
    assert tokenize("<tool_call>\n<function=f>\n<parameter=q>\nx y\n</parameter>\n</function>\n</tool_call>") == [
        "<tool_call>\n", "<function=f>\n", "<parameter=q>\n", "x ", "y\n", "</parameter>\n", "</function>\n",
        "</tool_call>"]


THOUGHT = ["<think>", "Let ", "me ", "see.", "</think>", "It ", "is ", "4."]


@pytest.mark.parametrize("parser", ["qwen3", "deepseek_r1", "nano_v3"])
def test_think_parsers_split_at_the_end_tag_and_swallow_the_tags(parser):
    pieces, swallowed = seen(THOUGHT, parser)
    assert joined(pieces, "reasoning") == "Let me see." and joined(pieces, "content") == "It is 4."
    assert swallowed == ["<think>", "</think>"]
    # thinking off: the template closed the think block in the prompt, everything is content
    pieces, _ = seen(["It ", "is ", "4."], parser, thinking=False)
    assert pieces == [("content", "It "), ("content", "is "), ("content", "4.")]


def test_without_a_reasoning_parser_the_think_tags_stay_in_content():
    pieces, swallowed = seen(THOUGHT, "none")
    assert joined(pieces, "content") == "<think>Let me see.</think>It is 4." and not swallowed
    assert joined(pieces, "reasoning") == ""
    assert split_reasoning("none", "".join(THOUGHT), True) == (None, "<think>Let me see.</think>It is 4.")


def test_qwen3_without_an_end_tag_puts_the_whole_answer_in_reasoning():
    answer = ["The ", "answer ", "is ", "4."]
    pieces, _ = seen(answer, "qwen3")
    assert joined(pieces, "content") == "" and joined(pieces, "reasoning") == "The answer is 4."
    assert split_reasoning("qwen3", "The answer is 4.", True) == ("The answer is 4.", None)
    assert split_reasoning("qwen3", "The answer is 4.", False) == (None, "The answer is 4.")


def test_non_streaming_thinking_off_deepseek_r1_says_reasoning_nano_v3_swaps_it_back():
    assert split_reasoning("deepseek_r1", "It is 4.", False) == ("It is 4.", None)
    assert split_reasoning("nano_v3", "It is 4.", False) == (None, "It is 4.")
    assert split_reasoning("nano_v3", "Hm.</think>It is 4.", True) == ("Hm.", "It is 4.")


def test_tool_call_inside_reasoning_ends_it_for_qwen3_only():
    tokens = ["Hm ", "<tool_call>\n", "{\"name\": \"shot\", \"arguments\": ", "{}", "}\n", "</tool_call>"]
    qwen, _ = seen(tokens, "qwen3", "hermes")
    assert [k for k, _ in qwen][:2] == ["reasoning", "header"]
    deepseek, _ = seen(tokens, "deepseek_r1", "hermes")
    assert {k for k, _ in deepseek} == {"reasoning"}  # swallowed into reasoning


def test_hermes_streams_a_header_without_arguments_then_the_arguments_and_holds_the_outer_brace():
    args = json.dumps({"query": "cats and dogs", "limit": 3})
    tokens = ["<tool_call>\n", '{"name": "shot", "arguments": ', *[args[i:i + 8] for i in range(0, len(args), 8)],
              "}\n", "</tool_call>"]
    pieces, swallowed = seen(tokens, "qwen3", "hermes", thinking=False)
    assert pieces[0] == ("header", "shot")
    assert json.loads(joined(pieces, "arguments")) == {"query": "cats and dogs", "limit": 3}
    assert all(0 < len(t) <= 8 for k, t in pieces[1:]) and joined(pieces, "content") == ""
    assert swallowed == ["<tool_call>\n", "}\n", "</tool_call>"]
    content, calls = vllm_parsers.extract_calls("hermes", "".join(tokens), TOOLS)
    assert content is None and calls == [("shot", args)]


def test_qwen3_coder_streams_one_typed_fragment_per_parameter():
    text = ("<tool_call>\n<function=shot>\n<parameter=full_page>\nfalse\n</parameter>\n<parameter=limit>\n5\n"
            "</parameter>\n<parameter=fields>\n[{\"name\": \"a\"}]\n</parameter>\n<parameter=query>\n12 cats\n"
            "</parameter>\n</function>\n</tool_call>")
    pieces, _ = seen(tokenize(text), "qwen3", "qwen3_coder", thinking=False)
    assert pieces[0] == ("header", "shot")
    fragments = [t for k, t in pieces if k == "arguments"]
    assert fragments[0] == "{" and fragments[-1] == "}" and len(fragments) == 6
    expected = {"full_page": False, "limit": 5, "fields": [{"name": "a"}], "query": "12 cats"}
    assert json.loads("".join(fragments)) == expected
    content, calls = vllm_parsers.extract_calls("qwen3_coder", text, TOOLS)
    assert content is None and calls[0][0] == "shot" and json.loads(calls[0][1]) == expected


@pytest.mark.parametrize("parser", ["hermes", "qwen3_coder"])
def test_a_malformed_call_is_swallowed_whole_no_content_no_call(parser):
    tokens = tokenize("<tool_call> I will look that up for you now")
    pieces, swallowed = seen(tokens, "qwen3", parser, thinking=False)
    assert pieces == [] and swallowed == tokens
    content, calls = vllm_parsers.extract_calls(parser, "".join(tokens), TOOLS)
    assert calls == [] and content == "".join(tokens)  # non-streaming: the text comes back as content


# --- the plan ----------------------------------------------------------------------------------

@pytest.fixture
def settings(monkeypatch):
    for name in ("SIM_TTFT_MS", "SIM_DECODE_TOK_S", "SIM_CHUNK_TOKENS", "SIM_REASONING_TOKENS", "SIM_DELIVERY",
                 "SIM_BURST_TOKENS", "SIM_THINK_LEAK", "SIM_THINK_IN_OUTPUT", "SIM_PREFILL_MS_PER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIM_REASONING_TOKENS", "3")
    return vllm_engine.Settings()


def options(**kw):
    values = {"served_name": "m", "max_model_len": 100, "reasoning_parser": "qwen3", "tool_parser": "qwen3_coder",
              "auto_tools": True}
    values.update(kw)
    return vllm_engine.Options(**values)


def chat(text, **extra):
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


RULES = [(re.compile("cats"), {"tool_call": {"name": "shot", "arguments": {"query": "cats"}},
                                            "content": "No tools."}),
         (re.compile("raw"), {"raw": "<tool_call> garbled"})]


def test_every_raw_token_takes_a_decode_slot_and_counts(settings):
    plan = vllm_engine.plan_chat(chat("hello"), RULES, settings, options())
    # 3 reasoning words, </think>, then the default answer (11 words)
    assert plan.completion_tokens == 3 + 1 + 11
    kinds = [kind for _, kind, _ in plan.chunks]
    assert kinds == ["reasoning"] * 3 + ["content"] * 11
    assert [i for i, _, _ in plan.chunks][3] == 4  # token 3 (</think>) shows nothing but takes its slot
    assert plan.due(4) == pytest.approx(0.05 + 4 / 50)


def test_chunk_tokens_group_by_kind_and_go_with_the_last(settings, monkeypatch):
    monkeypatch.setenv("SIM_CHUNK_TOKENS", "4")
    plan = vllm_engine.plan_chat(chat("hello"), RULES, vllm_engine.Settings(), options())
    assert [(i, k) for i, k, _ in plan.chunks] == [(2, "reasoning"), (7, "content"), (11, "content"),
                                                  (14, "content")]


def test_tool_calls_through_the_parser_and_the_guided_path(settings):
    tools = [{"type": "function", "function": {"name": "shot", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}}}}}]
    plan = vllm_engine.plan_chat(chat("cats", tools=tools, chat_template_kwargs={"enable_thinking": False}),
                                 RULES, settings, options())
    assert plan.finish_reason == "tool_calls" and plan.message["finish_reason"] == "tool_calls"
    assert plan.message["content"] is None and plan.message["tool_calls"] == [("shot", '{"query": "cats"}')]
    assert [k for _, k, _ in plan.chunks] == ["header", "arguments", "arguments", "arguments"]
    named = vllm_engine.plan_chat(chat("cats", tools=tools, tool_choice={"type": "function", "function": {
        "name": "shot"}}, chat_template_kwargs={"enable_thinking": False}), RULES, settings,
        options(tool_parser=None, auto_tools=False))
    assert named.finish_reason == "tool_calls" and named.chunks[0][1] == "header"
    garbled = vllm_engine.plan_chat(chat("raw", tools=tools, chat_template_kwargs={"enable_thinking": False}),
                                    RULES, settings, options())
    assert garbled.chunks == [] and garbled.finish_reason == "stop" and garbled.completion_tokens == 2


def test_auto_tool_choice_needs_the_flags_as_vllm_says(settings):
    with pytest.raises(vllm_engine.RequestError) as err:
        vllm_engine.plan_chat(chat("cats", tools=TOOLS), RULES, settings, options(tool_parser=None, auto_tools=False))
    assert err.value.status == 400 and "--enable-auto-tool-choice" in str(err.value)
    plan = vllm_engine.plan_chat(chat("cats", tools=TOOLS, tool_choice="none"), RULES, settings,
                                 options(tool_parser=None, auto_tools=False))
    assert plan.message["content"].endswith("No tools.")


def test_the_model_length_limit_is_a_400(settings):
    opts = options(max_model_len=10)
    with pytest.raises(vllm_engine.RequestError) as err:
        vllm_engine.plan_chat(chat("a b c", max_tokens=8), RULES, settings, opts)
    assert err.value.status == 400 and err.value.kind == "BadRequestError"
    assert str(err.value) == ("'max_tokens' or 'max_completion_tokens' is too large: 8. This model's maximum "
                              "context length is 10 tokens and your request has 3 input tokens (8 > 10 - 3).")
    assert vllm_engine.plan_chat(chat("a b c", max_tokens=7), RULES, settings, opts).completion_tokens == 7
    with pytest.raises(vllm_engine.RequestError, match="However, your request has 11 input tokens"):
        vllm_engine.plan_chat(chat("w " * 11), RULES, settings, opts)
    with pytest.raises(vllm_engine.RequestError) as err:
        vllm_engine.plan_chat(chat("a", model="other"), RULES, settings, opts)
    assert err.value.status == 404 and err.value.kind == "NotFoundError"


def test_think_in_output_and_the_leak_fault(settings, monkeypatch):
    monkeypatch.setenv("SIM_THINK_IN_OUTPUT", "1")
    plan = vllm_engine.plan_chat(chat("hello"), RULES, vllm_engine.Settings(), options(reasoning_parser="none"))
    assert plan.tokens[0] == "<think>" and plan.chunks[0][2] == "<think>"  # no parser: in content
    monkeypatch.setenv("SIM_THINK_LEAK", "1")
    plan = vllm_engine.plan_chat(chat("hello", chat_template_kwargs={"enable_thinking": False}), RULES,
                                 vllm_engine.Settings(), options())
    assert plan.chunks[0][1] == "content" and plan.chunks[0][2].startswith("<think>")


def test_settings_refuse_an_unknown_delivery(monkeypatch):
    monkeypatch.setenv("SIM_DELIVERY", "teleport")
    with pytest.raises(ValueError, match="SIM_DELIVERY"):
        vllm_engine.Settings()


def test_flags_as_vllm_reads_them():
    _, opts = vllm_cli.parse_args(["m", "--reasoning-parser", "qwen3", "--enable-auto-tool-choice",
                                   "--tool-call-parser", "qwen3_coder", "--max-model-len", "32k"])
    o = vllm_cli.options_from(opts, "m")
    assert (o.reasoning_parser, o.tool_parser, o.auto_tools, o.max_model_len) == ("qwen3", "qwen3_coder", True,
                                                                                   32000)
    assert vllm_cli.options_from({}, "m").reasoning_parser == "none"
    for bad, why in (({"reasoning-parser": "qwen9"}, "invalid reasoning parser"),
                     ({"reasoning-parser": "nano_v3"}, "--reasoning-parser-plugin"),
                     ({"tool-call-parser": "mistralish"}, "invalid tool call parser"),
                     ({"enable-auto-tool-choice": True}, "requires --tool-call-parser")):
        with pytest.raises(ValueError, match=why):
            vllm_cli.options_from(bad, "m")
    assert vllm_cli.options_from({"reasoning-parser": "nano_v3", "reasoning-parser-plugin": "/p.py"},
                                 "m").reasoning_parser == "nano_v3"


def test_metrics_labels_and_server_side_timing():
    m = vllm_metrics.Metrics("annie", kv_capacity_tokens=100)
    key = object()
    m.started(key, 7)
    m.decoded(key, 0.2, first=True)
    for _ in range(4):
        m.decoded(key, 0.02, first=False)
    m.finished(key, "tool_calls", t0=0.0, decoded=[0.2, 0.22, 0.24, 0.26, 0.28])
    text = m.render()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    lab = 'engine="0",model_name="annie"'
    assert samples['vllm:request_success_total{engine="0",finished_reason="stop",model_name="annie"}'] == 1
    assert samples[f"vllm:generation_tokens_total{{{lab}}}"] == 5
    assert samples[f"vllm:inter_token_latency_seconds_count{{{lab}}}"] == 4
    assert samples[f"vllm:inter_token_latency_seconds_sum{{{lab}}}"] == pytest.approx(0.08)
    assert samples['vllm:inter_token_latency_seconds_bucket{engine="0",le="0.025",model_name="annie"}'] == 4
    assert samples[f"vllm:time_to_first_token_seconds_sum{{{lab}}}"] == pytest.approx(0.2)
    assert samples[f"vllm:request_decode_time_seconds_sum{{{lab}}}"] == pytest.approx(0.08)
    assert samples[f"vllm:request_prefill_time_seconds_sum{{{lab}}}"] == pytest.approx(0.2)
    assert samples[f"vllm:e2e_request_latency_seconds_sum{{{lab}}}"] == pytest.approx(0.28)
    assert samples[f"vllm:request_prompt_tokens_sum{{{lab}}}"] == 7
    assert samples[f"vllm:num_requests_running{{{lab}}}"] == 0
    for family in ("num_requests_waiting", "kv_cache_usage_perc", "num_preemptions_total", "prompt_tokens_total",
                   "request_queue_time_seconds_count", "request_inference_time_seconds_count",
                   "request_time_per_output_token_seconds_count", "request_generation_tokens_count"):
        assert f"vllm:{family}{{{lab}}}" in samples
    assert "# TYPE vllm:inter_token_latency_seconds histogram" in text
