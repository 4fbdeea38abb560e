"""A clock that moves only when a test says so."""

from __future__ import annotations


class VirtualClock:
    """Seconds on a virtual monotonic clock. Calling it returns the current time."""

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (never back); returns the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self.now += seconds
        return self.now

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now!r})"
