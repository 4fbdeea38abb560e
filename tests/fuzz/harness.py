"""A raw-bytes harness around :class:`stx_proto.Client`: it plays the transport and a server
that answers the handshake, and checks the core's invariants after every input.

Shared by the hypothesis properties (``test_fuzz_core.py``) and the atheris harness
(``fuzz/core.py``), so both check the same things.
"""

from __future__ import annotations

import json
from collections import Counter
from random import Random
from typing import Any

from stx_proto import (
    Client,
    CloseTransport,
    Joined,
    OpenTransport,
    Output,
    PushFailed,
    ReplyReceived,
    RetryPolicy,
    SendBytes,
    SleepUntil,
    UsageError,
)
from stx_proto.testing import OP_TEXT, ws_frame

from .strategies import OUTPUT_TYPES, accept_response

TOPICS = ("room:a", "room:b", "room:c")


class CoreHarness:
    """One client, its transport, and the bookkeeping the invariants need."""

    def __init__(self, seed: int = 0, max_message_size: int = 4096) -> None:
        self.client = Client(
            "ws://test/socket",
            rng=Random(seed),
            timeout=5.0,
            heartbeat_interval=30.0,
            heartbeat_timeout=10.0,
            retry=RetryPolicy(initial_backoff=1.0, max_backoff=4.0),
            max_buffered_pushes=4,
            max_message_size=max_message_size,
        )
        self.now = 0.0
        self.outputs: list[Output] = []
        self.pushes: list[str] = []  # every ref push() returned, in order
        self.resolved: Counter[str] = Counter()
        self.join_refs: list[str] = []  # the join_ref of each join() call, once sent
        self.joined_refs: list[str] = []  # the join_ref of every Joined
        self.handshaking = False  # the transport is open and the 101 not yet sent
        self.open = False  # a transport is open
        self.client.connect(self.now)
        self.drain()

    # ---- the transport

    def drain(self) -> None:
        """Pull every output, carry out the commands, and check the invariants."""
        client = self.client
        while True:
            out = client.next_event()
            assert isinstance(out, OUTPUT_TYPES), out
            if isinstance(out, SleepUntil):
                break
            self.outputs.append(out)
            if isinstance(out, OpenTransport):
                self.open = True
                self.handshaking = True
                client.transport_opened(self.now)
            elif isinstance(out, SendBytes):
                if self.handshaking:
                    self.handshaking = False
                    client.receive_data(self.now, accept_response(out.data))
            elif isinstance(out, CloseTransport):
                self.open = False
                self.handshaking = False
            elif isinstance(out, (ReplyReceived, PushFailed)):
                self.resolved[out.ref] += 1
                assert self.resolved[out.ref] == 1, f"push {out.ref} resolved twice"
                assert out.ref in self.pushes
            elif isinstance(out, Joined):
                # Every join (rejoins too) has a ref of its own, never a push's.
                assert out.join_ref not in self.joined_refs, f"join_ref {out.join_ref} reused"
                assert out.join_ref not in self.pushes
                self.joined_refs.append(out.join_ref)
        self.check_bounded()

    def check_bounded(self) -> None:
        """No timer, queue or buffer outgrows what is live."""
        client = self.client
        pending = sum(1 for ref in self.pushes if not self.resolved[ref])
        assert len(client._timers) <= 6 + 3 * len(client.topics) + pending
        assert not client._out
        assert not client._wbuf
        assert len(client._channels.pushes) == pending

    # ---- inputs

    def receive(self, data: bytes) -> None:
        """Bytes from the server (ignored by the client unless a transport is open)."""
        self.client.receive_data(self.now, data)
        self.drain()

    def advance(self, seconds: float) -> None:
        """Let time pass, firing the deadlines on the way."""
        end = self.now + seconds
        while (deadline := self.client.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.client.handle_timer(self.now)
            self.drain()
        self.now = end

    def eof(self) -> None:
        """The stream ends."""
        if self.open:
            self.open = False
            self.client.transport_closed(self.now)
            self.drain()

    def join(self, topic: str) -> None:
        """The user joins (a usage error, such as a topic already joined, is fine)."""
        try:
            self.client.join(self.now, topic, {"since": 0})
        except UsageError:
            return
        self.drain()
        ref = self.client.join_ref(topic)
        if ref is not None:
            self.join_refs.append(ref)

    def push(self, topic: str, payload: Any) -> None:
        """The user pushes (a usage error, such as an unknown topic, is fine)."""
        try:
            ref = self.client.push(self.now, topic, "new_msg", payload)
        except UsageError:
            return
        used = (*self.pushes, *self.join_refs, *self.joined_refs)
        assert ref not in used, f"ref {ref} reused"
        self.pushes.append(ref)
        self.drain()

    def leave(self, topic: str) -> None:
        """The user leaves (a usage error, such as a topic not joined, is fine)."""
        try:
            self.client.leave(self.now, topic)
        except UsageError:
            return
        self.drain()

    def reply_frame(self, index: int, status: str = "ok", join_ref: int = 0) -> bytes:
        """A text frame replying to one of the refs the client used (``index`` picks it)."""
        refs = self.pushes + self.join_refs
        ref = refs[index % len(refs)] if refs else "1"
        topic = TOPICS[index % len(TOPICS)]
        jr = self.client.join_ref(topic) if join_ref == 0 else str(join_ref)
        frame = [jr, ref, topic, "phx_reply", {"status": status, "response": {}}]
        return ws_frame(OP_TEXT, json.dumps(frame).encode())

    # ---- the end

    def finish(self) -> None:
        """Close, let the close time out, and check that everything ended exactly once."""
        self.client.close(self.now)
        self.drain()
        self.advance(60.0)
        for ref in self.pushes:
            assert self.resolved[ref] == 1, f"push {ref} resolved {self.resolved[ref]} times"
        assert len(self.client._timers) == 0
        assert self.client.next_deadline() is None
