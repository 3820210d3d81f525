"""How a stream's tokens arrived, and which decode figure that allows. Pure: arrival times in.

A burst-delivering server (a loaded host, a proxy that buffers, vLLM under load) can hand the
client the whole answer within a millisecond or two of its first token; then (tokens - 1) /
(last token - first token) explodes (84,585 tok/s where the server's own inter-token latency gave
718). So each record says how its tokens arrived, and which figure its decode is:

- **arrivals**: the distinct arrival times of the chunks that carry a token, at ``RESOLUTION_S``
  (1 ms): chunks less than 1 ms after the one before arrive together (one burst).
- **largest burst**: the most token chunks in one arrival, and in tokens (one token per chunk, as
  vLLM streams by default; otherwise pro rata of the usage's count).
- **measurable** by the client: at least ``MIN_ARRIVALS`` arrivals and no arrival carrying more
  than ``MAX_BURST_SHARE`` of the token chunks. Then the client's figure is the decode figure
  (``DecodeSource.CLIENT``).
- Otherwise the server's figure where there is one (``DecodeSource.SERVER``: vLLM's inter-token
  latency over the suite's window, ``probe.server``), else a lower bound
  (``DecodeSource.LOWER_BOUND``): (tokens - 1) / (end - request start). Decoding happens inside the
  request's time, so this never exceeds the true rate, whatever the delivery.

May import nothing of the kit.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

RESOLUTION_S = 0.001  # arrival times closer than this are one arrival
MIN_ARRIVALS = 2  # fewer distinct arrivals: no span to measure
MAX_BURST_SHARE = 0.5  # one arrival carrying more of the token chunks: the span is delivery's, not decoding's


class DecodeSource(Enum):
    """Which figure a decode tok/s is."""

    CLIENT = "client"  # (tokens - 1) / (last token - first token), as the client saw them arrive
    SERVER = "server"  # from the server's own timing (vLLM /metrics inter-token latency, Ollama eval_duration)
    LOWER_BOUND = "e2e lower bound"  # (tokens - 1) / (end - request start): the client could not measure


@dataclass(frozen=True, kw_only=True)
class Arrivals:
    """How one stream's token chunks arrived."""

    token_chunks: int  # chunks that carried a token (reasoning, content or a tool call)
    arrivals: int  # distinct arrival times at RESOLUTION_S
    largest_burst_chunks: int  # the most token chunks in one arrival
    span_s: float  # first token chunk to last

    @property
    def burst_share(self) -> float:
        return self.largest_burst_chunks / self.token_chunks if self.token_chunks else 0.0

    @property
    def measurable(self) -> bool:
        """The client can measure decode: enough distinct arrivals, no arrival carrying most tokens."""
        return self.arrivals >= MIN_ARRIVALS and self.burst_share <= MAX_BURST_SHARE

    def largest_burst_tokens(self, completion_tokens: int | None) -> int:
        """The largest burst in tokens: its chunks, scaled by the usage's tokens per token chunk."""
        if not completion_tokens or not self.token_chunks or completion_tokens == self.token_chunks:
            return self.largest_burst_chunks
        return round(self.largest_burst_chunks * completion_tokens / self.token_chunks)


def analyse(times_s: list[float] | tuple[float, ...]) -> Arrivals:
    """The arrival times (s, from the request start) of each token chunk, in any order."""
    ordered = sorted(times_s)
    if not ordered:
        return Arrivals(token_chunks=0, arrivals=0, largest_burst_chunks=0, span_s=0.0)
    arrivals, largest, current = 1, 1, 1
    for before, at in zip(ordered, ordered[1:]):
        if at - before < RESOLUTION_S:
            current += 1
        else:
            arrivals += 1
            current = 1
        largest = max(largest, current)
    return Arrivals(token_chunks=len(ordered), arrivals=arrivals, largest_burst_chunks=largest,
                    span_s=ordered[-1] - ordered[0])


def client_decode(arrivals: Arrivals, completion_tokens: int | None) -> float | None:
    """(tokens - 1) / (last token - first token) when the client can measure it, else None."""
    if completion_tokens is None or completion_tokens < 2 or not arrivals.measurable or arrivals.span_s <= 0:
        return None
    return (completion_tokens - 1) / arrivals.span_s


def lower_bound(completion_tokens: int | None, end_s: float) -> float | None:
    """(tokens - 1) / (end - request start): never above the true decode rate."""
    if completion_tokens is None or completion_tokens < 2 or end_s <= 0:
        return None
    return (completion_tokens - 1) / end_s


def decode_figure(arrivals: Arrivals, completion_tokens: int | None, *, end_s: float,
                  server_tok_s: float | None = None) -> tuple[float | None, DecodeSource | None]:
    """The record's decode figure and which one it is: the client's when measurable, else the
    server's (when given), else the lower bound; (None, None) with fewer than two tokens."""
    client = client_decode(arrivals, completion_tokens)
    if client is not None:
        return client, DecodeSource.CLIENT
    if completion_tokens is None or completion_tokens < 2:
        return None, None
    if server_tok_s is not None and server_tok_s > 0:
        return server_tok_s, DecodeSource.SERVER
    bound = lower_bound(completion_tokens, end_s)
    return (bound, DecodeSource.LOWER_BOUND) if bound is not None else (None, None)
