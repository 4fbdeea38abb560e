"""Unit tests of the retry policy: defaults, delays and jitter, limits, validation, refusals."""

from __future__ import annotations

import math
from random import Random
from typing import Any

import pytest

from stx_proto._errors import UsageError
from stx_proto._retry import (
    DEFAULT_REJOIN_POLICY,
    POLICY_VIOLATION,
    SERVICE_RESTART,
    TRY_AGAIN_LATER,
    RetryPolicy,
)


def test_retry_defaults() -> None:
    p = RetryPolicy()
    assert p.max_attempts is None
    assert (p.initial_backoff, p.max_backoff, p.multiplier, p.jitter) == (0.5, 30.0, 2.0, True)
    assert p.final_close_codes == frozenset({POLICY_VIOLATION})
    assert p.max_refusals == 5
    assert (POLICY_VIOLATION, SERVICE_RESTART, TRY_AGAIN_LATER) == (1008, 1012, 1013)
    assert not p.exhausted(10**6)


def test_retry_delay_doubles_up_to_the_cap_without_jitter() -> None:
    p = RetryPolicy(initial_backoff=1.0, max_backoff=10.0, jitter=False)
    rng = Random(0)
    assert [p.delay(n, rng) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    # A huge attempt number does not overflow.
    assert p.delay(10**9, rng) == 10.0


def test_retry_delay_jitter_stays_within_half_to_full() -> None:
    p = RetryPolicy(initial_backoff=1.0, max_backoff=8.0)
    rng = Random(42)
    for attempt in range(1, 10):
        base = min(8.0, 2.0 ** (attempt - 1))
        for _ in range(50):
            d = p.delay(attempt, rng)
            assert 0.5 * base <= d < base
    # Seeded: exactly repeatable, and equal to base * uniform(0.5, 1.0).
    expected = 4.0 * Random(7).uniform(0.5, 1.0)
    assert p.delay(3, Random(7)) == expected


def test_retry_multiplier_one_is_constant() -> None:
    p = RetryPolicy(initial_backoff=3.0, max_backoff=3.0, multiplier=1.0, jitter=False)
    assert {p.delay(n, Random()) for n in range(1, 20)} == {3.0}


def test_retry_exhausted() -> None:
    p = RetryPolicy(max_attempts=2)
    assert not p.exhausted(1)
    assert not p.exhausted(2)
    assert p.exhausted(3)
    assert RetryPolicy(max_attempts=0).exhausted(1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial_backoff": 0}, "initial_backoff must be > 0"),
        ({"max_backoff": -1.0}, "max_backoff must be > 0"),
        ({"initial_backoff": math.nan}, "initial_backoff must be > 0"),
        ({"initial_backoff": 5.0, "max_backoff": 1.0}, "max_backoff must be >= initial_backoff"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
        ({"max_attempts": -1}, "max_attempts must be >= 0"),
        ({"max_refusals": 0}, "max_refusals must be >= 1"),
    ],
)
def test_retry_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        RetryPolicy(**kwargs)


def test_retry_policy_rejects_a_negative_stable_after() -> None:
    with pytest.raises(UsageError, match="stable_after"):
        RetryPolicy(stable_after=-1.0)


def test_retry_accepts_none_limits() -> None:
    p = RetryPolicy(max_attempts=None, max_refusals=None)
    assert p.max_refusals is None


def test_refusals_are_client_errors_only() -> None:
    policy = RetryPolicy()
    assert [
        c for c in (400, 401, 403, 404, 408, 429, 500, 502, 503) if policy.counts_as_refusal(c)
    ] == [
        400,
        401,
        403,
        404,
    ]


def test_default_rejoin_policy() -> None:
    p = DEFAULT_REJOIN_POLICY
    assert (p.initial_backoff, p.max_backoff, p.max_attempts, p.max_refusals) == (
        1.0,
        10.0,
        None,
        None,
    )
