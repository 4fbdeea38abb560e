"""The one exception hierarchy of stx-ws.

Every error raised by ``stx_proto``, ``stx_anyio`` and ``stx_trio`` derives from
:class:`StxWsError`, so ``except StxWsError`` catches all of them and nothing from wsproto,
anyio, trio or ``OSError`` leaks to the user.
"""

from __future__ import annotations

from typing import Any


class StxWsError(Exception):
    """Root of every exception raised by stx-ws."""


class UsageError(StxWsError):
    """The API was called in a way that cannot work (a bug in the caller, not a network fault).

    Examples: pushing to a topic that was never joined, joining a topic twice, calling the
    client after it was closed, a binary field longer than 255 bytes.
    """


class ClientClosedError(UsageError):
    """A call was made on a client (or socket) that has been closed for good."""


class CredentialsRevokedError(StxWsError):
    """A credential source says the credentials are gone for good (an OAuth provider that
    raised: a revoked grant). The socket stops at once: retrying cannot help. Its
    ``__cause__`` is the provider's exception."""


class ProtocolError(StxWsError):
    """The peer sent something the Phoenix or WebSocket protocol does not allow."""


class FrameError(ProtocolError):
    """One Phoenix frame could not be decoded. The core reports it as an event and skips it."""


class ConnectionClosedError(StxWsError):
    """The connection is gone and the requested operation cannot complete."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason if code is None else f"{reason} (close code {code})")
        self.reason = reason
        self.code = code


class HandshakeRefusedError(ConnectionClosedError):
    """The server refused the WebSocket upgrade (for example HTTP 403 for a bad token)."""

    def __init__(self, status_code: int, body: bytes = b"") -> None:
        super().__init__(f"handshake refused with HTTP {status_code}")
        self.status_code = status_code
        self.body = body


class GaveUpError(ConnectionClosedError):
    """Reconnecting stopped: the retry policy's attempt limit was reached or the close was final."""


class JoinError(StxWsError):
    """The server refused a join, or the join did not complete. ``response`` is the server's."""

    def __init__(self, topic: str, response: Any, reason: str = "refused") -> None:
        text = f"join of {topic!r} failed ({reason})"
        super().__init__(text if response is None else f"{text}: {response!r}")
        self.topic = topic
        self.response = response
        self.reason = reason


class PushError(StxWsError):
    """A push was answered with a non-ok status; ``status`` and ``response`` are the server's."""

    def __init__(self, topic: str, event: str, status: str, response: Any) -> None:
        super().__init__(f"push {event!r} to {topic!r} answered {status!r}: {response!r}")
        self.topic = topic
        self.event = event
        self.status = status
        self.response = response


class PushFailedError(StxWsError):
    """A push ended without a reply; ``reason`` is a :class:`~stx_proto.PushFailure` value."""

    def __init__(self, topic: str, event: str, reason: str) -> None:
        super().__init__(f"push {event!r} to {topic!r} failed: {reason}")
        self.topic = topic
        self.event = event
        self.reason = reason


class PushTimeout(PushFailedError):
    """A push got no reply within its timeout. ``detail`` says why, when it is known (the
    connection could not be made)."""

    def __init__(self, topic: str, event: str, detail: str = "") -> None:
        super().__init__(topic, event, "timeout")
        if detail:
            self.args = (f"{self.args[0]} ({detail})",)


class QueueOverflowError(StxWsError):
    """A message queue was full under ``overflow="error"``: the channel was left.

    ``topic`` is the channel that failed; ``queue`` names the queue that overflowed.
    """

    def __init__(self, topic: str, queue: str, size: int) -> None:
        super().__init__(f"{queue} queue full ({size} messages) for {topic!r}: channel left")
        self.topic = topic
        self.queue = queue
        self.size = size
