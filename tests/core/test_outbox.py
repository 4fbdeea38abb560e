"""The outbox (``_outbox.py``), through the client: what one input writes leaves as one
SendBytes, and bytes come out before the commands and events queued after them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stx_proto import (
    ChannelClosed,
    ChannelMessage,
    Client,
    Closed,
    CloseTransport,
    Disconnected,
    MessageReceived,
    SendBytes,
    SleepUntil,
)
from stx_proto._events import Output
from stx_proto.testing import Link

MakeLink = Callable[..., Link]  # the make_link fixture of conftest.py


def connected(make_link: MakeLink, *topics: str, **options: Any) -> Link:
    """A connected link with ``topics`` joined, and its events forgotten."""
    link = make_link(**options)
    link.connect()
    for topic in topics:
        link.join(topic)
    link.take()
    return link


def drain(client: Client) -> list[Output]:
    """Pull every output up to (and without) the final SleepUntil."""
    out: list[Output] = []
    while not isinstance(item := client.next_event(), SleepUntil):
        out.append(item)
    return out


def test_bytes_on_the_wire_are_coalesced(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    client = link.client
    client.push(link.now, "a", "one")
    client.push(link.now, "a", "two")
    out = drain(client)
    assert len(out) == 1 and isinstance(out[0], SendBytes)


def test_next_event_puts_bytes_before_later_events(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    link.join("a")
    link.join("b")
    client = link.client
    conn = link.connection
    assert conn is not None
    client.close(1.0)
    # The phx_leave frames and the close frame go out in one write, leaves first; the
    # channels close when the server's close frame comes (or the close timeout).
    (out,) = drain(client)
    assert isinstance(out, SendBytes)
    assert client.next_event() == SleepUntil(6.0)
    conn.receive_data(out.data)
    assert [m.event for m in conn.received[-2:]] == ["phx_leave", "phx_leave"]
    assert conn.close_code == 1000
    client.receive_data(1.5, conn.data_to_send())
    assert [type(o) for o in drain(client)] == [
        CloseTransport,
        ChannelClosed,
        ChannelClosed,
        Disconnected,
        Closed,
    ]


def test_heartbeat_timeout_puts_the_close_frame_before_close_transport(
    make_link: MakeLink,
) -> None:
    link = make_link(heartbeat_interval=1.0)
    link.server.heartbeat_replies = False
    link.connect()
    link.advance(1.0)
    client = link.client
    client.handle_timer(2.0)
    out = drain(client)
    assert isinstance(out[0], SendBytes)
    assert out[1] == CloseTransport(1000, "heartbeat timeout")
    assert isinstance(out[2], Disconnected)


def test_next_events_gives_what_next_event_gives_in_one_list(make_link: MakeLink) -> None:
    # The batch form: the same outputs in the same order, bytes written last at the end,
    # no SleepUntil; [] once nothing is queued.
    links = [connected(make_link, "a", "b") for _ in range(2)]
    for link in links:
        client = link.client
        client.push(link.now, "a", "one")
        conn = link.connection
        assert conn is not None
        conn.push("b", "news", {"n": 1})
        client.receive_data(link.now, conn.data_to_send())
        client.push(link.now, "b", "two")  # written after the message came
    one_by_one = drain(links[0].client)
    batch = links[1].client.next_events()

    def seen(outputs: list[Output], conn: Any) -> list[object]:
        # Frames as the server reads them (the masking keys differ), the rest as they are.
        got: list[object] = []
        for o in outputs:
            if isinstance(o, SendBytes):
                before = len(conn.received)
                conn.receive_data(o.data)
                got.append([m.event for m in conn.received[before:]])
            else:
                got.append(o)
        return got

    assert seen(batch, links[1].connection) == seen(one_by_one, links[0].connection)
    assert [type(o).__name__ for o in batch] == ["SendBytes", "MessageReceived", "SendBytes"]
    assert links[1].client.next_events() == []
    assert links[1].client.next_event() == links[0].client.next_event()  # the same SleepUntil


def test_next_outputs_gives_a_message_bare_and_the_rest_as_next_events(
    make_link: MakeLink,
) -> None:
    # The driver kit's form: the same outputs in the same order as next_events(), except that
    # a message comes as its ChannelMessage, not wrapped in MessageReceived.
    links = [connected(make_link, "a", "b") for _ in range(2)]
    for link in links:
        conn = link.connection
        assert conn is not None
        link.client.push(link.now, "a", "one")
        conn.push("b", "news", {"n": 1})
        conn.push("a", "more", {"n": 2})
        link.client.receive_data(link.now, conn.data_to_send())
    events = links[0].client.next_events()
    outputs = links[1].client.next_outputs()
    assert [type(o).__name__ for o in outputs] == ["SendBytes", "ChannelMessage", "ChannelMessage"]
    assert outputs[1:] == [
        ChannelMessage("b", "news", {"n": 1}, None, "2"),  # a channel push has its join_ref
        ChannelMessage("a", "more", {"n": 2}, None, "1"),
    ]
    assert events[1:] == [
        MessageReceived(ChannelMessage("b", "news", {"n": 1}, None, "2")),
        MessageReceived(ChannelMessage("a", "more", {"n": 2}, None, "1")),
    ]
    assert links[1].client.next_outputs() == []
    # One at a time, a message is a MessageReceived too.
    conn = links[1].connection
    assert conn is not None
    conn.push("a", "last", {})
    links[1].client.receive_data(links[1].now, conn.data_to_send())
    assert links[1].client.next_event() == MessageReceived(
        ChannelMessage("a", "last", {}, None, "1")
    )
