"""A Phoenix-protocol blast and echo server for the side-by-side benchmarks (127.0.0.1 only).

Run it as its own process: it prints ``PORT <n>`` on its first stdout line, then serves until
killed. Every frame it blasts is encoded once at start-up, so a blast costs it only socket
writes (slices of a buffer, under flow control). It uses uvloop when installed, plain
asyncio protocols otherwise (or with ``--no-uvloop``); connection_lost reports on stderr any
blast bytes left unwritten.

It answers the WebSocket upgrade on any path ending ``/websocket`` (``vsn=2.0.0``: array
frames; ``vsn=1.0.0`` or none: object frames), and then, on any topic:

- ``phx_join``, ``phx_leave``, ``heartbeat``: an ok ``phx_reply`` (many joins on one socket
  are answered one by one);
- ``blast`` ``{"count": N, "shape": "phoenix" | "realtime", "join_ref": R}``: an ok reply,
  then N broadcasts of ~300-byte market updates (``phoenix``: ``[null, null, "market_info",
  "market_update", payload]``, or with ``join_ref`` R, channel pushes ``[R, null, ...]``
  for a client that drops broadcasts; ``realtime``: Supabase Realtime's broadcast envelope
  on ``realtime:market_info``, in object frames); the last one has the event
  ``market_update_last``;
- ``drop``: an ok reply, then the TCP connection is reset (no close frame);
- any other event: an ok reply echoing the payload
  (``{"status": "ok", "response": payload}``, with the push's join_ref and ref).

    python benchmarks/blast_server.py --max-count 200000 --peer-count 100000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import sys
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from bench_common import EVENT, LAST_EVENT, TOPIC, market_update  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REALTIME_TOPIC = f"realtime:{TOPIC}"
MAX_HEADER = 16 * 1024
CHUNK = 1024 * 1024  # a blast is written in slices of this size, as the socket takes them
HIGH_WATER = 4 * 1024 * 1024  # bytes buffered in the transport before it pauses the writes

try:
    import orjson

    def dumps(value: Any) -> bytes:
        """``value`` as compact JSON bytes (orjson)."""
        return orjson.dumps(value)

    loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is in the bench extra

    def dumps(value: Any) -> bytes:
        """``value`` as compact JSON bytes (stdlib)."""
        return json.dumps(value, separators=(",", ":")).encode()

    loads = json.loads


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, final server-to-client WebSocket frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def phoenix_message(i: int, event: str, join_ref: str | None = None) -> bytes:
    """Market update ``i`` as a vsn 2.0.0 message on TOPIC, framed: a broadcast (no
    join_ref), or a push from the channel of ``join_ref``."""
    return frame(dumps([join_ref, None, TOPIC, event, market_update(i)]))


def realtime_message(i: int, event: str) -> bytes:
    """Market update ``i`` as a Supabase Realtime broadcast (vsn 1.0.0 object), framed."""
    envelope = {"type": "broadcast", "event": event, "payload": market_update(i)}
    return frame(
        dumps({"topic": REALTIME_TOPIC, "event": "broadcast", "payload": envelope, "ref": None})
    )


class Blast:
    """``count - 1`` broadcasts encoded once (sliced per request), and the last one."""

    def __init__(self, count: int, build: Callable[[int, str], bytes]) -> None:
        parts = [build(i, EVENT) for i in range(max(0, count - 1))]
        self._offsets = [0]
        for part in parts:
            self._offsets.append(self._offsets[-1] + len(part))
        self._data = memoryview(b"".join(parts))
        self._build = build
        self.capacity = count

    def frames(self, count: int) -> tuple[memoryview, bytes]:
        """The bytes of a blast of ``count`` messages: all but the last, and the last.

        Raises ValueError when ``count`` is not between 1 and the capacity.
        """
        if not 1 <= count <= self.capacity:
            raise ValueError(f"blast count {count} outside 1..{self.capacity}")
        return self._data[: self._offsets[count - 1]], self._build(count - 1, LAST_EVENT)


class Server:
    """The blasts, shared by every connection: broadcasts built at start-up; the Realtime
    shape and channel pushes (for one join_ref) built at their first request."""

    def __init__(self, max_count: int, peer_count: int) -> None:
        self._peer_count = peer_count
        self._blasts: dict[tuple[str, str | None], Blast] = {
            ("phoenix", None): Blast(max_count, phoenix_message)
        }

    def blast(self, shape: str, join_ref: str | None) -> Blast:
        """The blast of ``shape`` (``phoenix`` or ``realtime``), for ``join_ref`` (None: a
        broadcast). Raises KeyError for an unknown shape."""
        key = (shape, join_ref)
        blast = self._blasts.get(key)
        if blast is None:
            if shape == "realtime":
                blast = Blast(self._peer_count, realtime_message)
            elif shape == "phoenix":
                blast = Blast(self._peer_count, partial(phoenix_message, join_ref=join_ref))
            else:
                raise KeyError(shape)
            self._blasts[key] = blast
        return blast


class PhoenixProtocol(asyncio.Protocol):
    """One client connection: the HTTP upgrade, then Phoenix frames."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._upgraded = False
        self._v2 = True
        self._fragments: list[bytes] = []
        # What waits for the transport to take it (flow control): a blast is written slice
        # by slice as the socket drains, never handed to the transport whole.
        self._backlog: deque[bytes | memoryview] = deque()
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (always a stream transport here)."""
        self._transport = cast(asyncio.Transport, transport)  # (uvloop's is no subclass)
        self._transport.set_write_buffer_limits(high=HIGH_WATER)

    def pause_writing(self) -> None:
        """The transport's buffer is over the high-water mark: hold the backlog."""
        self._paused = True

    def resume_writing(self) -> None:
        """The transport's buffer drained: write on."""
        self._paused = False
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget what was still to be written (logged on stderr, with what was written)."""
        left = sum(len(part) for part in self._backlog)
        if left:
            sys.stderr.write(f"connection lost with {left} bytes unwritten\n")
        self._backlog.clear()

    def _send(self, parts: list[bytes | memoryview]) -> None:
        """Write ``parts`` in order, after any backlog; large ones in CHUNK slices."""
        backlog = self._backlog
        for part in parts:
            if len(part) <= CHUNK:
                backlog.append(part)
            else:
                view = memoryview(part)
                backlog.extend(view[i : i + CHUNK] for i in range(0, len(view), CHUNK))
        self._flush()

    def _flush(self) -> None:
        transport = self._transport
        backlog = self._backlog
        assert transport is not None
        while backlog and not self._paused and not transport.is_closing():
            transport.write(backlog.popleft())

    def data_received(self, data: bytes) -> None:
        """Buffer ``data``; answer the upgrade, then every whole frame, in one write."""
        self._buf += data
        if not self._upgraded and not self._upgrade():
            return
        out: list[bytes | memoryview] = []
        drop = self._frames(out)
        transport = self._transport
        assert transport is not None
        if out:
            self._send(out)
        if drop:
            transport.abort()

    def _upgrade(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        transport = self._transport
        assert transport is not None
        if end < 0:
            if len(self._buf) > MAX_HEADER:
                transport.abort()
            return False
        head = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        target = head[0].split(" ")[1] if head[0].count(" ") >= 2 else ""
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        url = urlsplit(target)
        key = headers.get("sec-websocket-key")
        if not url.path.endswith("/websocket") or key is None:
            transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            transport.close()
            return False
        self._v2 = parse_qs(url.query).get("vsn", ["1.0.0"])[0].startswith("2.")
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self._upgraded = True
        return True

    def _frames(self, out: list[bytes | memoryview]) -> bool:
        """Handle every whole frame in the buffer; True when the connection must drop."""
        buf = self._buf
        pos = 0
        drop = False
        while len(buf) - pos >= 2 and not drop:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if len(buf) - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if len(buf) - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            masked = b1 & 0x80
            start = pos + head + (4 if masked else 0)
            if len(buf) - start < length:
                break
            payload = bytes(buf[start : start + length])
            if masked:
                payload = unmask(payload, bytes(buf[pos + head : pos + head + 4]))
            pos = start + length
            drop = self._frame(b0 & 0x0F, bool(b0 & 0x80), payload, out)
        del buf[:pos]
        return drop

    def _frame(self, opcode: int, fin: bool, payload: bytes, out: list[bytes | memoryview]) -> bool:
        if opcode == 0x8:  # close: echo it, then hang up
            out.append(frame(payload[:2], 0x8))
            transport = self._transport
            assert transport is not None
            self._send(out)
            out.clear()
            transport.close()
            return False
        if opcode == 0x9:
            out.append(frame(payload, 0xA))
            return False
        if opcode == 0xA:
            return False
        if opcode in (0x1, 0x2) and not fin:
            self._fragments = [payload]
            return False
        if opcode == 0x0:
            self._fragments.append(payload)
            if not fin:
                return False
            payload = b"".join(self._fragments)
            self._fragments = []
        return self._message(loads(payload), out)

    def _message(self, msg: Any, out: list[bytes | memoryview]) -> bool:
        if self._v2:
            join_ref, ref, topic, event, payload = msg
        else:
            join_ref, ref = msg.get("join_ref"), msg.get("ref")
            topic, event, payload = msg["topic"], msg["event"], msg.get("payload")
        drop = False
        extra: tuple[memoryview, bytes] | None = None
        if event in ("phx_join", "phx_leave", "heartbeat"):
            response: Any = {}
        elif event == "blast":
            blast = self._server.blast(payload.get("shape", "phoenix"), payload.get("join_ref"))
            extra = blast.frames(int(payload["count"]))
            response = {}
        elif event == "drop":
            response = {}
            drop = True
        else:
            response = payload
        reply = {"status": "ok", "response": response}
        if self._v2:
            out.append(frame(dumps([join_ref, ref, topic, "phx_reply", reply])))
        else:
            out.append(
                frame(
                    dumps(
                        {
                            "topic": topic,
                            "event": "phx_reply",
                            "payload": reply,
                            "ref": ref,
                            "join_ref": join_ref,
                        }
                    )
                )
            )
        if extra is not None:
            out.extend(extra)
        return drop


def unmask(data: bytes, mask: bytes) -> bytes:
    """``data`` XORed with the 4-byte ``mask`` repeated (a client frame's payload)."""
    n = len(data)
    if n == 0:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


async def serve(max_count: int, peer_count: int, port: int) -> None:
    """Build the blasts, listen on 127.0.0.1:``port`` (0: a free one), print the port, serve."""
    server = Server(max_count, peer_count)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: PhoenixProtocol(server), "127.0.0.1", port)
    bound = listener.sockets[0].getsockname()[1]
    sys.stdout.write(f"PORT {bound}\n")
    sys.stdout.flush()
    async with listener:
        await listener.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Parse the options and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-count", type=int, default=200_000, help="largest blast")
    parser.add_argument(
        "--peer-count", type=int, default=1, help="largest Realtime-shaped or pushed blast"
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-uvloop", action="store_true", help="plain asyncio")
    args = parser.parse_args(argv)
    coro = serve(args.max_count, max(1, args.peer_count), args.port)
    if not args.no_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(coro)
            return
    asyncio.run(coro)


if __name__ == "__main__":
    main()
