"""One benchmark client run, in its own process: this project's Socket or a bare loop.

The orchestrator (side_by_side.py) starts one process per run, so that the CPU time
(getrusage, user + sys) and the peak RSS it reports belong to that client alone. The process
prints one ``RESULT {json}`` line (bench_common.emit) and exits.

    python benchmarks/bench_client.py LABEL SCENARIO --port N --count N [--queue-size N]

LABEL is a row of bench_rows.py; SCENARIO is ``inbound``, ``rtt``, ``channels`` or ``slow``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, cast

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from bench_common import (  # noqa: E402
    CHANNELS,
    EVENT,
    INBOUND,
    JOIN_BATCH,
    LAST_EVENT,
    RTT,
    SLOW,
    TOPIC,
    Clock,
    emit,
    fail,
    inbound_result,
    market_update,
    peak_rss_kb,
    pushes_for,
    rss_kb,
    rtt_result,
)
from bench_rows import Row, find  # noqa: E402

SLOW_HANDLER_SECONDS = 0.001  # the slow consumer's handler: at most ~1,000 messages a second
SLOW_LIMIT = 240.0  # seconds a slow-consumer run may take
RECONNECT_BACKOFF = 0.01  # seconds before the reconnect in the rejoin run (no jitter)
DEFAULT_QUEUE_SIZE = 10_000  # the Socket's documented default queue_size


# ------------------------------------------------------------------------------------------
# This project's Socket


class Kit:
    """The event loop's primitives, for code shared by the anyio and trio drivers."""

    def __init__(
        self,
        event: Callable[[], Any],
        sleep: Callable[[float], Awaitable[None]],
        group: Callable[[], Any],
    ) -> None:
        self.event = event
        self.sleep = sleep
        self.group = group


class Counter:
    """Counts handled messages; ``done`` is set when the blast's last one is handled."""

    def __init__(self, kit: Kit) -> None:
        self._kit = kit
        self.n = 0
        self.done = kit.event()

    def reset(self) -> None:
        """Ready for the next blast."""
        self.n = 0
        self.done = self._kit.event()

    def __call__(self, msg: Any) -> None:
        self.n += 1
        if msg.event == LAST_EVENT:
            self.done.set()


