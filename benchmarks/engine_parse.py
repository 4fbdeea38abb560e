"""Cost of parsing WebSocket frames, per engine, in memory.

Builds ~300-byte text frames (server to client, unmasked), feeds them in 64 KiB reads, and
prints microseconds per frame for: the wsproto engine, the websockets engine, websockets' bare
sans-IO ``ClientProtocol`` (the floor of the websockets engine) and bare wsproto (the floor of
the wsproto engine). Best of ``--repeat`` runs.

    python benchmarks/engine_parse.py            # full run
    python benchmarks/engine_parse.py --quick    # a smoke run (used by the test suite)
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import time
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.uri import parse_uri
from wsproto import ConnectionType, WSConnection
from wsproto.events import Request, TextMessage
from wsproto.utilities import generate_accept_token

from stx_proto import WebSocketEngine, resolve_engine

CHUNK = 64 * 1024


def payload(i: int) -> bytes:
    """A Phoenix push of a market update, about 300 bytes."""
    update = {
        "market_id": f"6f1c2a9e-4b7d-4e21-9c3a-{i % 1000:012d}",
        "status": "open",
        "bids": [{"price": 4500 + i % 50, "quantity": 120}, {"price": 4450, "quantity": 300}],
        "offers": [{"price": 4600 + i % 50, "quantity": 80}, {"price": 4650, "quantity": 210}],
        "last_traded_price": 4550,
        "volume_24h": 1_204_330 + i,
    }
    return json.dumps(["1", None, "market_info", "market_update", update]).encode()


def build_frames(count: int) -> bytes:
    """``count`` unmasked text frames."""
    out = bytearray()
    for i in range(count):
        data = payload(i)
        size = len(data)
        head = bytes([0x81, size]) if size < 126 else bytes([0x81, 126]) + struct.pack("!H", size)
        out += head + data
    return bytes(out)


def accept(request: bytes) -> bytes:
    """A 101 answer to ``request``."""
    match = re.search(rb"Sec-WebSocket-Key: (\S+)", request, re.IGNORECASE)
    assert match is not None
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + generate_accept_token(match.group(1)) + b"\r\n\r\n"
    )


def open_engine(name: str) -> WebSocketEngine:
    """An engine past its handshake."""
    engine = resolve_engine(name)(host="bench", target="/socket/websocket")
    events = engine.receive(accept(engine.start()))
    assert engine.open, events
    return engine


def run_engine(name: str, data: bytes) -> int:
    """Feed ``data`` to a fresh engine; return the messages it gave."""
    engine = open_engine(name)
    receive = engine.receive
    received = 0
    for start in range(0, len(data), CHUNK):
        for ev in receive(data[start : start + CHUNK]):
            if type(ev) is str:
                received += 1
    return received


def run_client_protocol(data: bytes) -> int:
    """websockets' ClientProtocol alone: frames out, text decoded, nothing else."""
    proto = ClientProtocol(parse_uri("ws://bench/socket/websocket"), max_size=None)
    request = proto.connect()
    proto.send_request(request)
    proto.receive_data(accept(b"".join(proto.data_to_send())))
    proto.events_received()
    feed, events_received = proto.receive_data, proto.events_received
    text = Opcode.TEXT
    received = 0
    for start in range(0, len(data), CHUNK):
        feed(data[start : start + CHUNK])
        for frame in events_received():
            if frame.opcode is text:  # type: ignore[union-attr]
                frame.data.decode()  # type: ignore[union-attr]
                received += 1
    return received


def run_wsproto(data: bytes) -> int:
    """wsproto alone (its events, no engine)."""
    ws = WSConnection(ConnectionType.CLIENT)
    request = ws.send(Request(host="bench", target="/socket/websocket"))
    ws.receive_data(accept(request))
    list(ws.events())
    received = 0
    for start in range(0, len(data), CHUNK):
        ws.receive_data(data[start : start + CHUNK])
        for ev in ws.events():
            if type(ev) is TextMessage and ev.message_finished:
                received += 1
    return received


def measure(label: str, fn: Callable[[], int], count: int, repeat: int) -> float:
    """Print and return the best time per frame of ``repeat`` runs of ``fn``, in µs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        got = fn()
        best = min(best, time.perf_counter() - start)
        if got != count:
            raise SystemExit(f"{label}: gave {got} of {count} messages")
    per_frame = best / count * 1e6
    print(f"{label:<32} {per_frame:>8.2f} us/frame {count / best:>12,.0f} frames/s")
    return per_frame


def main(argv: list[str] | None = None) -> None:
    """Run the comparison (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    count, repeat = (2_000, 1) if args.quick else (args.count, args.repeat)
    data = build_frames(count)
    print(f"{count:,} text frames of {len(data) / count:.0f} bytes, in 64 KiB reads\n")
    measure("bare wsproto", lambda: run_wsproto(data), count, repeat)
    measure("engine wsproto", lambda: run_engine("wsproto", data), count, repeat)
    measure("bare websockets ClientProtocol", lambda: run_client_protocol(data), count, repeat)
    measure("engine websockets", lambda: run_engine("websockets", data), count, repeat)


if __name__ == "__main__":
    main()
