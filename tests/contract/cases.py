"""What the contract tier asks and what both servers answer: one table, read by the tiny model's
builder (tools/vllm/make_model.py trains the real server's model to give exactly these answers at
temperature 0) and by the simulator's rule table (``sim_rules``), so the tests can compare the two.

Stdlib only: the builder imports it from the vLLM venv, the tests from the kit's.

An answer is the assistant's raw text after the chat template's generation prompt. With thinking
on, the template (tools/vllm/chat_template.jinja, Qwen3.5's shape) ends the prompt with
``<think>\\n``, so an answer with reasoning reads ``REASONING\\n</think>\\n\\nCONTENT``; with
thinking off the prompt ends with an empty ``<think>\\n\\n</think>\\n\\n`` block and the answer is
the content alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

WEB_SEARCH = {"type": "function", "function": {
    "name": "web_search", "description": "Search the web for current or public information.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "The search query."}},
                   "required": ["query"]}}}

COUNT_WORDS = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
               "sixteen seventeen eighteen nineteen twenty")
# the default answer to every probe-suite prompt (tools/vllm/make_model.py), short so that the
# suites run in seconds and every answer ends with the end-of-turn token
SUITE_ANSWER = "Sure, I can help with that."


@dataclass(frozen=True)
class Case:
    """One prompt: the user's text, whether the tool is offered, and the raw answers."""

    name: str
    prompt: str
    reasoning: str | None  # with thinking on; None: the model never closes </think> (see no_think_end)
    content: str | None  # None when the answer is the tool call
    tool_query: str | None = None  # the web_search call's query argument

    def tools(self) -> list[dict]:
        return [WEB_SEARCH] if self.tool_query is not None else []

    def content_raw(self) -> str:
        if self.tool_query is None:
            return self.content or ""
        return ("<tool_call>\n<function=web_search>\n<parameter=query>\n"
                f"{self.tool_query}\n</parameter>\n</function>\n</tool_call>")

    def answer(self, thinking: bool) -> str:
        """The raw assistant text the model is trained to produce (before the end-of-turn token)."""
        if not thinking:
            return self.content_raw()
        if self.reasoning is None:  # thinks without ever closing the block
            return self.content_raw()
        return f"{self.reasoning}\n</think>\n\n{self.content_raw()}"


CAPITAL = Case("capital", "What is the capital of France?",
               reasoning="The user asks for the capital of France.",
               content="The capital of France is Paris.")
COUNT = Case("count", "Count from one to twenty.", reasoning="Counting up.", content=COUNT_WORDS)
# With thinking on the prompt opens <think>; this answer never closes it: vLLM's qwen3 parser then
# gives the whole answer as reasoning and no content.
NO_THINK_END = Case("no_think_end", "Say hello and nothing else.", reasoning=None, content="Hello there, friend.")
TOOL = Case("tool", "Search the web for tiny models.", reasoning="The user wants a web search.", content=None,
            tool_query="tiny models")

CASES = (CAPITAL, COUNT, NO_THINK_END, TOOL)


def sim_rules() -> list[dict]:
    """The simulator's rule table for the same cases (testbed/image/vllm_engine.py's format)."""
    rules = []
    for case in CASES:
        rule: dict = {"match": "^" + re.escape(case.prompt) + "$"}
        if case.reasoning is not None:
            rule["reasoning"] = case.reasoning
        if case.tool_query is not None:
            rule["tool_call"] = {"name": "web_search", "arguments": {"query": case.tool_query}}
        elif case.reasoning is None:  # the model writes its answer straight away, no </think>
            rule["raw"] = case.content
        else:
            rule["content"] = case.content
        rules.append(rule)
    rules.append({"match": ".", "content": SUITE_ANSWER})
    return rules


def sim_rules_json() -> str:
    return json.dumps(sim_rules())
