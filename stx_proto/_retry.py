"""Retry policies: when to reconnect the socket and when to rejoin a channel."""

from __future__ import annotations

from random import Random

import attrs

from ._errors import UsageError

# WebSocket close codes with a meaning for reconnecting (RFC 6455 section 7.4.1, IANA registry).
POLICY_VIOLATION = 1008
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise UsageError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, and when to stop.

    The n-th consecutive attempt waits ``min(max_backoff, initial_backoff * multiplier**(n-1))``
    seconds, times a factor drawn uniformly from [0.5, 1.0) when ``jitter`` is on (so that
    many clients cut off together do not come back together). ``max_attempts`` None retries
    forever.

    The count starts again once a connection (or a channel's join) has stayed up for
    ``stable_after`` seconds. A server that accepts and then drops every connection at once
    therefore meets a growing backoff and the attempt limit, instead of a fast reconnect loop
    that a reset on every successful open would give.

    ``final_close_codes`` are server close codes after which the socket gives up at once
    (1008 policy violation by default: retrying the same request cannot help).
    ``max_refusals`` bounds consecutive handshakes refused with a client error (HTTP 4xx but
    408 and 429), so that a bad token is not retried forever; None retries them like any
    failure. Other answers (5xx from a load balancer during a deploy, 408, 429) are retried
    like network failures.
    """

    max_attempts: int | None = None
    initial_backoff: float = attrs.field(default=0.5, validator=_positive)
    max_backoff: float = attrs.field(default=30.0, validator=_positive)
    multiplier: float = 2.0
    jitter: bool = True
    final_close_codes: frozenset[int] = frozenset({POLICY_VIOLATION})
    max_refusals: int | None = 5
    stable_after: float = 10.0

    def __attrs_post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 0:
            raise UsageError(f"max_attempts must be >= 0 or None, got {self.max_attempts!r}")
        if self.max_backoff < self.initial_backoff:
            raise UsageError("max_backoff must be >= initial_backoff")
        if self.multiplier < 1:
            raise UsageError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if self.max_refusals is not None and self.max_refusals < 1:
            raise UsageError(f"max_refusals must be >= 1 or None, got {self.max_refusals!r}")
        if self.stable_after < 0:
            raise UsageError(f"stable_after must be >= 0, got {self.stable_after!r}")

    def delay(self, attempt: int, rng: Random) -> float:
        """Seconds to wait before attempt number ``attempt`` (1 for the first retry)."""
        # The exponent is capped so that a long outage cannot overflow the float.
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** min(attempt - 1, 64))
        return self.jittered(base, rng)

    def delay_after(self, attempt: int, code: int | None, rng: Random) -> float:
        """Seconds to wait before attempt ``attempt`` after a close with ``code`` (None: no
        close frame): 1012 (the server restarts) retries as soon as a first attempt would,
        1013 (try again later) waits ``max_backoff``, anything else :meth:`delay`."""
        if code == SERVICE_RESTART:
            return self.delay(1, rng)
        if code == TRY_AGAIN_LATER:
            return self.jittered(self.max_backoff, rng)
        return self.delay(attempt, rng)

    def jittered(self, seconds: float, rng: Random) -> float:
        """``seconds`` times a factor in [0.5, 1.0) when ``jitter`` is on, else ``seconds``."""
        return seconds * rng.uniform(0.5, 1.0) if self.jitter else seconds

    def counts_as_refusal(self, status_code: int) -> bool:
        """True for an HTTP answer that retrying the same request will not change."""
        return 400 <= status_code < 500 and status_code not in (408, 429)

    def exhausted(self, attempt: int) -> bool:
        """True when attempt number ``attempt`` is beyond the limit."""
        return self.max_attempts is not None and attempt > self.max_attempts


#: How channels rejoin after a join error or a ``phx_error``: phoenix.js waits 1, 2, 5, then
#: 10 s; this doubles from 1 s to 10 s with jitter, and never stops (the server said the topic
#: exists; only ``phx_close`` or an "unmatched topic" reply ends a channel).
DEFAULT_REJOIN_POLICY = RetryPolicy(initial_backoff=1.0, max_backoff=10.0, max_refusals=None)
