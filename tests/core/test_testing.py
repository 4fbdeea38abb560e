"""The test kit of ``stx_proto.testing``: the scripted Phoenix server, driven by a raw wsproto
client in memory (no sockets, no clock), the virtual clock, and the Link harness."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from random import Random
from typing import Any

import pytest
from wsproto import WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import FrameProtocol

from stx_proto import ChannelClosed, ChannelCloseReason, Client, Connected, GaveUp, Joined
from stx_proto._codec import StdlibJsonCodec
from stx_proto._errors import UsageError
from stx_proto._message import ChannelMessage
from stx_proto.testing import Link, VirtualClock
from stx_proto.testing._server import JoinHandler, PhoenixServer, ServerConnection

Frame = Any  # a decoded text frame (list or dict), or the raw bytes of a binary frame


class Peer:
    """A WebSocket client made of wsproto, pumped against one ServerConnection."""

    def __init__(
        self,
        server: PhoenixServer,
        target: str = "/socket/websocket?vsn=2.0.0",
        *,
        subprotocols: Iterable[str] = (),
        headers: Iterable[tuple[bytes, bytes]] = (),
        handshake: bool = True,
    ) -> None:
        self.server = server
        self.conn = server.connect()
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list[Event] = []
        self.now = 0.0
        self.handshake: list[Event] = []
        if handshake:
            self.send_event(
                Request(
                    host="example.com",
                    target=target,
                    subprotocols=list(subprotocols),
                    extra_headers=list(headers),
                )
            )
            self.handshake = self.other_events()

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data, self.now)
        self.pump()

    def send_event(self, event: Event) -> None:
        self.feed(self.ws.send(event))

    def pump(self) -> None:
        data = self.conn.data_to_send()
        if data and self.ws.state is not ConnectionState.CLOSED:
            self.ws.receive_data(data)
        self.events.extend(self.ws.events())

    def send(self, *fields: Any) -> None:
        self.send_event(TextMessage(data=json.dumps(list(fields))))

    def send_obj(self, obj: Mapping[str, Any]) -> None:
        self.send_event(TextMessage(data=json.dumps(obj)))

    def send_bytes(self, data: bytes) -> None:
        self.send_event(BytesMessage(data=data))

    def frames(self) -> list[Frame]:
        """The Phoenix frames received since the last call (text decoded, binary raw)."""
        self.pump()
        out: list[Frame] = []
        rest: list[Event] = []
        for event in self.events:
            if isinstance(event, TextMessage):
                out.append(json.loads(event.data))
            elif isinstance(event, BytesMessage):
                out.append(bytes(event.data))
            else:
                rest.append(event)
        self.events = rest
        return out

    def other_events(self) -> list[Event]:
        self.pump()
        out = [e for e in self.events if not isinstance(e, Message)]
        self.events = [e for e in self.events if isinstance(e, Message)]
        return out

    def join(self, topic: str, join_ref: str, payload: Any = None) -> list[Frame]:
        self.send(join_ref, join_ref, topic, "phx_join", payload if payload is not None else {})
        return self.frames()


def client_frame_bytes(event: Event) -> bytes:
    """``event`` as a client would frame it, whatever the state of the peer's wsproto."""
    proto = FrameProtocol(client=True, extensions=[])
    if isinstance(event, TextMessage):
        return bytes(proto.send_data(event.data, True))
    if isinstance(event, Ping):
        return bytes(proto.ping(event.payload))
    assert isinstance(event, CloseConnection)
    return bytes(proto.close(event.code, event.reason))


def ok(response: Any = None) -> dict[str, Any]:
    return {"status": "ok", "response": {} if response is None else response}


def err(response: Any) -> dict[str, Any]:
    return {"status": "error", "response": response}


UNMATCHED = err({"reason": "unmatched topic"})


def b(*parts: int | str | bytes) -> bytes:
    """Bytes from ints (one byte each), str (UTF-8) and bytes, concatenated."""
    out = bytearray()
    for part in parts:
        if isinstance(part, int):
            out.append(part)
        elif isinstance(part, str):
            out += part.encode()
        else:
            out += part
    return bytes(out)


@pytest.fixture
def server() -> PhoenixServer:
    s = PhoenixServer()
    s.route("room:*")
    return s


# ---------------------------------------------------------------------------------------------
# Handshake


def test_handshake_accepts_and_records_the_request(server: PhoenixServer) -> None:
    peer = Peer(
        server,
        "/socket/websocket?token=abc&empty=&vsn=2.0.0",
        headers=[(b"X-Custom", b"yes")],
    )
    [accept] = peer.handshake
    assert isinstance(accept, AcceptConnection)
    assert accept.subprotocol is None
    conn = peer.conn
    assert conn.open and not conn.closed and not conn.closing and not conn.should_drop
    assert conn.path == "/socket/websocket"
    assert conn.params == {"token": "abc", "empty": "", "vsn": "2.0.0"}
    assert conn.vsn == "2.0.0"
    assert conn.host == "example.com"
    assert ("x-custom", "yes") in conn.request_headers
    assert conn.auth_token is None and conn.rejected_status is None
    assert server.connections == [conn] and server.all_connections == [conn]
    assert "open" in repr(conn)


def test_connection_is_live_before_the_handshake(server: PhoenixServer) -> None:
    peer = Peer(server, handshake=False)
    assert not peer.conn.open and not peer.conn.closed
    assert server.connections == [peer.conn]
    assert "connecting" in repr(peer.conn)
    # Actions before the handshake do nothing.
    peer.conn.push("room:1", "e", {})
    peer.conn.send_raw("x")
    assert peer.conn.data_to_send() == b""


