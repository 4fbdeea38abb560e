"""A client and a scripted Phoenix server joined by an in-memory pipe, on a virtual clock.

A test reads as the story it checks::

    link = Link(Client("ws://test/socket"), PhoenixServer())
    link.connect()
    for topic in ("a", "b", "c"):
        link.join(topic)
    link.advance(30)                      # a heartbeat goes out and is answered
    link.drop()                           # the network cuts the connection
    link.advance_until(Connected)         # the backoff passes, the client reconnects
    assert link.server_frames(event="phx_join")[-3:] ...

Every command the client emits is carried out here exactly as a driver would: OpenTransport
makes a new server connection (or fails, while ``link.network_up`` is False), SendBytes feeds
it, CloseTransport ends it. Application events are collected in :attr:`Link.events`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .._client import Client
from .._events import (
    CloseTransport,
    Event,
    OpenTransport,
    SendBytes,
    SendMessage,
    SleepUntil,
)
from .._message import ChannelMessage
from ._clock import VirtualClock
from ._server import PhoenixServer, ServerConnection

E = TypeVar("E")

#: Steps of the pump before it decides client and server are talking forever.
_MAX_ROUNDS = 10_000


class Link:
    """Drive ``client`` against ``server`` in memory. See the module docstring."""

    def __init__(
        self,
        client: Client,
        server: PhoenixServer | None = None,
        clock: VirtualClock | None = None,
    ) -> None:
        self.client = client
        self.server = server if server is not None else PhoenixServer()
        self.clock = clock if clock is not None else VirtualClock()
        self.events: list[Event] = []
        self.connection: ServerConnection | None = None
        self.connections: list[ServerConnection] = []
        self.network_up = True  # False: every OpenTransport fails
        self.opens = 0  # OpenTransport commands carried out

    @property
    def now(self) -> float:
        """The virtual time."""
        return self.clock.now

    # ------------------------------------------------------------------------------------
    # Driving

    def pump(self) -> None:
        """Carry out commands and move bytes both ways until both sides are quiet."""
        client = self.client
        for _ in range(_MAX_ROUNDS):
            progressed = False
            while True:
                out = client.next_event()
                if type(out) is SleepUntil:
                    break
                progressed = True
                self._carry_out(out)
            conn = self.connection
            if conn is not None:
                data = conn.data_to_send()
                if data:
                    progressed = True
                    client.receive_data(self.now, data)
                if conn.should_drop:
                    progressed = True
                    self._cut(conn, "connection reset by peer")
            if not progressed:
                return
        raise RuntimeError("client and server did not settle")  # pragma: no cover - a bug

    def _carry_out(self, out: object) -> None:
        now = self.now
        if isinstance(out, OpenTransport):
            self.opens += 1
            if not self.network_up:
                self.client.transport_closed(now, "connection refused")
                return
            conn = self.server.connect()
            self.connection = conn
            self.connections.append(conn)
            self.client.transport_opened(now)
        elif isinstance(out, SendBytes):
            if self.connection is not None:
                self.connection.receive_data(out.data, now)
        elif isinstance(out, CloseTransport):
            closing = self.connection
            self.connection = None
            if closing is not None:
                closing.receive_eof(now)
        elif isinstance(out, SendMessage):  # pragma: no cover - Link drives byte mode only
            raise TypeError("Link drives the built-in WebSocket engine; SendMessage is unexpected")
        else:
            self.events.append(out)  # type: ignore[arg-type]  # only events are left here

    def _cut(self, conn: ServerConnection, error: str) -> None:
        self.connection = None
        conn.receive_eof(self.now)
        self.client.transport_closed(self.now, error)

    def next_deadline(self) -> float | None:
        """The earliest deadline of the client, the server connection, or the server's own
        timers (which outlive connections)."""
        deadlines = [
            d
            for d in (
                self.client.next_deadline(),
                self._server_deadline(),
                self.server.next_deadline(),
            )
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    def _server_deadline(self) -> float | None:
        return self.connection.next_deadline() if self.connection is not None else None

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, firing every deadline on the way, in order."""
        self.advance_to(self.now + seconds)

    def advance_to(self, when: float) -> None:
        """Let virtual time pass up to ``when``, firing every deadline on the way."""
        self.pump()
        while (deadline := self.next_deadline()) is not None and deadline <= when:
            self.clock.now = max(self.clock.now, deadline)
            self._fire()
        self.clock.now = max(self.clock.now, when)
        self.pump()

    def advance_until(self, event_type: type[E], *, limit: float = 3600.0) -> E:
        """Fire deadlines until an event of ``event_type`` appears (within ``limit`` seconds).

        Returns that event. Raises AssertionError if it does not come in time.
        """
        start = len(self.events)
        end = self.now + limit
        self.pump()
        while True:
            for ev in self.events[start:]:
                if isinstance(ev, event_type):
                    return ev
            start = len(self.events)
            deadline = self.next_deadline()
            if deadline is None or deadline > end:
                raise AssertionError(f"no {event_type.__name__} within {limit} s")
            self.clock.now = max(self.clock.now, deadline)
            self._fire()

    def _fire(self) -> None:
        now = self.now
        self.client.handle_timer(now)
        if self.connection is not None:
            self.connection.handle_timer(now)
        self.server.handle_timer(now)
        self.pump()

    # ------------------------------------------------------------------------------------
    # The user's side

    def connect(self) -> None:
        """Connect the client and let the handshake complete."""
        self.client.connect(self.now)
        self.pump()

    def join(self, topic: str, payload: Any = None, **kwargs: Any) -> None:
        """Join ``topic`` and let the exchange settle."""
        self.client.join(self.now, topic, payload, **kwargs)
        self.pump()

    def push(self, topic: str, event: str, payload: Any = None, **kwargs: Any) -> str:
        """Push and let the exchange settle; returns the push's ref."""
        ref = self.client.push(self.now, topic, event, payload, **kwargs)
        self.pump()
        return ref

    def leave(self, topic: str, **kwargs: Any) -> None:
        """Leave ``topic`` and let the exchange settle."""
        self.client.leave(self.now, topic, **kwargs)
        self.pump()

    def close(self, code: int = 1000) -> None:
        """Close the client and let the close handshake complete."""
        self.client.close(self.now, code)
        self.pump()

    # ------------------------------------------------------------------------------------
    # Faults

    def drop(self) -> None:
        """Cut the connection abruptly, as a network failure would (no close frame)."""
        if self.connection is not None:
            self._cut(self.connection, "connection reset by peer")
        self.pump()

    # ------------------------------------------------------------------------------------
    # Reading what happened

    def take(self, event_type: type[E] | None = None) -> list[Any]:
        """Return the collected events (only those of ``event_type`` if given) and forget all."""
        events, self.events = self.events, []
        if event_type is None:
            return events
        return [ev for ev in events if isinstance(ev, event_type)]

    def of_type(self, event_type: type[E]) -> list[E]:
        """The collected events of ``event_type``, kept."""
        return [ev for ev in self.events if isinstance(ev, event_type)]

    def server_frames(
        self, *, event: str | None = None, topic: str | None = None, everything: bool = False
    ) -> list[ChannelMessage]:
        """Frames the server received (from the current connection unless ``everything``)."""
        conns = self.connections if everything else self.connections[-1:]
        frames = [m for c in conns for m in c.received]
        match: Callable[[ChannelMessage], bool] = lambda m: (  # noqa: E731
            (event is None or m.event == event) and (topic is None or m.topic == topic)
        )
        return [m for m in frames if match(m)]