async def ours_inbound(kit: Kit, make: Callable[..., Any], count: int) -> dict[str, Any]:
    """Time a blast of ``count`` messages to an inline ``on_message`` handler that counts."""
    counter = Counter(kit)
    async with make() as sock:
        ch = await sock.join(TOPIC, on_message=counter)
        await ch.push("blast", {"count": max(10, count // 10)})  # warm-up
        await counter.done.wait()
        counter.reset()
        clock = Clock()
        await ch.push("blast", {"count": count})
        await counter.done.wait()
        wall, cpu = clock.elapsed()
        if counter.n != count or sock.stats.dropped:
            fail(f"handled {counter.n} of {count}, dropped {sock.stats.dropped}")
    return inbound_result(count, wall, cpu)


async def ours_rtt(kit: Kit, make: Callable[..., Any], count: int) -> dict[str, Any]:
    """Sequential ``await ch.push("echo", payload)``: the median and p99 round trip."""
    payload = market_update(0)
    warm, n = pushes_for(count)
    samples: list[float] = []
    async with make() as sock:
        ch = await sock.join(TOPIC)
        for _ in range(warm):
            await ch.push("echo", payload)
        now = time.perf_counter
        for _ in range(n):
            start = now()
            reply = await ch.push("echo", payload)
            samples.append(now() - start)
        if reply != payload:
            fail(f"the echo {reply!r} is not the payload")
    return rtt_result(samples)


async def ours_channels(
    kit: Kit, make: Callable[..., Any], count: int, retry: Any, error: type[Exception]
) -> dict[str, Any]:
    """Join ``count`` channels (RSS before and after), then drop the connection and time
    until every channel is rejoined (counted by the ``on_rejoin`` hook)."""
    target = count + 1  # the channels and the control channel
    rejoined = [0]
    opened: list[float] = []
    all_back = kit.event()
    finished = [0.0]

    def on_rejoin(_channel: Any) -> None:
        rejoined[0] += 1
        if rejoined[0] == target:
            finished[0] = time.perf_counter()
            all_back.set()

    def on_open() -> None:
        opened.append(time.perf_counter())

    def noop(_msg: Any) -> None:
        return None

    async with make(on_rejoin=on_rejoin, on_open=on_open, retry=retry) as sock:
        control = await sock.join("bench:control")
        before = rss_kb()
        start = time.perf_counter()
        for first in range(0, count, JOIN_BATCH):
            async with kit.group() as group:
                for i in range(first, min(count, first + JOIN_BATCH)):
                    group.start_soon(_join, sock, f"market:{i}", noop)
        joined_in = time.perf_counter() - start
        after = rss_kb()
        dropped_at = time.perf_counter()
        with contextlib.suppress(error):  # the connection may end before the reply is read
            await control.push("drop", {})
        await all_back.wait()
        if rejoined[0] != target or len(opened) != 2:
            fail(f"rejoined {rejoined[0]} of {target}, {len(opened)} opens")
    return {
        "channels": count,
        "join_seconds": joined_in,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_channel": (after - before) / count,
        "peak_rss_kb": peak_rss_kb(),
        "rejoin_seconds": finished[0] - dropped_at,
        "rejoin_after_open_seconds": finished[0] - opened[1],
    }


async def _join(sock: Any, topic: str, handler: Callable[[Any], None]) -> None:
    await sock.join(topic, on_message=handler)


async def ours_slow(
    kit: Kit, make: Callable[..., Any], count: int, queue_size: int | None
) -> dict[str, Any]:
    """A blast of ``count`` to a handler that sleeps SLOW_HANDLER_SECONDS per message.

    Ends once the socket has received the whole blast (``stats.messages``): what the handler
    could not keep up with is queued (bounded) or dropped (``stats.dropped``).

    Heartbeats are off: the reply to one sent during the blast is queued behind the rest of
    the blast, which this consumer takes about a minute to read, so it can time out (30 s)
    and the socket reconnects, losing the rest of the blast. A reconnect fails the run.
    """
    handled = [0]

    async def slow(_msg: Any) -> None:
        await kit.sleep(SLOW_HANDLER_SECONDS)
        handled[0] += 1

    async with make(close_timeout=0.2, heartbeat_interval=None) as sock:
        ch = await sock.join(TOPIC, on_message=slow)
        base = sock.stats.messages
        clock = Clock()
        await ch.push("blast", {"count": count})
        while sock.stats.messages - base < count:
            if sock.stats.reconnects:
                fail(f"the connection was replaced after {sock.stats.messages - base} messages")
            if time.perf_counter() - clock.wall > SLOW_LIMIT:
                fail(
                    f"received {sock.stats.messages - base} of {count} in {SLOW_LIMIT} s "
                    f"(handled {handled[0]}, dropped {sock.stats.dropped}): stalled"
                )
            await kit.sleep(0.02)
        wall, _cpu = clock.elapsed()
        # The core counts a read's messages as it parses them; the pump hands them to the
        # queue right after: let it, so that each one is handled, dropped or queued.
        await kit.sleep(0.1)
        received, dropped, done = sock.stats.messages - base, sock.stats.dropped, handled[0]
    # Every message received was handled, dropped (and counted), or is still queued (at most
    # the queue's bound, plus the one the handler was sleeping on): none lost uncounted.
    queued = received - done - dropped
    if not 0 <= queued <= (queue_size or DEFAULT_QUEUE_SIZE) + 1:
        fail(f"received {received}, handled {done}, dropped {dropped}: {queued} unaccounted")
    return {
        "msgs": count,
        "received": received,
        "handled": done,
        "dropped": dropped,
        "queued_at_end": queued,
        "seconds": wall,
        "peak_rss_kb": peak_rss_kb(),
    }


def run_ours(row: Row, scenario: str, url: str, count: int, queue_size: int | None) -> None:
    """Run ``scenario`` with the row's Socket on the row's event loop; emit the result."""
    options = dict(row.options)
    if queue_size is not None:
        options["queue_size"] = queue_size

    if row.driver == "stx_trio":
        import trio

        import stx_trio

        kit = Kit(trio.Event, trio.sleep, trio.open_nursery)
        socket_class: Any = stx_trio.Socket
        retry: Any = stx_trio.RetryPolicy(initial_backoff=RECONNECT_BACKOFF, jitter=False)
        error: type[Exception] = stx_trio.StxWsError
    else:
        import anyio

        import stx_anyio

        kit = Kit(anyio.Event, anyio.sleep, anyio.create_task_group)
        socket_class = stx_anyio.Socket
        retry = stx_anyio.RetryPolicy(initial_backoff=RECONNECT_BACKOFF, jitter=False)
        error = stx_anyio.StxWsError

    def make(**extra: Any) -> Any:
        return socket_class(url, **options, **extra)

    async def main() -> dict[str, Any]:
        if scenario == INBOUND:
            return await ours_inbound(kit, make, count)
        if scenario == RTT:
            return await ours_rtt(kit, make, count)
        if scenario == CHANNELS:
            return await ours_channels(kit, make, count, retry, error)
        return await ours_slow(kit, make, count, queue_size)

    if row.driver == "stx_trio":
        import trio

        emit(trio.run(main))
    else:
        import anyio

        backend = "trio" if row.loop == "trio" else "asyncio"
        options_ = {"use_uvloop": True} if row.loop == "uvloop" else None
        emit(anyio.run(main, backend=backend, backend_options=options_))


# ------------------------------------------------------------------------------------------
# The bare loops: WebSocket engine + socket I/O + JSON decoding, no Phoenix layer


class Engine(Protocol):
    """A sans-IO WebSocket client: bytes in, whole text messages out."""

    open: bool

    def handshake(self) -> bytes:
        """The opening handshake's bytes."""
        ...

    def feed(self, data: bytes) -> list[Any]:
        """The text messages (str or bytes) completed by ``data``."""
        ...

    def text(self, message: str) -> bytes:
        """``message`` framed as a text message."""
        ...


class WsprotoEngine:
    """wsproto's WSConnection."""

    def __init__(self, host: str, target: str) -> None:
        from wsproto import ConnectionType, WSConnection

        self._ws = WSConnection(ConnectionType.CLIENT)
        self._host, self._target = host, target
        self._parts: list[str] = []
        self.open = False

    def handshake(self) -> bytes:
        """The upgrade request."""
        from wsproto.events import Request

        return self._ws.send(Request(host=self._host, target=self._target))

    def feed(self, data: bytes) -> list[Any]:
        """Whole text messages in ``data`` (raises ConnectionError if the handshake fails)."""
        from wsproto.events import AcceptConnection, RejectConnection, TextMessage

        ws = self._ws
        ws.receive_data(data)
        out: list[Any] = []
        parts = self._parts
        for ev in ws.events():
            if type(ev) is TextMessage:
                if not ev.message_finished:
                    parts.append(ev.data)
                elif parts:
                    parts.append(ev.data)
                    out.append("".join(parts))
                    parts.clear()
                else:
                    out.append(ev.data)
            elif type(ev) is AcceptConnection:
                self.open = True
            elif type(ev) is RejectConnection:
                raise ConnectionError("handshake refused")
        return out

    def text(self, message: str) -> bytes:
        """A text frame."""
        from wsproto.events import TextMessage

        return self._ws.send(TextMessage(data=message))


class WebsocketsEngine:
    """websockets' sans-IO ClientProtocol (unfragmented messages: the server sends no other)."""

    def __init__(self, url: str) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self._proto = ClientProtocol(parse_uri(url), max_size=None)
        self.open = False

    def handshake(self) -> bytes:
        """The upgrade request."""
        proto = self._proto
        proto.send_request(proto.connect())
        return b"".join(proto.data_to_send())

    def feed(self, data: bytes) -> list[Any]:
        """Whole text messages in ``data``, as bytes."""
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response

        proto = self._proto
        proto.receive_data(data)
        out: list[Any] = []
        text = Opcode.TEXT
        for ev in proto.events_received():
            if type(ev) is Frame:
                if ev.opcode is text:
                    out.append(ev.data)
            elif type(ev) is Response:
                if ev.status_code != 101:
                    raise ConnectionError("handshake refused")
                self.open = True
        return out

    def text(self, message: str) -> bytes:
        """A text frame."""
        proto = self._proto
        proto.send_text(message.encode())
        return b"".join(proto.data_to_send())


class Stream(Protocol):
    """A connected byte stream."""

    async def send(self, data: bytes) -> None:
        """Write ``data``."""
        ...

    async def recv(self) -> bytes:
        """Up to 64 KiB; b"" at the end."""
        ...


class TrioStream:
    """A trio SocketStream."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def send(self, data: bytes) -> None:
        """Write ``data``."""
        await self._stream.send_all(data)

    async def recv(self) -> bytes:
        """Up to 64 KiB."""
        data: bytes = await self._stream.receive_some(65536)
        return data


class AsyncioStream:
    """asyncio streams (StreamReader, StreamWriter)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    async def send(self, data: bytes) -> None:
        """Write ``data`` (the kernel takes these small writes at once)."""
        self._writer.write(data)

    async def recv(self) -> bytes:
        """Up to 64 KiB."""
        return await self._reader.read(65536)


class BareClient:
    """A minimal Phoenix client: handshake, join, read, decode each message, count; push
    and await the reply."""

    def __init__(self, stream: Stream, engine: Engine, loads: Callable[[Any], Any]) -> None:
        self._stream, self._engine, self._loads = stream, engine, loads
        self._ref = 0
        self._pending: list[Any] = []

    async def _read(self) -> list[Any]:
        data = await self._stream.recv()
        if not data:
            raise ConnectionError("the server closed the connection")
        return self._engine.feed(data)

    async def open(self) -> None:
        """Handshake and join TOPIC."""
        engine = self._engine
        await self._stream.send(engine.handshake())
        while not engine.open:
            self._pending.extend(await self._read())
        await self.push("phx_join", {})

    async def push(self, event: str, payload: Any) -> Any:
        """Send a push; return the reply's response once it arrives."""
        self._ref += 1
        ref = str(self._ref)
        await self._stream.send(self._engine.text(json.dumps(["1", ref, TOPIC, event, payload])))
        loads = self._loads
        while True:
            pending = self._pending
            for i, text in enumerate(pending):
                msg = loads(text)
                if msg[1] == ref:
                    del pending[: i + 1]  # what came after the reply (a blast) stays
                    return msg[4]["response"]
            self._pending = await self._read()

    async def count(self) -> int:
        """Read until the blast's last message; return the messages decoded."""
        loads = self._loads
        n = 0
        pending, self._pending = self._pending, []
        while True:
            for text in pending:
                event = loads(text)[3]
                if event == EVENT:
                    n += 1
                elif event == LAST_EVENT:
                    return n + 1
            pending = await self._read()


async def bare_scenario(client: BareClient, scenario: str, count: int) -> Any:
    """Run ``scenario`` on an open bare client; return the result."""
    if scenario == RTT:
        payload = market_update(0)
        warm, n = pushes_for(count)
        for _ in range(warm):
            await client.push("echo", payload)
        samples = []
        now = time.perf_counter
        for _ in range(n):
            start = now()
            reply = await client.push("echo", payload)
            samples.append(now() - start)
        if reply != payload:
            fail("the echo is not the payload")
        return rtt_result(samples)
    warm = max(10, count // 10)
    await client.push("blast", {"count": warm})
    await client.count()
    clock = Clock()
    await client.push("blast", {"count": count})
    got = await client.count()
    wall, cpu = clock.elapsed()
    if got != count:
        fail(f"counted {got} of {count}")
    return inbound_result(count, wall, cpu)


def _loads(json_name: str) -> Callable[[Any], Any]:
    if json_name == "orjson":
        import orjson

        return orjson.loads
    return json.loads


def run_bare(row: Row, scenario: str, port: int, count: int) -> None:
    """Run ``scenario`` with the row's bare loop; emit the result."""
    engine_name, json_name, loop = row.client.split("-")
    if engine_name == "picows":
        emit(run_picows(scenario, port, count, decode=json_name != "none"))
        return
    url = f"ws://127.0.0.1:{port}/socket/websocket?vsn=2.0.0"

    def engine() -> Engine:
        if engine_name == "websockets":
            return WebsocketsEngine(url)
        return WsprotoEngine(f"127.0.0.1:{port}", "/socket/websocket?vsn=2.0.0")

    loads = _loads(json_name)
    if loop == "trio":
        import trio

        async def trio_main() -> Any:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                client = BareClient(TrioStream(stream), engine(), loads)
                await client.open()
                return await bare_scenario(client, scenario, count)

        emit(trio.run(trio_main))
        return

    async def asyncio_main() -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            client = BareClient(AsyncioStream(reader, writer), engine(), loads)
            await client.open()
            return await bare_scenario(client, scenario, count)
        finally:
            writer.close()

    if loop == "uvloop":
        import uvloop

        emit(uvloop.run(asyncio_main()))
    else:
        emit(asyncio.run(asyncio_main()))


def run_picows(scenario: str, port: int, count: int, *, decode: bool) -> Any:
    """The bare picows + orjson loop on uvloop (``decode`` False: frames counted only)."""
    import orjson
    import uvloop
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Listener(WSListener):
        def __init__(self) -> None:
            self.n = 0
            self.target = 0
            self.done: asyncio.Future[Any] | None = None
            self.ref = ""

        def expect(self, target: int) -> asyncio.Future[Any]:
            self.n, self.target = 0, target
            self.done = asyncio.get_running_loop().create_future()
            return self.done

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type != WSMsgType.TEXT or self.done is None:
                return
            if self.target == 0:  # awaiting a reply
                msg = orjson.loads(frame.get_payload_as_bytes())
                if msg[1] == self.ref:
                    self.done.set_result(msg[4]["response"])
                return
            if not decode:  # the blast's reply and its frames: count them all
                self.n += 1
                if self.n == self.target:
                    self.done.set_result(self.n - 1)
                return
            event = orjson.loads(frame.get_payload_as_bytes())[3]
            if event == EVENT:
                self.n += 1
            elif event == LAST_EVENT:
                self.done.set_result(self.n + 1)

    async def main() -> Any:
        transport, connected = await ws_connect(
            Listener, f"ws://127.0.0.1:{port}/socket/websocket?vsn=2.0.0"
        )
        listener = cast(Listener, connected)
        ref = [0]

        async def push(event: str, payload: Any, target: int = 0) -> Any:
            ref[0] += 1
            listener.ref = str(ref[0])
            done = listener.expect(target)
            transport.send(WSMsgType.TEXT, orjson.dumps(["1", listener.ref, TOPIC, event, payload]))
            return await done

        try:
            await push("phx_join", {})
            if scenario == RTT:
                payload = market_update(0)
                warm, n = pushes_for(count)
                for _ in range(warm):
                    await push("echo", payload)
                samples = []
                now = time.perf_counter
                for _ in range(n):
                    start = now()
                    await push("echo", payload)
                    samples.append(now() - start)
                return rtt_result(samples)
            warm = max(10, count // 10)
            await push("blast", {"count": warm}, warm + (0 if decode else 1))
            clock = Clock()
            got = await push("blast", {"count": count}, count + (0 if decode else 1))
            wall, cpu = clock.elapsed()
            if got != count:
                fail(f"counted {got} of {count}")
            return inbound_result(count, wall, cpu)
        finally:
            transport.disconnect()

    return uvloop.run(main())


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and run one client."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("label")
    parser.add_argument("scenario", choices=(INBOUND, RTT, CHANNELS, SLOW))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--queue-size", type=int, default=None)
    args = parser.parse_args(argv)
    row = find(args.label)
    if row.kind == "ours":
        url = f"ws://127.0.0.1:{args.port}/socket"
        run_ours(row, args.scenario, url, args.count, args.queue_size)
    else:
        run_bare(row, args.scenario, args.port, args.count)


if __name__ == "__main__":
    main()
