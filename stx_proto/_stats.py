"""The core's counters."""

from __future__ import annotations


class CoreStats:
    """Counters the core keeps; drivers expose them. Nothing is dropped without a count."""

    __slots__ = (
        "connections",
        "invalid_payloads",
        "malformed_frames",
        "messages",
        "ping_failures",
        "stale_dropped",
        "unknown_topic_dropped",
    )

    def __init__(self) -> None:
        self.connections = 0  # successful WebSocket opens
        self.messages = 0  # messages handed out for live channels (MessageReceived)
        self.stale_dropped = 0  # frames for a channel's earlier join, or a reply nobody awaits
        self.unknown_topic_dropped = 0  # frames for a topic with no live channel
        self.malformed_frames = 0  # frames that could not be decoded (FrameDropped)
        self.ping_failures = 0  # channel pings unanswered or refused (ChannelPingFailed)
        self.invalid_payloads = 0  # typed payloads that did not fit their type (PayloadInvalid)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__)
        return f"CoreStats({fields})"
