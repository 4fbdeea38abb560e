"""Throughput of the sans-IO core on realistic market updates.

Pre-builds WebSocket frames carrying ~300-byte Phoenix market updates, feeds them to a
connected ``stx_proto.Client`` in 64 KiB reads (as a socket would deliver them), and drains
every event. Prints messages per second and microseconds per message for the standard-library
and orjson codecs on each WebSocket engine (wsproto, websockets), next to bare wsproto + json
and bare websockets ClientProtocol + json loops (the floors each engine is built on).

    python benchmarks/core_throughput.py            # full run
    python benchmarks/core_throughput.py --quick    # a smoke run (used by the test suite)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.uri import parse_uri
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from stx_proto import Client, MessageReceived, SleepUntil, resolve_engine
from stx_proto.testing import Link, PhoenixServer

# market_update lives in bench_common (standard library only, for the peers' environments).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from bench_common import market_update  # noqa: E402

__all__ = ["TOPIC", "build_frames", "joined_client", "main", "market_update"]

TOPIC = "market_info"
CHUNK = 64 * 1024


def joined_client(codec: str, server: PhoenixServer, engine: str = "wsproto") -> Link:
    """A client on ``codec`` and ``engine`` joined to TOPIC through ``server``, in memory."""
    client = Client(
        "ws://bench/socket", json=codec, heartbeat_interval=None, engine=resolve_engine(engine)
    )
    link = Link(client, server)
    link.connect()
    link.join(TOPIC)
    link.take()
    return link


def build_frames(count: int) -> bytes:
    """The bytes of ``count`` server pushes to TOPIC, framed for the first joined client."""
    server = PhoenixServer()
    server.route("*")
    conn = joined_client("stdlib", server).connection
    assert conn is not None
    for i in range(count):
        conn.push(TOPIC, "market_update", market_update(i))
    return conn.data_to_send()


def run_core(client: Client, data: bytes) -> int:
    """Feed ``data`` in socket-sized reads; return the number of messages delivered."""
    received = 0
    receive, next_event = client.receive_data, client.next_event
    for start in range(0, len(data), CHUNK):
        receive(0.0, data[start : start + CHUNK])
        while type(ev := next_event()) is not SleepUntil:
            if type(ev) is MessageReceived:
                received += 1
    return received


def run_bare(data: bytes) -> int:
    """The floor: wsproto and json.loads with no Phoenix layer at all."""
    ws = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(ws.send(Request(host="bench", target="/")))
    next(server.events())
    ws.receive_data(server.send(AcceptConnection()))
    list(ws.events())
    loads = json.loads
    received = 0
    parts: list[str] = []
    for start in range(0, len(data), CHUNK):
        ws.receive_data(data[start : start + CHUNK])
        for ev in ws.events():
            if type(ev) is TextMessage:
                if not ev.message_finished:
                    parts.append(ev.data)
                    continue
                loads("".join((*parts, ev.data)) if parts else ev.data)
                parts.clear()
                received += 1
    return received


def run_bare_websockets(data: bytes) -> int:
    """The websockets floor: ClientProtocol and json.loads with no Phoenix layer at all."""
    proto = ClientProtocol(parse_uri("ws://bench/"), max_size=None)
    server = WSConnection(ConnectionType.SERVER)
    proto.send_request(proto.connect())
    server.receive_data(b"".join(proto.data_to_send()))
    next(server.events())
    proto.receive_data(server.send(AcceptConnection()))
    proto.events_received()
    loads = json.loads
    text, cont = Opcode.TEXT, Opcode.CONT
    received = 0
    parts: list[bytes] = []
    for start in range(0, len(data), CHUNK):
        proto.receive_data(data[start : start + CHUNK])
        for frame in proto.events_received():
            opcode = frame.opcode  # type: ignore[union-attr]
            if opcode is text or opcode is cont:
                parts.append(frame.data)  # type: ignore[union-attr,arg-type]
                if not frame.fin:  # type: ignore[union-attr]
                    continue
                loads(b"".join(parts).decode() if len(parts) > 1 else parts[0].decode())
                parts.clear()
                received += 1
    return received


def measure(label: str, fn: Callable[[], int], count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        got = fn()
        best = min(best, time.perf_counter() - start)
        if got != count:
            raise SystemExit(f"{label}: delivered {got} of {count} messages")
    rate = count / best
    print(f"{label:<30} {rate:>10,.0f} msg/s {best / count * 1e6:>8.2f} us/msg")
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    count, repeat = (2_000, 1) if args.quick else (args.count, args.repeat)

    frames = build_frames(count)
    print(f"{count:,} messages, {len(frames) / count:.0f} bytes per WebSocket frame\n")
    measure("bare wsproto + json", lambda: run_bare(frames), count, repeat)
    measure("bare websockets + json", lambda: run_bare_websockets(frames), count, repeat)
    for engine in ("wsproto", "websockets"):
        for codec in ("stdlib", "orjson"):
            label = f"stx_proto ({codec})" if engine == "wsproto" else f"stx_proto ({codec}, ws)"
            measure(label, _fresh(codec, frames, engine), count, repeat)


def _fresh(codec: str, frames: bytes, engine: str) -> Callable[[], int]:
    # The frames carry the join_ref of the client they were built for; a client set up the
    # same way gets the same refs, so a fresh one per run accepts them as current.
    def run() -> int:
        server = PhoenixServer()
        server.route("*")
        return run_core(joined_client(codec, server, engine).client, frames)

    return run


if __name__ == "__main__":
    main()
