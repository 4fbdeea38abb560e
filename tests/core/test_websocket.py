"""Both WebSocket engines driven against a real wsproto server, in memory.

Every test taking the ``engine`` fixture runs on each engine (WsprotoEngine and
WebsocketsEngine): the engines must give the same events and queue the same frames for the
same input. Tests of one engine's own behaviour say so in their name.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Callable, Sequence

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import generate_accept_token

from stx_proto._engines import ENGINES, EngineFactory, resolve_engine
from stx_proto._errors import UsageError
from stx_proto._websocket import (
    MAX_REJECTION_BODY,
    WebSocketEngine,
    WsAccepted,
    WsClosed,
    WsEvent,
    WsFailed,
    WsprotoEngine,
    WsRejected,
)
from stx_proto._ws_websockets import WebsocketsEngine

HOST = "example.com:4000"
TARGET = "/socket/websocket?token=a%20b&vsn=2.0.0"
TOKEN_PROTOCOL = "base64url.bearer.phx.MTIzNA"


@pytest.fixture(params=ENGINES, scope="module")
def engine(request: pytest.FixtureRequest) -> EngineFactory:
    """Each engine in turn (module scope, so that hypothesis accepts it)."""
    factory: EngineFactory = resolve_engine(request.param)
    return factory


def new_client(engine: EngineFactory, **kwargs: object) -> WebSocketEngine:
    return engine(host=HOST, target=TARGET, **kwargs)


def handshake(client: WebSocketEngine) -> tuple[WSConnection, Request]:
    """Feed the client's upgrade request to a fresh server; return it and the Request it saw."""
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.start())
    (request,) = server.events()
    assert isinstance(request, Request)
    return server, request


def open_pair(engine: EngineFactory, **kwargs: object) -> tuple[WebSocketEngine, WSConnection]:
    client = new_client(engine, **kwargs)
    server, _ = handshake(client)
    assert client.receive(server.send(AcceptConnection())) == [WsAccepted(None, ())]
    return client, server


def to_server(server: WSConnection, data: bytes) -> list[Event]:
    server.receive_data(data)
    return list(server.events())


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A server-to-client frame (unmasked), payload under 126 bytes."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def accept_headers(client_request: bytes, *extra: bytes) -> bytes:
    """A hand-written 101 answer to ``client_request`` with a valid accept token."""
    match = re.search(rb"Sec-WebSocket-Key: (\S+)", client_request)
    assert match is not None
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Accept: " + generate_accept_token(match.group(1)),
        *extra,
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def assert_ended(client: WebSocketEngine) -> None:
    assert not client.open
    assert client.receive(frame(0x1, b"late")) == []
    assert client.receive_eof() == []
    assert client.send_text("x") == b""
    assert client.send_binary(b"x") == b""
    assert client.close() == b""


# ---- values and interface


def test_engines_implement_the_interface() -> None:
    # mypy checks the assignments: each class is a WebSocketEngine.
    engines: list[WebSocketEngine] = [
        WsprotoEngine(host=HOST, target=TARGET),
        WebsocketsEngine(host=HOST, target=TARGET),
    ]
    assert not any(engine.open for engine in engines)


def test_events_are_frozen_values() -> None:
    event = WsClosed(1000, "bye")
    assert event == WsClosed(1000, "bye")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.code = 1001  # type: ignore[misc]
    assert "__slots__" in vars(WsClosed)


def test_messages_come_out_as_str_and_bytes_exactly(engine: EngineFactory) -> None:
    # No wrapper object per message, and no str/bytes subclass either: the core tells a
    # message from an event with type(ev) is str.
    client, server = open_pair(engine)
    events = client.receive(server.send(TextMessage("a")) + server.send(BytesMessage(b"b")))
    assert [type(ev) for ev in events] == [str, bytes]


# ---- handshake


def test_handshake_sends_host_target_headers_and_subprotocols(engine: EngineFactory) -> None:
    client = new_client(
        engine,
        headers=[("X-Api-Key", "k1"), ("Origin", "https://example.com")],
        subprotocols=["phoenix", TOKEN_PROTOCOL],
    )
    server, request = handshake(client)
    assert request.host == HOST
    assert request.target == TARGET
    assert request.subprotocols == ["phoenix", TOKEN_PROTOCOL]
    assert (b"x-api-key", b"k1") in request.extra_headers
    assert (b"origin", b"https://example.com") in request.extra_headers
    assert client.send_text("too early") == b""

    reply = server.send(AcceptConnection(subprotocol="phoenix", extra_headers=[(b"X-Srv", b"1")]))
    assert client.receive(reply) == [WsAccepted("phoenix", (("x-srv", "1"),))]
    assert client.open
    assert server.state is ConnectionState.OPEN


def test_request_bytes(engine: EngineFactory) -> None:
    request = new_client(engine).start()
    assert request.startswith(f"GET {TARGET} HTTP/1.1\r\n".encode())
    assert f"Host: {HOST}\r\n".encode() in request
    assert b"Sec-WebSocket-Protocol" not in request


def test_non_ascii_header_value_is_sent_as_utf8(engine: EngineFactory) -> None:
    _, request = handshake(new_client(engine, headers=[("x-name", "café")]))
    assert (b"x-name", "café".encode()) in request.extra_headers


