"""A hypothesis state machine drives a client against the scripted server with random user
calls, faults and time, and checks the core's invariants after every step:

* the refs of the frames the client sent are unique;
* every push ref is resolved (ReplyReceived or PushFailed) at most once, and by the end (after
  close) exactly once;
* no MessageReceived carries a non-null join_ref other than its channel's current one;
* on every connection, a channel's first frame is its phx_join, and while connected every live
  channel has been joined on the current connection;
* after handle_timer(now), no deadline at or before now is left.
"""

from __future__ import annotations

from collections import Counter
from random import Random
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from stx_proto import (
    ChannelClosed,
    ChannelErrored,
    ChannelState,
    Client,
    ClientClosedError,
    Joined,
    JoinFailed,
    MessageReceived,
    PushFailed,
    ReplyReceived,
    RetryPolicy,
    SocketState,
    UsageError,
)
from stx_proto.testing import Link, PhoenixServer

TOPICS = ("a", "b", "c")
topics = st.sampled_from(TOPICS)


class ClientMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = PhoenixServer()
        self.server.route("*")
        client = Client(
            "ws://test/socket",
            rng=Random(0),
            timeout=5.0,
            heartbeat_interval=10.0,
            heartbeat_timeout=4.0,
            retry=RetryPolicy(initial_backoff=0.5, max_backoff=4.0),
            max_buffered_pushes=3,
        )
        self.link = Link(client, self.server)
        self.client = client
        self.join_calls = 0
        self.pushes: set[str] = set()  # every ref push() returned
        self.resolved: Counter[str] = Counter()
        self.current: dict[str, str | None] = {}  # topic -> join_ref of its last Joined
        self.old_join_refs: dict[str, list[str]] = {t: [] for t in TOPICS}
        self.seen = 0  # events already checked
        self.steps = 0

    # ----------------------------------------------------------------------------------------
    # Helpers

    @property
    def closed(self) -> bool:
        return self.client.state in (SocketState.CLOSED, SocketState.CLOSING)

    def _payload(self) -> dict[str, int]:
        self.join_calls += 1
        return {"n": self.join_calls}

    def _live(self, topic: str) -> bool:
        return topic in self.client.topics

    def _advance(self, seconds: float) -> None:
        """Link.advance, checking the deadline invariant after each handle_timer."""
        link, client = self.link, self.client
        end = link.now + seconds
        link.pump()
        while (deadline := link.next_deadline()) is not None and deadline <= end:
            link.clock.now = now = max(link.now, deadline)
            client.handle_timer(now)
            left = client.next_deadline()
            assert left is None or left > now, (left, now)
            if link.connection is not None:
                link.connection.handle_timer(now)
            link.pump()
        link.clock.now = max(link.now, end)
        link.pump()

    # ----------------------------------------------------------------------------------------
    # The user

    @initialize(connect=st.booleans())
    def start(self, connect: bool) -> None:
        """Every topic is joined at the start, connected or not."""
        if connect:
            self.link.connect()
        for topic in TOPICS:
            self.link.join(topic, self._payload)

    @rule()
    def connect(self) -> None:
        if self.closed:
            try:
                self.client.connect(self.link.now)
            except ClientClosedError:
                return
            raise AssertionError("connect() after close did not raise")
        self.link.connect()

    @rule(topic=topics, timeout=st.sampled_from([None, 1.0, 30.0]))
    def join(self, topic: str, timeout: float | None) -> None:
        client = self.client
        free = client.channel_state(topic) in (ChannelState.CLOSED, ChannelState.LEAVING)
        try:
            client.join(self.link.now, topic, self._payload, timeout=timeout)
        except ClientClosedError:
            assert self.closed
            return
        except UsageError:
            assert not free
            return
        assert free
        self.link.pump()

    @rule(topic=topics)
    def leave(self, topic: str) -> None:
        try:
            self.client.leave(self.link.now, topic)
        except ClientClosedError:
            assert self.closed
            return
        except UsageError:
            assert not self._live(topic)
            return
        self.link.pump()

    @rule(
        topic=topics,
        payloads=st.lists(st.sampled_from([None, {"x": 1}, b"\x00\x01"]), min_size=1, max_size=3),
        timeout=st.sampled_from([None, 0.5, 20.0]),
    )
    def push(self, topic: str, payloads: list[Any], timeout: float | None) -> None:
        for payload in payloads:
            state = self.client.channel_state(topic)
            try:
                ref = self.client.push(self.link.now, topic, "ev", payload, timeout=timeout)
            except ClientClosedError:
                assert self.closed
                return
            except UsageError:
                assert state in (ChannelState.CLOSED, ChannelState.LEAVING)
                return
            assert ref not in self.pushes
            self.pushes.add(ref)
        self.link.pump()

    @precondition(lambda self: not self.closed and self.steps >= 15)
    @rule()
    def close(self) -> None:
        self.link.close()
        assert self.client.state in (SocketState.CLOSING, SocketState.CLOSED)

    # ----------------------------------------------------------------------------------------
    # The server and the network

    @rule()
    def drop(self) -> None:
        self.link.drop()

    @rule(topic=topics, kind=st.sampled_from(["phx_error", "phx_close", "forget"]))
    def channel_fault(self, topic: str, kind: str) -> None:
        """The server crashes, closes or silently forgets (the next push gets "unmatched
        topic") a channel."""
        conn = self.link.connection
        if conn is None or topic not in conn.joined:
            return
        if kind == "phx_error":
            conn.send_error(topic)
        elif kind == "phx_close":
            conn.send_close(topic)
        else:
            del conn.joined[topic]
        self.link.pump()

    @rule(topic=topics, kind=st.sampled_from(["current", "stale", "broadcast"]))
    def server_message(self, topic: str, kind: str) -> None:
        conn = self.link.connection
        if conn is None:
            return
        if kind == "current":
            if topic in conn.joined:
                conn.push(topic, "msg", {"k": kind})
        elif kind == "stale":
            current = self.client.join_ref(topic)
            old = [ref for ref in self.old_join_refs[topic] if ref != current]
            if old:
                conn.push(topic, "msg", {"k": kind}, join_ref=old[-1])
        else:
            conn.broadcast(topic, "msg", {"k": kind})
        self.link.pump()

    @rule(
        setting=st.sampled_from(
            [
                *("network_down", "network_up", "no_heartbeat_replies", "heartbeat_replies"),
                *("reply_now", "reply_late", "no_reply", "refuse_join", "accept_joins"),
            ]
        ),
        topic=topics,
    )
    def server_setting(self, setting: str, topic: str) -> None:
        server = self.server
        if setting.startswith("network"):
            self.link.network_up = setting == "network_up"
        elif setting.endswith("heartbeat_replies"):
            server.heartbeat_replies = setting == "heartbeat_replies"
        elif setting == "reply_now":
            server.reply_delay = 0.0
        elif setting == "reply_late":
            server.reply_delay = 3.0
        elif setting == "no_reply":
            server.reply_delay = 1000.0
        elif setting == "refuse_join":
            server.refuse_joins[topic] = {"reason": "no"}
        else:
            server.refuse_joins.clear()

    @rule(seconds=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.5, 4.0, 5.0, 10.0, 30.0]))
    def advance(self, seconds: float) -> None:
        self._advance(seconds)

    @rule(seconds=st.sampled_from([0.5, 7.0, 25.0, 100.0]))
    def oversleep(self, seconds: float) -> None:
        """The driver wakes up late: one handle_timer call for everything that came due."""
        link, client = self.link, self.client
        link.clock.now = now = link.now + seconds
        client.handle_timer(now)
        left = client.next_deadline()
        assert left is None or left > now, (left, now)
        if link.connection is not None:
            link.connection.handle_timer(now)
        link.pump()

    # ----------------------------------------------------------------------------------------
    # Invariants

    @invariant()
    def count(self) -> None:
        self.steps += 1  # close() waits for a few steps, so that runs do not end early

    @invariant()
    def events_are_consistent(self) -> None:
        events = self.link.events
        for ev in events[self.seen :]:
            if isinstance(ev, (ReplyReceived, PushFailed)):
                assert ev.ref in self.pushes, ev
                self.resolved[ev.ref] += 1
                assert self.resolved[ev.ref] == 1, f"{ev.ref} resolved twice"
            elif isinstance(ev, Joined):
                self.current[ev.topic] = ev.join_ref
                self.old_join_refs[ev.topic].append(ev.join_ref)
            elif isinstance(ev, (ChannelErrored, ChannelClosed, JoinFailed)):
                self.current[ev.topic] = None
            elif isinstance(ev, MessageReceived):
                msg = ev.message
                if msg.join_ref is not None:
                    assert msg.join_ref == self.current.get(msg.topic), (msg, self.current)
        self.seen = len(events)

    @invariant()
    def refs_are_unique(self) -> None:
        refs = [m.ref for c in self.server.all_connections for m in c.received if m.ref]
        assert len(refs) == len(set(refs))

    @invariant()
    def channels_join_first_on_every_connection(self) -> None:
        for conn in self.server.all_connections:
            first: dict[str, str] = {}
            for m in conn.received:
                first.setdefault(m.topic, m.event)
            assert all(e == "phx_join" for t, e in first.items() if t != "phoenix"), first
        if self.client.is_connected:
            conn = self.link.connections[-1]
            joins = {m.join_ref: m.topic for m in conn.received if m.event == "phx_join"}
            for topic in self.client.topics:
                state = self.client.channel_state(topic)
                ref = self.client.join_ref(topic)
                if state is ChannelState.ERRORED:
                    # Errored on this connection after a join on it, waiting for its timer.
                    assert topic in joins.values()
                else:
                    assert joins.get(ref) == topic, (topic, state, ref, joins)

    @invariant()
    def no_deadline_in_the_past(self) -> None:
        deadline = self.client.next_deadline()
        assert deadline is None or deadline > self.link.now

    def teardown(self) -> None:
        # What the run reached, for --hypothesis-show-statistics.
        stats = self.client.stats
        event(f"connections: {min(stats.connections, 3)}")
        event(f"stale frames dropped: {bool(stats.stale_dropped)}")
        event(f"rejoins: {any(isinstance(e, Joined) and e.rejoin for e in self.link.events)}")
        event(f"pushes: {min(len(self.pushes), 5)}")
        self.link.close()
        self._advance(3600.0)
        self.events_are_consistent()
        assert self.client.state is SocketState.CLOSED
        assert self.client.next_deadline() is None
        unresolved = self.pushes - set(self.resolved)
        assert not unresolved, unresolved
        assert all(n == 1 for n in self.resolved.values())


ClientMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
TestClientMachine = ClientMachine.TestCase
