"""Channel state: the transition table, and the per-channel bookkeeping the client keeps.

Theory of operation
-------------------
A channel exists from the user's ``join`` until it is closed for good. It is *live* in every
state but CLOSED. JOINING means "a join is wanted": the join frame is out when ``join_ref`` is
set, otherwise it waits for the connection. ERRORED means "joined before, or tried, and broken":
it rejoins when its rejoin timer fires (socket open) or at once when the socket reopens.
LEAVING waits for the leave's reply (or ``phx_close``, or the leave timeout). The client moves
channels only through :func:`transition`, so an input a state does not accept is a bug that
fails loudly in tests instead of corrupting state quietly.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING, Any

from ._errors import StxWsError

if TYPE_CHECKING:
    from ._presence import Presence


class ChannelState(str, enum.Enum):
    """Where a channel is in its life."""

    CLOSED = "closed"
    JOINING = "joining"
    JOINED = "joined"
    LEAVING = "leaving"
    ERRORED = "errored"


class ChannelInput(enum.Enum):
    """What can happen to a channel."""

    JOIN = "join"  # the user joins
    JOIN_OK = "join_ok"  # the join's reply said ok
    JOIN_RETRY = "join_retry"  # the join was refused or timed out; it will be retried
    REJOIN = "rejoin"  # the rejoin timer fired, or the socket opened
    ERROR = "error"  # phx_error, "unmatched topic", or the connection dropped
    LEAVE = "leave"  # the user leaves while a leave must be sent
    CLOSE = "close"  # phx_close, leave done, socket closed: closed for good


S = ChannelState
I = ChannelInput  # noqa: E741 - the table reads better with a one-letter alias

#: (state, input) -> next state. A pair not in the table is a bug in the client.
TRANSITIONS: dict[tuple[ChannelState, ChannelInput], ChannelState] = {
    (S.CLOSED, I.JOIN): S.JOINING,
    (S.JOINING, I.JOIN_OK): S.JOINED,
    (S.JOINING, I.JOIN_RETRY): S.ERRORED,
    (S.JOINING, I.ERROR): S.ERRORED,
    (S.JOINING, I.REJOIN): S.JOINING,
    (S.JOINING, I.LEAVE): S.LEAVING,
    (S.JOINING, I.CLOSE): S.CLOSED,
    (S.JOINED, I.ERROR): S.ERRORED,
    (S.JOINED, I.LEAVE): S.LEAVING,
    (S.JOINED, I.CLOSE): S.CLOSED,
    (S.ERRORED, I.REJOIN): S.JOINING,
    (S.ERRORED, I.ERROR): S.ERRORED,
    (S.ERRORED, I.CLOSE): S.CLOSED,
    (S.LEAVING, I.CLOSE): S.CLOSED,
}

del S, I


class IllegalTransition(StxWsError):
    """The client tried a channel transition the table does not allow (a bug in stx_proto)."""


class Push:
    """One user push, from ``push()`` until its single outcome."""

    __slots__ = ("deadline", "event", "payload", "ref", "sent", "topic")

    def __init__(self, topic: str, event: str, payload: Any, ref: str, deadline: float) -> None:
        self.topic = topic
        self.event = event
        self.payload = payload
        self.ref = ref
        self.deadline = deadline
        self.sent = False


class Channel:
    """The client's record of one topic."""

    __slots__ = (
        "buffer",
        "in_flight",
        "join_payload",
        "join_ref",
        "joined_at",
        "joined_once",
        "leave_ref",
        "presence",
        "rejoin_attempts",
        "state",
        "timeout",
        "topic",
    )

    def __init__(self, topic: str, join_payload: Any, timeout: float) -> None:
        self.topic = topic
        self.join_payload = join_payload  # a value, or a callable evaluated at each join
        self.timeout = timeout
        self.state = ChannelState.CLOSED
        self.join_ref: str | None = None  # the ref of the join in flight or acknowledged
        self.joined_once = False
        self.joined_at = 0.0  # when the last join was acknowledged
        self.leave_ref: str | None = None
        self.rejoin_attempts = 0
        self.buffer: deque[Push] = deque()  # pushes waiting for the join
        self.in_flight: dict[str, Push] = {}  # pushes sent, waiting for their reply
        self.presence: Presence | None = None

    def transition(self, event: ChannelInput) -> ChannelState:
        """Apply ``event`` and return the new state; raises IllegalTransition if not allowed."""
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise IllegalTransition(
                f"{self.topic}: {event.value} in state {self.state.value}"
            ) from None
        return self.state

    def __repr__(self) -> str:
        return f"<Channel {self.topic!r} {self.state.value} join_ref={self.join_ref!r}>"