def test_missing_vsn_means_v1(server: PhoenixServer) -> None:
    peer = Peer(server, "/socket/websocket")
    assert peer.conn.open and peer.conn.vsn == "1.0.0"
    peer.send_obj({"topic": "room:1", "event": "phx_join", "payload": {}, "ref": "1"})
    # V1 server frames are objects without join_ref.
    assert peer.frames() == [{"topic": "room:1", "event": "phx_reply", "payload": ok(), "ref": "1"}]
    assert peer.conn.joined == {"room:1": None}


@pytest.mark.parametrize(
    ("vsn", "v1"),
    [
        ("2.0.0", False),
        ("2.0.3", False),
        ("2.0.0%2Bbuild.1", False),
        ("2.0.1-rc.1", False),
        ("1.0.0", True),
        ("1.0.9", True),
    ],
)
def test_accepted_versions(server: PhoenixServer, vsn: str, v1: bool) -> None:
    peer = Peer(server, f"/socket/websocket?vsn={vsn}")
    assert peer.conn.open
    if v1:
        peer.send_obj({"topic": "room:1", "event": "phx_join", "payload": {}, "ref": "1"})
        peer.frames()
        peer.send_obj({"topic": "room:1", "event": "ping", "payload": {"x": 1}, "ref": "2"})
    else:
        peer.join("room:1", "1")
        peer.send("1", "2", "room:1", "ping", {"x": 1})
    expected: Frame = (
        {"topic": "room:1", "event": "phx_reply", "payload": ok({"x": 1}), "ref": "2"}
        if v1
        else ["1", "2", "room:1", "phx_reply", ok({"x": 1})]
    )
    assert peer.frames() == [expected]


@pytest.mark.parametrize(
    "vsn", ["123.1.1", "2.1.0", "3.0.0", "0.0.1", "2.0.0-rc.1", "02.0.0", "2.0", "abc", ""]
)
def test_unknown_vsn_is_refused_with_403(server: PhoenixServer, vsn: str) -> None:
    peer = Peer(server, f"/socket/websocket?vsn={vsn}")
    events = peer.handshake
    assert isinstance(events[0], RejectConnection)
    assert events[0].status_code == 403
    body = b"".join(e.data for e in events if isinstance(e, RejectData))
    assert body == b"Forbidden"
    assert isinstance(events[-1], RejectData) and events[-1].body_finished
    assert peer.conn.closed and not peer.conn.open and not peer.conn.should_drop
    assert peer.conn.rejected_status == 403
    assert server.connections == [] and server.all_connections == [peer.conn]
    assert peer.conn.errors == [f"unsupported vsn {vsn!r}"]
    # Anything more from the client is ignored.
    peer.conn.receive_data(b"more", 1.0)
    assert peer.conn.data_to_send() == b""


def test_auth_token_subprotocol_is_decoded_and_phoenix_negotiated(server: PhoenixServer) -> None:
    seen: list[tuple[dict[str, str], str | None]] = []

    def auth(params: Mapping[str, str], token: str | None) -> bool:
        seen.append((dict(params), token))
        return token == "1234"

    server.auth = auth
    peer = Peer(server, subprotocols=["phoenix", "base64url.bearer.phx.MTIzNA"])
    [accept] = peer.handshake
    assert isinstance(accept, AcceptConnection) and accept.subprotocol == "phoenix"
    assert peer.conn.auth_token == "1234" and peer.conn.subprotocol == "phoenix"
    assert seen == [({"vsn": "2.0.0"}, "1234")]


def test_auth_token_uses_standard_base64_without_padding(server: PhoenixServer) -> None:
    token = "a>b?c~é"  # standard base64 of this has '+' or '/' and needs padding
    encoded = base64.b64encode(token.encode()).decode().rstrip("=")
    assert "=" not in encoded
    peer = Peer(server, subprotocols=[f"base64url.bearer.phx.{encoded}"])
    assert peer.conn.open and peer.conn.auth_token == token
    assert peer.conn.subprotocol is None  # "phoenix" was not offered


def test_auth_refusal_is_403(server: PhoenixServer) -> None:
    server.auth = lambda params, token: params.get("token") == "good"
    refused = Peer(server, "/socket/websocket?vsn=2.0.0&token=bad")
    [reject, *_] = refused.handshake
    assert isinstance(reject, RejectConnection) and reject.status_code == 403
    assert refused.conn.errors == ["refused by auth"]
    accepted = Peer(server, "/socket/websocket?vsn=2.0.0&token=good")
    assert accepted.conn.open


@pytest.mark.parametrize(
    "subprotocols",
    [
        ["base64url.bearer.phx.!!!"],
        ["base64url.bearer.phx." + base64.b64encode(b"\xff\xfe").decode().rstrip("=")],
        ["base64url.bearer.phx.MTIzNA", "base64url.bearer.phx.NTY3OA"],
    ],
)
def test_bad_auth_token_subprotocol_is_403(server: PhoenixServer, subprotocols: list[str]) -> None:
    peer = Peer(server, subprotocols=subprotocols)
    [reject, *_] = peer.handshake
    assert isinstance(reject, RejectConnection) and reject.status_code == 403
    assert peer.conn.auth_token is None and peer.conn.errors


@pytest.mark.parametrize(("status", "body"), [(429, b"Too Many Requests"), (599, b"Refused")])
def test_refuse_handshake_switch(server: PhoenixServer, status: int, body: bytes) -> None:
    server.refuse_handshake = status
    peer = Peer(server)
    events = peer.handshake
    assert isinstance(events[0], RejectConnection) and events[0].status_code == status
    assert b"".join(e.data for e in events if isinstance(e, RejectData)) == body
    server.refuse_handshake = None
    assert Peer(server).conn.open