def test_start_twice_is_a_usage_error(engine: EngineFactory) -> None:
    client = new_client(engine)
    client.start()
    with pytest.raises(UsageError, match="already called"):
        client.start()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": "/caf\u00e9"},
        {"target": "/a b"},
        {"headers": [("bad name", "v")]},
        {"headers": [("n\u00e4me", "v")]},
        {"max_message_size": -1},
    ],
)
def test_bad_construction_values_are_usage_errors(
    engine: EngineFactory, kwargs: dict[str, object]
) -> None:
    args: dict[str, object] = {"host": HOST, "target": "/"} | kwargs
    with pytest.raises(UsageError):
        engine(**args)


def test_accept_with_trailing_frames_in_the_same_read(engine: EngineFactory) -> None:
    client = new_client(engine)
    server, _ = handshake(client)
    data = server.send(AcceptConnection()) + server.send(TextMessage("hi")) + server.send(Ping())
    assert client.receive(data) == [WsAccepted(None, ()), "hi"]
    assert to_server(server, client.data_to_send()) == [Pong(b"")]


def test_accept_fed_byte_by_byte(engine: EngineFactory) -> None:
    client = new_client(engine)
    server, _ = handshake(client)
    events: list[WsEvent] = []
    for byte in server.send(AcceptConnection(subprotocol=None)):
        events += client.receive(bytes([byte]))
    assert events == [WsAccepted(None, ())]


def test_empty_read_during_handshake_is_not_eof(engine: EngineFactory) -> None:
    client = new_client(engine)
    server, _ = handshake(client)
    assert client.receive(b"") == []
    assert client.receive(server.send(AcceptConnection())) == [WsAccepted(None, ())]
    assert client.receive(b"") == []


# ---- rejection


def test_rejection_with_body(engine: EngineFactory) -> None:
    client = new_client(engine)
    server, _ = handshake(client)
    data = server.send(
        RejectConnection(status_code=403, headers=[(b"content-type", b"text/plain")], has_body=True)
    ) + server.send(RejectData(b"forbidden", body_finished=True))
    (event,) = client.receive(data)
    assert isinstance(event, WsRejected)
    assert event.status_code == 403
    assert ("content-type", "text/plain") in event.headers
    assert event.body == b"forbidden"
    assert_ended(client)


def test_rejection_body_in_several_chunks(engine: EngineFactory) -> None:
    client = new_client(engine)
    server, _ = handshake(client)
    assert client.receive(server.send(RejectConnection(status_code=429, has_body=True))) == []
    assert client.receive(server.send(RejectData(b"slow ", body_finished=False))) == []
    assert client.receive(server.send(RejectData(b"down", body_finished=False))) == []
    (event,) = client.receive(server.send(RejectData(b"", body_finished=True)))
    assert isinstance(event, WsRejected)
    assert (event.status_code, event.body) == (429, b"slow down")


def test_rejection_without_body(engine: EngineFactory) -> None:
    client = new_client(engine)
    server, _ = handshake(client)
    (event,) = client.receive(server.send(RejectConnection(status_code=400)))
    assert isinstance(event, WsRejected)
    assert (event.status_code, event.body) == (400, b"")
    assert ("content-length", "0") in event.headers


def test_informational_answer_is_a_rejection(engine: EngineFactory) -> None:
    client = new_client(engine)
    client.start()
    assert client.receive(b"HTTP/1.1 100 Continue\r\nX-A: b\r\n\r\n") == [
        WsRejected(100, (("x-a", "b"),), b"")
    ]
    assert_ended(client)


def test_eof_during_rejection_gives_the_body_so_far(engine: EngineFactory) -> None:
    client = new_client(engine)
    client.start()
    response = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 100\r\n\r\npartial"
    assert client.receive(response) == []
    assert client.receive_eof() == [WsRejected(403, (("content-length", "100"),), b"partial")]
    assert_ended(client)


def test_broken_rejection_body_gives_the_body_so_far(engine: EngineFactory) -> None:
    client = new_client(engine)
    client.start()
    response = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZ\r\n"
    assert client.receive(response) == [
        WsRejected(403, (("transfer-encoding", "chunked"),), b"abc")
    ]
    assert_ended(client)


def test_rejection_body_is_capped(engine: EngineFactory) -> None:
    client = new_client(engine)
    client.start()
    size = MAX_REJECTION_BODY + 40_000
    assert client.receive(b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n" % size) == []
    assert client.receive(b"a" * (MAX_REJECTION_BODY + 10)) == []
    (event,) = client.receive(b"b" * 39_990)
    assert isinstance(event, WsRejected)
    assert event.body == b"a" * MAX_REJECTION_BODY


# ---- handshake failures


def test_garbage_instead_of_http_response(engine: EngineFactory) -> None:
    client = new_client(engine)
    client.start()
    (event,) = client.receive(b"garbage garbage\r\n\r\n")
    assert isinstance(event, WsFailed)
    assert event.code is None
    assert event.detail.startswith("handshake failed: Bad HTTP message (")
    assert_ended(client)
    assert client.data_to_send() == b""


def test_bad_accept_token(engine: EngineFactory) -> None:
    client = new_client(engine)
    client.start()
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: nope\r\n\r\n"
    )
    assert client.receive(response) == [WsFailed("handshake failed: Bad accept token", None)]
    assert_ended(client)


