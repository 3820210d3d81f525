"""Errors as vLLM gives them: a request it refuses is an HTTP status with an ``{"error": {...}}``
object (message, type, param, code); a route it does not have is FastAPI's ``{"detail": ...}``."""

from __future__ import annotations

from tests.contract import cases
from tests.contract.conftest import sim_differs
from tests.contract.servers import MAX_MODEL_LEN
from tests.contract.wire import get, payload, post

ERROR_KEYS = {"message", "type", "param", "code"}


def _error(resp, status: int, kind: str) -> dict:
    assert resp.status_code == status, resp.text[:300]
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert set(err) >= ERROR_KEYS
    assert err["type"] == kind
    assert err["code"] == status
    assert isinstance(err["message"], str) and err["message"]
    return err


def test_max_tokens_beyond_the_model_length_is_a_400(server, request):
    body = payload(server, cases.CAPITAL, thinking=False, max_tokens=MAX_MODEL_LEN + 1)
    err = _error(post(server, "/v1/chat/completions", body), 400, "BadRequestError")
    assert str(MAX_MODEL_LEN) in err["message"]


def test_a_prompt_beyond_the_model_length_is_a_400(server):
    body = payload(server, cases.CAPITAL, thinking=False, max_tokens=1)
    body["messages"][0]["content"] = "word " * (MAX_MODEL_LEN + 10)
    err = _error(post(server, "/v1/chat/completions", body), 400, "BadRequestError")
    assert str(MAX_MODEL_LEN) in err["message"]


def test_unknown_model_is_a_404(server):
    body = payload(server, cases.CAPITAL, thinking=False, model="no-such-model")
    err = _error(post(server, "/v1/chat/completions", body), 404, "NotFoundError")
    assert "no-such-model" in err["message"]


def test_zero_max_tokens_is_a_400(server):
    body = payload(server, cases.CAPITAL, thinking=False, max_tokens=0)
    _error(post(server, "/v1/chat/completions", body), 400, "BadRequestError")


def test_unknown_route_is_a_404_detail(server, request):
    resp = get(server, "/v1/no-such-route")
    assert resp.status_code == 404
    assert resp.json() == {"detail": "Not Found"}


def test_wrong_method_is_a_405_detail(server, request):
    resp = get(server, "/v1/chat/completions")
    assert resp.status_code == 405
    assert resp.json() == {"detail": "Method Not Allowed"}
