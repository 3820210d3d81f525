"""What bounds one probe request, and what a failed one failed of. Pure: values and tables.

``Limits``: four deadlines (connect, first byte, between events, total) and four caps (line, event,
body, JSON depth) for one request. Defaults per suite kind (``DEFAULTS``), replaced key by key by a
suite's own ``limits:`` and, for the total, by ``--timeout``. ``Failure`` says what a failed request
failed of (one value per deadline, cap, field check, HTTP check); ``Result`` is what became of a
request: ok, failed, or not run (a server that stopped answering, see ``probe.runner``).
``Breach`` carries a failure and its one-line reason from where it is found to the record; it
never leaves the client.

May import: nothing of sparkkit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from enum import Enum


class Failure(Enum):
    """What a failed request failed of; the record's ``failure`` (its ``error`` says it for people)."""

    CONNECT = "connect"                                  # refused, unreachable
    CONNECT_DEADLINE = "connect deadline"
    FIRST_BYTE_DEADLINE = "first-byte deadline"          # the answer's head did not arrive in time
    BETWEEN_EVENTS_DEADLINE = "between-events deadline"  # no complete event (or body piece) in time
    TOTAL_DEADLINE = "total deadline"
    DISCONNECTED = "disconnected"                        # reset, or a read or write that failed
    PROTOCOL = "HTTP protocol"                           # not HTTP/1.1, or closed before the answer ended
    HTTP_STATUS = "HTTP status"
    REDIRECT = "redirect"                                # not followed
    CONTENT_TYPE = "content type"
    LINE_CAP = "line cap"
    EVENT_CAP = "event cap"
    BODY_CAP = "body cap"
    JSON_DEPTH = "JSON depth cap"
    BAD_UTF8 = "invalid UTF-8"
    BAD_JSON = "malformed JSON"
    WRONG_TYPE = "wrong type"
    MISSING = "missing field"
    OUT_OF_RANGE = "value out of range"
    AFTER_DONE = "event after [DONE]"
    NO_DONE = "no [DONE]"
    NO_TOKEN = "no token"
    EMPTY = "empty answer"
    SERVER_ERROR = "server error"
    NOT_RUN = "not run"
    UNEXPECTED = "unexpected"                            # a bug in the kit, never a server's doing


# the server did not answer (in time): enough of these in a row and a service's remaining probes are not run
UNANSWERED = frozenset({Failure.CONNECT, Failure.CONNECT_DEADLINE, Failure.FIRST_BYTE_DEADLINE,
                        Failure.BETWEEN_EVENTS_DEADLINE, Failure.TOTAL_DEADLINE})


class Result(Enum):
    OK = "ok"
    FAILED = "failed"
    NOT_RUN = "not run"


def result_of(ok: bool, failure: Failure | None) -> Result:
    if ok:
        return Result.OK
    return Result.NOT_RUN if failure is Failure.NOT_RUN else Result.FAILED


class Breach(Exception):
    """A request broke a deadline, a cap or a check: its failure and a one-line reason naming it."""

    def __init__(self, failure: Failure, reason: str):
        super().__init__(reason)
        self.failure = failure
        self.reason = one_line(reason)


def one_line(text: str, limit: int = 300) -> str:
    """A reason fit for one line: control characters shown as escapes, cut at ``limit``."""
    out = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return out if len(out) <= limit else out[:limit - 1] + "…"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Deadlines in seconds, caps in bytes (JSON depth in levels) for one request."""

    connect_s: float = 10.0
    first_byte_s: float = 60.0        # request sent (a connection taken) -> the answer's head read
    between_events_s: float = 30.0    # one complete SSE event (or piece of a plain body) -> the next
    total_s: float = 120.0
    line_bytes: int = 1 << 20
    event_bytes: int = 1 << 20
    body_bytes: int = 16 << 20
    json_depth: int = 64

    def with_total(self, total_s: float | None) -> Limits:
        return self if total_s is None else replace(self, total_s=total_s)

    def merged(self, overrides: dict) -> Limits:
        """These limits with ``overrides`` (checked by ``check_overrides``) in place."""
        return replace(self, **overrides)


KEYS = {f.name: f.type for f in fields(Limits)}
DEFAULTS = {
    "chat": Limits(),
    "conversation": Limits(),
    "tools": Limits(),
    "extraction": Limits(),
    "embeddings": Limits(first_byte_s=120.0, between_events_s=30.0, total_s=120.0),  # a model loads on first use
    "websearch": Limits(first_byte_s=30.0, total_s=60.0),
    "health": Limits(connect_s=5.0, first_byte_s=10.0, between_events_s=10.0, total_s=15.0,
                     body_bytes=1 << 20),
}


def check_overrides(data: object) -> tuple[str, str] | None:
    """(the key, why) when a suite's ``limits:`` mapping is wrong, or None when it is right."""
    if not isinstance(data, dict):
        return "", "expected a mapping of limits"
    for key, value in data.items():
        if key not in KEYS:
            return f".{key}", f"unknown limit (expected one of: {', '.join(KEYS)})"
        if KEYS[key] == "int":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1 << 40:
                return f".{key}", f"expected a positive integer, got {value!r}"
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 86_400:
            return f".{key}", f"expected a positive number of seconds (at most 86400), got {value!r}"
    return None
