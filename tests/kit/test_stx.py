"""The STX preset's token source, as the kit turns it into the socket's params."""

from __future__ import annotations

import pytest

from stx_proto import PingPlan, UsageError
from stx_proto.driver import stx_params
from stx_proto.driver.stx import granted_ping_plan

pytestmark = pytest.mark.anyio


async def test_callable_tokens_are_called_at_every_connect() -> None:
    assert stx_params("jwt") == {"token": "jwt"}
    tokens = iter(["one", "two"])
    params = stx_params(lambda: next(tokens))
    assert callable(params)
    assert await params() == {"token": "one"}
    assert await params() == {"token": "two"}

    async def refresh() -> str:
        return "fresh"

    fresh = stx_params(refresh)
    assert callable(fresh)
    assert await fresh() == {"token": "fresh"}
    empty = stx_params(lambda: "")
    assert callable(empty)
    with pytest.raises(UsageError, match="non-empty str"):
        await empty()


@pytest.fixture
def anyio_backend() -> str:
    """Plain coroutines: asyncio is enough."""
    return "asyncio"


def test_a_cancel_on_disconnect_channel_is_pinged_at_60_percent_of_its_grant() -> None:
    # As STX's SDK does; the reply may take the whole grant. Clamped as the server clamps;
    # 20 s when the reply names none.
    plan = granted_ping_plan({"cancel_on_disconnect": True, "ping_timeout": 5_000})
    assert plan.interval == pytest.approx(3.0) and plan.timeout == 5.0
    assert granted_ping_plan({"ping_timeout": 60_000}) == PingPlan(12.0, 20.0)
    assert granted_ping_plan({"ping_timeout": 1}) == granted_ping_plan({"ping_timeout": 5_000})
    assert granted_ping_plan({}) == granted_ping_plan(None) == PingPlan(12.0, 20.0)
