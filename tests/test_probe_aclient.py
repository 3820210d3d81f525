"""The asyncio probe client over real HTTP (the same small server as the threaded client's tests):
it must give the very records the threaded client gives, and never raise."""

import asyncio
import socket
import threading

from sparkkit.probe import client as http
from sparkkit.probe.aclient import AsyncClient, chat_many
from sparkkit.probe.runner import chat_payload
from tests.test_probe_client import server  # noqa: F401 - the fixture

FAST = (0.0, 0.0)


def payload(max_tokens=12):
    return chat_payload("plain-model", [{"role": "user", "content": "Capital?"}], thinking=False,
                        max_tokens=max_tokens)


def run(coro):
    return asyncio.run(coro)


def test_same_record_as_the_threaded_client(server):  # noqa: F811
    server.timing = FAST
    base = f"http://127.0.0.1:{server.server_address[1]}"
    with http.make_client(base) as client:
        threaded = http.chat(client, payload())

    async def go():
        client = AsyncClient(base)
        try:
            return await client.chat(payload())
        finally:
            await client.aclose()

    rec = run(go())
    assert rec.ok, rec.error
    for field in ("ok", "text", "reasoning", "completion_tokens", "prompt_tokens", "finish_reason", "chunks",
                  "tool_calls", "http_status"):
        assert getattr(rec, field) == getattr(threaded, field), field
    assert rec.ttft_ms is not None and rec.latency_ms >= rec.ttft_ms and rec.decode_tok_s > 0
    assert server.requests[-1] == server.requests[-2]  # the same request body went out


def test_many_streams_share_few_keep_alive_connections(server):  # noqa: F811
    server.timing = FAST
    base = f"http://127.0.0.1:{server.server_address[1]}"

    async def go():
        client = AsyncClient(base, max_connections=4)
        try:
            first = await chat_many(client, [payload(5) for _ in range(40)])
            second = await chat_many(client, [payload(5) for _ in range(8)])
            return first + second, client.connections_opened
        finally:
            await client.aclose()

    records, opened = run(go())
    assert len(records) == 48 and all(r.ok for r in records), [r.error for r in records if not r.ok][:3]
    assert all(r.completion_tokens == 5 for r in records)
    assert opened <= 4  # never more than the limit, and reused across both batches


def test_http_error_refused_and_cut_streams_are_records(server):  # noqa: F811
    server.timing = FAST
    base = f"http://127.0.0.1:{server.server_address[1]}"

    async def go():
        client = AsyncClient(base)
        server.fail_next = True
        busy = await client.chat(payload())
        after = await client.chat(payload())  # the connection is usable again after an error answer
        await client.aclose()
        refused = await AsyncClient("http://127.0.0.1:9", connect_timeout_s=2).chat(payload())
        return busy, after, refused

    busy, after, refused = run(go())
    assert not busy.ok and busy.http_status == 503 and "HTTP 503: busy" in busy.error
    assert after.ok
    assert not refused.ok and refused.error and refused.ttft_ms is None

    # a server that sends half a stream and hangs up
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def half():
        conn, _ = listener.accept()
        conn.recv(65536)
        data = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (len(data), data))
        conn.close()

    threading.Thread(target=half, daemon=True).start()
    cut = run(AsyncClient(f"http://127.0.0.1:{listener.getsockname()[1]}").chat(payload()))
    listener.close()
    assert not cut.ok and "after 1 chunk(s)" in cut.error


def test_timeout_is_a_record(server):  # noqa: F811
    server.timing = (5.0, 0.0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    rec = run(AsyncClient(base, timeout_s=0.3).chat(payload()))
    assert not rec.ok and "timed out after 0.3s" in rec.error


def test_a_kept_alive_connection_the_server_closed_is_replaced():
    """A server that answers one request per connection and then hangs up without saying so
    (no `Connection: close`), as one does when it times idle connections out: every request
    must still be served, whether the client notices the closed connection before reusing it
    or only when no answer comes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    events = [b'{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":1,"completion_tokens":1}}', b"[DONE]"]

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += conn.recv(65536)
                out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                for e in events:
                    piece = b"data: " + e + b"\n\n"
                    out += b"%x\r\n%s\r\n" % (len(piece), piece)
                conn.sendall(out + b"0\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()

    async def go():
        client = AsyncClient(f"http://127.0.0.1:{listener.getsockname()[1]}", max_connections=1)
        records = [await client.chat(payload()) for _ in range(5)]
        await client.aclose()
        return records, client.connections_opened

    records, opened = run(go())
    listener.close()
    assert [r.ok for r in records] == [True] * 5, [r.error for r in records]
    assert opened == 5  # each request on a new connection, none lost to a stale one


def test_prewarm_opens_the_connections_before_the_requests(server):  # noqa: F811
    server.timing = FAST
    base = f"http://127.0.0.1:{server.server_address[1]}"

    async def go():
        client = AsyncClient(base, max_connections=10, connect_at_once=2)
        failed = await client.prewarm(10)
        opened_before = client.connections_opened
        records = await chat_many(client, [payload(3) for _ in range(10)])
        await client.aclose()
        return failed, opened_before, client.connections_opened, records

    failed, before, after, records = run(go())
    assert failed == 0 and before == 10
    assert after == 10  # the ten requests found their connections open
    assert all(r.ok for r in records)
    refused = run(AsyncClient("http://127.0.0.1:9", connect_timeout_s=2).prewarm(3))
    assert refused == 3
