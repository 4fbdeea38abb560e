"""Unit tests of the error hierarchy and the errors' messages and attributes."""

from __future__ import annotations

from stx_proto._errors import (
    ClientClosedError,
    ConnectionClosedError,
    FrameError,
    GaveUpError,
    HandshakeRefusedError,
    JoinError,
    ProtocolError,
    PushError,
    PushFailedError,
    PushTimeout,
    QueueOverflowError,
    StxWsError,
    UsageError,
)


def test_error_hierarchy_and_messages() -> None:
    assert issubclass(ClientClosedError, UsageError)
    assert issubclass(UsageError, StxWsError)
    assert issubclass(FrameError, ProtocolError)
    assert issubclass(ProtocolError, StxWsError)
    assert issubclass(HandshakeRefusedError, ConnectionClosedError)
    assert issubclass(GaveUpError, ConnectionClosedError)
    assert issubclass(PushTimeout, PushFailedError)
    for cls in (ConnectionClosedError, JoinError, PushError, PushFailedError):
        assert issubclass(cls, StxWsError)

    e = ConnectionClosedError("server closed")
    assert (str(e), e.reason, e.code) == ("server closed", "server closed", None)
    e = ConnectionClosedError("server closed", 1001)
    assert (str(e), e.code) == ("server closed (close code 1001)", 1001)

    h = HandshakeRefusedError(403, b"Forbidden")
    assert (str(h), h.status_code, h.body, h.code) == (
        "handshake refused with HTTP 403",
        403,
        b"Forbidden",
        None,
    )
    assert HandshakeRefusedError(500).body == b""

    j = JoinError("room:1", {"reason": "unauthorized"})
    assert str(j) == "join of 'room:1' failed (refused): {'reason': 'unauthorized'}"
    assert (j.topic, j.response, j.reason) == ("room:1", {"reason": "unauthorized"}, "refused")
    assert JoinError("t", None, "timeout").reason == "timeout"

    p = PushError("t", "ev", "error", {"x": 1})
    assert str(p) == "push 'ev' to 't' answered 'error': {'x': 1}"
    assert (p.topic, p.event, p.status, p.response) == ("t", "ev", "error", {"x": 1})

    f = PushFailedError("t", "ev", "buffer_full")
    assert str(f) == "push 'ev' to 't' failed: buffer_full"
    assert (f.topic, f.event, f.reason) == ("t", "ev", "buffer_full")

    q = QueueOverflowError("room", "message", 100)
    assert str(q) == "message queue full (100 messages) for 'room': channel left"
    assert (q.topic, q.queue, q.size) == ("room", "message", 100)
    assert isinstance(q, StxWsError)

    t = PushTimeout("t", "ev")
    assert str(t) == "push 'ev' to 't' failed: timeout"
    assert t.reason == "timeout"
