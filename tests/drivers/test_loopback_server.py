"""TestServer on real loopback sockets (TCP and TLS), on asyncio and trio, with raw wsproto."""

from __future__ import annotations

import json
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any

import anyio
import pytest
import trustme
from anyio.abc import ByteStream
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from stx_anyio.testing import TestServer
from stx_proto import ChannelMessage, UsageError
from stx_proto.testing import PhoenixServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"]),
]

TIMEOUT = 5.0  # a bound for each test; none comes close to it


class RawClient:
    """A WebSocket client made of an anyio stream and wsproto."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[Event] = deque()
        self.eof = False
        self.response: Event | None = None  # the answer to the upgrade request

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stream.aclose()

    @classmethod
    async def connect(
        cls,
        server: TestServer,
        target: str | None = "/socket/websocket?vsn=2.0.0",
        *,
        subprotocols: Iterable[str] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> RawClient:
        """Connect and send the upgrade request for ``target`` (None: send nothing)."""
        if ssl_context is None:
            stream: ByteStream = await anyio.connect_tcp(server.host, server.port)
        else:
            stream = await anyio.connect_tcp(
                server.host,
                server.port,
                ssl_context=ssl_context,
                tls_hostname=server.host,
                tls_standard_compatible=False,
            )
        client = cls(stream)
        if target is not None:
            await client.send_event(
                Request(host="localhost", target=target, subprotocols=list(subprotocols))
            )
            client.response = await client.next_event()
        return client

    async def send_event(self, event: Event) -> None:
        await self.stream.send(self.ws.send(event))

    async def send(self, *fields: Any) -> None:
        await self.send_event(TextMessage(data=json.dumps(list(fields))))

    async def next_event(self) -> Event | None:
        """The next wsproto event, or None once the stream has ended."""
        while not self.pending:
            if self.eof:
                return None
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                self.eof = True
                return None
            self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
        return self.pending.popleft()

    async def frame(self) -> Any:
        """The next Phoenix frame: a decoded text frame, or the bytes of a binary one."""
        event = await self.next_event()
        if isinstance(event, TextMessage):
            return json.loads(event.data)
        assert isinstance(event, BytesMessage), event
        return bytes(event.data)

    async def join(self, topic: str, join_ref: str) -> Any:
        await self.send(join_ref, join_ref, topic, "phx_join", {})
        return await self.frame()

    async def raw_bytes_until_eof(self) -> bytes:
        chunks = []
        while True:
            try:
                chunks.append(await self.stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return b"".join(chunks)


def ok(response: Any = None) -> dict[str, Any]:
    return {"status": "ok", "response": {} if response is None else response}


def routed() -> PhoenixServer:
    server = PhoenixServer()
    server.route("room:*")
    return server


async def test_handshake_join_broadcast_and_replies(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with TestServer(routed()) as server, await RawClient.connect(server) as client:
            assert server.url == f"ws://127.0.0.1:{server.port}/socket"
            assert isinstance(client.response, AcceptConnection)
            [conn] = await server.wait_for_connections(1)
            assert server.connections == [conn] and conn.vsn == "2.0.0"

            assert await client.join("room:1", "3") == ["3", "3", "room:1", "phx_reply", ok()]
            assert await server.wait_for_join("room:1") is conn

            server.phoenix.broadcast("room:1", "user_entered", {"u": 1})
            assert await client.frame() == [None, None, "room:1", "user_entered", {"u": 1}]
            conn.push("room:1", "bin", b"\x01\x02")
            assert await client.frame() == b"\x00\x01\x06\x03" + b"3room:1bin\x01\x02"

            await client.send("3", "4", "room:1", "new_msg", {"body": "hi"})
            assert await client.frame() == ["3", "4", "room:1", "phx_reply", ok({"body": "hi"})]
            msg = await server.wait_for_frame(lambda m: m.event == "new_msg")
            assert msg == ChannelMessage("room:1", "new_msg", {"body": "hi"}, "4", "3")

            await client.send(None, "5", "phoenix", "heartbeat", {})
            assert await client.frame() == [None, "5", "phoenix", "phx_reply", ok()]


async def test_tls_with_a_trustme_ca(anyio_backend: str) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with anyio.fail_after(TIMEOUT):
        async with (
            TestServer(routed(), ssl_context=server_context) as server,
            await RawClient.connect(server, ssl_context=client_context) as client,
        ):
            assert server.url == f"wss://127.0.0.1:{server.port}/socket"
            assert isinstance(client.response, AcceptConnection)
            assert await client.join("room:1", "1") == ["1", "1", "room:1", "phx_reply", ok()]
            server.phoenix.broadcast("room:1", "tick", {"n": 1})
            assert await client.frame() == [None, None, "room:1", "tick", {"n": 1}]
            server.close_all(1000)
            close = await client.next_event()
            assert isinstance(close, CloseConnection) and close.code == 1000
            await client.send_event(close.response())
            assert await client.next_event() is None


async def test_refused_handshake_gets_403_then_eof(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            TestServer() as server,
            await RawClient.connect(server, "/socket/websocket?vsn=9.9.9") as client,
        ):
            reject = client.response
            assert isinstance(reject, RejectConnection) and reject.status_code == 403
            while await client.next_event() is not None:
                pass
            await server.wait_until(lambda: not server.connections, what="no connection")
            assert server.phoenix.all_connections[0].rejected_status == 403


async def test_garbage_request_gets_400(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with TestServer() as server, await RawClient.connect(server, None) as client:
            await client.stream.send(b"garbage\r\n\r\n")
            assert (await client.raw_bytes_until_eof()).startswith(b"HTTP/1.1 400")


async def test_drop_all_closes_without_a_close_frame(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with TestServer(routed()) as server, await RawClient.connect(server) as client:
            await client.join("room:1", "1")
            server.drop_all()
            assert await client.raw_bytes_until_eof() == b""
            assert server.connections == []


async def test_close_all_and_the_close_handshake(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with TestServer() as server, await RawClient.connect(server) as client:
            [conn] = await server.wait_for_connections(1)
            server.close_all(1001, "disconnect")
            close = await client.next_event()
            assert isinstance(close, CloseConnection)
            assert (close.code, close.reason) == (1001, "disconnect")
            await client.send_event(close.response())
            assert await client.next_event() is None
            await server.wait_until(lambda: conn.closed, what="closed")
            assert conn.close_code == 1001


async def test_close_gives_up_on_a_silent_client(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            TestServer(close_timeout=0.05) as server,
            await RawClient.connect(server) as client,
        ):
            [conn] = await server.wait_for_connections(1)
            conn.close()
            assert isinstance(await client.next_event(), CloseConnection)
            assert await client.next_event() is None  # the server hung up on its own
            await server.wait_until(lambda: conn.closed, what="closed")


async def test_client_close_and_ping(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with TestServer() as server, await RawClient.connect(server) as client:
            await client.send_event(Ping(payload=b"p"))
            pong = await client.next_event()
            assert isinstance(pong, Pong) and pong.payload == b"p"
            await client.send_event(CloseConnection(code=1000, reason="bye"))
            answer = await client.next_event()
            assert isinstance(answer, CloseConnection) and answer.code == 1000
            assert await client.next_event() is None
            [conn] = server.phoenix.all_connections
            await server.wait_until(lambda: conn.closed, what="closed")
            assert conn.close_code == 1000


async def test_client_hanging_up_closes_the_connection(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with TestServer() as server, await RawClient.connect(server) as client:
            [conn] = await server.wait_for_connections(1)
            await client.stream.aclose()
            await server.wait_until(lambda: conn.closed, what="closed")
            assert server.connections == []


async def test_delayed_replies_are_sent_by_the_timer(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with TestServer(routed()) as server, await RawClient.connect(server) as client:
            await client.join("room:1", "1")
            server.phoenix.reply_delay = 0.1
            start = anyio.current_time()
            await client.send("1", "2", "room:1", "slow", {})
            await client.send(None, "3", "phoenix", "heartbeat", {})
            assert (await client.frame())[1] == "3"  # the heartbeat reply is not held
            assert await client.frame() == ["1", "2", "room:1", "phx_reply", ok()]
            assert anyio.current_time() - start >= 0.1


async def test_wait_helpers_time_out(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with TestServer() as server:
            with pytest.raises(TimeoutError, match="join #1 of 'nowhere'"):
                await server.wait_for_join("nowhere", timeout=0.01)
            with pytest.raises(TimeoutError, match="1 open connection"):
                await server.wait_for_connections(1, timeout=0.01)
            with pytest.raises(TimeoutError, match="a matching frame"):
                await server.wait_for_frame(lambda m: True, timeout=0.01)


async def test_wait_for_join_counts_rejoins(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with TestServer(routed()) as server:
            async with await RawClient.connect(server) as first:
                await first.join("room:1", "1")
                server.drop_all()
                assert await first.raw_bytes_until_eof() == b""
            async with await RawClient.connect(server) as second:
                await second.join("room:1", "2")
                conn = await server.wait_for_join("room:1", count=2)
                assert conn.joined == {"room:1": "2"}
                assert server.phoenix.join_counts == {"room:1": 2}
                rejoin = await server.wait_for_frame(lambda m: m.join_ref == "2")
                assert rejoin.event == "phx_join"


async def test_life_cycle_errors(anyio_backend: str) -> None:
    server = TestServer()
    with pytest.raises(UsageError):
        _ = server.url
    with pytest.raises(UsageError):
        await server.wait_for_connections(1)
    await server.stop()  # not started: nothing to do
    async with server:
        with pytest.raises(UsageError, match="already started"):
            await server.start()
    await server.stop()


async def test_an_error_in_the_body_propagates_as_itself(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT), pytest.raises(AssertionError, match="from the body"):
        async with TestServer(routed()) as server, await RawClient.connect(server) as client:
            await client.join("room:1", "1")
            raise AssertionError("from the body")


async def test_an_outer_timeout_still_works(anyio_backend: str) -> None:
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            async with TestServer():
                await anyio.sleep_forever()


async def test_ipv6_url_brackets_the_host(anyio_backend: str) -> None:
    server = TestServer(host="::1")
    server._port = 4000
    assert server.url == "ws://[::1]:4000/socket"
