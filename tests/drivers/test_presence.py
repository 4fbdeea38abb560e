"""Presence in the drivers: ``join(..., presence=True)``, ``ch.presence.list()`` and the join,
leave and sync callbacks, with two sockets on the loopback server, on every driver and loop."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from stx_anyio.testing import TestServer
from stx_proto.testing import ServerConnection

from .support import LIMIT, Impl, make_socket

pytestmark = pytest.mark.anyio

TOPIC = "room:lobby"


def meta(user: str) -> dict[str, Any]:
    return {"metas": [{"phx_ref": f"ref-{user}", "online_at": 1}]}


async def test_presence_with_two_sockets(impl: Impl, srv: TestServer) -> None:
    members: dict[str, Any] = {}
    conns: dict[str, ServerConnection] = {}

    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
        # As a Phoenix channel's after_join: the state to the newcomer, with itself.
        user = payload["user"]
        members[user] = meta(user)
        conns[user] = conn
        conn.presence_state(topic, members)
        return "ok", {}

    srv.phoenix.route(TOPIC, on_join=on_join)
    joins: list[str] = []
    leaves: list[tuple[str, list[Any]]] = []
    synced = anyio.Event()
    left = anyio.Event()

    def on_sync() -> None:
        synced.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as alice, make_socket(impl, srv) as bob:
            ch_a = await alice.join(TOPIC, {"user": "alice"}, presence=True)
            await srv.wait_until(ch_a.presence.list)
            assert ch_a.presence.list(lambda key, p: key) == ["alice"]
            ch_a.presence.on_join(lambda key, current, new: joins.append(key))
            ch_a.presence.on_sync(on_sync)

            @ch_a.presence.on_leave
            def on_leave(key: str, current: dict[str, Any], gone: dict[str, Any]) -> None:
                leaves.append((key, current["metas"]))
                left.set()

            ch_b = await bob.join(TOPIC, {"user": "bob"}, presence=True)
            await srv.wait_until(lambda: len(ch_b.presence.list()) == 2)
            assert sorted(ch_b.presence.state) == ["alice", "bob"]
            # The others hear of bob through a diff.
            conns["alice"].broadcast(TOPIC, "presence_diff", {"joins": {"bob": meta("bob")}})
            await synced.wait()
            assert joins == ["bob"]
            assert ch_a.presence.list(lambda key, p: key) == ["alice", "bob"]
            await ch_b.leave()
            del members["bob"]
            conns["alice"].broadcast(
                TOPIC, "presence_diff", {"joins": {}, "leaves": {"bob": meta("bob")}}
            )
            await left.wait()
            assert leaves == [("bob", [])]
            assert [p["metas"][0]["phx_ref"] for p in ch_a.presence.list()] == ["ref-alice"]
            ch_a.presence.on_join(None)
            assert ch_a.presence.tracker.state is ch_a.presence.state
