"""The same model served with no parser flag (a vLLM service that renders no --reasoning-parser and
no --tool-call-parser): reasoning stays in `content`, tags and all, and a request offering tools with
tool_choice auto is refused."""

from __future__ import annotations

from tests.contract import cases
from tests.contract.conftest import sim_differs
from tests.contract.wire import payload, post, stream_chat


def test_without_a_reasoning_parser_thinking_stays_in_content(plain_server, request):
    """The prompt opened <think>; the answer's reasoning, </think> and the reply all arrive as content."""
    sim_differs(plain_server, request, "its raw output writes no newlines around </think> (the model writes "
                "'\\n</think>\\n\\n'), so without a parser the content's whitespace differs")
    s = stream_chat(plain_server, payload(plain_server, cases.CAPITAL, thinking=True))
    assert s.reasoning == ""
    assert s.content == cases.CAPITAL.answer(thinking=True)
    assert "</think>" in s.content


def test_without_a_reasoning_parser_thinking_off_is_plain_content(plain_server):
    s = stream_chat(plain_server, payload(plain_server, cases.CAPITAL, thinking=False))
    assert s.reasoning == ""
    assert s.content == cases.CAPITAL.content
    assert s.finish_reasons == ["stop"]


def test_without_a_tool_parser_auto_tool_choice_is_a_400(plain_server, request):
    resp = post(plain_server, "/v1/chat/completions", payload(plain_server, cases.TOOL, thinking=False))
    assert resp.status_code == 400, resp.text[:300]
    err = resp.json()["error"]
    assert err["type"] == "BadRequestError" and err["code"] == 400
    assert "tool" in err["message"].lower()
