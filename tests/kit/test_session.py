"""The session (the pump and the user's calls), driven directly on each runtime."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from stx_proto import Client, SocketState
from stx_proto.driver import (
    ChannelRoute,
    Connection,
    Credential,
    Hooks,
    Session,
    StreamTransport,
)
from stx_proto.driver.connection import DATA, ENDED
from stx_proto.driver.session import FEED_BYTES, FEED_MESSAGES, INBOX_LIMIT

from .conftest import Loop

pytestmark = pytest.mark.anyio

LIMIT = 5.0


class NoTransport(StreamTransport):
    async def connect(self, host: str, port: int, tls: bool, ssl_context: Any) -> Any:
        raise AssertionError("not used")


def make_session(loop: Loop) -> Session:
    return Session(
        Client("ws://127.0.0.1:9/socket"),
        loop.runtime,
        NoTransport(),
        dispatch="inline",
        max_concurrency=1,
        queue_size=10,
        overflow="drop_oldest",
        on_handler_error=None,
        credentials=[Credential(None)],
        hooks=Hooks(),
        close_timeout=1.0,
        host="127.0.0.1",
        ssl=None,
    )


async def test_the_reader_waits_while_the_pump_is_behind(loop: Loop) -> None:
    session = make_session(loop)
    conn = Connection(session, NoTransport())
    session._conn = conn
    session._inbox.extend((conn, DATA, b"x") for _ in range(INBOX_LIMIT))
    returned: list[bool] = []

    async def reader() -> None:
        await session.inbox_room(conn)
        returned.append(True)

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            assert not returned  # the inbox is full: the reader waits
            session._inbox.popleft()
            session._room.set()
    assert returned == [True]
    # An item of a connection the pump has dropped since is not fed to the core.
    session._conn = None
    session.post(conn, ENDED, "late")  # not current: not even queued
    assert len(session._inbox) == INBOX_LIMIT - 1
    session._feed((conn, ENDED, "late"), 0.0)
    assert session.client.state is SocketState.IDLE


async def test_a_session_that_is_not_running_has_nothing_to_leave(loop: Loop) -> None:
    session = make_session(loop)
    route = ChannelRoute("room:1")
    session.abandon(route)
    assert not route.leaving


async def test_a_bug_in_the_core_fails_the_session_loudly_wherever_it_surfaces(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stx_proto import ConnectionClosedError

    def broken() -> Any:
        raise RuntimeError("bug")

    with anyio.fail_after(LIMIT):
        session = make_session(loop)
        monkeypatch.setattr(session.client, "next_outputs", broken)
        session._drain_now()  # a user's call drains: the bug fails the session
        assert isinstance(session._fatal, ConnectionClosedError)
        assert session.router.closed

        session = make_session(loop)
        monkeypatch.setattr(session.client, "next_outputs", broken)
        session._close_timeout = 0.01
        await session._run_pump()  # the pump's own drain
        assert isinstance(session._fatal, ConnectionClosedError)
        assert isinstance(session._fatal.__cause__, RuntimeError)


async def test_a_read_is_fed_in_slices_and_stops_when_its_connection_ends(loop: Loop) -> None:
    # A large read reaches the core in FEED_BYTES slices (a burst of messages in
    # FEED_MESSAGES), drained between them; once a slice ends the connection (the core
    # closed it), the rest of the read is not fed.
    session = make_session(loop)
    conn = Connection(session, NoTransport())
    session._conn = conn
    fed: list[Any] = []

    def feed(now: float, piece: Any) -> None:
        fed.append(piece)

    data = bytes(range(256)) * (FEED_BYTES * 3 // 256 + 1)
    session._feed_slices(conn, feed, data, FEED_BYTES, 0.0)
    assert b"".join(fed) == data and [len(p) for p in fed[:3]] == [FEED_BYTES] * 3
    fed.clear()
    messages: list[str | bytes] = [str(n) for n in range(FEED_MESSAGES + 1)]
    session._feed_slices(conn, feed, messages, FEED_MESSAGES, 0.0)
    assert fed == [messages[:FEED_MESSAGES], messages[FEED_MESSAGES:]]
    fed.clear()

    def feed_and_close(now: float, piece: Any) -> None:
        fed.append(piece)
        session._conn = None  # as a CloseTransport out of the core does

    session._conn = conn
    session._feed_slices(conn, feed_and_close, data, FEED_BYTES, 0.0)
    assert fed == [data[:FEED_BYTES]]
