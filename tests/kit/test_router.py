"""The kit's router: core events to waiters, errors and channel routes, with no event loop."""

from __future__ import annotations

import pytest

from stx_proto import (
    ChannelClosed,
    ChannelCloseReason,
    Closed,
    ConnectionClosedError,
    CoreStats,
    DisconnectReason,
    GaveUp,
    GaveUpError,
    Joined,
    JoinError,
    JoinFailed,
    PushFailed,
    PushFailedError,
    PushFailure,
    ReplyReceived,
)
from stx_proto.driver import ChannelRoute, Pending, Router


def make_router() -> Router:
    return Router(CoreStats(), lambda: None)


def test_a_pending_is_settled_once() -> None:
    woken: list[str] = []
    waiter = Pending(lambda: woken.append("woken"))
    waiter.resolve(1)
    waiter.fail(RuntimeError("late"))
    waiter.resolve(2)
    assert waiter.result() == 1
    assert woken == ["woken"]


def test_events_about_unknown_topics_and_refs_are_ignored() -> None:
    router = make_router()
    assert router.handle(Joined("nobody", {}, "1")) is None
    assert router.handle(JoinFailed("nobody", {"reason": "x"})) is None
    assert router.handle(ChannelClosed("nobody", ChannelCloseReason.LEFT)) is None
    assert router.handle(PushFailed("nobody", "9", PushFailure.TIMEOUT)) is None


def test_a_replaced_channel_closes_before_its_successor() -> None:
    router = make_router()
    old = ChannelRoute("t")
    new_join = Pending(lambda: None)
    new = ChannelRoute("t")
    new.join = new_join
    router.add_channel(old)
    router.add_channel(new)
    assert router.is_current(new)
    assert router.handle(ChannelClosed("t", ChannelCloseReason.LEFT)) is old
    assert router.channel("t") is new
    assert router.handle(Joined("t", {"ok": 1}, "5")) is new
    assert new_join.result() == {"ok": 1}


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (ChannelCloseReason.SERVER_CLOSED, "closed by the server"),
        (ChannelCloseReason.JOIN_FAILED, "join_failed"),
    ],
)
def test_a_join_ended_by_a_close_fails_with_the_reason(
    reason: ChannelCloseReason, expected: str
) -> None:
    router = make_router()
    join = Pending(lambda: None)
    route = ChannelRoute("t")
    route.join = join
    router.add_channel(route)
    router.handle(ChannelClosed("t", reason, {"why": "x"}))
    with pytest.raises(JoinError, match=expected) as info:
        join.result()
    assert info.value.response == {"why": "x"}


def _route(topic: str, join: Pending | None = None) -> ChannelRoute:
    route = ChannelRoute(topic)
    route.join = join
    return route


def test_router_resolves_and_maps_errors() -> None:
    router = make_router()
    woken: list[str] = []
    join = Pending(lambda: woken.append("join"))
    record = _route("t", join)
    router.add_channel(record)
    assert router.channel("t") is record and router.is_current(record)
    assert router.handle(Joined("t", {"ok": 1}, "1")) is record
    assert join.result() == {"ok": 1} and woken == ["join"]
    join.resolve("again")  # a second outcome is ignored
    assert join.result() == {"ok": 1}

    ok, bad = Pending(lambda: None), Pending(lambda: None)
    router.add_push("2", "ev", ok)
    router.add_push("3", "ev", bad)
    assert router.waiting_pushes == 2
    router.handle(ReplyReceived("t", "2", "ok", "fine"))
    router.handle(PushFailed("t", "3", PushFailure.BUFFER_FULL))
    router.handle(ReplyReceived("t", "99", "ok", None))  # nobody waits: ignored
    assert ok.result() == "fine" and router.waiting_pushes == 0
    with pytest.raises(PushFailedError) as info:
        bad.result()
    assert info.value.reason == "buffer_full"

    # A join that the server ends with phx_close before replying.
    late = Pending(lambda: None)
    second = _route("u", late)
    router.add_channel(second)
    router.handle(ChannelClosed("u", ChannelCloseReason.SERVER_CLOSED, {"why": 1}))
    with pytest.raises(JoinError) as join_info:
        late.result()
    assert join_info.value.reason == "closed by the server"
    assert router.channel("u") is None and second.closed


def test_router_socket_closed_and_gave_up() -> None:
    router = make_router()
    joining = Pending(lambda: None)
    router.add_channel(_route("a", joining))
    router.handle(ChannelClosed("a", ChannelCloseReason.SOCKET_CLOSED))
    with pytest.raises(ConnectionClosedError):
        joining.result()

    push = Pending(lambda: None)
    router.add_push("5", "ev", push)
    router.handle(GaveUp(DisconnectReason.TRANSPORT_ERROR, 3, detail="refused"))
    router.handle(PushFailed("a", "5", PushFailure.SOCKET_CLOSED))
    with pytest.raises(GaveUpError) as info:
        push.result()
    assert "3 attempt(s)" in str(info.value) and "refused" in str(info.value)
    closing = Pending(lambda: None)
    router.add_close(closing)
    router.handle(Closed())
    assert closing.done and router.closed
    after = Pending(lambda: None)
    router.add_close(after)  # already closed: resolved at once
    assert after.done


def test_router_abort_fails_every_waiter() -> None:
    router = make_router()
    join, leave, push, close = (Pending(lambda: None) for _ in range(4))
    record = _route("a", join)
    router.add_channel(record)
    router.add_leave(record, leave)
    router.add_push("1", "ev", push)
    router.add_close(close)
    error = ConnectionClosedError("internal error")
    router.abort(error)
    for waiter in (join, push):
        with pytest.raises(ConnectionClosedError):
            waiter.result()
    assert leave.done and close.done and record.closed and router.closed
    assert record.end_error(None) is error
    late_leave = Pending(lambda: None)
    router.add_leave(record, late_leave)  # already closed: resolved at once
    assert late_leave.done


def test_failure_texts_say_how_a_connection_failed() -> None:
    from stx_proto import Disconnected
    from stx_proto.driver.router import failure_text

    def text(reason: DisconnectReason, detail: str = "", status: int | None = None) -> str:
        return failure_text(Disconnected(reason, None, detail), status)

    assert text(DisconnectReason.HANDSHAKE_REFUSED, "HTTP 418", 418) == "HTTP 418"
    assert text(DisconnectReason.CONNECT_TIMEOUT) == "the connect timed out"
    assert text(DisconnectReason.HEARTBEAT_TIMEOUT) == "no heartbeat reply in time"
    assert (
        text(DisconnectReason.PROTOCOL_ERROR, "bad frame") == "WebSocket protocol error: bad frame"
    )
    assert text(DisconnectReason.TRANSPORT_ERROR, "x CERTIFICATE_VERIFY_FAILED y") == (
        "TLS: certificate verify failed (x CERTIFICATE_VERIFY_FAILED y)"
    )
    assert text(DisconnectReason.TRANSPORT_CLOSED) == "transport closed"
