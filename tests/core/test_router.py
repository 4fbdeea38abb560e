"""The drivers' shared router: core events to waiters and errors, with no event loop."""

from __future__ import annotations

import pytest

from stx_proto import (
    ChannelClosed,
    ChannelCloseReason,
    CoreStats,
    Joined,
    JoinError,
    JoinFailed,
    PushFailed,
    PushFailure,
)
from stx_proto._router import ChannelRecord, Pending, Router


def make_router() -> Router[str]:
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
    old = ChannelRecord("t", "old", None)
    new_join = Pending(lambda: None)
    new = ChannelRecord("t", "new", new_join)
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
    router.add_channel(ChannelRecord("t", "ch", join))
    router.handle(ChannelClosed("t", reason, {"why": "x"}))
    with pytest.raises(JoinError, match=expected) as info:
        join.result()
    assert info.value.response == {"why": "x"}
