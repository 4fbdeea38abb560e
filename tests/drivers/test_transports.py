"""Pluggable transports on every driver: a user-written message transport (one that does
its own WebSocket framing) carries a whole session against the loopback server."""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream as AnyioStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from stx_anyio.testing import TestServer
from stx_proto import HandshakeRequest
from stx_proto.driver import HandshakeRejected, MessageStream, MessageTransport, StreamTransport

from .support import FAST, LIMIT, Impl, frames, make_socket

pytestmark = pytest.mark.anyio


class WsprotoStream(MessageStream):
    """Whole messages over wsproto and an anyio TCP stream."""

    def __init__(self, stream: AnyioStream, ws: WSConnection, pending: deque[Event]) -> None:
        self._stream = stream
        self._ws = ws
        self._pending = pending
        self._parts: list[Any] = []

    async def receive(self) -> str | bytes | None:
        while True:
            while self._pending:
                event = self._pending.popleft()
                if isinstance(event, (TextMessage, BytesMessage)):
                    self._parts.append(event.data)
                    if event.message_finished:
                        parts, self._parts = self._parts, []
                        return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
                elif isinstance(event, Ping):
                    await self._stream.send(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.close_code, self.close_reason = event.code, event.reason or ""
                    return None
            try:
                data = await self._stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            self._ws.receive_data(data)
            self._pending.extend(self._ws.events())

    async def send(self, data: str | bytes) -> None:
        message = TextMessage(data) if isinstance(data, str) else BytesMessage(data)
        await self._stream.send(self._ws.send(message))

    async def close(self, code: int, reason: str) -> None:
        await self._stream.send(self._ws.send(CloseConnection(code=code, reason=reason)))

    async def aclose(self) -> None:
        await anyio.aclose_forcefully(self._stream)


class WsprotoTransport(MessageTransport):
    """A user-written transport that does its own WebSocket (here: wsproto) framing."""

    def __init__(self) -> None:
        self.requests: list[HandshakeRequest] = []

    async def connect(
        self, host: str, port: int, tls: bool, ssl_context: Any, request: HandshakeRequest
    ) -> MessageStream:
        self.requests.append(request)
        stream = await anyio.connect_tcp(host, port)
        ws = WSConnection(ConnectionType.CLIENT)
        upgrade = Request(
            host=request.host,
            target=request.target,
            extra_headers=[(k.encode(), v.encode()) for k, v in request.headers],
            subprotocols=list(request.subprotocols),
        )
        await stream.send(ws.send(upgrade))
        pending: deque[Event] = deque()
        while True:
            ws.receive_data(await stream.receive())
            pending.extend(ws.events())
            while pending:
                event = pending.popleft()
                if isinstance(event, AcceptConnection):
                    return WsprotoStream(stream, ws, pending)
                if isinstance(event, RejectConnection):
                    await anyio.aclose_forcefully(stream)
                    raise HandshakeRejected(event.status_code, (("x", "y"),), b"")


async def test_a_message_transport_carries_a_session(impl: Impl, srv: TestServer) -> None:
    transport = WsprotoTransport()
    closes: list[Any] = []
    with anyio.fail_after(LIMIT):
        async with make_socket(
            impl,
            srv,
            transport=transport,
            engine="wsproto",  # whatever --ws-engine says: it frames the messages itself
            params={"user": "ada"},
            on_close=closes.append,
        ) as sock:
            ch = await sock.join("room:1", {"since": 0})
            assert await ch.push("echo", {"n": 1}) == {"n": 1}
            assert await ch.push("bin", b"\x00\x01") == b"\x00\x01"
            srv.phoenix.broadcast("room:1", "tick", {"n": 2})
            async for msg in ch:
                assert msg.payload == {"n": 2}
                break
            srv.close_all(4000, "go away")  # a close frame: the socket reconnects and rejoins
            await srv.wait_for_join("room:1", 2)
            assert await ch.push("echo", {"n": 3}) == {"n": 3}
    assert [c.code for c in closes] == [4000, 1000]
    assert "user=ada" in transport.requests[0].target
    assert len(frames(srv, "phx_leave")) == 1  # the clean close left the channel
    assert srv.phoenix.all_connections[-1].close_code == 1000


async def test_a_message_transport_refused_handshake(impl: Impl, srv: TestServer) -> None:
    from stx_proto import GaveUpError, HandshakeRefusedError, RetryPolicy

    srv.phoenix.refuse_handshake = 403
    retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, max_refusals=2)
    with anyio.fail_after(LIMIT), pytest.raises(GaveUpError) as info:
        async with make_socket(
            impl, srv, transport=WsprotoTransport(), retry=retry, engine="wsproto"
        ) as sock:
            await sock.join("room:1")
    assert isinstance(info.value.__cause__, HandshakeRefusedError)
    assert info.value.__cause__.status_code == 403