def test_subprotocol_not_offered(engine: EngineFactory) -> None:
    client = new_client(engine, subprotocols=["phoenix"])
    response = accept_headers(client.start(), b"Sec-WebSocket-Protocol: other")
    (event,) = client.receive(response)
    assert isinstance(event, WsFailed)
    assert "unrecognized subprotocol other" in event.detail


def test_non_ascii_subprotocol_header_fails_instead_of_raising(engine: EngineFactory) -> None:
    client = new_client(engine, subprotocols=["phoenix"])
    response = accept_headers(client.start(), b"Sec-WebSocket-Protocol: ph\xe9nix")
    (event,) = client.receive(response)
    assert isinstance(event, WsFailed)
    assert event.code is None
    assert_ended(client)


def test_hand_written_accept_with_subprotocol(engine: EngineFactory) -> None:
    client = new_client(engine, subprotocols=["phoenix", TOKEN_PROTOCOL])
    response = accept_headers(client.start(), b"Sec-WebSocket-Protocol: phoenix")
    assert client.receive(response) == [WsAccepted("phoenix", ())]


def test_eof_before_handshake(engine: EngineFactory) -> None:
    client = new_client(engine)
    client.start()
    assert client.receive(b"HTTP/1.1 101 Switching") == []
    assert client.receive_eof() == [WsFailed("connection closed during handshake", None)]
    assert_ended(client)


def test_send_before_open_returns_nothing(engine: EngineFactory) -> None:
    client = new_client(engine)
    client.start()
    assert client.send_text("hi") == b""
    assert client.send_binary(b"hi") == b""
    assert client.close() == b""
    assert client.data_to_send() == b""


# ---- messages


def test_text_and_binary_both_ways(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    data = server.send(TextMessage("héllo")) + server.send(BytesMessage(b"\x00\x01"))
    assert client.receive(data) == ["héllo", b"\x00\x01"]
    out = client.send_text("hi") + client.send_binary(b"\xff")
    assert to_server(server, out) == [TextMessage("hi"), BytesMessage(b"\xff")]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_001])
