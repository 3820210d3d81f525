"""Scoring of answers: tool calls (like BFCL), entity extraction, and the quality gates. Pure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from sparkkit.probe.stream import ChatRecord


@dataclass(frozen=True, kw_only=True)
class Verdict:
    passed: bool
    reason: str  # why it failed, or what passed


def _contains(actual, expected: str) -> bool:
    """Expected values match case-insensitively as substrings, anywhere inside lists and objects."""
    if isinstance(actual, str):
        return expected.lower() in actual.lower()
    if isinstance(actual, (list, tuple)):
        return any(_contains(item, expected) for item in actual)
    if isinstance(actual, dict):
        return any(_contains(v, expected) for v in actual.values())
    return str(actual).lower() == expected.lower()


def score_tool_call(record: ChatRecord, expect: dict | None, tools: list[dict]) -> Verdict:
    """``expect`` is None for "answer directly", else {"tool": name, "args": {key: expected substring}}."""
    if not record.ok:
        return Verdict(passed=False, reason=f"request failed: {record.error}")
    calls = record.tool_calls
    if expect is None:
        if calls:
            return Verdict(passed=False, reason=f"expected a direct answer, got a call to {calls[0].name}")
        if not record.text.strip():
            return Verdict(passed=False, reason="expected a direct answer, got empty content")
        return Verdict(passed=True, reason="answered directly")
    if not calls:
        return Verdict(passed=False, reason=f"expected a call to {expect['tool']}, got no tool call")
    call = calls[0]
    if call.name != expect["tool"]:
        return Verdict(passed=False, reason=f"called {call.name or '(no name)'}, expected {expect['tool']}")
    if call.parsed is None:
        return Verdict(passed=False, reason=f"{call.name}: {call.error}")
    schema = next((t["parameters"] for t in tools if t["name"] == call.name), {})
    known = set((schema.get("properties") or {}))
    unknown = sorted(set(call.parsed) - known)
    if unknown:
        return Verdict(passed=False, reason=f"{call.name}: unknown argument(s) {', '.join(unknown)}")
    missing = [k for k in schema.get("required", ()) if k not in call.parsed]
    if missing:
        return Verdict(passed=False, reason=f"{call.name}: missing required argument(s) {', '.join(missing)}")
    for key, want in (expect.get("args") or {}).items():
        if key not in call.parsed or not _contains(call.parsed[key], str(want)):
            got = json.dumps(call.parsed.get(key), ensure_ascii=False)
            return Verdict(passed=False, reason=f"{call.name}: {key}={got}, expected it to contain {want!r}")
    return Verdict(passed=True, reason=f"called {call.name} with the expected arguments")


def _strip_fences(text: str) -> str:
    m = re.match(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", text, re.S)
    return m.group(1) if m else text


def _name_match(expected: str, extracted: list[str]) -> bool:
    want = expected.casefold()
    return any(want in got.casefold() or (got.casefold() in want and len(got) >= 3) for got in extracted)


@dataclass(frozen=True, kw_only=True)
class ExtractionScore:
    valid_json: bool
    recall: float
    found: int
    expected: int
    missing: tuple[str, ...]
    reason: str


def score_extraction(record: ChatRecord, expect: dict[str, list[str]]) -> ExtractionScore:
    total = sum(len(v) for v in expect.values())
    every = tuple(name for names in expect.values() for name in names)

    def fail(reason: str) -> ExtractionScore:
        return ExtractionScore(valid_json=False, recall=0.0, found=0, expected=total, missing=every, reason=reason)

    if not record.ok:
        return fail(f"request failed: {record.error}")
    if not record.text.strip():
        if record.reasoning.strip():
            return fail("content is empty but reasoning is not: the answer stayed in the reasoning")
        return fail("content is empty")
    try:
        data = json.loads(_strip_fences(record.text))
    except json.JSONDecodeError as exc:
        return fail(f"content is not valid JSON ({exc.msg} at char {exc.pos})")
    if not isinstance(data, dict):
        return fail("JSON is not an object")
    missing = []
    for kind, names in expect.items():
        got = data.get(kind) or []
        got = [str(g.get("name", "")) if isinstance(g, dict) else str(g) for g in got] if isinstance(got, list) else []
        missing += [name for name in names if not _name_match(name, got)]
    found = total - len(missing)
    recall = found / total if total else 1.0
    reason = "all expected entities found" if not missing else f"missing: {', '.join(missing)}"
    return ExtractionScore(valid_json=True, recall=recall, found=found, expected=total, missing=tuple(missing),
                           reason=reason)


_MARKDOWN = [
    (re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"), "bold"),
    (re.compile(r"^\s{0,3}#{1,6}\s", re.M), "heading"),
    (re.compile(r"^\s*[-*+]\s+\S", re.M), "bullet list"),
    (re.compile(r"^\s*\d+[.)]\s+\S", re.M), "numbered list"),
    (re.compile(r"`"), "code"),
    (re.compile(r"\[[^\]\n]+\]\([^)\s]+\)"), "link"),
    (re.compile(r"^\s*\|.*\|\s*$", re.M), "table"),
]


def markdown_found(text: str) -> str | None:
    """The first kind of markdown in ``text`` (voice answers are read aloud: none allowed)."""
    for pattern, kind in _MARKDOWN:
        if pattern.search(text):
            return kind
    return None


def thinking_leak(text: str, reasoning: str) -> str | None:
    """For an answer asked for with thinking off: neither reasoning nor <think> tags may appear."""
    if re.search(r"</?think>", text):
        return "<think> tag in the content"
    if reasoning.strip():
        return "reasoning returned although thinking was off"
    return None


def factually_correct(text: str, expect_any: list[str]) -> bool:
    text = text.casefold()
    return any(word.casefold() in text for word in expect_any)