async def test_a_transport_must_be_one_of_the_two_kinds(impl: Impl, srv: TestServer) -> None:
    from stx_proto import UsageError

    with pytest.raises(UsageError, match="StreamTransport or a MessageTransport"):
        make_socket(impl, srv, transport=object())
    assert FAST.initial_backoff > 0


async def test_an_engine_does_not_go_with_a_message_transport(impl: Impl, srv: TestServer) -> None:
    from stx_proto import UsageError

    with pytest.raises(UsageError, match="does its own WebSocket"):
        make_socket(impl, srv, transport=WsprotoTransport(), engine="websockets")
    with pytest.raises(UsageError, match="engine must be one of"):
        make_socket(impl, srv, transport="tcp", engine="picows")


async def test_a_message_transport_gives_up_on_a_credential_that_cannot_be_sent(
    impl: Impl, srv: TestServer
) -> None:
    from stx_proto import GaveUpError, UsageError

    headers = lambda: {"X-Key": "value\n"}  # noqa: E731 - a secret read from a file, say
    with anyio.fail_after(LIMIT), pytest.raises(GaveUpError) as info:
        async with make_socket(
            impl, srv, transport=WsprotoTransport(), engine="wsproto", headers=headers
        ) as sock:
            await sock.join("room:1")
    assert isinstance(info.value.__cause__, UsageError)


async def test_a_burst_over_a_message_transport_under_back_pressure_keeps_order(
    impl: Impl, srv: TestServer
) -> None:
    # The handlers' queue fills (an async handler, a small bound), so the reader's messages wait in
    # the pump's inbox and are fed in runs: every message is handled in order or counted.
    seen: list[int] = []

    async def slow(msg: Any) -> None:
        seen.append(msg.payload["n"])
        await anyio.sleep(0)

    with anyio.fail_after(LIMIT):
        async with make_socket(
            impl,
            srv,
            transport=WsprotoTransport(),
            engine="wsproto",
            queue_size=16,
        ) as sock:
            await sock.join("room:1", on_message=slow)
            for n in range(300):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            while not seen or seen[-1] != 299:
                await anyio.sleep(0.005)
            dropped = sock.stats.dropped
    assert seen == sorted(seen)
    assert len(seen) + dropped == 300


async def test_a_tcp_stream_writes_at_once_what_the_kernel_takes(impl: Impl) -> None:
    # send_nowait() writes without waiting on trio (the kit's pushes leave from the caller's
    # task) and writes nothing on asyncio (anyio's send writes at once there). Full, it
    # writes nothing (it never waits); every byte arrives once, in order; closing the
    # stream ends the connection (the trio driver's duplicate descriptor is closed too).
    if impl.transport is not None:
        pytest.skip("a message transport has no byte stream")
    on_trio = impl.backend == "trio"
    chunk = bytes(range(256)) * 64  # 16 KiB
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener:
        first = listener.listeners[0]
        assert isinstance(first, anyio.abc.SocketListener)
        port = first.extra(anyio.abc.SocketAttribute.local_port)
        with anyio.fail_after(LIMIT):
            transport = impl.Socket.default_transport()
            assert isinstance(transport, StreamTransport)
            stream = await transport.connect("127.0.0.1", port, False, None)
            async with await first.accept() as peer:
                written = 0
                limit = 256 * 2**20  # far more than loopback buffers hold
                while written < limit:
                    sent = stream.send_nowait(chunk[written % len(chunk) :])
                    if not sent:
                        break
                    written += sent
                assert (written > 0) is on_trio
                assert written < limit  # it filled up, and did not wait
                assert stream.send_nowait(chunk) == 0
                tail = b"the end"
                expected = (chunk * (written // len(chunk) + 1))[:written] + tail
                received = bytearray()

                async def read_all() -> None:
                    async for data in peer:
                        received.extend(data)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_all)
                    await stream.send(tail)  # waits until the peer has read enough
                    await stream.aclose()  # the peer's reads then end
                assert bytes(received) == expected
                assert stream.send_nowait(b"after the close") == 0
