"""Issue 13's findings in the core, each as a test on the virtual clock that failed before
its fix (F4: a channel frame with the heartbeat's ref; the heartbeat timeout's close reason;
a connect timeout of its own; the default maximum message size). Alongside them: the
test-server switches added for the hostile-server tests (``close_replies``, ``send_wire``),
checked in memory.
"""

from __future__ import annotations

import inspect
import json

import pytest

import stx_anyio
import stx_trio
from stx_proto import (
    Client,
    Disconnected,
    DisconnectReason,
    MessageReceived,
    UsageError,
)
from stx_proto._websocket import WsprotoEngine
from stx_proto.testing import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    PhoenixServer,
    close_payload,
    ws_frame,
)

from .conftest import MakeLink

MIB = 1024 * 1024


def test_f4_a_channel_frame_with_the_heartbeat_ref_is_no_heartbeat_reply(
    make_link: MakeLink, server: PhoenixServer
) -> None:
    server.heartbeat_replies = False
    link = make_link(heartbeat_interval=30.0, heartbeat_timeout=10.0)
    link.connect()
    link.join("room:a")
    link.advance(30.0)  # the heartbeat goes out; the server does not answer it
    (beat,) = link.server_frames(event="heartbeat")
    conn = link.connection
    assert conn is not None
    join_ref = link.client.join_ref("room:a")
    conn.send_raw(json.dumps([join_ref, beat.ref, "room:a", "quote", {"px": 1}]))
    link.pump()
    # The channel's message is delivered (or at least counted), not swallowed ...
    delivered = [ev for ev in link.events if isinstance(ev, MessageReceived)]
    assert [ev.message.event for ev in delivered] == ["quote"]
    # ... and the heartbeat is still unanswered: the connection is declared dead in time.
    link.advance(10.0)
    assert any(
        isinstance(ev, Disconnected) and ev.reason is DisconnectReason.HEARTBEAT_TIMEOUT
        for ev in link.events
    )


def test_heartbeat_timeout_close_reason_is_phoenix_js_s(
    make_link: MakeLink, server: PhoenixServer
) -> None:
    server.heartbeat_replies = False
    link = make_link(heartbeat_interval=30.0, heartbeat_timeout=10.0)
    link.connect()
    conn = link.connection
    assert conn is not None
    ev = link.advance_until(Disconnected)
    assert ev.reason is DisconnectReason.HEARTBEAT_TIMEOUT
    assert ev.detail == "heartbeat timeout"
    assert conn.close_reason == "heartbeat timeout"


def test_connect_timeout_has_a_default_of_its_own() -> None:
    client = Client("ws://test/socket", timeout=30.0)
    client.connect(0.0)
    assert client.next_deadline() == 10.0


def test_connect_timeout_is_the_same_default_in_the_core_and_the_drivers() -> None:
    defaults = {
        inspect.signature(cls).parameters["connect_timeout"].default
        for cls in (Client, stx_anyio.Socket, stx_trio.Socket)
    }
    assert len(defaults) == 1


def _max_message_defaults() -> set[object]:
    return {
        inspect.signature(cls).parameters["max_message_size"].default
        for cls in (Client, WsprotoEngine, stx_anyio.Socket, stx_trio.Socket)
    }


def test_max_message_size_is_the_same_default_everywhere() -> None:
    assert len(_max_message_defaults()) == 1


def test_max_message_size_default_is_below_64_mib() -> None:
    (default,) = _max_message_defaults()
    assert isinstance(default, int)
    assert MIB <= default < 64 * MIB


# --------------------------------------------------------------------------------------------
# The test server's switches for hostile-server tests, in memory


def test_close_replies_off_leaves_the_client_s_close_unanswered(
    make_link: MakeLink, server: PhoenixServer
) -> None:
    server.close_replies = False
    link = make_link(close_timeout=3.0)
    link.connect()
    conn = link.connection
    assert conn is not None
    link.client.close(link.now)
    link.pump()
    assert conn.close_code == 1000  # the close frame arrived ...
    assert not conn.closed  # ... and was not answered: the close waits for its timeout
    ev = link.advance_until(Disconnected)
    assert ev.reason is DisconnectReason.CLIENT_CLOSED
    assert link.now == 3.0


def test_send_wire_writes_bytes_as_they_are(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    link.join("room:a")
    conn = link.connection
    assert conn is not None
    conn.send_wire(ws_frame(OP_TEXT, b'[null,null,"room:a","hi",{}]'))
    link.pump()
    assert [ev.message.event for ev in link.of_type(MessageReceived)] == ["hi"]
    conn.send_wire(ws_frame(OP_TEXT, b'["\xff"]'))
    link.pump()
    assert link.of_type(Disconnected)[-1].code == 1007
    conn.data_to_send()  # the answer to the client's close, which nobody reads any more
    conn.send_wire(b"ignored: the connection is over")
    assert conn.data_to_send() == b""


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"opcode": OP_TEXT, "payload": b"hi"}, b"\x81\x02hi"),
        ({"opcode": OP_BINARY, "payload": b"", "fin": False, "rsv": 4}, b"\x42\x00"),
        ({"opcode": OP_TEXT, "payload": b"x" * 126}, b"\x81\x7e\x00\x7e" + b"x" * 126),
        ({"opcode": OP_TEXT, "length": 1 << 16}, b"\x81\x7f" + (1 << 16).to_bytes(8, "big")),
        (
            {"opcode": OP_TEXT, "payload": b"ab", "mask": b"\x01\x02\x03\x04"},
            b"\x81\x82\x01\x02\x03\x04" + bytes([ord("a") ^ 1, ord("b") ^ 2]),
        ),
        (
            {"opcode": OP_CLOSE, "payload": close_payload(1000, b"bye")},
            b"\x88\x05\x03\xe8bye",
        ),
    ],
)
def test_ws_frame_builds_the_header_it_is_told(kwargs: dict[str, object], expected: bytes) -> None:
    assert ws_frame(**kwargs) == expected  # type: ignore[arg-type]


def test_close_payload_without_a_code_is_the_reason_alone() -> None:
    assert close_payload(None) == b""
    assert close_payload(None, b"x") == b"x"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"opcode": 16},
        {"opcode": -1},
        {"opcode": 1, "rsv": 8},
        {"opcode": 1, "mask": b"abc"},
        {"opcode": 1, "length": -1},
        {"opcode": 1, "length": 1 << 63},
    ],
)
def test_ws_frame_refuses_fields_that_do_not_fit(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        ws_frame(**kwargs)  # type: ignore[arg-type]


def test_close_payload_refuses_a_code_over_two_bytes() -> None:
    with pytest.raises(UsageError):
        close_payload(1 << 16)
