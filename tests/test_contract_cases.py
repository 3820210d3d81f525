"""The contract tier's shared pieces, checked in `make test` (no vLLM needed): the simulator's rule
table answers each contract prompt as the tiny model is trained to and nothing else with it; the
parser flags come from the inventory; the tiny model's chat template opens or closes <think> as the
cases assume (tests/contract/cases.py, tools/vllm/chat_template.jinja)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2
import pytest

from tests.contract import cases, servers

TEMPLATE = Path(__file__).resolve().parent.parent / "tools" / "vllm" / "chat_template.jinja"


def _rule_for(text: str) -> dict:
    return next(rule for rule in cases.sim_rules() if re.search(rule["match"], text, re.IGNORECASE))


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.name)
def test_sim_rule_answers_each_case_like_the_model(case):
    rule = _rule_for(case.prompt)
    if case.tool_query is None and case.reasoning is None:  # written as the model's raw text: no </think>
        assert rule["raw"] == case.content and "content" not in rule
    elif case.tool_query is None:
        assert rule["content"] == case.content
    else:
        assert rule["tool_call"] == {"name": "web_search", "arguments": {"query": case.tool_query}}
    assert rule.get("reasoning") == case.reasoning


def test_other_prompts_get_the_suite_answer():
    # a suite prompt that contains a contract prompt is not that case
    assert _rule_for("What is the capital of France? Answer in one short sentence.")["content"] == cases.SUITE_ANSWER
    assert _rule_for("Search the web for tiny models and more.")["content"] == cases.SUITE_ANSWER


def test_parser_flags_come_from_the_inventory():
    assert servers.rendered_parser_flags() == ["--reasoning-parser", "qwen3", "--enable-auto-tool-choice",
                                               "--tool-call-parser", "qwen3_coder"]
    assert "--reasoning-parser" not in servers.serve_args(parsers=False)


def _render(messages, *, thinking=None, tools=None):
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps
    kwargs = {} if thinking is None else {"enable_thinking": thinking}
    return env.from_string(TEMPLATE.read_text()).render(messages=messages, tools=tools,
                                                        add_generation_prompt=True, **kwargs)


def test_template_opens_think_when_thinking_and_closes_it_when_not():
    user = [{"role": "user", "content": "hi"}]
    assert _render(user).endswith("<|im_start|>assistant\n<think>\n")
    assert _render(user, thinking=True).endswith("<|im_start|>assistant\n<think>\n")
    assert _render(user, thinking=False).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert cases.CAPITAL.answer(thinking=True).count("</think>") == 1
    assert "</think>" not in cases.NO_THINK_END.answer(thinking=True)


def test_template_lists_tools_and_history():
    text = _render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}],
                   thinking=False, tools=cases.TOOL.tools())
    assert text.startswith("<|im_start|>system\nBe brief.\n<tools>\nweb_search(query)\n</tools>\n<|im_end|>\n")
    assert "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n" in text
