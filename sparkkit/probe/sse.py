"""Incremental Server-Sent Events decoding: bytes in any split -> the ``data`` payload of each event.

Linear in its input however it is split: each byte is looked at once when searching for line
ends (the search resumes where the last one stopped), and consumed lines leave the buffer once
per ``feed``. A line longer than ``max_line_bytes`` (complete or still arriving) or an event whose
data exceeds ``max_event_bytes`` is a ``Breach`` (``LINE_CAP``, ``EVENT_CAP``) as soon as it is seen,
so a server that never sends a newline cannot grow the buffer without bound.

May import: ``probe.limits``.
"""

from __future__ import annotations

import re

from sparkkit.probe.limits import Breach, Failure

_EOL = re.compile(rb"\r\n|\r|\n")


class SSEDecoder:
    """Feed bytes as they arrive; get back the complete events' data fields (joined by newlines).

    Handles CRLF/LF/CR line ends, multi-line data, comments and fields other than ``data``.
    Bytes are buffered until a line is complete, so a split inside a UTF-8 sequence is harmless.
    A line that is not valid UTF-8 is decoded with replacement characters and counted in
    ``invalid_utf8`` (with ``first_invalid_line``, 1-based), for the caller to refuse.
    """

    def __init__(self, *, max_line_bytes: int = 1 << 20, max_event_bytes: int = 1 << 20) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_event_bytes = max_event_bytes
        self.invalid_utf8 = 0
        self.first_invalid_line: int | None = None
        self.lines = 0
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched for a line end
        self._data: list[str] = []
        self._data_bytes = 0

    def feed(self, chunk: bytes) -> list[str]:
        buf = self._buffer
        buf += chunk
        events: list[str] = []
        pos = 0
        while True:
            m = _EOL.search(buf, max(pos, self._scanned))
            if m is None or (m.group() == b"\r" and m.end() == len(buf)):
                # no complete line (a CR at the end may be the first half of CRLF)
                self._scanned = len(buf) if m is None else m.start()
                break
            self._line(bytes(buf[pos:m.start()]), events)
            pos = m.end()
        if len(buf) - pos > self.max_line_bytes + 1:  # + 1: a CR at the end may still become CRLF
            raise Breach(Failure.LINE_CAP, f"line cap: a line longer than {self.max_line_bytes} bytes "
                                           f"(line {self.lines + 1})")
        del buf[:pos]
        self._scanned -= pos
        return events

    def close(self) -> list[str]:
        """End of stream: an event not closed by a blank line still counts."""
        events = self.feed(b"\n\n") if self._buffer else []
        if self._data:
            events.append("\n".join(self._data))
            self._data, self._data_bytes = [], 0
        return events

    def _line(self, raw: bytes, events: list[str]) -> None:
        self.lines += 1
        if len(raw) > self.max_line_bytes:
            raise Breach(Failure.LINE_CAP, f"line cap: line {self.lines} is {len(raw)} bytes "
                                           f"(at most {self.max_line_bytes})")
        if not raw:
            if self._data:
                events.append("\n".join(self._data))
                self._data, self._data_bytes = [], 0
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", "replace")
            self.invalid_utf8 += 1
            if self.first_invalid_line is None:
                self.first_invalid_line = self.lines
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data_bytes += len(raw) + 1
            if self._data_bytes > self.max_event_bytes:
                raise Breach(Failure.EVENT_CAP, f"event cap: an event's data over {self.max_event_bytes} bytes "
                                                f"(line {self.lines})")
            self._data.append(value)