def test_path_restriction_gives_404() -> None:
    server = PhoenixServer(path="/socket/websocket")
    assert Peer(server).conn.open
    peer = Peer(server, "/other/websocket?vsn=2.0.0")
    [reject, *_] = peer.handshake
    assert isinstance(reject, RejectConnection) and reject.status_code == 404


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"garbage\r\n\r\n",
        b"POST /socket/websocket HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET /socket/websocket HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_bad_http_request_is_refused_and_closes(
    server: PhoenixServer, request_bytes: bytes
) -> None:
    conn = server.connect()
    conn.receive_data(request_bytes)
    assert conn.closed and conn.errors[0].startswith("bad handshake")
    reply = conn.data_to_send()
    assert reply.startswith(b"HTTP/1.1 4")
    assert server.connections == []


def test_bad_http_request_split_across_reads(server: PhoenixServer) -> None:
    conn = server.connect()
    conn.receive_data(b"garbage\r\n")
    assert conn.errors == []
    conn.receive_data(b"\r\n")
    assert conn.closed and conn.data_to_send().startswith(b"HTTP/1.1 400")


# ---------------------------------------------------------------------------------------------
# Section 2.2, row by row (V2)


def test_heartbeat_reply(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")  # whatever channels exist
    peer.send(None, "1", "phoenix", "heartbeat", {})
    assert peer.frames() == [[None, "1", "phoenix", "phx_reply", ok()]]
    assert peer.conn.received[-1] == ChannelMessage("phoenix", "heartbeat", {}, "1", None)


def test_heartbeat_replies_switch(server: PhoenixServer) -> None:
    peer = Peer(server)
    server.heartbeat_replies = False
    peer.send(None, "1", "phoenix", "heartbeat", {})
    assert peer.frames() == []
    # A held heartbeat can be answered by hand; its reply has a null join_ref.
    peer.conn.reply(peer.conn.received[-1], "ok", {})
    assert peer.frames() == [[None, "1", "phoenix", "phx_reply", ok()]]
    server.heartbeat_replies = True
    peer.send(None, "2", "phoenix", "heartbeat", {})
    assert peer.frames() == [[None, "2", "phoenix", "phx_reply", ok()]]


def test_join_accepted_with_default_reply(server: PhoenixServer) -> None:
    peer = Peer(server)
    assert peer.join("room:1", "3", {"since": 0}) == [["3", "3", "room:1", "phx_reply", ok()]]
    assert peer.conn.joined == {"room:1": "3"}
    assert server.join_counts == {"room:1": 1}
    assert server.joined("room:1") == [peer.conn]
    assert peer.conn.received == [ChannelMessage("room:1", "phx_join", {"since": 0}, "3", "3")]


def test_join_handler_gets_topic_payload_and_connection() -> None:
    calls: list[tuple[str, Any, ServerConnection]] = []

    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
        calls.append((topic, payload, conn))
        if payload.get("password") != "secret":
            return "error", {"reason": "unauthorized"}
        return "ok", {"welcome": topic}

    server = PhoenixServer()
    server.route("private:*", on_join=on_join)
    peer = Peer(server)
    assert peer.join("private:1", "1", {"password": "nope"}) == [
        ["1", "1", "private:1", "phx_reply", err({"reason": "unauthorized"})]
    ]
    assert peer.conn.joined == {}  # a refused join leaves no channel, and no phx_close
    assert peer.join("private:1", "2", {"password": "secret"}) == [
        ["2", "2", "private:1", "phx_reply", ok({"welcome": "private:1"})]
    ]
    assert [c[:2] for c in calls] == [
        ("private:1", {"password": "nope"}),
        ("private:1", {"password": "secret"}),
    ]
    assert calls[0][2] is peer.conn
    assert server.join_counts == {"private:1": 1}


def test_join_of_unmatched_topic_has_null_join_ref(server: PhoenixServer) -> None:
    peer = Peer(server)
    assert peer.join("nowhere", "1") == [[None, "1", "nowhere", "phx_reply", UNMATCHED]]
    assert peer.conn.joined == {}


def test_the_most_specific_route_wins_whatever_the_order() -> None:
    def answer(which: str) -> JoinHandler:
        return lambda topic, payload, conn: ("ok", {"which": which})

    server = PhoenixServer()
    server.route("*", on_join=answer("all"))
    server.route("room:lobby", on_join=answer("exact"))
    server.route("room:*", on_join=answer("room"))
    server.route("room:vip:*", on_join=answer("vip"))
    server.route("r*", on_join=answer("r"))
    peer = Peer(server)
    assert peer.join("room:lobby", "1")[0][4] == ok({"which": "exact"})
    assert peer.join("room:42", "2")[0][4] == ok({"which": "room"})
    assert peer.join("room:vip:1", "3")[0][4] == ok({"which": "vip"})
    assert peer.join("room", "4")[0][4] == ok({"which": "r"})
    assert peer.join("other", "5")[0][4] == ok({"which": "all"})
    assert peer.join("room:lobby:x", "6")[0][4] == ok({"which": "room"})
    # The same pattern again replaces its route.
    server.route("room:*", on_join=answer("room again"))
    server.route("room:lobby", on_join=answer("exact again"))
    assert peer.join("room:42", "7")[0][4] == ok({"which": "room again"})
    assert peer.join("room:lobby", "8")[0][4] == ok({"which": "exact again"})


def test_no_route_is_unmatched() -> None:
    server = PhoenixServer()
    server.route("room:lobby")
    server.route("room:vip:*")
    peer = Peer(server)
    assert peer.join("room:42", "1")[0][4] == UNMATCHED


def test_join_handler_returning_none_sends_nothing_until_a_manual_reply() -> None:
    server = PhoenixServer()
    server.route("slow:*", on_join=lambda t, p, c: None)
    peer = Peer(server)
    assert peer.join("slow:1", "1") == []
    assert peer.conn.joined == {}
    join = peer.conn.received[-1]
    peer.conn.reply(join, "ok", {"late": True})
    assert peer.frames() == [["1", "1", "slow:1", "phx_reply", ok({"late": True})]]
    assert peer.conn.joined == {"slow:1": "1"}
    assert server.join_counts == {"slow:1": 1}
    # An error answer to a held join joins nothing.
    peer.join("slow:2", "2")
    peer.conn.reply(peer.conn.received[-1], "error", {"reason": "no"})
    assert peer.frames() == [["2", "2", "slow:2", "phx_reply", err({"reason": "no"})]]
    assert "slow:2" not in peer.conn.joined


def test_join_handler_crash_is_join_crashed() -> None:
    boom = RuntimeError("boom")

    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
        conn.push(topic, "never_sent", {})
        raise boom

    server = PhoenixServer()
    server.route("room:*", on_join=on_join)
    peer = Peer(server)
    assert peer.join("room:1", "1") == [
        ["1", "1", "room:1", "phx_reply", err({"reason": "join crashed"})]
    ]
    assert server.handler_errors == [boom]
    assert peer.conn.joined == {}


def test_refuse_joins_switch(server: PhoenixServer) -> None:
    peer = Peer(server)
    server.refuse_joins["room:1"] = {"reason": "banned"}
    assert peer.join("room:1", "1") == [
        ["1", "1", "room:1", "phx_reply", err({"reason": "banned"})]
    ]
    assert peer.join("room:2", "2") == [["2", "2", "room:2", "phx_reply", ok()]]
    del server.refuse_joins["room:1"]
    assert peer.join("room:1", "3") == [["3", "3", "room:1", "phx_reply", ok()]]


def test_the_channel_past_max_channels_is_refused() -> None:
    server = PhoenixServer(max_channels=2)
    server.route("room:*")
    peer = Peer(server)
    peer.join("room:1", "1")
    peer.join("room:2", "2")
    assert peer.join("room:3", "3") == [
        ["3", "3", "room:3", "phx_reply", err({"reason": "too many channels joined"})]
    ]
    assert set(peer.conn.joined) == {"room:1", "room:2"}
    # Rejoining a joined topic does not count twice.
    assert peer.join("room:2", "4")[0] == ["4", "4", "room:2", "phx_reply", ok()]


def test_101st_channel_is_refused_by_default(server: PhoenixServer) -> None:
    peer = Peer(server)
    for i in range(1, 101):
        peer.send(str(i), str(i), f"room:{i}", "phx_join", {})
    assert all(f[4] == ok() for f in peer.frames())
    assert peer.join("room:101", "101")[0][4] == err({"reason": "too many channels joined"})


def test_duplicate_join_replies_then_closes_the_old_channel() -> None:
    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
        conn.push(topic, "after_join", {"n": payload["n"]})
        return "ok", {}

    server = PhoenixServer()
    server.route("room:*", on_join=on_join)
    peer = Peer(server)
    peer.join("room:1", "3", {"n": 1})
    assert peer.join("room:1", "5", {"n": 2}) == [
        ["5", "5", "room:1", "phx_reply", ok()],
        ["3", "3", "room:1", "phx_close", {}],
        ["5", None, "room:1", "after_join", {"n": 2}],
    ]
    assert peer.conn.joined == {"room:1": "5"}
    assert server.join_counts == {"room:1": 2}


def test_duplicate_join_refused_still_closes_the_old_channel(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    server.refuse_joins["room:1"] = {"reason": "no"}
    assert peer.join("room:1", "5") == [
        ["5", "5", "room:1", "phx_reply", err({"reason": "no"})],
        ["3", "3", "room:1", "phx_close", {}],
    ]
    assert peer.conn.joined == {}


def test_pushes_from_on_join_follow_the_join_reply() -> None:
    state = {"u1": {"metas": [{"phx_ref": "a"}]}}

    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
        conn.presence_state(topic, state)
        conn.push("other:1", "elsewhere", {})  # not joined: null join_ref
        conn.broadcast(topic, "fast", {})
        return "ok", {"hello": 1}

    server = PhoenixServer()
    server.route("room:*", on_join=on_join)
    peer = Peer(server)
    assert peer.join("room:1", "7") == [
        ["7", "7", "room:1", "phx_reply", ok({"hello": 1})],
        ["7", None, "room:1", "presence_state", state],
        [None, None, "other:1", "elsewhere", {}],
        [None, None, "room:1", "fast", {}],
    ]


def test_pushes_from_a_refused_on_join_are_not_sent() -> None:
    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
        conn.push(topic, "after_join", {})
        return "error", {"reason": "no"}

    server = PhoenixServer()
    server.route("room:*", on_join=on_join)
    peer = Peer(server)
    assert peer.join("room:1", "1") == [["1", "1", "room:1", "phx_reply", err({"reason": "no"})]]


@pytest.mark.parametrize("leave_join_ref", ["3", None])
def test_leave_replies_ok_then_closes(server: PhoenixServer, leave_join_ref: str | None) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.send(leave_join_ref, "4", "room:1", "phx_leave", {})
    assert peer.frames() == [
        ["3", "4", "room:1", "phx_reply", ok()],
        ["3", "3", "room:1", "phx_close", {}],
    ]
    assert peer.conn.joined == {}
    # After the leave the topic is unknown again.
    peer.send("3", "5", "room:1", "msg", {})
    assert peer.frames() == [[None, "5", "room:1", "phx_reply", UNMATCHED]]


def test_leave_of_unknown_topic_is_ok(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.send("9", "10", "room:9", "phx_leave", {})
    assert peer.frames() == [["9", "10", "room:9", "phx_reply", ok()]]


def test_leave_with_stale_join_ref_is_ignored(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.send("2", "4", "room:1", "phx_leave", {})
    assert peer.frames() == []
    assert peer.conn.joined == {"room:1": "3"}


def test_push_on_unjoined_topic_is_unmatched(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.send("1", "2", "room:1", "new_msg", {"body": "hi"})
    assert peer.frames() == [[None, "2", "room:1", "phx_reply", UNMATCHED]]


def test_push_with_stale_join_ref_is_dropped(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.send("1", "4", "room:1", "new_msg", {"body": "hi"})
    assert peer.frames() == []
    assert peer.conn.received[-1].ref == "4"  # received, but not answered


@pytest.mark.parametrize("join_ref", ["3", None])
def test_push_with_current_or_null_join_ref_is_echoed(
    server: PhoenixServer, join_ref: str | None
) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.send(join_ref, "4", "room:1", "new_msg", {"body": "hi"})
    assert peer.frames() == [["3", "4", "room:1", "phx_reply", ok({"body": "hi"})]]


def test_push_handler_reply_no_reply_and_crash() -> None:
    boom = ValueError("boom")

    def on_push(msg: ChannelMessage, conn: ServerConnection) -> tuple[str, Any] | None:
        if msg.event == "quiet":
            return None
        if msg.event == "crash":
            raise boom
        return "error", {"got": msg.payload}

    server = PhoenixServer()
    server.route("room:*", on_push=on_push)
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.send("3", "4", "room:1", "hello", 1)
    assert peer.frames() == [["3", "4", "room:1", "phx_reply", err({"got": 1})]]
    peer.send("3", "5", "room:1", "quiet", {})
    assert peer.frames() == []
    peer.send("3", "6", "room:1", "crash", {})
    assert peer.frames() == [["3", "3", "room:1", "phx_error", {"reason": "channel_crash"}]]
    assert peer.conn.joined == {}
    assert server.handler_errors == [boom]


def test_push_handler_crash_after_closing_its_channel_sends_no_error() -> None:
    def on_push(msg: ChannelMessage, conn: ServerConnection) -> tuple[str, Any]:
        conn.send_close(msg.topic)
        raise RuntimeError("after close")

    server = PhoenixServer()
    server.route("room:*", on_push=on_push)
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.send("3", "4", "room:1", "x", {})
    assert peer.frames() == [["3", "3", "room:1", "phx_close", {}]]


def test_unencodable_handler_reply_is_a_crash() -> None:
    server = PhoenixServer()
    server.route("room:*", on_push=lambda m, c: ("ok", {"bad": object()}))
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.send("3", "4", "room:1", "x", {})
    assert peer.frames() == [["3", "3", "room:1", "phx_error", {"reason": "channel_crash"}]]
    [error] = server.handler_errors
    assert isinstance(error, UsageError)


def test_a_topic_joined_by_hand_without_a_route_echoes() -> None:
    peer = Peer(PhoenixServer())
    assert peer.join("nowhere", "3") == [[None, "3", "nowhere", "phx_reply", UNMATCHED]]
    peer.conn.reply(peer.conn.received[-1], "ok", {})
    assert peer.frames() == [["3", "3", "nowhere", "phx_reply", ok()]]
    peer.send("3", "4", "nowhere", "x", {"a": 1})
    assert peer.frames() == [["3", "4", "nowhere", "phx_reply", ok({"a": 1})]]


# ---------------------------------------------------------------------------------------------
# Actions a test script takes


def test_server_push_uses_the_current_join_ref(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.conn.push("room:1", "new_msg", {"a": 1})
    peer.conn.push("room:1", "stale", {}, join_ref="1")
    peer.conn.push("room:1", "nulled", {}, join_ref=None)
    peer.conn.push("room:2", "unjoined", {})
    assert peer.frames() == [
        ["3", None, "room:1", "new_msg", {"a": 1}],
        ["1", None, "room:1", "stale", {}],
        [None, None, "room:1", "nulled", {}],
        [None, None, "room:2", "unjoined", {}],
    ]


def test_broadcast_reaches_only_joined_open_connections(server: PhoenixServer) -> None:
    a, b_, c = Peer(server), Peer(server), Peer(server)
    a.join("room:1", "1")
    b_.join("room:2", "1")
    c.join("room:1", "9")
    c.conn.drop()
    server.broadcast("room:1", "user_entered", {"u": 1})
    assert a.frames() == [[None, None, "room:1", "user_entered", {"u": 1}]]
    assert b_.frames() == []
    assert c.conn.data_to_send() == b""
    server.push("room:1", "pushed", {})
    assert a.frames() == [["1", None, "room:1", "pushed", {}]]


def test_presence_helpers(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    state = {"u1": {"metas": [{"phx_ref": "a"}]}}
    server.presence_state("room:1", state)
    server.presence_diff("room:1", joins={"u2": {"metas": [{"phx_ref": "b"}]}})
    server.presence_diff("room:1", leaves=state)
    assert peer.frames() == [
        ["3", None, "room:1", "presence_state", state],
        [
            None,
            None,
            "room:1",
            "presence_diff",
            {"joins": {"u2": {"metas": [{"phx_ref": "b"}]}}, "leaves": {}},
        ],
        [None, None, "room:1", "presence_diff", {"joins": {}, "leaves": state}],
    ]


def test_send_error_and_send_close(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.join("room:2", "4")
    peer.conn.send_error("room:1")
    peer.conn.send_close("room:2")
    assert peer.frames() == [
        ["3", "3", "room:1", "phx_error", {"reason": "channel_crash"}],
        ["4", "4", "room:2", "phx_close", {}],
    ]
    assert peer.conn.joined == {}
    with pytest.raises(UsageError, match="not joined"):
        peer.conn.send_error("room:1")
    # An explicit join_ref sends anyway, and does not touch a channel with another join_ref.
    peer.join("room:1", "5")
    peer.conn.send_close("room:1", join_ref="3")
    assert peer.frames() == [["3", "3", "room:1", "phx_close", {}]]
    assert peer.conn.joined == {"room:1": "5"}
    peer.conn.send_close("room:1", join_ref="5")
    assert peer.conn.joined == {}


def test_manual_reply_to_a_push_uses_the_current_join_ref(server: PhoenixServer) -> None:
    server.route("held:*", on_push=lambda m, c: None)
    peer = Peer(server)
    peer.join("held:1", "3")
    peer.send(None, "4", "held:1", "x", {})
    msg = peer.conn.received[-1]
    assert peer.frames() == []
    peer.conn.reply(msg, "ok", {"done": True})
    assert peer.frames() == [["3", "4", "held:1", "phx_reply", ok({"done": True})]]
    # For a topic no longer joined, the message's own join_ref is used.
    peer.conn.reply(ChannelMessage("gone", "x", {}, "8", "7"), "ok", {})
    assert peer.frames() == [["7", "8", "gone", "phx_reply", ok()]]


def test_send_raw_text_and_binary(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.conn.send_raw("not json")
    peer.conn.send_raw(b"\x07garbage")
    peer.pump()
    text, binary = peer.events
    assert isinstance(text, TextMessage) and text.data == "not json"
    assert isinstance(binary, BytesMessage) and binary.data == b"\x07garbage"


def test_unencodable_action_payload_raises_usage_error(server: PhoenixServer) -> None:
    peer = Peer(server)
    with pytest.raises(UsageError, match="cannot encode"):
        peer.conn.push("room:1", "x", {"bad": {1, 2}})


def test_on_output_is_called_when_bytes_are_queued(server: PhoenixServer) -> None:
    peer = Peer(server)
    calls: list[int] = []
    peer.conn.on_output = lambda: calls.append(1)
    peer.conn.push("room:1", "x", {})
    assert calls
    calls.clear()
    peer.conn.drop()
    assert calls


# ---------------------------------------------------------------------------------------------
# Binary frames (V2)


def test_binary_client_push_is_answered_with_a_binary_reply() -> None:
    server = PhoenixServer()
    server.route("topic")
    peer = Peer(server)
    peer.join("topic", "12")
    # v2_json_serializer_test.exs: @client_push, and @reply for its echo.
    peer.send_bytes(b(0, 2, 3, 5, 5, "12", "123", "topic", "event", 101, 102, 103))
    assert peer.conn.received[-1] == ChannelMessage("topic", "event", b"efg", "123", "12")
    assert peer.frames() == [b(1, 2, 3, 5, 2, "12", "123", "topic", "ok", 101, 102, 103)]


def test_binary_server_push_and_broadcast() -> None:
    server = PhoenixServer()
    server.route("topic")
    peer = Peer(server)
    peer.join("topic", "12")
    peer.conn.push("topic", "event", b"efg")
    server.broadcast("topic", "event", bytearray(b"efg"))
    peer.conn.push("topic", "event", memoryview(b"efg"), join_ref=None)
    assert peer.frames() == [
        b(0, 2, 5, 5, "12", "topic", "event", 101, 102, 103),
        b(2, 5, 5, "topic", "event", 101, 102, 103),
        b(0, 0, 5, 5, "topic", "event", 101, 102, 103),
    ]


def test_binary_reply_from_handler_and_manual_reply() -> None:
    server = PhoenixServer()
    server.route("t", on_push=lambda m, c: ("ok", b"\x01\x02\x03\x04"))
    peer = Peer(server)
    peer.join("t", "3")
    peer.send_bytes(b(0, 1, 1, 1, 12, "3", "4", "t", "binary_event", 1, 2))
    assert peer.frames() == [b(1, 1, 1, 1, 2, "3", "4", "t", "ok", 1, 2, 3, 4)]
    peer.conn.reply(ChannelMessage("t", "x", {}, None, None), "error", b"\x09")
    assert peer.frames() == [b(1, 1, 0, 1, 5, "3", "t", "error", 9)]


def test_v1_has_no_binary_frames(server: PhoenixServer) -> None:
    peer = Peer(server, "/socket/websocket?vsn=1.0.0")
    peer.send_obj({"topic": "room:1", "event": "phx_join", "payload": {}, "ref": "1"})
    peer.frames()
    actions: list[Callable[[], None]] = [
        lambda: peer.conn.push("room:1", "e", b"x"),
        lambda: peer.conn.broadcast("room:1", "e", b"x"),
        lambda: peer.conn.reply(peer.conn.received[0], "ok", b"x"),
    ]
    for action in actions:
        with pytest.raises(UsageError, match="no binary"):
            action()
    peer.send_bytes(b(0, 0, 1, 6, 1, "1", "room:1", "e", 1))
    assert peer.conn.closed and peer.conn.errors == ["vsn 1.0.0 has no binary frames"]
    [close] = peer.other_events()
    assert isinstance(close, CloseConnection) and close.code == 1011


def test_v1_frames_without_join_ref(server: PhoenixServer) -> None:
    peer = Peer(server, "/socket/websocket?vsn=1.0.0")
    peer.send_obj(
        {"topic": "room:1", "event": "phx_join", "payload": {}, "ref": "1", "join_ref": "1"}
    )
    peer.send_obj({"topic": "room:1", "event": "msg", "payload": {"a": 1}, "ref": "2"})
    peer.conn.push("room:1", "pushed", {})
    assert peer.frames() == [
        {"topic": "room:1", "event": "phx_reply", "payload": ok(), "ref": "1"},
        {"topic": "room:1", "event": "phx_reply", "payload": ok({"a": 1}), "ref": "2"},
        {"topic": "room:1", "event": "pushed", "payload": {}, "ref": None},
    ]


# ---------------------------------------------------------------------------------------------
# Malformed client frames


@pytest.mark.parametrize(
    ("vsn", "data", "error"),
    [
        ("2.0.0", "{not json", "not valid JSON"),
        ("2.0.0", '["1","1","t","e"]', "array of 5"),
        ("2.0.0", '{"topic":"t"}', "array of 5"),
        ("2.0.0", '["1","1",5,"e",{}]', "topic and event"),
        ("2.0.0", '["1","1","t",null,{}]', "topic and event"),
        ("2.0.0", '[1,"1","t","e",{}]', "join_ref and ref"),
        ("2.0.0", '["1",2,"t","e",{}]', "join_ref and ref"),
        ("2.0.0", "[" * 100_000, "not valid JSON"),
        ("1.0.0", '["1","1","t","e",{}]', "JSON object"),
        ("1.0.0", '{"topic":"t","event":"e","payload":{}}', "'ref'"),
    ],
)
def test_malformed_text_frame_closes_with_1011(
    server: PhoenixServer, vsn: str, data: str, error: str
) -> None:
    peer = Peer(server, f"/socket/websocket?vsn={vsn}")
    peer.send_event(TextMessage(data=data))
    [close] = peer.other_events()
    assert isinstance(close, CloseConnection) and close.code == 1011
    assert error in peer.conn.errors[0]
    assert peer.conn.closed and not peer.conn.open and not peer.conn.should_drop
    assert server.connections == []
    # The server is gone: the client's answer is ignored.
    peer.feed(client_frame_bytes(close.response()))
    assert peer.conn.close_code is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00\x00\x00\x00",
        b"\x00\x01\x01\x01",
        b"\x00\x05\x01\x01\x01ab",
        b"\x00\x00\x00\x01\x01\xff\x00",
    ],
)
def test_malformed_binary_frame_closes_with_1011(server: PhoenixServer, data: bytes) -> None:
    peer = Peer(server)
    peer.send_bytes(data)
    [close] = peer.other_events()
    assert isinstance(close, CloseConnection) and close.code == 1011
    assert peer.conn.errors


def test_fragmented_messages_are_reassembled(server: PhoenixServer) -> None:
    peer = Peer(server)
    text = json.dumps(["3", "3", "room:1", "phx_join", {"k": "v"}])
    peer.send_event(TextMessage(data=text[:10], message_finished=False))
    peer.send_event(TextMessage(data=text[10:20], message_finished=False))
    assert peer.conn.received == []
    peer.send_event(TextMessage(data=text[20:], message_finished=True))
    assert peer.frames() == [["3", "3", "room:1", "phx_reply", ok()]]
    frame = b(0, 1, 1, 6, 1, "3", "4", "room:1", "e", 1, 2, 3)
    peer.send_event(BytesMessage(data=frame[:7], message_finished=False))
    peer.send_event(BytesMessage(data=frame[7:], message_finished=True))
    assert peer.frames() == [b(1, 1, 1, 6, 2, "3", "4", "room:1", "ok", 1, 2, 3)]


def test_broken_websocket_stream_closes_with_protocol_error(server: PhoenixServer) -> None:
    peer = Peer(server)
    # An unmasked frame from a client is a protocol error.
    peer.feed(b"\x81\x02hi")
    [close] = peer.other_events()
    assert isinstance(close, CloseConnection) and close.code == 1002
    assert peer.conn.closed and peer.conn.errors[0].startswith("broken WebSocket stream")
    assert server.connections == []


def test_broken_stream_while_closing_just_ends(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.conn.close(1000)
    peer.pump()
    peer.conn.receive_data(b"\x81\x02hi")
    assert peer.conn.closed and peer.conn.data_to_send() == b""


# ---------------------------------------------------------------------------------------------
# WebSocket control and close


def test_ping_is_answered(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.send_event(Ping(payload=b"p"))
    [pong] = peer.other_events()
    assert isinstance(pong, Pong) and pong.payload == b"p"
    peer.send_event(Pong(payload=b"unsolicited"))
    assert peer.other_events() == []


def test_client_close_is_answered(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.send_event(CloseConnection(code=1000, reason="bye"))
    [close] = peer.other_events()
    assert isinstance(close, CloseConnection) and close.code == 1000
    assert peer.conn.closed and not peer.conn.should_drop
    assert (peer.conn.close_code, peer.conn.close_reason) == (1000, "bye")
    assert server.connections == [] and server.joined("room:1") == []
    assert "closed" in repr(peer.conn)


def test_server_close_waits_for_the_clients_answer(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    server.close_all(1001, "disconnect")
    assert peer.conn.closing and "connecting/closing" in repr(peer.conn)
    [close] = peer.other_events()
    assert isinstance(close, CloseConnection) and (close.code, close.reason) == (1001, "disconnect")
    # While closing the server handles nothing: no reply, no pong.
    peer.feed(client_frame_bytes(TextMessage(data='["3","4","room:1","x",{}]')))
    peer.feed(client_frame_bytes(Ping(payload=b"")))
    assert peer.other_events() == [] and peer.frames() == []
    peer.conn.push("room:1", "x", {})
    peer.conn.close()  # a second close does nothing
    assert peer.conn.data_to_send() == b""
    peer.send_event(close.response())
    assert peer.conn.closed and peer.conn.close_code == 1001
    assert server.connections == []
    peer.conn.close()
    assert not peer.conn.should_drop


def test_actions_on_a_closed_connection_do_nothing(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    join = peer.conn.received[-1]
    peer.conn.receive_eof()
    peer.conn.push("room:1", "x", {})
    peer.conn.broadcast("room:1", "x", {})
    peer.conn.reply(join, "ok", {})
    peer.conn.send_error("room:1")
    peer.conn.send_close("room:2")
    peer.conn.send_raw("x")
    server.broadcast("room:1", "x", {})
    assert peer.conn.data_to_send() == b""
    assert peer.conn.joined == {"room:1": "3"}  # kept for inspection


def test_reply_after_a_handler_closed_the_connection_is_not_sent() -> None:
    def on_push(msg: ChannelMessage, conn: ServerConnection) -> tuple[str, Any]:
        conn.close(4000, "handler closed")
        return "ok", {}

    server = PhoenixServer()
    server.route("room:*", on_push=on_push)
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.send("3", "4", "room:1", "x", {})
    [close] = peer.other_events()
    assert isinstance(close, CloseConnection) and close.code == 4000
    assert peer.frames() == []


def test_close_before_the_handshake_drops(server: PhoenixServer) -> None:
    peer = Peer(server, handshake=False)
    peer.conn.close()
    assert peer.conn.should_drop and peer.conn.closed


def test_drop_discards_output_and_is_idempotent(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    peer.conn.push("room:1", "lost", {})
    server.drop_all()
    assert peer.conn.should_drop and peer.conn.closed and not peer.conn.open
    assert peer.conn.data_to_send() == b""
    assert server.connections == []
    peer.conn.drop()
    peer.conn.push("room:1", "x", {})
    assert peer.conn.data_to_send() == b""


def test_eof_closes(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.conn.receive_eof(1.0)
    assert peer.conn.closed and not peer.conn.should_drop
    assert server.connections == []
    peer.conn.receive_eof(2.0)
    assert peer.conn.closed


# ---------------------------------------------------------------------------------------------
# Delayed replies


def test_reply_delay_holds_push_replies_until_their_time(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.now = 10.0
    peer.join("room:1", "3")  # joins are not delayed
    server.reply_delay = 0.5
    peer.send("3", "4", "room:1", "a", {})
    peer.now = 10.1
    peer.send("3", "5", "room:1", "b", {})
    peer.send(None, "6", "phoenix", "heartbeat", {})  # nor are heartbeats
    assert peer.frames() == [[None, "6", "phoenix", "phx_reply", ok()]]
    assert peer.conn.next_deadline() == 10.5
    peer.conn.handle_timer(10.49)
    assert peer.frames() == []
    peer.conn.handle_timer(10.5)
    assert peer.frames() == [["3", "4", "room:1", "phx_reply", ok()]]
    assert peer.conn.next_deadline() == pytest.approx(10.6)
    # Any call with a later `now` releases what is due.
    peer.now = 11.0
    peer.send(None, "7", "phoenix", "heartbeat", {})
    assert peer.frames() == [
        [None, "7", "phoenix", "phx_reply", ok()],
        ["3", "5", "room:1", "phx_reply", ok()],
    ]
    assert peer.conn.next_deadline() is None


def test_held_replies_of_a_gone_channel_are_dropped(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    server.reply_delay = 1.0
    peer.send("3", "4", "room:1", "a", {})
    server.reply_delay = 0.0
    peer.send("3", "5", "room:1", "phx_leave", {})
    assert [f[3] for f in peer.frames()] == ["phx_reply", "phx_close"]
    peer.conn.handle_timer(5.0)
    assert peer.frames() == []


def test_held_replies_are_forgotten_on_close_and_eof(server: PhoenixServer) -> None:
    peer = Peer(server)
    peer.join("room:1", "3")
    server.reply_delay = 1.0
    peer.send("3", "4", "room:1", "a", {})
    peer.conn.close()
    assert peer.conn.next_deadline() is None
    other = Peer(server)
    other.join("room:1", "3")
    other.send("3", "4", "room:1", "a", {})
    other.conn.receive_eof()
    assert other.conn.next_deadline() is None


# ---------------------------------------------------------------------------------------------
# Codec


def test_custom_codec_is_used() -> None:
    class Recording(StdlibJsonCodec):
        def __init__(self) -> None:
            super().__init__()
            self.dumped: list[Any] = []
            self.loaded: list[Any] = []

        def dumps(self, obj: Any) -> str:
            self.dumped.append(obj)
            return super().dumps(obj)

        def loads(self, data: str | bytes) -> Any:
            self.loaded.append(data)
            return super().loads(data)

    codec = Recording()
    server = PhoenixServer(codec=codec)
    server.route("room:*")
    assert server.codec is codec
    peer = Peer(server)
    peer.join("room:1", "1")
    assert codec.loaded == ['["1", "1", "room:1", "phx_join", {}]']
    assert codec.dumped == [["1", "1", "room:1", "phx_reply", ok()]]


# --------------------------------------------------------------------------------------------
# The virtual clock


def test_virtual_clock() -> None:
    clock = VirtualClock()
    assert clock() == 0.0
    assert clock.advance(1.5) == 1.5
    assert clock.advance(0) == 1.5
    assert clock.now == 1.5
    assert repr(clock) == "VirtualClock(now=1.5)"
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-0.1)
    assert clock() == 1.5
    assert VirtualClock(100.0)() == 100.0


# --------------------------------------------------------------------------------------------
# The Link


def test_link_harness_helpers() -> None:
    link = Link(Client("ws://test/socket", rng=Random(0)))  # a default server and clock
    assert link.now == 0.0
    link.drop()  # nothing to drop
    assert link.events == []
    link.server.route("*")
    link.connect()
    link.join("a")
    assert [type(e) for e in link.take(Joined)] == [Joined]
    assert link.events == []
    link.join("b")
    assert link.take() == [Joined("b", {}, "2")]
    with pytest.raises(AssertionError, match=r"no GaveUp within 5\.0 s"):
        link.advance_until(GaveUp, limit=5.0)
    assert link.now <= 5.0
    link.leave("a")
    assert link.of_type(ChannelClosed) == [ChannelClosed("a", ChannelCloseReason.LEFT)]
    assert link.of_type(ChannelClosed) != []  # of_type keeps them
    link.close()
    with pytest.raises(AssertionError, match="no Connected within"):
        link.advance_until(Connected)  # nothing is armed any more
