"""Control frames handed to a channel's handlers (``control_frames=True``, per socket or per
join), as the STX SDK does; off by default. On every driver and event loop."""

from __future__ import annotations

import anyio
import pytest

from stx_anyio.testing import TestServer
from stx_proto import ChannelMessage

from .support import LIMIT, Impl, make_socket

pytestmark = pytest.mark.anyio


async def test_control_frames_per_join(impl: Impl, srv: TestServer) -> None:
    got: list[ChannelMessage] = []
    other: list[ChannelMessage] = []
    closed = anyio.Event()

    def on_msg(msg: ChannelMessage) -> None:
        got.append(msg)
        if msg.event == "phx_close":
            closed.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1", on_message=on_msg, control_frames=True)
            plain = await sock.join("room:2", on_message=other.append)
            await ch.push("echo", {"n": 1})
            await plain.push("echo", {"n": 2})
            conn = await srv.wait_for_join("room:1")
            srv.phoenix.broadcast("room:2", "tick", {})
            conn.send_close("room:1")
            await closed.wait()
    join_reply, push_reply, close = got
    assert (join_reply.event, join_reply.reply_status, join_reply.is_reply) == (
        "phx_reply",
        "ok",
        True,
    )
    assert push_reply.response == {"n": 1} and push_reply.msg_ref == push_reply.ref
    assert close.event == "phx_close" and close.payload in ({}, None)
    assert [m.event for m in other] == ["tick"]  # no control frames by default


async def test_control_frames_per_socket_and_errors(impl: Impl, srv: TestServer) -> None:
    got: list[ChannelMessage] = []
    rejoined = anyio.Event()
    with anyio.fail_after(LIMIT):
        async with make_socket(
            impl, srv, control_frames=True, on_rejoin=lambda ch: rejoined.set()
        ) as sock:
            ch = await sock.join("room:1")
            opted_out = await sock.join("room:2", control_frames=False)
            conn = await srv.wait_for_join("room:1")
            conn.send_error("room:1")
            await rejoined.wait()
            await opted_out.push("echo", {})
            async for msg in ch:
                got.append(msg)
                if len(got) == 3:
                    break
            srv.phoenix.broadcast("room:2", "tick", {})
            async for msg in opted_out:
                assert msg.event == "tick"
                break
    assert [(m.event, m.is_error) for m in got] == [
        ("phx_reply", False),
        ("phx_error", True),
        ("phx_reply", False),  # the rejoin's reply
    ]
