"""Scoring on hand-made right and wrong answers; suite files; probe targets from the inventory."""

from pathlib import Path

import pytest

from sparkkit.inventory.build import build_config
from sparkkit.errors import InputError
from sparkkit.inventory.layers import load_host_layers
from sparkkit.probe.metrics import percentile, summary
from sparkkit.probe.scoring import (factually_correct, markdown_found, score_extraction, score_tool_call,
                                    thinking_leak)
from sparkkit.probe.stream import ChatRecord, ToolCall, failed
from sparkkit.probe.suites import load_suites
from sparkkit.probe.targets import model_of, needs_tunnel, targets_for

REPO = Path(__file__).resolve().parent.parent
SUITES = load_suites(REPO)
TOOLS = SUITES["tools"].get("tools")


def answer(text="", *, calls=(), reasoning="", ok=True):
    parsed = [ToolCall(name=n, arguments=str(a), parsed=a, error=None if a is not None else "bad JSON")
              for n, a in calls]
    return ChatRecord(ok=ok, error=None if ok else "boom", ttft_ms=1, ttfo_ms=1, latency_ms=2, decode_tok_s=None,
                      e2e_tok_s=None, prompt_tokens=1, completion_tokens=1, text=text, reasoning=reasoning,
                      tool_calls=tuple(parsed), finish_reason="stop", chunks=3)


WEB = {"tool": "web_search", "args": {"query": "DGX Spark"}}


@pytest.mark.parametrize("record, expect, passed, why", [
    (answer(calls=[("web_search", {"query": "latest DGX Spark news"})]), WEB, True, "expected arguments"),
    (answer(calls=[("search_memory", {"query": "DGX Spark"})]), WEB, False, "called search_memory"),
    (answer("The DGX Spark is..."), WEB, False, "got no tool call"),
    (answer(calls=[("web_search", {"query": "Jetson"})]), WEB, False, "expected it to contain 'DGX Spark'"),
    (answer(calls=[("web_search", {"query": "DGX Spark", "lang": "en"})]), WEB, False, "unknown argument(s) lang"),
    (answer(calls=[("web_search", {})]), {"tool": "web_search"}, False, "missing required argument(s) query"),
    (answer(calls=[("web_search", None)]), WEB, False, "bad JSON"),
    (answer("96"), None, True, "answered directly"),
    (answer(calls=[("web_search", {"query": "12*8"})]), None, False, "expected a direct answer"),
    (answer(""), None, False, "empty content"),
    (failed("HTTP 500: boom"), WEB, False, "request failed: HTTP 500"),
])
def test_tool_call_scoring(record, expect, passed, why):
    verdict = score_tool_call(record, expect, TOOLS)
    assert verdict.passed is passed and why in verdict.reason


def test_nested_expected_values_match_inside_lists():
    tools = SUITES["mcp"].get("tools")
    good = answer(calls=[("browser_fill_form", {"fields": [{"name": "email", "value": "annie@example.com"}]})])
    expect = {"tool": "browser_fill_form", "args": {"fields": "annie@example.com"}}
    assert score_tool_call(good, expect, tools).passed


EXPECT = {"persons": ["Priya Sharma", "Arjun"], "places": ["Pune"]}


@pytest.mark.parametrize("record, valid, recall, why", [
    (answer('{"persons": ["Priya Sharma", "Arjun"], "places": ["Pune"], "organizations": []}'), True, 1.0,
     "all expected"),
    (answer('```json\n{"persons": [{"name": "priya sharma"}], "places": ["Pune, India"]}\n```'), True, 2 / 3,
     "missing: Arjun"),
    (answer("Persons: Priya, Arjun"), False, 0.0, "not valid JSON"),
    (answer("", reasoning='{"persons": ["Arjun"]}'), False, 0.0, "content is empty but reasoning is not"),
    (answer(""), False, 0.0, "content is empty"),
    (answer("[1, 2]"), False, 0.0, "not an object"),
])
def test_extraction_scoring(record, valid, recall, why):
    score = score_extraction(record, EXPECT)
    assert score.valid_json is valid and score.recall == pytest.approx(recall) and why in score.reason