def test_sent_frames_of_every_length_form(engine: EngineFactory, size: int) -> None:
    # 7-bit, 16-bit and 64-bit lengths, each at its edges, masked with a fresh key each time.
    client, server = open_pair(engine)
    text = "é" * (size // 2) + "x" * (size % 2)
    first, second = client.send_text(text), client.send_text(text)
    assert to_server(server, first + second) == [TextMessage(text), TextMessage(text)]
    if size:
        assert first != second  # the masking keys differ
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    assert to_server(server, client.send_binary(data)) == [BytesMessage(data)]


def test_long_fragments_between_plain_messages_split_anywhere(engine: EngineFactory) -> None:
    # Fragments go to the library, plain frames to the scanner; cut in every read size, the
    # library is always handed whole frames or the rest of one.
    text = "ü" * 200
    stream = (
        any_frame(0x1, b"first")
        + any_frame(0x1, text.encode()[:150], fin=False)
        + any_frame(0x9, b"ping")
        + any_frame(0x0, text.encode()[150:])
        + any_frame(0x2, b"\x00" * 300)
    )
    for step in (1, 7, 150, len(stream)):
        client, server = open_pair(engine)
        events = []
        for start in range(0, len(stream), step):
            events += client.receive(stream[start : start + step])
        assert events == ["first", text, b"\x00" * 300]
        assert to_server(server, client.data_to_send()) == [Pong(b"ping")]


def test_close_frame_cut_in_its_payload_ends_before_what_follows(engine: EngineFactory) -> None:
    client, _ = open_pair(engine)
    close = any_frame(0x8, struct.pack("!H", 1001) + b"going away")
    assert client.receive(close[:5]) == []
    assert client.receive(close[5:] + any_frame(0x1, b"late")) == [WsClosed(1001, "going away")]
    assert_ended(client)


def test_many_messages_in_one_read(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    data = b"".join(server.send(TextMessage(f"m{i}")) for i in range(100))
    assert client.receive(data) == [f"m{i}" for i in range(100)]


def test_empty_messages(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    data = server.send(TextMessage("")) + server.send(BytesMessage(b""))
    assert client.receive(data) == ["", b""]


def test_fragmented_text(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    assert client.receive(server.send(TextMessage("hel", message_finished=False))) == []
    assert client.receive(server.send(TextMessage("lo", message_finished=False))) == []
    assert client.receive(server.send(TextMessage(" world"))) == ["hello world"]
    # The next message starts afresh.
    assert client.receive(server.send(TextMessage("next"))) == ["next"]


def test_fragmented_binary(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    data = server.send(BytesMessage(b"ab", message_finished=False)) + server.send(
        BytesMessage(b"cd")
    )
    assert client.receive(data) == [b"abcd"]
    assert client.receive(server.send(BytesMessage(b"ef"))) == [b"ef"]


def test_multibyte_utf8_split_across_fragments(engine: EngineFactory) -> None:
    client, _ = open_pair(engine)
    frames = [
        frame(0x1, b"caf\xc3", fin=False),
        frame(0x0, b"\xa9 \xe2", fin=False),
        frame(0x0, b"\x82\xac"),
    ]
    events: list[WsEvent] = []
    for f in frames:
        events += client.receive(f)
    assert events == ["café €"]


def test_one_frame_split_across_reads(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    data = server.send(TextMessage("aé€"))
    events: list[WsEvent] = []
    for byte in data:
        events += client.receive(bytes([byte]))
    assert events == ["aé€"]


@given(
    messages=st.lists(
        st.one_of(st.text(max_size=20), st.binary(max_size=20)),
        max_size=8,
    ),
    fragment_at=st.lists(st.integers(0, 20), max_size=8),
    cuts=st.lists(st.integers(0, 400), max_size=10),
)
def test_any_fragmentation_and_read_split_gives_the_same_messages(
    engine: EngineFactory,
    messages: list[str | bytes],
    fragment_at: list[int],
    cuts: list[int],
) -> None:
    client, server = open_pair(engine)
    stream = b""
    for i, message in enumerate(messages):
        at = fragment_at[i] if i < len(fragment_at) else 0
        head, tail = message[:at], message[at:]
        if isinstance(message, str):
            assert isinstance(head, str) and isinstance(tail, str)
            if at:
                stream += server.send(TextMessage(head, message_finished=False))
            stream += server.send(TextMessage(tail))
        else:
            assert isinstance(head, bytes) and isinstance(tail, bytes)
            if at:
                stream += server.send(BytesMessage(head, message_finished=False))
            stream += server.send(BytesMessage(tail))
    events: list[WsEvent] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        events += client.receive(stream[start:cut])
        start = max(start, cut)
    assert events == messages


# ---- ping / pong


def test_ping_is_answered_with_pong(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    assert client.receive(server.send(Ping(b"beat"))) == []
    assert to_server(server, client.data_to_send()) == [Pong(b"beat")]
    assert client.data_to_send() == b""


def test_pong_is_ignored(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    assert client.receive(server.send(Pong(b"x"))) == []
    assert client.data_to_send() == b""


# ---- close


def test_server_close_is_answered(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    data = server.send(CloseConnection(code=4000, reason="bye"))
    assert client.receive(data) == [WsClosed(4000, "bye")]
    assert to_server(server, client.data_to_send()) == [CloseConnection(4000, "bye")]
    assert server.state is ConnectionState.CLOSED
    assert client.data_to_send() == b""
    assert_ended(client)


def test_server_close_without_code(engine: EngineFactory) -> None:
    client, _ = open_pair(engine)
    (event,) = client.receive(frame(0x8, b""))
    assert event == WsClosed(1005, "")
    assert type(event.code) is int
    reply = client.data_to_send()
    # A masked close frame with no payload: header, mask bit + length 0, 4-byte mask.
    assert reply[:2] == b"\x88\x80"
    assert len(reply) == 6


def test_frames_after_server_close_are_dropped(engine: EngineFactory) -> None:
    client, _ = open_pair(engine)
    close = frame(0x8, struct.pack("!H", 1001))
    assert client.receive(close + frame(0x1, b"late")) == [WsClosed(1001, "")]


def test_client_close_handshake(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    data = client.close(1000, "done")
    assert not client.open
    assert client.close() == b""
    assert client.send_text("x") == b""
    (event,) = to_server(server, data)
    assert event == CloseConnection(1000, "done")
    assert isinstance(event, CloseConnection)
    assert client.receive(server.send(event.response())) == [WsClosed(1000, "done")]
    assert client.data_to_send() == b""
    assert_ended(client)


def test_messages_and_pings_while_closing(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    client.close()
    # The server has not seen our close yet: its messages still arrive, its ping gets no pong
    # (wsproto sends nothing but the close once it is sent).
    data = server.send(TextMessage("still here")) + server.send(Ping(b"p"))
    assert client.receive(data) == ["still here"]
    assert client.data_to_send() == b""


def test_eof_while_closing(engine: EngineFactory) -> None:
    client, _ = open_pair(engine)
    client.close()
    assert client.receive_eof() == [WsClosed(None, "eof")]


def test_close_reason_is_truncated(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    (event,) = to_server(server, client.close(4001, "é" * 100))
    assert isinstance(event, CloseConnection)
    assert event.code == 4001
    assert event.reason == "é" * 61


@pytest.mark.parametrize("code", [0, 999, 5000, 70000])
def test_close_code_out_of_range(engine: EngineFactory, code: int) -> None:
    client, _ = open_pair(engine)
    with pytest.raises(UsageError, match="1000-4999"):
        client.close(code)
    assert client.open


def test_eof_after_handshake(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    # A message cut short by the EOF is dropped.
    assert client.receive(server.send(TextMessage("par", message_finished=False))) == []
    assert client.receive_eof() == [WsClosed(None, "eof")]
    assert_ended(client)


# ---- failures after the handshake


def fail_check(
    client: WebSocketEngine, server: WSConnection, data: bytes, code: int
) -> Sequence[WsEvent]:
    events = client.receive(data)
    (event,) = events
    assert isinstance(event, WsFailed)
    assert event.code == code
    (close,) = to_server(server, client.data_to_send())
    assert isinstance(close, CloseConnection)
    assert close.code == code
    assert_ended(client)
    return events


def test_garbage_after_handshake(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    fail_check(client, server, b"\xff\xff\xff\xff\xff\xff", 1002)


def test_unexpected_continuation(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    fail_check(client, server, frame(0x0, b"x"), 1002)


def test_invalid_utf8(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    (event,) = fail_check(client, server, frame(0x1, b"ok\xff"), 1007)
    assert isinstance(event, WsFailed)
    assert "utf-8" in event.detail


def test_messages_before_garbage_are_delivered(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    events = client.receive(server.send(TextMessage("good")) + b"\xff\xff")
    assert events[0] == "good"
    assert isinstance(events[1], WsFailed)
    assert len(events) == 2


def test_garbage_while_closing_queues_nothing(engine: EngineFactory) -> None:
    client, _ = open_pair(engine)
    client.close()
    (event,) = client.receive(b"\xff\xff")
    assert isinstance(event, WsFailed)
    assert event.code == 1002
    assert client.data_to_send() == b""


@pytest.mark.parametrize(
    "message",
    [TextMessage("x" * 11), TextMessage("é" * 6), BytesMessage(b"x" * 11)],
    ids=["ascii", "utf8", "binary"],
)
def test_message_over_the_limit_in_one_frame(engine: EngineFactory, message: Event) -> None:
    client, server = open_pair(engine, max_message_size=10)
    (event,) = fail_check(client, server, server.send(message), 1009)
    assert event == WsFailed("message too big", 1009)


def test_messages_at_the_limit_pass(engine: EngineFactory) -> None:
    client, server = open_pair(engine, max_message_size=10)
    data = (
        server.send(TextMessage("x" * 10))
        + server.send(TextMessage("é" * 5))
        + server.send(BytesMessage(b"x" * 10))
        + server.send(TextMessage("é" * 4, message_finished=False))
        + server.send(TextMessage("ab"))
    )
    assert client.receive(data) == [
        "x" * 10,
        "é" * 5,
        b"x" * 10,
        "é" * 4 + "ab",
    ]


def test_fragmented_text_over_the_limit(engine: EngineFactory) -> None:
    client, server = open_pair(engine, max_message_size=10)
    assert client.receive(server.send(TextMessage("é" * 3, message_finished=False))) == []
    fail_check(client, server, server.send(TextMessage("é" * 3, message_finished=False)), 1009)


def test_fragmented_binary_over_the_limit(engine: EngineFactory) -> None:
    client, server = open_pair(engine, max_message_size=10)
    data = server.send(BytesMessage(b"x" * 6, message_finished=False)) + server.send(
        BytesMessage(b"x" * 6)
    )
    fail_check(client, server, data, 1009)


def test_wsproto_limit_counts_a_big_frame_as_it_streams_in() -> None:
    client, server = open_pair(WsprotoEngine, max_message_size=1000)
    data = server.send(BytesMessage(b"x" * 100_000))
    # The frame header announces 100 kB; the failure comes as soon as the received part is over
    # the limit, without waiting for the rest.
    assert client.receive(data[:600]) == []
    fail_check(client, server, data[600:1200], 1009)


def test_too_big_while_closing_queues_nothing(engine: EngineFactory) -> None:
    client, server = open_pair(engine, max_message_size=10)
    client.close()
    assert client.receive(server.send(BytesMessage(b"x" * 11))) == [
        WsFailed("message too big", 1009)
    ]
    assert client.data_to_send() == b""


def test_no_limit(engine: EngineFactory) -> None:
    client, server = open_pair(engine, max_message_size=None)
    big = "x" * 200_000
    assert client.receive(server.send(TextMessage(big))) == [big]


def test_websockets_fails_a_big_frame_at_its_header() -> None:
    # The one difference between the engines: websockets checks the size the frame header
    # announces, so the failure comes with the header, before any of the payload.
    client, server = open_pair(resolve_engine("websockets"), max_message_size=1000)
    data = server.send(BytesMessage(b"x" * 100_000))
    fail_check(client, server, data[:10], 1009)


# ---- more behaviour both engines share


def test_close_inside_a_fragmented_message_is_a_close(engine: EngineFactory) -> None:
    # Control frames may come between the fragments of a message (RFC 6455, 5.4).
    client, server = open_pair(engine)
    data = frame(0x1, b"par", fin=False) + frame(0x9, b"p") + frame(0x8, struct.pack("!H", 4001))
    assert client.receive(data) == [WsClosed(4001, "")]
    assert to_server(server, client.data_to_send()) == [Pong(b"p"), CloseConnection(4001, "")]
    assert_ended(client)


def test_binary_in_three_fragments(engine: EngineFactory) -> None:
    client, _ = open_pair(engine)
    data = frame(0x2, b"ab", fin=False) + frame(0x0, b"cd", fin=False) + frame(0x0, b"ef")
    assert client.receive(data) == [b"abcdef"]


def test_start_after_the_handshake_is_a_usage_error(engine: EngineFactory) -> None:
    client, _ = open_pair(engine)
    with pytest.raises(UsageError, match="already called"):
        client.start()


def test_pings_between_fragments_are_answered(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    data = frame(0x2, b"ab", fin=False) + frame(0xA, b"") + frame(0x9, b"1") + frame(0x0, b"cd")
    assert client.receive(data) == [b"abcd"]
    assert to_server(server, client.data_to_send()) == [Pong(b"1")]


def test_invalid_utf8_in_a_first_fragment(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    fail_check(client, server, frame(0x1, b"a\xff", fin=False), 1007)


def test_utf8_sequence_cut_by_the_last_fragment(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    assert client.receive(frame(0x1, b"caf", fin=False)) == []
    fail_check(client, server, frame(0x0, b"\xc3"), 1007)


def test_invalid_utf8_in_the_close_reason(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    fail_check(client, server, frame(0x8, struct.pack("!H", 1000) + b"\xff"), 1007)


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_close_frame_with_a_code_it_may_not_carry(engine: EngineFactory, code: int) -> None:
    client, server = open_pair(engine)
    fail_check(client, server, frame(0x8, struct.pack("!H", code)), 1002)


def test_close_frame_of_one_byte(engine: EngineFactory) -> None:
    client, server = open_pair(engine)
    fail_check(client, server, frame(0x8, b"\x03"), 1002)


@pytest.mark.parametrize(
    "data",
    [
        bytes([0xC1, 0]),  # RSV1 set, no extension negotiated
        bytes([0x81, 0x81]) + b"mask" + b"x",  # a masked frame from the server
        frame(0x9, b"p", fin=False),  # a fragmented control frame
        bytes([0x89, 126, 0, 126]) + b"p" * 126,  # a control frame over 125 bytes
        frame(0x1, b"a", fin=False) + frame(0x2, b"b"),  # a new message inside a fragmented one
        frame(0x3, b""),  # a reserved opcode
    ],
    ids=["rsv1", "masked", "fragmented-ping", "long-ping", "interleaved", "opcode-3"],
)
def test_protocol_errors(engine: EngineFactory, data: bytes) -> None:
    client, server = open_pair(engine)
    fail_check(client, server, data, 1002)


@pytest.mark.parametrize("code", [1005, 1006, 1015])
def test_closing_with_a_local_only_code_sends_1000(engine: EngineFactory, code: int) -> None:
    client, server = open_pair(engine)
    assert to_server(server, client.close(code, "x")) == [CloseConnection(1000, "x")]


def test_handshake_head_end_split_across_reads(engine: EngineFactory) -> None:
    client = new_client(engine)
    server, _ = handshake(client)
    data = server.send(AcceptConnection()) + server.send(TextMessage("hi"))
    head = data.index(b"\r\n\r\n")
    events: list[WsEvent] = []
    for cut in (head + 1, head + 3, head + 5):
        events += client.receive(data[:cut])
        data = data[cut:]
    events += client.receive(data)
    assert events == [WsAccepted(None, ()), "hi"]


def test_rejection_body_with_blank_lines(engine: EngineFactory) -> None:
    client = new_client(engine)
    client.start()
    body = b"a\n\nb\r\n\r\n\nc"
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n" % len(body)
    assert client.receive(head + body[:3]) == []
    assert client.receive(body[3:]) == [WsRejected(403, (("content-length", "10"),), body)]


def test_request_bytes_are_the_same_on_both_engines() -> None:
    def request(name: str) -> bytes:
        client = resolve_engine(name)(
            host=HOST,
            target=TARGET,
            headers=[("X-Api-Key", "k1"), ("Origin", "https://example.com")],
            subprotocols=["phoenix", TOKEN_PROTOCOL],
        )
        return re.sub(rb"Sec-WebSocket-Key: \S+", b"KEY", client.start())

    assert request("websockets") == request("wsproto")


# ---- the websockets engine's own machinery


def _break(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(where, broken)


@pytest.mark.parametrize(
    ("where", "data"),
    [
        # Caught by websockets' parser, which then fails the connection itself (a ping: a
        # plain text frame would not reach websockets).
        ("websockets.protocol.Protocol.recv_frame", frame(0x9, b"x")),
        # Raised out of websockets (its own failure path breaks): the engine catches it.
        ("websockets.protocol.Protocol.fail", b"\xff\xff"),
    ],
    ids=["caught-by-websockets", "raised-by-websockets"],
)
def test_websockets_engine_turns_a_bug_of_websockets_into_a_1011_failure(
    monkeypatch: pytest.MonkeyPatch, where: str, data: bytes
) -> None:
    client, server = open_pair(resolve_engine("websockets"))
    with monkeypatch.context() as patch:
        _break(patch, where)
        (event,) = client.receive(data)
    assert event == WsFailed("websockets failed: RuntimeError('bug')", 1011)
    (close,) = to_server(server, client.data_to_send())
    assert isinstance(close, CloseConnection)
    assert close.code == 1011
    assert_ended(client)


# ---- the engines side by side, on any stream


def any_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A server-to-client frame (unmasked) of any size."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        return head + bytes([size]) + payload
    if size < 65536:
        return head + bytes([126]) + struct.pack("!H", size) + payload
    return head + bytes([127]) + struct.pack("!Q", size) + payload


def _data_frames(opcode: int, payload: bytes, cuts: list[int]) -> bytes:
    """A message as frames, cut at ``cuts`` (byte offsets, so UTF-8 may be cut anywhere)."""
    bounds = sorted({0, *(cut % (len(payload) + 1) for cut in cuts), len(payload)})
    if len(bounds) == 1:
        bounds = [0, 0]
    pieces = [payload[a:b] for a, b in itertools.pairwise(bounds)]
    return b"".join(
        any_frame(opcode if i == 0 else 0x0, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )


_close_codes = st.sampled_from([1000, 1001, 1003, 1008, 1011, 3000, 4999, 999, 1005, 2000])
_stream_parts = st.one_of(
    st.builds(
        lambda text, cuts: _data_frames(0x1, text.encode(), cuts),
        st.text(max_size=30),
        st.lists(st.integers(0, 200), max_size=3),
    ),
    st.builds(
        lambda data, cuts: _data_frames(0x2, data, cuts),
        st.binary(max_size=30),
        st.lists(st.integers(0, 200), max_size=3),
    ),
    st.binary(max_size=6).map(lambda data: any_frame(0x9, data)),
    st.binary(max_size=6).map(lambda data: any_frame(0xA, data)),
    st.builds(
        lambda code, reason: any_frame(0x8, struct.pack("!H", code) + reason.encode()),
        _close_codes,
        st.text(max_size=5),
    ),
    st.just(any_frame(0x8, b"")),
    st.just(any_frame(0x1, b"a\xffb")),  # invalid UTF-8
    st.just(any_frame(0x1, b"x", fin=False)),  # a fragment with no end, or interleaved
    st.just(any_frame(0x0, b"y")),  # a continuation of nothing
    st.just(b"\xff\x00"),  # garbage
)


def _normal(events: list[WsEvent]) -> list[object]:
    # Failure details are each library's words; the rest must be equal.
    return [("failed", ev.code) if isinstance(ev, WsFailed) else ev for ev in events]


def _seen_by_server(server: WSConnection, data: bytes) -> list[object]:
    return [
        ("close", ev.code) if isinstance(ev, CloseConnection) else ev
        for ev in to_server(server, data)
    ]


@given(
    parts=st.lists(_stream_parts, max_size=10),
    cuts=st.lists(st.integers(0, 2000), max_size=6),
    # Not 0: wsproto checks sizes and UTF-8 as a frame streams in, so for a frame both too big
    # and invalid its code would depend on the read cuts (3 is the size of the invalid frame).
    max_size=st.sampled_from([None, 3, 8, 40]),
    close_at=st.one_of(st.none(), st.integers(0, 10)),
)
def test_both_engines_give_the_same_events_and_frames(
    parts: list[bytes], cuts: list[int], max_size: int | None, close_at: int | None
) -> None:
    # Reads cut anywhere; our close() between two frames (``close_at``), since wsproto fails a
    # bad frame as its bytes stream in, the websockets engine once it is whole: a close()
    # between the two moments would be sent by one engine and not the other.
    stream = b"".join(parts)
    boundary = None if close_at is None else len(b"".join(parts[:close_at]))
    points = sorted({*(min(cut, len(stream)) for cut in cuts), len(stream)} - {0})
    if boundary:
        points = sorted({*points, boundary})
    seen: list[tuple[list[object], list[object]]] = []
    for name in ENGINES:
        client, server = open_pair(resolve_engine(name), max_message_size=max_size)
        events: list[WsEvent] = []
        frames: list[object] = []
        start = 0
        for point in [*points, None]:
            if start == boundary:
                frames += _seen_by_server(server, client.close(4000, "bye"))
            if point is None:
                events += client.receive_eof()
            else:
                events += client.receive(stream[start:point])
                start = point
            frames += _seen_by_server(server, client.data_to_send())
        seen.append((_normal(events), frames))
    assert seen[0] == seen[1]


# ---- the scanner: each engine with and without it


class _NoScanner:
    """Every byte straight to the library: each engine as it would be without the scanner."""

    def feed(
        self, data: bytes, out: list[WsEvent], library: Callable[[bytes, list[WsEvent]], bool]
    ) -> None:
        library(data, out)


_long_text = st.text(min_size=40, max_size=200).map(lambda t: any_frame(0x1, (t * 4).encode()))
_scanner_parts = st.one_of(
    _stream_parts,
    _long_text,  # 16-bit lengths
    st.binary(min_size=126, max_size=300).map(lambda data: any_frame(0x2, data)),
    st.just(any_frame(0x2, b"z" * 70_000)),  # a 64-bit length
    st.just(any_frame(0x1, "é".encode() * 100)[:-1] + b"\xc3"),  # UTF-8 cut short at the end
    st.just(bytes([0x81, 126, 0, 3]) + b"abc"),  # a length not in its shortest form
    st.just(bytes([0x81, 0x83, 1, 2, 3, 4]) + b"abc"),  # masked
    st.just(bytes([0xC1, 1]) + b"a"),  # RSV1 set
    st.just(bytes([0x83, 1]) + b"a"),  # a reserved opcode
    st.just(bytes([0x89, 126, 0, 200]) + b"p" * 200),  # a control frame too long
    st.just(bytes([0x09, 1]) + b"p"),  # a fragmented control frame
    st.just(bytes([0x81, 5]) + b"\xffabcd"),  # invalid UTF-8 at the start
)


@given(
    parts=st.lists(_scanner_parts, max_size=8),
    cuts=st.lists(st.integers(0, 75_000), max_size=8),
    max_size=st.sampled_from([None, 0, 3, 100, 125, 1000]),
    end=st.one_of(st.none(), st.floats(0, 1)),
    close=st.one_of(st.none(), st.floats(0, 1)),
)
def test_the_scanner_changes_no_event_and_no_frame(
    parts: list[bytes],
    cuts: list[int],
    max_size: int | None,
    end: float | None,
    close: float | None,
) -> None:
    # The scanner takes only the frames the library would turn into exactly one message,
    # keeps the library at frame boundaries, and hands every error over when the library
    # would see it: with or without it, the same events come out and the same frames go back,
    # whatever the reads, wherever the stream ends (``end``, a share of it: mid-frame too) and
    # wherever our close() comes (``close``, a share too).
    stream = b"".join(parts)
    if end is not None:
        stream = stream[: int(len(stream) * end)]
    points = {*(min(cut, len(stream)) for cut in cuts), len(stream)}
    close_at = None if close is None else int(len(stream) * close)
    if close_at is not None:
        points.add(close_at)
    for name in ENGINES:
        seen: list[tuple[list[object], list[object]]] = []
        for scanner in (True, False):
            client, server = open_pair(resolve_engine(name), max_message_size=max_size)
            if not scanner:
                client._scanner = _NoScanner()  # type: ignore[attr-defined]
            events: list[WsEvent] = []
            frames: list[object] = []
            start = 0
            for point in sorted(points):
                events += client.receive(stream[start:point])
                start = point
                if point == close_at:
                    frames += _seen_by_server(server, client.close(4000, "bye"))
                frames += _seen_by_server(server, client.data_to_send())
            events += client.receive_eof()
            seen.append((_normal(events), frames))
        assert seen[0] == seen[1], name


@pytest.mark.parametrize(
    "data",
    [
        bytes([0x81, 126, 0, 3]) + b"abc",  # a 16-bit length under 126: not the shortest form
        bytes([0x81, 0x83, 1, 2, 3, 4]) + b"abc",  # masked
        bytes([0x81, 127]) + (3).to_bytes(8, "big") + b"abc",  # a 64-bit length under 65536
    ],
    ids=["long-form-length", "masked", "64-bit-length"],
)
def test_frames_the_scanner_leaves_to_the_library(engine: EngineFactory, data: bytes) -> None:
    # Whatever the library makes of them, with or without the scanner.
    seen = []
    for scanner in (True, False):
        client, server = open_pair(engine)
        if not scanner:
            client._scanner = _NoScanner()  # type: ignore[attr-defined]
        events = client.receive(data) + client.receive(frame(0x1, b"next"))
        seen.append((_normal(events), _seen_by_server(server, client.data_to_send())))
    assert seen[0] == seen[1]


@pytest.mark.parametrize(
    "script",
    [
        [b"\x81\x85", "eof"],  # masked: an error by its second byte, the rest never comes
        [b"\x89\x80\x01", "eof"],  # a masked ping
        [b"\x89\x7e\x00", "eof"],  # a ping with a 16-bit length
        [b"\x88\xfe\x00", "eof"],  # a masked close with a 16-bit length
        [b"\x09\x7e", "eof"],  # a fragmented ping
        [b"\x81\x85", "close", b"\x01\x02\x03\x04abcde"],
        [b"\x81\x05\xffabc", "close", b"d"],  # invalid UTF-8 before the frame's end
        [b"\x81\x05\xffabc"],  # ... and the server stalls
        [b"\x81\x05ab\xc3", b"\xa9d"],  # valid UTF-8 cut inside a character waits
    ],
    ids=lambda script: repr(script[0]),
)
def test_errors_reach_the_library_when_they_would_without_the_scanner(
    engine: EngineFactory, script: list[bytes | str]
) -> None:
    seen = []
    for scanner in (True, False):
        client, server = open_pair(engine)
        if not scanner:
            client._scanner = _NoScanner()  # type: ignore[attr-defined]
        steps: list[object] = []
        for step in script:
            if step == "eof":
                steps.append(_normal(client.receive_eof()))
            elif step == "close":
                steps.append(_seen_by_server(server, client.close(4000, "bye")))
            else:
                assert isinstance(step, bytes)
                steps.append(_normal(client.receive(step)))
            steps.append(_seen_by_server(server, client.data_to_send()))
        seen.append(steps)
    assert seen[0] == seen[1]


@pytest.mark.parametrize("read", [None, 4096])
def test_messages_of_64_kib_and_more_go_through_the_library(
    engine: EngineFactory, read: int | None
) -> None:
    # A 64-bit length is never the scanner's: the library parses the frame, in one read or as
    # it streams in.
    client, _ = open_pair(engine)
    text, data = "é" * 40_000, bytes(range(256)) * 300
    stream = any_frame(0x1, text.encode()) + any_frame(0x2, data) + any_frame(0x1, b"after")
    step = read or len(stream)
    events = []
    for start in range(0, len(stream), step):
        events += client.receive(stream[start : start + step])
    assert events == [text, data, "after"]
