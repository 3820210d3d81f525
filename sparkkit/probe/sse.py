"""Incremental Server-Sent Events decoding: bytes in any split -> the ``data`` payload of each event."""

from __future__ import annotations


class SSEDecoder:
    """Feed bytes as they arrive; get back the complete events' data fields (joined by newlines).

    Handles CRLF/LF/CR line ends, multi-line data, comments and fields other than ``data``.
    Bytes are buffered until a line is complete, so a split inside a UTF-8 sequence is harmless.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events = []
        while True:
            line, found = self._next_line()
            if not found:
                break
            if line == "":
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
        return events

    def close(self) -> list[str]:
        """End of stream: an event not closed by a blank line still counts."""
        events = self.feed(b"\n\n") if self._buffer else []
        if self._data:
            events.append("\n".join(self._data))
            self._data = []
        return events

    def _next_line(self) -> tuple[str, bool]:
        buf = self._buffer
        lf, cr = buf.find(b"\n"), buf.find(b"\r")
        if cr == -1 and lf == -1:
            return "", False
        if cr == -1 or (lf != -1 and lf < cr):
            i, end = lf, lf + 1
        elif cr + 1 == len(buf):
            return "", False  # a CR at the end may be the first half of CRLF
        else:
            i, end = cr, cr + 2 if buf[cr + 1] == 0x0A else cr + 1
        self._buffer = buf[end:]
        return buf[:i].decode("utf-8", "replace"), True
