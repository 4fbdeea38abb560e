"""``transport="picows"``: a :class:`~stx_proto.driver.MessageTransport` on picows, for the
anyio driver on asyncio (uvloop included). ``pip install 'stx-ws[picows]'``.

picows does the WebSocket framing in C and calls a listener for each frame; this module maps
that onto :class:`~stx_proto.driver.MessageStream`:

* the upgrade is the core's :class:`~stx_proto.HandshakeRequest`: its exact target, its
  headers (``Host`` included) and its subprotocols (a server that picks one not offered
  fails the connect). TLS uses the socket's ``ssl=`` context, or a verifying default made
  once per transport, with ``server_hostname`` the host. A refused upgrade (any status but
  101; redirects are not followed) raises :class:`~stx_proto.driver.HandshakeRejected` with
  the status, the headers, and the body bytes that came with them.
* frames: text as ``str``, binary as ``bytes``; fragments are joined (text decoded once
  whole). A message over ``max_message_size`` (picows' ``max_frame_size`` for one frame, this
  listener for the sum of fragments) closes with 1009, invalid UTF-8 with 1007, and a broken
  fragment sequence with 1002; ``receive`` then raises picows' ``WSProtocolError``.
* pings are answered by picows itself (``enable_auto_pong``), in its frame parser, before
  any message after them; pongs are ignored. The core's Phoenix heartbeat finds a dead peer.
* the peer's close frame is answered (its code echoed, 1000 for a close without a code) and
  ends the stream: ``receive`` returns what came before it, then None with ``close_code``
  (1005 for none) and ``close_reason`` set. The end of the TCP stream without a close frame:
  None with ``close_code`` None. ``close(code, reason)`` sends a close frame; ``aclose``
  closes the TCP stream at once (flushing what is written unless the peer is not reading).

The hot path is one Python call per frame: ``on_ws_frame`` appends the message to a list and
wakes the reader only when it waits (one future per wait, none per message). When more than
:attr:`PicowsStream.high_water` messages wait unread, reading from the socket pauses until
the reader is down to :attr:`PicowsStream.low_water`; when picows' write buffer is over its
high-water mark, ``send`` waits for it to drain.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from typing import Any, NoReturn

from picows import (
    WSCloseCode,
    WSFrame,
    WSInvalidStatusError,
    WSListener,
    WSMsgType,
    WSProtocolError,
    WSTransport,
    ws_connect,
)
from picows.url import parse_url

from stx_proto import HandshakeRequest
from stx_proto.driver import HandshakeRejected, MessageStream, MessageTransport

__all__ = ["HANDSHAKE_LIMIT", "PicowsStream", "PicowsTransport"]

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_CLOSE = WSMsgType.CLOSE

#: picows' own limit on the upgrade, in seconds. The socket's ``connect_timeout`` (shorter
#: by default) ends a connect first; a connect cancelled before the server answered leaves
#: the half-open upgrade to picows, which drops it at this limit.
HANDSHAKE_LIMIT = 60.0

_LOGGER = logging.getLogger("stx_anyio.picows")


class PicowsStream(WSListener, MessageStream):
    """One picows WebSocket: the listener picows calls, and the stream the kit reads."""

    #: Unread messages at which reading from the socket pauses (read when the stream is
    #: made), and at which it resumes.
    high_water = 4096
    low_water = 1024
    #: The most messages :meth:`receive_batch` hands over at once (about what a 64 KiB read
    #: of a byte stream brings): the handlers and timers get a turn between batches.
    batch = 256

    # Slots, because on_ws_frame reads several of them a message: on a subclass of picows'
    # extension type an attribute in the instance dict takes 18 ns to read, a slot 5. The
    # instances keep a dict (MessageStream has no __slots__), where close_code and
    # close_reason are set over MessageStream's class defaults.
    __slots__ = (
        "_abandoned",
        "_drained",
        "_ended",
        "_high",
        "_loop",
        "_max",
        "_parts",
        "_parts_size",
        "_parts_text",
        "_paused",
        "_queue",
        "_waiter",
        "_ws",
    )

    def __init__(self, max_message_size: int | None) -> None:
        self._loop = asyncio.get_running_loop()
        # A list, not a deque: receive_batch takes it whole (or cuts a batch off its front in
        # one move), where a deque would be popped message by message.
        self._queue: list[str | bytes] = []
        self._waiter: asyncio.Future[None] | None = None  # set while receive() waits
        self._drained: asyncio.Future[None] | None = None  # set while writing is paused
        self._ws: WSTransport | None = None
        self._ended = False  # a close frame, a failure, or the end of the TCP stream
        self._paused = False  # reading paused (too many unread messages)
        self._parts: list[bytes] | None = None  # the fragments of an unfinished message
        self._parts_text = False
        self._parts_size = 0
        self._max = sys.maxsize if max_message_size is None else max_message_size
        self._high = self.high_water
        self._abandoned = False  # the connect was cancelled or failed

    # ------------------------------------------------------------------------------------
    # picows' callbacks (in the event loop, never concurrently)

    def on_ws_connected(self, transport: WSTransport) -> None:
        """The upgrade succeeded: keep the transport (drop it if the connect was abandoned)."""
        self._ws = transport
        if self._abandoned:
            transport.disconnect(False)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Queue a whole message (joining fragments); handle a close frame.

        Raises WSProtocolError (picows then sends its close code and disconnects) for
        invalid UTF-8, a message over the size limit, or a broken fragment sequence.
        """
        if self._ended:
            return  # after a close frame or a failure, nothing more is delivered
        kind = frame.msg_type
        if frame.fin and self._parts is None:
            if kind is _TEXT:
                try:
                    message: str | bytes = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError:
                    self._fail(WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text message")
            elif kind is _BINARY:
                message = frame.get_payload_as_bytes()
            elif kind is _CLOSE:
                self._closed_by_peer(transport, frame)
                return
            elif kind is _CONTINUATION:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "a continuation frame with no message")
            else:
                return  # a pong (picows answers pings itself)
            queue = self._queue
            queue.append(message)
            waiter = self._waiter
            if waiter is not None:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)
            elif len(queue) >= self._high and not self._paused:
                self._paused = True
                transport.underlying_transport.pause_reading()
        else:
            self._fragment(transport, frame, kind)

    def _fragment(self, transport: WSTransport, frame: WSFrame, kind: WSMsgType) -> None:
        """A frame of a fragmented message (or a control frame between its fragments)."""
        if kind is _CLOSE:
            self._closed_by_peer(transport, frame)
            return
        parts = self._parts
        if kind is _CONTINUATION:
            if parts is None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "a continuation frame with no message")
        elif kind is _TEXT or kind is _BINARY:
            if parts is not None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "a new message inside a fragmented one")
            parts = self._parts = []
            self._parts_text = kind is _TEXT
            self._parts_size = 0
        else:
            return  # a pong between fragments
        self._parts_size += frame.payload_size
        if self._parts_size > self._max:
            self._fail(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
        parts.append(frame.get_payload_as_bytes())
        if not frame.fin:
            return
        self._parts = None
        data = b"".join(parts)
        if self._parts_text:
            try:
                self._deliver(data.decode())
            except UnicodeDecodeError:
                self._fail(WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text message")
        else:
            self._deliver(data)

    def _deliver(self, message: str | bytes) -> None:
        """Queue ``message`` and wake the reader (the fragmented path)."""
        self._queue.append(message)
        self._wake()

    def _fail(self, code: WSCloseCode, reason: str) -> NoReturn:
        """End the stream; raise the WSProtocolError that makes picows close with ``code``."""
        self._ended = True
        raise WSProtocolError(code, reason)

    def _closed_by_peer(self, transport: WSTransport, frame: WSFrame) -> None:
        """The peer's close frame: answer it, and end the stream after what is queued."""
        code = frame.get_close_code()
        self.close_code = code.value or 1005  # no code in the frame: 1005, as RFC 6455 says
        self.close_reason = frame.get_close_reason() or ""  # None for a close without a code
        transport.send_close(code if code.value else WSCloseCode.OK)
        self._ended = True
        self._wake()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        """The TCP stream ended: end the stream, wake the reader and any paused writer."""
        self._ended = True
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        """picows' write buffer is over its high-water mark: ``send`` waits from now on.

        asyncio calls it once per crossing (never twice without :meth:`resume_writing`).
        """
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        """The write buffer drained (or the stream ended): release waiting senders (they
        wait through ``asyncio.shield``, so the future is never cancelled)."""
        drained = self._drained
        if drained is not None:
            self._drained = None
            drained.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------------------------------
    # MessageStream

    async def receive(self) -> str | bytes | None:
        """The next whole message; None at the end (``close_code`` says how it ended).

        Raises picows' error when picows ended the connection for a local reason (a frame
        over the limit, invalid UTF-8, a protocol error).
        """
        if not await self._ready():
            return None
        message = self._queue.pop(0)
        self._taken()
        return message

    async def receive_batch(self) -> list[str | bytes] | None:
        """Every message queued (at most ``batch``), oldest first; None at the end. Raises as
        :meth:`receive`. picows delivers a read's frames in a row: this takes them at once."""
        if not await self._ready():
            return None
        queue = self._queue
        if len(queue) <= self.batch:
            messages = queue
            self._queue = []
        else:
            messages = queue[: self.batch]
            del queue[: self.batch]
        self._taken()
        return messages

    async def _ready(self) -> bool:
        """Wait for a message: True once one is queued, False at the end."""
        queue = self._queue
        while not queue:
            if self._ended:
                if self.close_code is None:  # no close frame: a local failure, or EOF
                    ws = self._ws
                    assert ws is not None  # the stream is handed over once connected
                    await ws.wait_disconnected()  # raises what made picows disconnect
                return False
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return True

    def _taken(self) -> None:
        """Messages were taken: resume reading once few are left."""
        if self._paused and len(self._queue) <= self.low_water:
            self._paused = False
            ws = self._ws
            assert ws is not None  # reading was paused by a frame, so it is connected
            ws.underlying_transport.resume_reading()

    async def send(self, data: str | bytes) -> None:
        """Send one message (text for ``str``); waits while picows' write buffer is full.

        Raises ConnectionResetError once the connection has ended.
        """
        ws = self._ws
        assert ws is not None  # the kit sends only on a connected stream
        drained = self._drained
        if drained is not None:
            await asyncio.shield(drained)
        if ws.is_disconnected:
            raise ConnectionResetError("the WebSocket connection is closed")
        ws.send(_TEXT if type(data) is str else _BINARY, data)

    def send_nowait(self, data: str | bytes) -> bool:
        """Send one message now: picows only buffers it. False while writing is paused or
        once the connection has ended (:meth:`send` then waits, or raises)."""
        ws = self._ws
        if ws is None or self._drained is not None or ws.is_disconnected:
            return False
        ws.send(_TEXT if type(data) is str else _BINARY, data)
        return True

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and ``reason`` (nothing once disconnected)."""
        ws = self._ws
        assert ws is not None  # the kit closes only a connected stream
        ws.send_close(WSCloseCode(code), reason.encode())

    async def aclose(self) -> None:
        """Close the TCP stream now: gracefully if everything written has gone out (so a
        close frame just sent is delivered), else abort. Never raises."""
        ws = self._ws
        assert ws is not None  # the stream is handed over once connected
        ws.disconnect(ws.underlying_transport.get_write_buffer_size() == 0)

    def abandon(self) -> None:
        """The connect failed or was cancelled: drop the connection if it opened anyway."""
        self._abandoned = True
        ws = self._ws
        if ws is not None:
            ws.disconnect(False)


class PicowsTransport(MessageTransport):
    """WebSockets on picows (asyncio only): see the module docstring.

    ``max_message_size`` is the largest message accepted (None: no limit); with
    ``Socket(transport="picows")`` it is the socket's own option.
    """

    __slots__ = ("_default_ssl", "_max")

    def __init__(self, max_message_size: int | None = 64 * 1024 * 1024) -> None:
        self._max = max_message_size
        self._default_ssl: ssl.SSLContext | None = None

    async def connect(
        self, host: str, port: int, tls: bool, ssl_context: Any, request: HandshakeRequest
    ) -> MessageStream:
        """Open the WebSocket ``request`` describes to ``host:port`` (TLS when ``tls``).

        Raises HandshakeRejected for any answer but 101, ValueError for a target picows
        would not send as it is, ConnectionError for a subprotocol that was not offered, and
        picows' or the OS's error for other failures.
        """
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        url = f"{'wss' if tls else 'ws'}://{netloc}{request.target}"
        if parse_url(url).resource_name != request.target:
            raise ValueError("picows cannot send this request target unchanged")
        options: dict[str, Any] = {}
        if tls:
            if ssl_context is None:
                if self._default_ssl is None:
                    self._default_ssl = ssl.create_default_context()
                ssl_context = self._default_ssl
            options["server_hostname"] = host
        headers = [("Host", request.host), *request.headers]
        if request.subprotocols:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(request.subprotocols)))
        limit = self._max
        stream = PicowsStream(limit)

        def listener(*_: object) -> PicowsStream:
            return stream

        try:
            ws, _ = await ws_connect(
                listener,
                url,
                ssl_context=ssl_context,
                websocket_handshake_timeout=HANDSHAKE_LIMIT,
                enable_auto_pong=True,
                max_frame_size=sys.maxsize if limit is None else limit,
                extra_headers=headers,
                max_redirects=0,
                logger_name=_LOGGER,
                **options,
            )
        except WSInvalidStatusError as exc:
            stream.abandon()
            response = exc.response
            assert response is not None  # picows sets it for a status error
            raise HandshakeRejected(
                int(response.status), tuple(response.headers.items()), exc.raw_body or b""
            ) from None
        except BaseException:
            stream.abandon()
            raise
        chosen = ws.response.headers.get("Sec-WebSocket-Protocol")
        if chosen is not None and chosen not in request.subprotocols:
            stream.abandon()
            raise ConnectionError(f"the server chose a subprotocol it was not offered: {chosen}")
        return stream
