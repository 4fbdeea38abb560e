"""A connection of the kit, driven directly: what it posts when its stream fails or closes."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from stx_proto import HandshakeRequest, OpenTransport, UsageError
from stx_proto.driver import (
    ByteStream,
    Connection,
    HandshakeRejected,
    MessageStream,
    MessageTransport,
    StreamTransport,
    describe_error,
)
from stx_proto.driver.connection import DATA, ENDED, INVALID, MESSAGE, OPENED, REFUSED

from .conftest import Loop

pytestmark = pytest.mark.anyio

LIMIT = 5.0
REQUEST = HandshakeRequest(url="ws://h/socket/websocket", host="h", target="/socket/websocket")


class Owner:
    """What a connection needs of its socket, recording what it posts."""

    def __init__(self, loop: Loop, *, credentials: Exception | None = None) -> None:
        self.runtime = loop.runtime
        self.ssl = None
        self.posts: list[tuple[int, Any]] = []
        self._credentials = credentials
        self.request_error: Exception | None = None

    def post(self, conn: Connection, kind: int, data: Any) -> None:
        self.posts.append((kind, data))

    async def inbox_room(self, conn: Connection) -> None:
        await anyio.lowlevel.checkpoint()

    async def refresh_credentials(self) -> None:
        if self._credentials is not None:
            raise self._credentials

    def handshake_request(self) -> HandshakeRequest:
        if self.request_error is not None:
            raise self.request_error
        return REQUEST


class Script(ByteStream):
    """A byte stream that returns scripted reads and fails its writes on demand."""

    def __init__(self, reads: list[bytes | Exception], send_error: Exception | None = None):
        self.reads = reads
        self.sent: list[bytes] = []
        self.send_error = send_error
        self.closed = False

    async def receive(self) -> bytes:
        await anyio.lowlevel.checkpoint()
        item = self.reads.pop(0) if self.reads else b""
        if isinstance(item, Exception):
            raise item
        return item

    async def send(self, data: bytes) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(data)

    async def aclose(self) -> None:
        self.closed = True


class Streams(StreamTransport):
    def __init__(self, stream: ByteStream | Exception) -> None:
        self.stream = stream

    async def connect(self, host: str, port: int, tls: bool, ssl_context: Any) -> ByteStream:
        await anyio.lowlevel.checkpoint()
        if isinstance(self.stream, Exception):
            raise self.stream
        return self.stream


class Messages(MessageStream):
    def __init__(self, reads: list[str | bytes | None], close_code: int | None = None) -> None:
        self.reads = reads
        self.sent: list[str | bytes] = []
        self.closes: list[tuple[int, str]] = []
        self.closed = False
        self.end_code = close_code

    async def receive(self) -> str | bytes | None:
        await anyio.lowlevel.checkpoint()
        item = self.reads.pop(0) if self.reads else None
        if item is None:
            self.close_code = self.end_code
            self.close_reason = "bye" if self.end_code is not None else ""
        return item

    async def send(self, data: str | bytes) -> None:
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    async def aclose(self) -> None:
        self.closed = True


class MessageSockets(MessageTransport):
    def __init__(self, result: MessageStream | Exception) -> None:
        self.result = result
        self.requests: list[HandshakeRequest] = []

    async def connect(
        self, host: str, port: int, tls: bool, ssl_context: Any, request: HandshakeRequest
    ) -> MessageStream:
        self.requests.append(request)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


OPEN = OpenTransport("h", 80, False)


async def test_a_stream_is_read_until_its_end_then_closed(loop: Loop) -> None:
    owner = Owner(loop)
    stream = Script([b"a", b"b"])
    conn = Connection(owner, Streams(stream))
    with anyio.fail_after(LIMIT):
        await conn.run(OPEN)
    assert owner.posts == [(OPENED, None), (DATA, b"a"), (DATA, b"b"), (ENDED, None)]
    assert stream.closed


async def test_connect_and_credential_failures_are_posted(loop: Loop) -> None:
    with anyio.fail_after(LIMIT):
        owner = Owner(loop)
        await Connection(owner, Streams(ConnectionRefusedError("refused"))).run(OPEN)
        assert owner.posts == [(ENDED, "connect failed: ConnectionRefusedError: refused")]
        owner = Owner(loop, credentials=ValueError("no token"))
        await Connection(owner, Streams(Script([]))).run(OPEN)
        assert owner.posts == [(ENDED, "credentials failed: ValueError('no token')")]


async def test_connection_send_and_receive_failures(loop: Loop) -> None:
    with anyio.fail_after(LIMIT):
        owner = Owner(loop)
        stream = Script([anyio.EndOfStream()], send_error=OSError("broken pipe"))
        conn = Connection(owner, Streams(stream))
        conn.send(b"a")
        await conn.run(OPEN)
        assert (ENDED, "send failed: OSError: broken pipe") in owner.posts

        owner = Owner(loop)
        await Connection(owner, Streams(Script([ConnectionResetError("reset")]))).run(OPEN)
        assert owner.posts[-1] == (ENDED, "receive failed: ConnectionResetError: reset")


async def test_a_closing_connection_flushes_then_stops(loop: Loop) -> None:
    with anyio.fail_after(LIMIT):
        owner = Owner(loop)

        class ClosedWhileReading(Script):
            async def receive(self) -> bytes:
                conn.send(b"last words")
                conn.close(1.0)  # the pump closes the connection while a read is under way
                return b"late"

        stream = ClosedWhileReading([])
        conn = Connection(owner, Streams(stream))
        await conn.run(OPEN)
        assert owner.posts == [(OPENED, None), (DATA, b"late")]  # no end of its own
        assert stream.sent == [b"last words"] and stream.closed
        deadline = conn.scope.deadline
        conn.close(100.0)  # closing again changes nothing
        assert conn.scope.deadline == deadline


async def test_closing_before_the_connect_cancels_it(loop: Loop) -> None:
    with anyio.fail_after(LIMIT):
        owner = Owner(loop)
        conn = Connection(owner, Streams(Script([])))
        conn.close(1.0)
        await conn.run(OPEN)
        assert owner.posts == []


async def test_a_message_transport_carries_whole_messages(loop: Loop) -> None:
    with anyio.fail_after(LIMIT):
        owner = Owner(loop)
        stream = Messages(["text", b"bin"], close_code=1001)
        transport = MessageSockets(stream)
        conn = Connection(owner, transport)
        conn.send("out")
        await conn.run(OPEN)
        assert transport.requests == [REQUEST]
        assert owner.posts == [
            (OPENED, None),
            (MESSAGE, ["text"]),  # one at a time: the default receive_batch()
            (MESSAGE, [b"bin"]),
            (ENDED, (1001, "bye")),
        ]
        assert stream.sent == ["out"] and stream.closed

        owner = Owner(loop)
        await Connection(owner, MessageSockets(Messages([]))).run(OPEN)
        assert owner.posts[-1] == (ENDED, None)  # the end of the stream, no close frame


async def test_a_message_transport_sends_the_close_frame_it_was_given(loop: Loop) -> None:
    with anyio.fail_after(LIMIT):
        owner = Owner(loop)

        class ClosedWhileReading(Messages):
            async def receive(self) -> str | bytes | None:
                conn.close(1.0, 4000, "done")
                return "late"

        stream = ClosedWhileReading([])
        conn = Connection(owner, MessageSockets(stream))
        await conn.run(OPEN)
        assert stream.closes == [(4000, "done")] and stream.closed


async def test_a_message_transport_refusal_and_failures(loop: Loop) -> None:
    with anyio.fail_after(LIMIT):
        owner = Owner(loop)
        refusal = HandshakeRejected(401, (("x", "y"),), b"no")
        await Connection(owner, MessageSockets(refusal)).run(OPEN)
        assert owner.posts == [(REFUSED, refusal)]
        assert str(refusal) == "HTTP 401"

        owner = Owner(loop)
        await Connection(owner, MessageSockets(OSError("down"))).run(OPEN)
        assert owner.posts == [(ENDED, "connect failed: OSError: down")]

        owner = Owner(loop)
        owner.request_error = ValueError("token service down")
        await Connection(owner, MessageSockets(Messages([]))).run(OPEN)
        assert owner.posts == [(ENDED, "handshake: ValueError: token service down")]

        owner = Owner(loop)  # a value that cannot be sent: the socket gives up with it
        owner.request_error = invalid = UsageError("header 'X': its value holds a line break")
        await Connection(owner, MessageSockets(Messages([]))).run(OPEN)
        assert owner.posts == [(INVALID, invalid)]


async def test_a_read_stops_when_the_connection_closes_meanwhile(loop: Loop) -> None:
    # The reader checks for a close after each read: a close that came in while it waited
    # for room in the inbox ends the loop without another read.
    with anyio.fail_after(LIMIT):

        class ClosingOwner(Owner):
            async def inbox_room(self, conn: Connection) -> None:
                conn.close(1.0)

        owner = ClosingOwner(loop)
        conn = Connection(owner, Streams(Script([b"x"])))
        await conn._read_bytes(Script([b"x", b"never read"]))
        assert owner.posts == [(DATA, b"x")]
        owner.posts.clear()
        conn.closing = False
        await conn._read_messages(Messages(["m", "never read"]))
        assert owner.posts == [(MESSAGE, ["m"])]


async def test_a_message_connection_closed_while_reading_stops_its_reader(loop: Loop) -> None:
    # The reader sees the close before the writer has cancelled anything.
    class NoWaitOwner(Owner):
        async def inbox_room(self, conn: Connection) -> None:
            return None

    with anyio.fail_after(LIMIT):
        owner = NoWaitOwner(loop)

        class ClosedWhileReading(Messages):
            async def receive(self) -> str | bytes | None:
                conn.close(1.0, 1000, "")
                return "late"

        stream = ClosedWhileReading([])
        conn = Connection(owner, MessageSockets(stream))
        await conn.run(OPEN)
        assert owner.posts == [(OPENED, None), (MESSAGE, ["late"])]
        assert stream.closes == [(1000, "")] and stream.closed


async def test_message_stream_failures(loop: Loop) -> None:
    class BrokenReads(Messages):
        async def receive(self) -> str | bytes | None:
            raise ConnectionResetError("reset")

    class BrokenWrites(Messages):
        async def receive(self) -> str | bytes | None:
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async def send(self, data: str | bytes) -> None:
            raise OSError("broken pipe")

    with anyio.fail_after(LIMIT):
        owner = Owner(loop)
        await Connection(owner, MessageSockets(BrokenReads([]))).run(OPEN)
        assert owner.posts[-1] == (ENDED, "receive failed: ConnectionResetError: reset")
        owner = Owner(loop)
        conn = Connection(owner, MessageSockets(BrokenWrites([])))
        conn.send("out")
        await conn.run(OPEN)
        assert owner.posts[-1] == (ENDED, "send failed: OSError: broken pipe")


def test_describe_error_follows_causes_and_groups() -> None:
    wrapper = RuntimeError()
    wrapper.__cause__ = ValueError("bad certificate")
    assert describe_error(wrapper) == "RuntimeError (ValueError: bad certificate)"

    class Group(Exception):  # an exception group as describe_error sees one (3.10 has none)
        exceptions = (ConnectionRefusedError("a"), OSError("b"))

    group = OSError("all attempts failed")
    group.__cause__ = Group("attempts")
    assert describe_error(group) == (
        "OSError: all attempts failed (ConnectionRefusedError: a; OSError: b)"
    )
    first, second = KeyError("x"), KeyError("y")
    first.__cause__, second.__cause__ = second, first  # a cycle ends at the depth limit
    assert describe_error(first).count("KeyError") == 5


async def test_a_message_stream_that_can_send_at_once_skips_the_writer(loop: Loop) -> None:
    # send_nowait() takes a message when nothing is queued or being sent before it; a
    # refusal or a failure sends it through the writer, in order.
    release = anyio.Event()
    writer_started = anyio.Event()

    class Eager(Messages):
        def __init__(self) -> None:
            super().__init__([])
            self.now: list[str | bytes] = []
            self.answer: bool | Exception = True

        def send_nowait(self, data: str | bytes) -> bool:
            if isinstance(self.answer, Exception):
                raise self.answer
            if self.answer:
                self.now.append(data)
            return self.answer

        async def send(self, data: str | bytes) -> None:
            writer_started.set()
            await release.wait()  # the writer is inside a send until released
            self.sent.append(data)

        async def receive(self) -> str | bytes | None:
            await anyio.sleep_forever()  # the connection stays open until closed
            return None

    with anyio.fail_after(LIMIT):
        owner = Owner(loop)
        stream = Eager()
        conn = Connection(owner, MessageSockets(stream))
        conn.send("before the stream opens")  # no stream yet: the writer sends it
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run, OPEN)
            await writer_started.wait()
            conn.send("behind the writer's send")  # must not overtake it
            release.set()
            await anyio.wait_all_tasks_blocked()
            conn.send("at once")
            stream.answer = False
            conn.send("refused")
            await anyio.wait_all_tasks_blocked()
            stream.answer = ConnectionResetError("gone")
            conn.send("failed")
            await anyio.wait_all_tasks_blocked()
            conn.close(1.0)
        assert stream.now == ["at once"]
        assert stream.sent == [
            "before the stream opens",
            "behind the writer's send",
            "refused",
            "failed",
        ]


async def test_a_byte_stream_that_can_write_at_once_skips_the_writer(loop: Loop) -> None:
    # send_nowait() writes what it can when nothing is queued or being written before the
    # bytes; what it leaves (a full buffer, a failure) goes through the writer, in order.
    release = anyio.Event()
    writer_started = anyio.Event()

    class Eager(Script):
        def __init__(self) -> None:
            super().__init__([])
            self.wire: list[tuple[str, bytes]] = []  # what was written, in order, and how
            self.takes: int | Exception = 1000  # bytes send_nowait() takes

        def send_nowait(self, data: bytes) -> int:
            if isinstance(self.takes, Exception):
                raise self.takes
            taken = data[: self.takes]
            if taken:
                self.wire.append(("now", taken))
            return len(taken)

        async def send(self, data: bytes) -> None:
            writer_started.set()
            await release.wait()  # the writer is inside a send until released
            self.wire.append(("writer", data))

        async def receive(self) -> bytes:
            await anyio.sleep_forever()  # the connection stays open until closed
            return b""

    with anyio.fail_after(LIMIT):
        owner = Owner(loop)
        stream = Eager()
        conn = Connection(owner, Streams(stream))
        conn.send(b"before")  # no stream yet: the writer writes it
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run, OPEN)
            await writer_started.wait()
            conn.send(b"behind")  # the writer is inside a send: queued behind it
            release.set()
            await anyio.wait_all_tasks_blocked()
            conn.send(b"at once")
            stream.takes = 2
            conn.send(b"partly")  # "pa" now, the rest by the writer
            await anyio.wait_all_tasks_blocked()
            stream.takes = 0
            conn.send(b"full")  # the kernel's buffer is full: all of it by the writer
            await anyio.wait_all_tasks_blocked()
            stream.takes = BrokenPipeError("gone")
            conn.send(b"failed")  # the writer's send then reports the broken stream
            await anyio.wait_all_tasks_blocked()
            conn.close(1.0)
        assert stream.wire == [
            ("writer", b"before"),
            ("writer", b"behind"),
            ("now", b"at once"),
            ("now", b"pa"),
            ("writer", b"rtly"),
            ("writer", b"full"),
            ("writer", b"failed"),
        ]
        assert owner.posts == [(OPENED, None)]
