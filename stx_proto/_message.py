"""The value every Phoenix frame decodes to."""

from __future__ import annotations

from typing import Any, NamedTuple

PHX_JOIN = "phx_join"
PHX_LEAVE = "phx_leave"
PHX_REPLY = "phx_reply"
PHX_ERROR = "phx_error"
PHX_CLOSE = "phx_close"
HEARTBEAT = "heartbeat"
PHOENIX_TOPIC = "phoenix"

#: ``tuple.__new__``, to build a :class:`ChannelMessage` (or ``MessageReceived``) on the
#: per-message path: ``new_tuple(ChannelMessage, (topic, event, payload, ref, join_ref))``.
#: The named tuple's own ``__new__`` is a Python function and costs a third of a decode.
new_tuple = tuple.__new__


class ChannelMessage(NamedTuple):
    """One Phoenix message as it came off the wire.

    ``payload`` is whatever the serializer decoded: a dict for JSON frames, ``bytes`` for the
    payload of a binary push or broadcast, and for a reply (``event == "phx_reply"``) the dict
    ``{"status": ..., "response": ...}`` (the response is ``bytes`` for a binary reply).

    A frozen value with no instance dict: a named tuple, because one is made for every message
    and a tuple is made in a third of the time of a frozen class. ``msg._replace(...)`` gives
    a copy with fields changed.
    """

    topic: str
    event: str
    payload: Any
    ref: str | None = None
    join_ref: str | None = None

    @property
    def msg_ref(self) -> str | None:
        """The same value as :attr:`ref` (the STX SDK's name for it)."""
        return self.ref

    @property
    def channel(self) -> str:
        """The topic before its first ``:`` (``"market_info"`` for ``"market_info:42"``)."""
        return self.topic.partition(":")[0]

    @property
    def is_reply(self) -> bool:
        """True for a ``phx_reply`` (an answer to a join, leave, push or heartbeat)."""
        return self.event == PHX_REPLY

    @property
    def reply_status(self) -> str | None:
        """The reply's ``status`` (``"ok"``, ``"error"``, ...), or None if this is no reply."""
        if self.event != PHX_REPLY or not isinstance(self.payload, dict):
            return None
        status = self.payload.get("status")
        return status if isinstance(status, str) else None

    @property
    def response(self) -> Any:
        """The reply's ``response``, or None if this is no reply."""
        if self.event != PHX_REPLY or not isinstance(self.payload, dict):
            return None
        return self.payload.get("response")

    @property
    def is_error(self) -> bool:
        """True for ``phx_error`` and for a reply whose status is ``"error"``."""
        return self.event == PHX_ERROR or self.reply_status == "error"
