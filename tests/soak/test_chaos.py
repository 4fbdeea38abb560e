"""A chaos soak: many channels and concurrent pushes against the loopback test server while
faults are injected at random (seeded, so a run replays), on the public API of the drivers.

Each repetition runs the workload under chaos for a while, then heals the server and checks:

* every channel the soak has not left is joined again (a channel the server closed for good
  with ``phx_close`` is joined anew by the soak, as a bot would);
* every push had exactly one outcome, within its timeout (plus a scheduling margin);
* no stale message was delivered: the server tags every message with its join_ref and a
  per-join sequence number, and sends stale frames marked as such; the client must see each
  join's sequence without a duplicate, a reorder or a hole, and never a stale frame;
* every gap was announced: a channel's messages move to a new join only after ``on_rejoin``;
* nothing leaked: the number of tasks and of live waiters is the same after every
  repetition, and RSS grows less than 5 MB from the second repetition to the last;
* shutdown is clean: the ``async with`` block ends without error and leaves no task behind.

``make test`` runs a short version (a few seconds per driver). ``make soak`` (``STX_SOAK=long``)
runs about ten minutes over the three driver/loop pairs, injects every kind of fault and at
least 100 drops, and prints how many of each it injected and survived. ``STX_SOAK_SEED`` picks
the seed (default 13).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import anyio
import pytest
import trio

import stx_anyio
import stx_trio
from stx_anyio.testing import TestServer
from stx_proto import ChannelMessage, RetryPolicy, StxWsError
from stx_proto.testing import OP_TEXT, PhoenixServer, ServerConnection, ws_frame

pytestmark = pytest.mark.anyio

LONG = os.environ.get("STX_SOAK") == "long"
SEED = int(os.environ.get("STX_SOAK_SEED", "13"))
CHANNELS = 24 if LONG else 12
PUSHERS = 6 if LONG else 4
PUSH_TIMEOUT = 1.0
MARGIN = 1.0  # seconds a push's outcome may come after its timeout on a loaded machine
HEAL_LIMIT = 15.0  # seconds the client has to recover once the faults stop

FAULTS = (
    "drop",
    "drop_mid_frame",
    "drop_mid_handshake",
    "drop_mid_rejoin",
    "unanswered_heartbeats",
    "half_open",
    "refused_joins",
    "phx_error_storm",
    "phx_close_storm",
    "delayed_replies",
    "duplicated_replies",
    "unknown_refs",
    "stale_frames",
    "server_restart",
)
PACKAGES = ("stx_proto", "stx_anyio", "stx_trio")
DROPS = ("drop", "drop_mid_frame", "drop_mid_handshake", "drop_mid_rejoin")


@dataclass(frozen=True)
class Impl:
    """One driver on one event loop."""

    module: ModuleType
    backend: str


IMPLS = {
    "anyio-asyncio": Impl(stx_anyio, "asyncio"),
    "anyio-trio": Impl(stx_anyio, "trio"),
    "trio": Impl(stx_trio, "trio"),
}
# The short soak runs each driver once; the long one every driver/loop pair.
RUN = IMPLS if LONG else {k: IMPLS[k] for k in ("anyio-asyncio", "trio")}
REPETITIONS = 18 if LONG else 4
CHAOS_SECONDS = 9.0 if LONG else 1.2


@pytest.fixture(params=list(RUN.values()), ids=list(RUN))
def impl(request: pytest.FixtureRequest) -> Impl:
    """The driver (and event loop) under test."""
    chosen: Impl = request.param
    return chosen


@pytest.fixture
def anyio_backend(impl: Impl) -> str:
    """The anyio backend of ``impl``."""
    return impl.backend


TOTALS: dict[str, Counter[str]] = {"injected": Counter(), "survived": Counter()}


def client_tasks(backend: str) -> list[str]:
    """The tasks alive in this event loop that run code of the drivers or the core (the test
    server's own tasks excluded), by name: anyio and trio name a task after its function,
    module included."""
    if backend == "asyncio":
        names = [t.get_name() for t in asyncio.all_tasks()]
    else:

        def walk(task: trio.lowlevel.Task) -> list[str]:
            children = [t for n in task.child_nurseries for t in n.child_tasks]
            return [task.name, *(name for t in children for name in walk(t))]

        root = trio.lowlevel.current_root_task()
        assert root is not None
        names = walk(root)
    return sorted(n for n in names if n.startswith(PACKAGES) and ".testing." not in n)


def live_waiters() -> int:
    """Waiters (one per join, push, leave or close call in progress) alive in the process."""
    return sum(1 for o in gc.get_objects() if type(o).__name__ == "Pending")


def rss_bytes() -> int:
    """The resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Track:
    """What the client saw on one channel (one join() call of the soak)."""

    topic: str
    join_ref: str | None = None  # the join the last message belonged to
    seq: int = 0
    rejoins: int = 0
    rejoins_at_switch: int = 0
    messages: int = 0
    errors: list[str] = field(default_factory=list)

    def on_message(self, msg: ChannelMessage) -> None:
        """Check one delivered message against the server's tags."""
        payload = msg.payload
        if not isinstance(payload, dict) or "seq" not in payload:
            return
        if payload.get("stale"):
            self.errors.append(f"{self.topic}: a stale frame was delivered: {payload}")
            return
        join_ref, seq = payload["j"], payload["seq"]
        self.messages += 1
        if join_ref != self.join_ref:
            # Refs come from one counter: a later join has a larger ref.
            if self.join_ref is not None and int(join_ref) < int(self.join_ref):
                self.errors.append(f"{self.topic}: a message of an earlier join {join_ref}")
            if self.join_ref is not None and self.rejoins == self.rejoins_at_switch:
                self.errors.append(f"{self.topic}: moved to join {join_ref} unannounced")
            self.rejoins_at_switch = self.rejoins
            self.join_ref, self.seq = join_ref, 0
        if seq != self.seq + 1:
            self.errors.append(f"{self.topic}: join {join_ref} seq {seq} after {self.seq}")
        self.seq = seq


class Soak:
    """The server, the client, the workload and the chaos of one run."""

    def __init__(self, impl: Impl, rng: random.Random) -> None:
        self.impl = impl
        self.rng = rng
        self.phoenix = PhoenixServer()
        self.phoenix.route("room:*", on_push=self._on_push)
        self.srv = TestServer(self.phoenix)  # replaced by serve() at each (re)start
        self._restart = anyio.Event()
        self._up = anyio.Event()
        self._restart_delay = 0.0
        self.duplicate_replies = False
        self.seqs: Counter[str] = Counter()  # per server-side join_ref
        self.injected: Counter[str] = Counter()
        self.tracks: dict[str, Track] = {}
        self.channels: dict[str, Any] = {}
        self.outcomes: Counter[str] = Counter()
        self.late: list[str] = []
        self.pushing = True
        self.sock: Any = None
        self.port = 0

    # ---- server side

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the test server; start it again on the same port at each restart()."""
        started = False
        while True:
            async with TestServer(self.phoenix, port=self.port) as srv:
                self.srv, self.port = srv, srv.port
                self._restart = anyio.Event()
                self._up.set()
                if not started:
                    started = True
                    task_status.started()
                await self._restart.wait()
            await anyio.sleep(self._restart_delay)

    async def restart(self, delay: float) -> None:
        """Stop the server, wait ``delay``, start it on the same port; return once it is up."""
        up = self._up = anyio.Event()
        self._restart_delay = delay
        self._restart.set()
        await up.wait()

    def _on_push(self, msg: ChannelMessage, conn: ServerConnection) -> tuple[str, Any]:
        if self.duplicate_replies:
            conn.reply(msg, "ok", {"duplicate": True})
        return "ok", msg.payload

    def live(self) -> list[ServerConnection]:
        """The open server connections."""
        return [c for c in self.phoenix.connections if c.open]

    def tick(self) -> None:
        """Push one tagged message on every joined channel of every open connection."""
        for conn in self.live():
            for topic, join_ref in list(conn.joined.items()):
                if join_ref is None:
                    continue
                self.seqs[join_ref] += 1
                conn.push(topic, "tick", {"j": join_ref, "seq": self.seqs[join_ref]})

    async def ticker(self) -> None:
        """Tick every 20 ms, forever."""
        while True:
            self.tick()
            await anyio.sleep(0.02)

    # ---- client side

    async def join(self, topic: str) -> None:
        """Join ``topic`` (anew), tracking what it delivers; retry while refused."""
        track = Track(topic)
        self.tracks[topic] = track
        while True:
            try:
                self.channels[topic] = await self.sock.join(topic, on_message=track.on_message)
                return
            except StxWsError:
                await anyio.sleep(0.1)

    def on_rejoin(self, channel: Any) -> None:
        """The client announced a gap on ``channel``."""
        track = self.tracks.get(channel.topic)
        if track is not None and self.channels.get(channel.topic) is channel:
            track.rejoins += 1

    async def pusher(self, n: int) -> None:
        """Push to random channels forever, recording each outcome and how long it took."""
        rng = random.Random(self.rng.random())
        while True:
            if not self.pushing:
                await anyio.sleep(0.05)
                continue
            topic = rng.choice(list(self.channels))
            ch = self.channels[topic]
            start = anyio.current_time()
            try:
                await ch.push("order", {"n": n}, timeout=PUSH_TIMEOUT)
                outcome = "ok"
            except StxWsError as exc:
                outcome = type(exc).__name__
            took = anyio.current_time() - start
            self.outcomes[outcome] += 1
            if took > PUSH_TIMEOUT + MARGIN:
                self.late.append(f"{topic}: {outcome} after {took:.2f} s")
            await anyio.sleep(rng.uniform(0.0, 0.02))

    async def repair(self) -> None:
        """Join anew, as a bot would, every channel the server closed for good."""
        while True:
            for topic, ch in list(self.channels.items()):
                if ch.closed:
                    await self.join(topic)
            await anyio.sleep(0.1)

    # ---- chaos

    async def fault(self, kind: str) -> None:
        """Inject one fault of ``kind``."""
        self.injected[kind] += 1
        rng, phoenix, srv = self.rng, self.phoenix, self.srv
        topics = list(self.channels)
        some = rng.sample(topics, k=max(1, len(topics) // 3))
        if kind == "drop":
            srv.drop_all()
        elif kind == "drop_mid_frame":
            for conn in self.live():
                frame = ws_frame(OP_TEXT, b'[null,null,"room:x","partial",{"pad":"' + b"x" * 64)
                conn.send_wire(frame[: rng.randrange(1, len(frame))])
            await anyio.sleep(0.01)
            srv.drop_all()
        elif kind == "drop_mid_handshake":
            srv.stall_handshake = True
            srv.drop_all()
            before = len(srv.raw_requests)
            with anyio.move_on_after(1.0):
                await srv.wait_until(lambda: len(srv.raw_requests) > before)
            srv.stall_handshake = False
        elif kind == "drop_mid_rejoin":
            srv.drop_all()
            with anyio.move_on_after(1.0):
                await srv.wait_until(lambda: any(c.open and c.received for c in self.live()))
            srv.drop_all()
        elif kind == "unanswered_heartbeats":
            phoenix.heartbeat_replies = False
            await anyio.sleep(rng.uniform(0.3, 1.5))
            phoenix.heartbeat_replies = True
        elif kind == "half_open":
            # The server goes silent, as behind a dead NAT: no replies, heartbeats unanswered.
            phoenix.heartbeat_replies = False
            phoenix.reply_delay = 30.0
            await anyio.sleep(rng.uniform(0.5, 1.5))
            phoenix.heartbeat_replies = True
            phoenix.reply_delay = 0.0
        elif kind == "refused_joins":
            for topic in some:
                phoenix.refuse_joins[topic] = {"reason": "try later"}
            for conn in self.live():
                for topic in some:
                    if topic in conn.joined:
                        conn.send_error(topic)
            await anyio.sleep(rng.uniform(0.1, 0.6))
            phoenix.refuse_joins.clear()
        elif kind in ("phx_error_storm", "phx_close_storm"):
            for conn in self.live():
                for topic in some:
                    if topic in conn.joined:
                        if kind == "phx_error_storm":
                            conn.send_error(topic)
                        else:
                            conn.send_close(topic)
        elif kind == "delayed_replies":
            phoenix.reply_delay = rng.uniform(0.05, 0.4)
            await anyio.sleep(rng.uniform(0.2, 1.0))
            phoenix.reply_delay = 0.0
        elif kind == "duplicated_replies":
            self.duplicate_replies = True
            await anyio.sleep(rng.uniform(0.2, 0.6))
            self.duplicate_replies = False
        elif kind == "unknown_refs":
            for conn in self.live():
                for topic in some:
                    reply = {"status": "ok", "response": {}}
                    ref = str(rng.randrange(10**6, 10**7))
                    conn.send_raw(f'[null,"{ref}","{topic}","phx_reply",{json.dumps(reply)}]')
        elif kind == "stale_frames":
            for conn in self.live():
                for topic in some:
                    stale = str(rng.randrange(10**6, 10**7))
                    payload = {"j": stale, "seq": 1, "stale": True}
                    conn.push(topic, "tick", payload, join_ref=stale)
        else:  # server_restart, on the same port
            await self.restart(rng.uniform(0.0, 0.3))

    async def chaos(self, seconds: float, plan: list[str]) -> None:
        """Inject the faults of ``plan`` first, then random ones, for ``seconds``."""
        with anyio.move_on_after(seconds):
            for kind in plan:
                await self.fault(kind)
                await anyio.sleep(self.rng.uniform(0.05, 0.2))
            while True:
                kind = self.rng.choice((*FAULTS, *DROPS))  # drops twice as likely
                await self.fault(kind)
                await anyio.sleep(self.rng.uniform(0.05, 0.3))

    def reset_switches(self) -> None:
        """Every fault switch back to normal."""
        phoenix = self.phoenix
        phoenix.heartbeat_replies = True
        phoenix.reply_delay = 0.0
        phoenix.refuse_joins.clear()
        self.duplicate_replies = False
        self.srv.stall_handshake = False

    async def heal(self) -> None:
        """Stop the faults and the pushes; wait until every channel is joined and quiet."""
        self.reset_switches()
        self.pushing = False
        with anyio.fail_after(HEAL_LIMIT):
            while not (
                self.sock.connected
                and all(ch.joined and not ch.closed for ch in self.channels.values())
                and all(ch.topic in self._joined_on_server() for ch in self.channels.values())
            ):
                await anyio.sleep(0.02)
            # Every channel answers a push: joined on the server, not only in the client.
            for ch in list(self.channels.values()):
                await ch.push("ping", {}, timeout=PUSH_TIMEOUT * 3)
            # Let every pusher finish its push in flight.
            await anyio.sleep(PUSH_TIMEOUT + 0.2)
        self.forget_server_history()

    def forget_server_history(self) -> None:
        """Drop what the test server keeps for tests to inspect (every connection ever made,
        every frame received): it lives in this process and would grow RSS, and the soak
        measures the client's memory, not the test server's."""
        phoenix = self.phoenix
        phoenix.all_connections[:] = list(phoenix.connections)
        for conn in phoenix.connections:
            conn.received.clear()
        self.srv.raw_requests.clear()
        live = {j for c in phoenix.connections for j in c.joined.values()}
        for join_ref in [j for j in self.seqs if j not in live]:
            del self.seqs[join_ref]

    def _joined_on_server(self) -> set[str]:
        return {t for c in self.live() for t in c.joined}


async def run_soak(impl: Impl, seed: int) -> dict[str, Any]:
    """One soak on ``impl``; return what it measured (the caller asserts)."""
    rng = random.Random(seed)
    soak = Soak(impl, rng)
    tasks_after: list[int] = []
    waiters_after: list[int] = []
    rss_after: list[int] = []
    # Every kind once in the first repetitions, in a seeded order; then at random.
    plan = list(FAULTS)
    rng.shuffle(plan)
    per_rep = -(-len(plan) // REPETITIONS)
    async with anyio.create_task_group() as server_tg:
        await server_tg.start(soak.serve)
        sock = impl.module.Socket(
            soak.srv.url,
            timeout=PUSH_TIMEOUT,
            connect_timeout=0.5,
            heartbeat_interval=0.4,
            heartbeat_timeout=0.4,
            close_timeout=0.5,
            retry=RetryPolicy(initial_backoff=0.02, max_backoff=0.3),
            rejoin=RetryPolicy(initial_backoff=0.05, max_backoff=0.3, max_refusals=None),
            on_rejoin=soak.on_rejoin,
            rng=random.Random(seed),
        )
        async with sock, anyio.create_task_group() as tg:
            soak.sock = sock
            for i in range(CHANNELS):
                await soak.join(f"room:{i}")
            running = client_tasks(impl.backend)
            assert running, "the socket's tasks must be visible, or the leak check means nothing"
            tg.start_soon(soak.ticker)
            tg.start_soon(soak.repair)
            for n in range(PUSHERS):
                tg.start_soon(soak.pusher, n)
            for rep in range(REPETITIONS):
                soak.pushing = True
                await soak.chaos(CHAOS_SECONDS, plan[rep * per_rep : (rep + 1) * per_rep])
                await soak.heal()
                gc.collect()
                tasks_after.append(len(client_tasks(impl.backend)))
                waiters_after.append(live_waiters())
                rss_after.append(rss_bytes())
            tg.cancel_scope.cancel()
        # The server's side of the last connection ends a moment after the client's.
        with anyio.move_on_after(2.0):
            while client_tasks(impl.backend):
                await anyio.sleep(0.01)
        gc.collect()
        end_names = client_tasks(impl.backend)
        end_waiters = live_waiters()
        server_tg.cancel_scope.cancel()
    return {
        "soak": soak,
        "tasks": tasks_after,
        "waiters": waiters_after,
        "rss": rss_after,
        "end_waiters": end_waiters,
        "end_names": end_names,
    }


async def test_chaos_soak(impl: Impl) -> None:
    seed = SEED + list(IMPLS.values()).index(impl)
    with anyio.fail_after(REPETITIONS * (CHAOS_SECONDS + HEAL_LIMIT + 5) + 30):
        result = await run_soak(impl, seed)
    soak: Soak = result["soak"]
    errors = [e for t in soak.tracks.values() for e in t.errors]
    assert not errors, errors[:10]
    assert not soak.late, soak.late[:10]
    assert soak.outcomes["ok"] > 0
    assert all(t.messages > 0 for t in soak.tracks.values())
    # No leak: the same number of tasks and waiters after every repetition.
    assert len(set(result["tasks"])) == 1, result["tasks"]
    assert len(set(result["waiters"])) == 1, result["waiters"]
    rss = result["rss"]
    assert rss[-1] - rss[1] < 5 * 1024 * 1024, rss
    # Clean shutdown: nothing of the socket is left running, and no waiter is left.
    assert result["end_names"] == []
    assert result["end_waiters"] == 0
    if LONG:
        assert set(soak.injected) == set(FAULTS)
        assert sum(soak.injected[k] for k in DROPS) >= 100
    TOTALS["injected"].update(soak.injected)
    TOTALS["survived"].update(soak.injected)  # every repetition healed, so every fault survived
    print(f"\n{impl.module.__name__} on {impl.backend}, seed {seed}:")
    for kind in FAULTS:
        print(f"  {kind:<22} injected {soak.injected[kind]:>4}  survived {soak.injected[kind]:>4}")
    print(f"  drops in all: {sum(soak.injected[k] for k in DROPS)}")
    print(f"  push outcomes: {dict(soak.outcomes)}")
    print(f"  RSS after each repetition (MB): {[round(r / 2**20, 1) for r in rss]}")