@pytest.mark.parametrize("text, kind", [
    ("Paris is the capital of France.", None),
    ("**Paris** is the capital.", "bold"),
    ("# Answer\nParis", "heading"),
    ("Try this:\n- rest\n- water", "bullet list"),
    ("1. rest\n2. water", "numbered list"),
    ("Use `ice`.", "code"),
    ("See [this](http://x.y).", "link"),
    ("It is 5 pm - a good time.", None),
])
def test_markdown_detection(text, kind):
    assert markdown_found(text) == kind


def test_thinking_leak_and_facts():
    assert thinking_leak("Paris.", "") is None
    assert "think" in thinking_leak("<think>hmm</think>Paris.", "")
    assert "reasoning" in thinking_leak("Paris.", "The user asks...")
    assert factually_correct("The capital is paris.", ["Paris"])
    assert not factually_correct("Lyon.", ["Paris"])


def test_percentiles():
    assert summary([5, 1, 3, 2, 4])["p50"] == 3
    assert summary([None, None])["p50"] is None
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == pytest.approx(9.1)


def test_shipped_suites_match_the_report():
    assert len(SUITES["tools"].get("cases")) == 16
    assert {t["name"] for t in TOOLS} == {"search_memory", "web_search", "get_entity_details"}
    assert any(c["expect"] == "none" for c in SUITES["tools"].get("cases"))
    assert len(SUITES["mcp"].get("cases")) == 10
    assert [c["id"] for c in SUITES["standard"].get("cases")] == [
        "simple_greeting", "factual_question", "conversational", "reasoning", "long_response"]
    assert (SUITES["standard"].get("warmups"), SUITES["standard"].get("runs")) == (2, 5)
    english, mixed = SUITES["extraction"].get("cases")
    assert len(english["expect"]["persons"]) == 7 and len(english["expect"]["places"]) == 3
    assert sum(len(v) for v in mixed["expect"].values()) == 6


def test_project_suites_extend_and_replace(tmp_path):
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "mine.yaml").write_text(
        "suite: mine\nkind: chat\ncases:\n  - {id: hello, prompt: Hi}\n")
    (tmp_path / "suites" / "standard.yaml").write_text(
        "suite: standard\nkind: chat\ncases:\n  - {id: only, prompt: Hi}\n")
    suites = load_suites(tmp_path)
    assert suites["mine"].source == "suites/mine.yaml"
    assert [c["id"] for c in suites["standard"].get("cases")] == ["only"]
    assert "tools" in suites


@pytest.mark.parametrize("text, key", [
    ("suite: x\nkind: nope\n", "kind"),
    ("suite: x\nkind: chat\ncases: []\n", "cases"),
    ("suite: x\nkind: chat\ncases:\n  - {prompt: hi}\n", "cases.0"),
    ("suite: x\nkind: chat\ncases:\n  - {id: a, prompt: hi}\n  - {id: a, prompt: hi}\n", "cases.1.id"),
    ("suite: x\nkind: tools\ncases:\n  - {id: a, prompt: hi}\n", "tools"),
    ("suite: x\nkind: chat\nruns: -1\ncases:\n  - {id: a, prompt: hi}\n", "runs"),
])
def test_bad_suite_files_name_file_and_key(tmp_path, text, key):
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "bad.yaml").write_text(text)
    with pytest.raises(InputError) as err:
        load_suites(tmp_path)
    assert str(err.value).startswith(f"suites/bad.yaml: {key}:")


def test_targets_from_the_inventory():
    cfg = build_config(load_host_layers(REPO, "spark"))
    chosen = {svc.name: names for svc, names in targets_for(cfg, SUITES)}
    assert chosen["vllm-nemotron"] == ["standard", "multiturn", "tools", "mcp", "extraction"]
    assert chosen["ollama"] == ["embeddings"] and chosen["searxng"] == ["websearch"]
    assert chosen["context-engine"] == ["health"]
    assert model_of(cfg.service("vllm-nemotron")) == "nemotron"
    assert model_of(cfg.service("ollama")) == "qwen3-embedding:8b"
    assert needs_tunnel(cfg)
    only = targets_for(cfg, SUITES, suite="tools")
    assert [svc.name for svc, _ in only] == ["vllm-annie", "vllm-nemotron"]
    with pytest.raises(InputError, match="no enabled service 'nope'"):
        targets_for(cfg, SUITES, service="nope")
