"""``transport="picows"`` on its own: the upgrade, frames, pings, pongs, close, limits and flow
control of :class:`stx_anyio.picows.PicowsTransport`, against a scripted server that writes
raw WebSocket frames (so each test says exactly what goes on the wire). The whole driver
suite also runs on this transport (the ``anyio-asyncio-picows`` impl)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import pytest
from anyio.abc import SocketStream
from picows import WSMsgType, WSProtocolError
from picows.picows import _make_test_ws_frame

import stx_anyio
from stx_anyio.picows import PicowsStream, PicowsTransport
from stx_anyio.testing import TestServer
from stx_proto import HandshakeRequest, UsageError
from stx_proto.driver import HandshakeRejected

from .support import LIMIT

pytestmark = pytest.mark.anyio

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


@pytest.fixture
def anyio_backend() -> str:
    """picows is asyncio-only."""
    return "asyncio"


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One unmasked (server) frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        return head + bytes([n]) + payload
    if n < 65536:
        return head + bytes([126]) + struct.pack("!H", n) + payload
    return head + bytes([127]) + struct.pack("!Q", n) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and ``reason``."""
    return frame(CLOSE, struct.pack("!H", code) + reason.encode())


class Peer:
    """The server side of one connection: raw HTTP and frames."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.request_line = ""
        self.headers: list[tuple[str, str]] = []

    async def _fill(self) -> None:
        self.buf += await self.stream.receive()

    async def read_request(self) -> None:
        """Read the upgrade request."""
        while b"\r\n\r\n" not in self.buf:
            await self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode().split("\r\n")
        self.request_line = lines[0]
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip().lower(), value.strip()))

    def header(self, name: str) -> str:
        """The value of the request header ``name``."""
        return next(v for n, v in self.headers if n == name)

    async def accept(self, extra: str = "") -> None:
        """Read the request and answer 101 (with ``extra`` header lines)."""
        await self.read_request()
        key = self.header("sec-websocket-key").encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        await self.stream.send(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
            ).encode()
        )

    async def read_frame(self) -> tuple[int, bytes]:
        """The next (masked, client) frame: its opcode and payload."""
        while len(self.buf) < 2:
            await self._fill()
        n = self.buf[1] & 0x7F
        start = 2 + {126: 2, 127: 8}.get(n, 0)
        while len(self.buf) < start + 4:
            await self._fill()
        if n == 126:
            n = struct.unpack("!H", self.buf[2:4])[0]
        elif n == 127:
            n = struct.unpack("!Q", self.buf[2:10])[0]
        while len(self.buf) < start + 4 + n:
            await self._fill()
        mask = self.buf[start : start + 4]
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.buf[start + 4 : start + 4 + n]))
        opcode = self.buf[0] & 0x0F
        del self.buf[: start + 4 + n]
        return opcode, data

    async def read_eof(self) -> None:
        """Return once the client has closed (or reset) the TCP stream."""
        try:
            while True:
                await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return


Script = Callable[[Peer], Awaitable[None]]


@asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[list[Peer]]:
    """A server on 127.0.0.1 that runs ``script`` for each connection (``port`` set on
    :data:`PORT`); yields the list of its peers."""
    peers: list[Peer] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def handle(stream: SocketStream) -> None:
        peer = Peer(stream)
        peers.append(peer)
        async with stream:
            await script(peer)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        PORT[0] = listener.extra(anyio.abc.SocketAttribute.local_port)
        yield peers
        tg.cancel_scope.cancel()


PORT = [0]


def request(target: str = "/socket/websocket?vsn=2.0.0", **kw: Any) -> HandshakeRequest:
    """An upgrade request for the scripted server."""
    return HandshakeRequest(
        url=f"ws://127.0.0.1:{PORT[0]}{target}", host=f"127.0.0.1:{PORT[0]}", target=target, **kw
    )


async def connect(
    req: HandshakeRequest | None = None, max_message_size: int | None = 1000
) -> PicowsStream:
    """A picows stream to the scripted server."""
    stream = await PicowsTransport(max_message_size).connect(
        "127.0.0.1", PORT[0], False, None, req or request()
    )
    assert isinstance(stream, PicowsStream)
    return stream


async def test_upgrade_frames_pings_and_the_peers_close() -> None:
    got: list[tuple[int, bytes]] = []
    done = anyio.Event()

    async def script(peer: Peer) -> None:
        await peer.accept("Sec-WebSocket-Protocol: phoenix\r\n")
        text = "héllo wörld".encode()
        await peer.stream.send(
            frame(PING, b"hi")
            + frame(TEXT, text[:2], fin=False)  # splits the é: decoded once whole
            + frame(PING, b"again")
            + frame(PONG, b"stray")
            + frame(CONTINUATION, text[2:])
            + frame(BINARY, b"\x00", fin=False)
            + frame(CONTINUATION, b"\x01", fin=False)
            + frame(CONTINUATION, b"\x02")
            + frame(PONG)
            + frame(BINARY, b"bin")
            + frame(TEXT, b"unfinished", fin=False)  # the close frame ends it
            + close_frame(4001, "bye")
            + frame(TEXT, b"after the close")  # ignored
        )
        for _ in range(3):  # two pongs and the echoed close (nothing sent after it)
            got.append(await peer.read_frame())
        done.set()
        await peer.read_eof()

    with anyio.fail_after(LIMIT):
        async with scripted(script) as peers:
            req = request(headers=(("x-token", "t"),), subprotocols=("phoenix", "authToken.x"))
            stream = await connect(req)
            assert await stream.receive() == "héllo wörld"
            assert await stream.receive() == b"\x00\x01\x02"
            assert await stream.receive() == b"bin"
            assert await stream.receive() is None
            assert (stream.close_code, stream.close_reason) == (4001, "bye")
            await stream.send("late")  # picows drops it: a close frame went out already
            await stream.send(b"late")
            await stream.aclose()
            await done.wait()
    peer = peers[0]
    assert peer.request_line == f"GET {req.target} HTTP/1.1"
    assert peer.header("host") == req.host
    assert peer.header("x-token") == "t"
    assert peer.header("sec-websocket-protocol") == "phoenix, authToken.x"
    assert got == [(PONG, b"hi"), (PONG, b"again"), (CLOSE, struct.pack("!H", 4001))]


async def test_messages_both_ways_and_a_close_from_the_client() -> None:
    gone = anyio.Event()

    async def script(peer: Peer) -> None:
        await peer.accept()
        for _ in range(3):
            opcode, data = await peer.read_frame()
            await peer.stream.send(frame(opcode, data))
        await peer.read_eof()
        gone.set()

    with anyio.fail_after(LIMIT):
        async with scripted(script):
            assert not PicowsStream(None).send_nowait("text")  # not connected yet
            stream = await connect()
            assert stream.send_nowait("text")  # picows only buffers it: sent at once
            await stream.send(b"bytes")
            assert await stream.receive() == "text"
            assert await stream.receive() == b"bytes"
            await stream.close(4002, "done")
            assert await stream.receive() is None  # the server echoed the close
            assert stream.close_code == 4002
            await stream.aclose()
            await gone.wait()
            assert not stream.send_nowait("late")  # disconnected: send() says why


async def test_a_close_frame_without_a_code_is_1005_and_answered_with_1000() -> None:
    answer: list[tuple[int, bytes]] = []

    async def script(peer: Peer) -> None:
        await peer.accept()
        await peer.stream.send(frame(CLOSE))
        answer.append(await peer.read_frame())
        await peer.read_eof()

    with anyio.fail_after(LIMIT):
        async with scripted(script):
            stream = await connect()
            assert await stream.receive() is None
            assert (stream.close_code, stream.close_reason) == (1005, "")
            await stream.aclose()
            while not answer:
                await anyio.sleep(0.005)
    assert answer == [(CLOSE, struct.pack("!H", 1000))]


async def test_the_end_of_the_stream_without_a_close_frame() -> None:
    async def script(peer: Peer) -> None:
        await peer.accept()
        await peer.stream.send(frame(TEXT, b"last"))

    with anyio.fail_after(LIMIT):
        async with scripted(script):
            stream = await connect()
            assert await stream.receive() == "last"
            assert await stream.receive() is None
            assert stream.close_code is None
            with pytest.raises(ConnectionResetError):
                await stream.send("gone")
            await stream.aclose()


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (frame(TEXT, b"x" * 1001), 1009),  # one frame over the limit: picows' max_frame_size
        (frame(BINARY, b"x" * 600, fin=False) + frame(CONTINUATION, b"x" * 600), 1009),
        (frame(TEXT, b"\xff\xfe"), 1007),
        (frame(TEXT, b"\xc3", fin=False) + frame(CONTINUATION, b"(", fin=True), 1007),
        (frame(CONTINUATION, b"a"), 1002),
        (frame(CONTINUATION, b"a", fin=False), 1002),
        (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002),
    ],
    ids=["big", "big-fragments", "utf8", "utf8-fragments", "orphan", "orphan-part", "nested"],
)
async def test_a_broken_message_fails_with_its_close_code(wire: bytes, code: int) -> None:
    answer: list[tuple[int, bytes]] = []

    async def script(peer: Peer) -> None:
        await peer.accept()
        await peer.stream.send(frame(TEXT, b"ok") + wire + frame(TEXT, b"never"))
        answer.append(await peer.read_frame())

    with anyio.fail_after(LIMIT):
        async with scripted(script):
            stream = await connect()
            assert await stream.receive() == "ok"
            with pytest.raises(WSProtocolError):
                await stream.receive()
            await stream.aclose()
    assert answer[0][0] == CLOSE
    assert struct.unpack("!H", answer[0][1][:2])[0] == code


async def test_no_limit() -> None:
    async def script(peer: Peer) -> None:
        await peer.accept()
        await peer.stream.send(frame(BINARY, b"x" * 70000))
        await peer.read_eof()

    with anyio.fail_after(LIMIT):
        async with scripted(script):
            stream = await connect(max_message_size=None)
            assert await stream.receive() == b"x" * 70000
            await stream.aclose()


@pytest.mark.parametrize("status", [403, 301])
async def test_a_refused_upgrade_raises_handshake_rejected(status: int) -> None:
    async def script(peer: Peer) -> None:
        await peer.read_request()
        head = f"HTTP/1.1 {status} No\r\nLocation: /elsewhere\r\nContent-Length: 4\r\n\r\n"
        await peer.stream.send(head.encode() + b"nope")
        await peer.read_eof()

    with anyio.fail_after(LIMIT):
        async with scripted(script):
            with pytest.raises(HandshakeRejected) as info:
                await connect()
    assert info.value.status_code == status
    assert ("Location", "/elsewhere") in info.value.headers
    assert info.value.body == b"nope"


async def test_a_subprotocol_that_was_not_offered_fails_the_connect() -> None:
    gone = anyio.Event()

    async def script(peer: Peer) -> None:
        await peer.accept("Sec-WebSocket-Protocol: other\r\n")
        await peer.read_eof()  # the client drops the connection
        gone.set()

    with anyio.fail_after(LIMIT):
        async with scripted(script):
            with pytest.raises(ConnectionError, match="not offered"):
                await connect(request(subprotocols=("phoenix",)))
            await gone.wait()


async def test_a_target_picows_would_change_is_refused() -> None:
    with pytest.raises(ValueError, match="unchanged"):
        await connect(request(target="/socket/websocket?name=é"))


async def test_a_connect_cancelled_before_the_answer_drops_a_late_upgrade() -> None:
    asked = anyio.Event()
    answer = anyio.Event()
    dropped = anyio.Event()

    async def script(peer: Peer) -> None:
        await peer.read_request()
        asked.set()
        await answer.wait()
        key = peer.header("sec-websocket-key").encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        await peer.stream.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        await peer.read_eof()  # only if the abandoned stream drops the connection
        dropped.set()

    with anyio.fail_after(LIMIT):
        async with scripted(script):
            async with anyio.create_task_group() as tg:

                async def attempt() -> None:
                    await connect()

                tg.start_soon(attempt)
                await asked.wait()
                tg.cancel_scope.cancel()
            answer.set()
            await dropped.wait()


async def test_a_connect_cancelled_after_the_upgrade_drops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scope = anyio.CancelScope()
    connected = PicowsStream.on_ws_connected

    def then_cancel(self: PicowsStream, transport: Any) -> None:
        connected(self, transport)
        scope.cancel()  # before the connect's coroutine resumes

    monkeypatch.setattr(PicowsStream, "on_ws_connected", then_cancel)

    gone = anyio.Event()

    async def script(peer: Peer) -> None:
        await peer.accept()
        await peer.read_eof()
        gone.set()

    with anyio.fail_after(LIMIT):
        async with scripted(script):
            with scope:
                await connect()
            assert scope.cancelled_caught
            await gone.wait()


def paused(stream: PicowsStream) -> bool:
    """Whether reading is paused (a function: the type checker does not narrow it)."""
    return stream._paused


def writing_paused(stream: PicowsStream) -> bool:
    """Whether picows asked to pause writing."""
    return stream._drained is not None


async def test_reading_pauses_while_many_messages_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PicowsStream, "high_water", 4)
    monkeypatch.setattr(PicowsStream, "low_water", 2)

    async def script(peer: Peer) -> None:
        await peer.accept()
        await peer.stream.send(b"".join(frame(TEXT, b"%d" % n) for n in range(8)))
        await peer.read_eof()

    with anyio.fail_after(LIMIT):
        async with scripted(script):
            stream = await connect()
            assert stream._ws is not None
            tcp = stream._ws.underlying_transport
            while len(stream._queue) < 8:
                await anyio.sleep(0.005)
            assert paused(stream) and not tcp.is_reading()
            got = [await stream.receive() for _ in range(8)]
            assert got == [str(n) for n in range(8)]
            assert not paused(stream) and tcp.is_reading()
            await stream.aclose()


async def test_send_waits_while_the_write_buffer_is_full() -> None:
    drain = anyio.Event()
    drained = anyio.Event()
    big = b"x" * (1 << 20)

    async def script(peer: Peer) -> None:
        await peer.accept()
        await drain.wait()
        for _ in range(sent[0]):
            await peer.read_frame()
        drained.set()
        await peer.read_eof()

    sent = [0]
    with anyio.fail_after(LIMIT):
        async with scripted(script):
            stream = await connect(max_message_size=None)
            while not writing_paused(stream):  # the peer does not read: the buffer fills up
                await stream.send(big)
                sent[0] += 1
            assert not stream.send_nowait(big)  # paused: send() waits for the drain
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream.send, big)  # waits for the drain
                sent[0] += 1
                await anyio.sleep(0)
                drain.set()
            await drained.wait()
            assert not writing_paused(stream)
            # Fill it again, then close while the peer is not reading: aclose aborts.
            while not writing_paused(stream):
                await stream.send(big)
            blocked = anyio.Event()

            async def stuck() -> None:
                blocked.set()
                with pytest.raises(ConnectionResetError):
                    await stream.send(big)

            async with anyio.create_task_group() as tg:
                tg.start_soon(stuck)
                await blocked.wait()
                await stream.aclose()  # the waiting send is released, and fails


async def test_the_transport_by_name(srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        # engine="wsproto": whatever --ws-engine says, picows frames the messages itself.
        picows = stx_anyio.Socket(srv.url, transport="picows", engine="wsproto", timeout=2.0)
        async with picows as sock:
            ch = await sock.join("room:1")
            assert await ch.push("echo", {"n": 1}) == {"n": 1}
    with pytest.raises(
        UsageError, match="unknown transport 'nope'; this driver has: 'picows', 'tcp'"
    ):
        stx_anyio.Socket(srv.url, transport="nope")


async def test_without_picows_the_name_says_what_to_install(
    srv: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "stx_anyio._picows", None)
    with pytest.raises(UsageError, match=r"pip install 'stx-ws\[picows\]'"):
        stx_anyio.Socket(srv.url, transport="picows")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_picows_needs_asyncio(srv: TestServer) -> None:
    with pytest.raises(UsageError, match="needs asyncio"):
        stx_anyio.Socket(srv.url, transport="picows")


async def test_a_frame_after_the_reader_was_cancelled(srv: TestServer) -> None:
    # A cancelled receive() leaves its future cancelled until its task runs again; a frame
    # that comes in between must not try to wake it.
    stream = PicowsStream(None)
    for event in ("message", "close"):
        waiter = stream._waiter = asyncio.get_running_loop().create_future()
        waiter.cancel()
        if event == "message":
            stream.on_ws_frame(
                cast(Any, None), _make_test_ws_frame(WSMsgType.TEXT, b"a", True, False)
            )
        else:
            stream.on_ws_disconnected(cast(Any, None))
        assert stream._waiter is None
    assert list(stream._queue) == ["a"]
