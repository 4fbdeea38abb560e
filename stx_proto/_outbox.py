"""The client's outbox: what it has to say, in the order it must be said.

Frames are written through the WebSocket engine into one byte buffer, so that everything one
input produces leaves as a single :class:`SendBytes`; commands and events go to a queue. An
item queued after some bytes were written flushes those bytes first, so the caller sees the
bytes and the events in the order they happened. The client and its channels write here; the
caller pulls with :meth:`stx_proto.Client.next_event`.
"""

from __future__ import annotations

from collections import deque

from ._events import Output, SendBytes, SendMessage
from ._message import ChannelMessage
from ._websocket import WebSocketEngine

#: What the outbox queues: a command or an event, or a message received for a live channel
#: as its bare :class:`ChannelMessage`. :meth:`stx_proto.Client.next_event` and
#: :meth:`~stx_proto.Client.next_events` hand such a message out as a ``MessageReceived``;
#: :meth:`~stx_proto.Client.next_outputs` (the driver kit's) hands it out bare, which saves
#: making and taking apart one object a message.
Queued = Output | ChannelMessage


class Outbox:
    """Queued outputs, the write buffer, the engine frames go through, and the ref counter."""

    __slots__ = ("engine", "items", "ref", "wbuf")

    def __init__(self) -> None:
        self.items: deque[Queued] = deque()
        self.wbuf = bytearray()  # bytes to send, coalesced into one SendBytes
        #: The WebSocket engine of the open connection; None between connections, and always
        #: in message mode (the transport does its own WebSocket framing).
        self.engine: WebSocketEngine | None = None
        self.ref = 0  # the last ref handed out

    def next_ref(self) -> str:
        """A new ref: one counter for every frame of the client, as decimal strings."""
        self.ref += 1
        return str(self.ref)

    def emit(self, item: Queued) -> None:
        """Queue a command or an event after the bytes already written."""
        if self.wbuf:
            self.items.append(SendBytes(bytes(self.wbuf)))
            self.wbuf.clear()
        self.items.append(item)

    def send(self, frame: str | bytes) -> None:
        """Send one Phoenix frame: text for ``str``, binary for ``bytes``."""
        engine = self.engine
        if engine is None:
            self.emit(SendMessage(frame))
        elif isinstance(frame, str):
            self.wbuf += engine.send_text(frame)
        else:
            self.wbuf += engine.send_binary(frame)
