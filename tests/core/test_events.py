"""Unit tests of the event values: replies, disconnects, and the handshake request's repr."""

from __future__ import annotations

from stx_proto._events import Disconnected, DisconnectReason, HandshakeRequest, ReplyReceived
from stx_proto._url import AUTH_TOKEN_PREFIX


def test_reply_received_ok() -> None:
    assert ReplyReceived("t", "1", "ok", {}).ok
    assert not ReplyReceived("t", "1", "error", {}).ok


def test_disconnected_describe() -> None:
    closed = DisconnectReason.SERVER_CLOSED
    assert Disconnected(DisconnectReason.CLIENT_CLOSED).describe() == "client closed"
    assert Disconnected(closed, 1001, "bye").describe(5.0) == "server closed (close code 1001): bye"
    later = Disconnected(DisconnectReason.TRANSPORT_ERROR, None, "reset", 12.34)
    assert later.describe() == "transport error: reset; reconnecting"
    assert later.describe(10.0) == "transport error: reset; reconnecting in 2.3 s"
    assert later.describe(20.0) == "transport error: reset; reconnecting in 0.0 s"


def test_handshake_request_repr_hides_query_and_subprotocols() -> None:
    req = HandshakeRequest(
        url="ws://h/s/websocket?token=SECRET&vsn=2.0.0",
        host="h",
        target="/s/websocket?token=SECRET&vsn=2.0.0",
        subprotocols=("phoenix", AUTH_TOKEN_PREFIX + "U0VDUkVU"),
    )
    text = repr(req)
    assert text == "HandshakeRequest(host='h', path='/s/websocket')"
    assert "SECRET" not in text
    assert "U0VDUkVU" not in text
