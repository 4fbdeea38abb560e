"""Typed payloads in the core: Client.join(types=...), set_payload_type, PayloadInvalid."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgspec
import pytest

from stx_proto import (
    ChannelErrored,
    Client,
    FrameDropped,
    MessageReceived,
    PayloadInvalid,
    PresenceChanged,
    ReplyReceived,
    StdlibJsonCodec,
    UsageError,
)
from stx_proto._typed import TypedSerializer
from stx_proto.testing import Link, PhoenixServer

from .conftest import URL, MakeLink

TOPIC = "market_info:1"


class Level(msgspec.Struct):
    price: int
    quantity: int


class MarketUpdate(msgspec.Struct):
    market_id: str
    bids: list[Level]
    last_traded_price: int | None = None


GOOD = {"market_id": "m1", "bids": [{"price": 4500, "quantity": 3}], "status": "open"}
BAD = {"market_id": "m1", "bids": [{"price": "4500", "quantity": 3}]}


def joined(make_link: MakeLink, vsn: str = "2.0.0", **join: object) -> Link:
    link = make_link(vsn=vsn)
    link.connect()
    link.join(TOPIC, **join)
    link.take()
    return link


def conn_of(link: Link):  # type: ignore[no-untyped-def]
    conn = link.connection
    assert conn is not None
    return conn


def messages(link: Link) -> list[object]:
    return [ev.message.payload for ev in link.take(MessageReceived)]


@pytest.mark.parametrize("vsn", ["2.0.0", "1.0.0"])
def test_typed_event_decodes_into_its_struct(make_link: MakeLink, vsn: str) -> None:
    link = joined(make_link, vsn, types={"market_update": MarketUpdate})
    conn = conn_of(link)
    conn.push(TOPIC, "market_update", GOOD)
    conn.push(TOPIC, "other", {"a": [1, 2]})
    link.pump()
    got = messages(link)
    assert got == [MarketUpdate("m1", [Level(4500, 3)]), {"a": [1, 2]}]
    assert link.client.stats.messages == 2
    assert link.client.stats.invalid_payloads == 0


@pytest.mark.parametrize("vsn", ["2.0.0", "1.0.0"])
def test_invalid_payload_is_counted_and_not_delivered(make_link: MakeLink, vsn: str) -> None:
    link = joined(make_link, vsn, types={"market_update": MarketUpdate})
    conn = conn_of(link)
    conn.push(TOPIC, "market_update", BAD)
    conn.push(TOPIC, "market_update", GOOD)
    link.pump()
    events = link.take()
    invalid = [ev for ev in events if isinstance(ev, PayloadInvalid)]
    delivered = [ev.message.payload for ev in events if isinstance(ev, MessageReceived)]
    assert delivered == [MarketUpdate("m1", [Level(4500, 3)])]
    assert len(invalid) == 1
    (ev,) = invalid
    assert ev.message.payload == BAD  # the raw message: the payload as the codec decodes it
    assert ev.message.topic == TOPIC and ev.message.event == "market_update"
    assert ev.expected is MarketUpdate
    assert isinstance(ev.error, msgspec.ValidationError)
    assert "$.bids[0].price" in str(ev.error)
    stats = link.client.stats
    assert (stats.invalid_payloads, stats.messages) == (1, 1)


def test_replies_heartbeats_and_errors_still_work(make_link: MakeLink) -> None:
    link = make_link(heartbeat_interval=1.0)
    link.connect()
    link.join(TOPIC, types={"market_update": MarketUpdate})
    link.take()
    link.push(TOPIC, "ping", {"x": 1})
    (reply,) = link.take(ReplyReceived)
    assert reply.status == "ok" and reply.response == {"x": 1}  # the server echoes
    link.advance(3.5)  # heartbeats answered: still connected
    assert link.client.is_connected
    conn_of(link).send_error(TOPIC)
    link.pump()
    (errored,) = link.take(ChannelErrored)
    assert errored.reason == "phx_error"


def test_untyped_channel_on_a_typed_client(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    link.join("plain")
    link.join(TOPIC, types={"market_update": MarketUpdate})
    link.take()
    conn = conn_of(link)
    conn.push("plain", "market_update", BAD)  # not typed on this channel
    conn.push("plain", "bin", b"\x00\x01")
    link.pump()
    assert messages(link) == [BAD, b"\x00\x01"]


def test_binary_payload_of_a_typed_event_is_invalid(make_link: MakeLink) -> None:
    link = joined(make_link, types={"market_update": MarketUpdate})
    conn_of(link).push(TOPIC, "market_update", b"\x00raw")
    link.pump()
    (ev,) = link.take(PayloadInvalid)
    assert ev.message.payload == b"\x00raw"
    assert "binary" in str(ev.error)


def test_frames_msgspec_refuses_go_to_the_plain_serializer(make_link: MakeLink) -> None:
    link = joined(make_link, types={"market_update": MarketUpdate, "n": float})
    conn = conn_of(link)
    join_ref = link.client.join_ref(TOPIC)
    # Extra trailing elements (ignored, as the server does), NaN (the stdlib codec reads it),
    # a lone surrogate: msgspec refuses these frames, the plain serializer does not.
    conn.send_raw(f'["{join_ref}",null,"{TOPIC}","market_update",{GOOD_JSON},"extra"]')
    conn.send_raw(f'["{join_ref}",null,"{TOPIC}","n",NaN]')
    conn.send_raw(f'["{join_ref}",null,"{TOPIC}","market_update",{BAD_JSON},1]')
    conn.send_raw(f'["{join_ref}",null,"{TOPIC}","other","\\ud800"]')
    conn.send_raw(f'["{join_ref}",null,"{TOPIC}",5,{{}}]')  # bad for both: dropped as before
    link.pump()
    events = link.take()
    delivered = [ev.message.payload for ev in events if isinstance(ev, MessageReceived)]
    assert delivered[0] == MarketUpdate("m1", [Level(4500, 3)])
    assert delivered[1] != delivered[1]  # NaN
    assert delivered[2] == "\ud800"
    (invalid,) = [ev for ev in events if isinstance(ev, PayloadInvalid)]
    assert invalid.message.payload == BAD
    (dropped,) = [ev for ev in events if isinstance(ev, FrameDropped)]
    assert dropped.detail == "event must be a string, not int"


GOOD_JSON = msgspec.json.encode(GOOD).decode()
BAD_JSON = msgspec.json.encode(BAD).decode()


def test_control_frames_are_checked_as_before(make_link: MakeLink) -> None:
    link = joined(make_link, types={"market_update": MarketUpdate})
    conn = conn_of(link)
    conn.send_raw(f'[null,"99","{TOPIC}","phx_reply",[]]')
    conn.send_raw(f'[null,"99","{TOPIC}","phx_reply",{{"status":1}}]')
    link.pump()
    details = [ev.detail for ev in link.take(FrameDropped)]
    assert details == [
        "a phx_reply payload must be an object, not list",
        "a phx_reply payload must have a string status",
    ]
    assert link.client.stats.malformed_frames == 2


class PickyCodec(StdlibJsonCodec):
    """The stdlib codec, refusing any JSON holding "refused" (msgspec reads it fine)."""

    def loads(self, data: str | bytes) -> Any:
        text = data if isinstance(data, str) else data.decode()
        if "refused" in text:
            raise ValueError("refused by the codec")
        return super().loads(data)


def test_a_payload_the_codec_cannot_read_is_dropped(make_link: MakeLink) -> None:
    link = make_link(json=PickyCodec())
    link.connect()
    link.join(TOPIC, types={"market_update": MarketUpdate})
    link.take()
    join_ref = link.client.join_ref(TOPIC)
    conn = conn_of(link)
    conn.send_raw(f'["{join_ref}",null,"{TOPIC}","other",["refused"]]')
    conn.send_raw(f'["{join_ref}",null,"{TOPIC}","phx_close",["refused"]]')
    conn.send_raw(f'["{join_ref}",null,"{TOPIC}","market_update",["refused"]]')
    link.pump()
    events = link.take()
    assert not [ev for ev in events if isinstance(ev, (MessageReceived, PayloadInvalid))]
    details = [ev.detail for ev in events if isinstance(ev, FrameDropped)]
    assert details == [
        "payload of 'other' is not valid JSON: refused by the codec",
        "text frame is not valid JSON: refused by the codec",
        "payload of 'market_update' is not valid JSON: refused by the codec",
    ]
    assert link.client.stats.malformed_frames == 3


def test_set_payload_type_after_the_join(make_link: MakeLink) -> None:
    link = joined(make_link)
    client = link.client
    client.configure_channel(TOPIC, payload_types={"market_update": MarketUpdate})
    client.configure_channel(
        TOPIC, payload_types={"market_update": MarketUpdate}
    )  # the same type: fine
    client.configure_channel(TOPIC, payload_types={"levels": list[Level]})
    with pytest.raises(UsageError, match="already typed as"):
        client.configure_channel(TOPIC, payload_types={"market_update": Level})
    with pytest.raises(UsageError, match="not joined"):
        client.configure_channel("nope", payload_types={"market_update": Level})
    conn = conn_of(link)
    conn.push(TOPIC, "market_update", GOOD)
    conn.push(TOPIC, "levels", [{"price": 1, "quantity": 2}])
    link.pump()
    assert messages(link) == [MarketUpdate("m1", [Level(4500, 3)]), [Level(1, 2)]]


def test_types_survive_a_reconnect(make_link: MakeLink) -> None:
    link = joined(make_link, types={"market_update": MarketUpdate})
    link.drop()
    link.advance(5)
    link.take()
    conn_of(link).push(TOPIC, "market_update", GOOD)
    link.pump()
    assert messages(link) == [MarketUpdate("m1", [Level(4500, 3)])]


def test_a_new_join_replaces_the_types(make_link: MakeLink) -> None:
    link = joined(make_link, types={"market_update": MarketUpdate})
    link.leave(TOPIC)
    link.join(TOPIC)
    link.take()
    conn_of(link).push(TOPIC, "market_update", BAD)
    link.pump()
    assert messages(link) == [BAD]


def test_bad_types_are_refused(make_link: MakeLink) -> None:
    link = make_link()
    client = link.client
    with pytest.raises(UsageError, match="mapping"):
        client.join(0, TOPIC, types=[("a", MarketUpdate)])  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="control event"):
        client.join(0, TOPIC, types={"phx_reply": MarketUpdate})
    with pytest.raises(UsageError, match="presence"):
        client.join(0, TOPIC, types={"presence_diff": MarketUpdate}, presence=True)
    with pytest.raises(UsageError, match="cannot decode a payload into"):
        client.join(0, TOPIC, types={"a": object()})
    with pytest.raises(UsageError, match="cannot decode a payload into"):
        client.join(0, TOPIC, types={"a": [1]})  # unhashable, and no type
    with pytest.raises(UsageError, match="event"):
        client.join(0, TOPIC, types={"": MarketUpdate})
    assert client.topics == ()
    client.join(0, TOPIC, types={"presence_diff": MarketUpdate})  # no presence: fine


def test_presence_still_syncs_on_a_typed_client(make_link: MakeLink) -> None:
    server = PhoenixServer()
    server.route("*")
    link = make_link(server=server)
    link.connect()
    link.join(TOPIC, presence=True, types={"market_update": MarketUpdate})
    link.take()
    server.presence_state(TOPIC, {"u1": {"metas": [{"phx_ref": "a"}]}})
    link.pump()
    (changed,) = link.take(PresenceChanged)
    assert [key for key, _, _ in changed.joins] == ["u1"]


def test_decoders_are_shared_per_type(make_link: MakeLink) -> None:
    link = make_link()
    link.join("a", types={"x": MarketUpdate})
    link.join("b", types={"y": MarketUpdate})
    typed = link.client._typed
    assert isinstance(typed, TypedSerializer)
    assert typed.decoder(MarketUpdate) is typed.decoder(MarketUpdate)
    assert repr(typed).startswith("TypedSerializer(V2Serializer(")
    assert typed.vsn == "2.0.0"


def test_without_msgspec_types_say_which_extra() -> None:
    script = (
        "import sys; sys.modules['msgspec'] = None\n"
        "import stx_proto\n"
        "assert 'msgspec' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "c = stx_proto.Client('ws://x/socket')\n"
        "c.join(0, 't')\n"
        "try:\n"
        "    c.join(0, 'u', types={'e': int})\n"
        "except stx_proto.UsageError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'stx-ws[msgspec]'" in out


def test_importing_stx_proto_does_not_import_msgspec() -> None:
    script = "import sys, stx_proto, stx_proto.driver; print('msgspec' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_untyped_client_never_sets_up_the_typed_serializer() -> None:
    client = Client(URL)
    client.join(0, TOPIC)
    assert client._typed is None
