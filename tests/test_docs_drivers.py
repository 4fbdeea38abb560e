"""Every Python block of docs/drivers.md runs against the loopback test server.

The quick-start blocks run as scripts would (``__name__ == "__main__"``, in a worker thread
that has no event loop yet), with the placeholder URL replaced by the test server's. The
others define ``main`` (or, for the testing section, pytest tests), which run here on asyncio
and on trio. Each block is found by a marker string that only it contains, and
:func:`test_every_block_runs` checks that every block has exactly one marker, so a block added
to the page without a test here fails the suite.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import trustme

from stx_anyio import GaveUpError, Socket
from stx_anyio.testing import TestServer
from stx_proto import ChannelMessage
from stx_proto.testing import PhoenixServer, ServerConnection

from .test_docs import ROOT, python_blocks

pytestmark = pytest.mark.anyio

DOC = ROOT / "docs" / "drivers.md"
BLOCKS = python_blocks(DOC)
PLACEHOLDER = "ws://localhost:4000/socket"
LIMIT = 5.0  # seconds any one example may take

# One marker per block: a string that only that block contains.
QS_ASYNCIO = "asyncio.run(main("
QS_TRIO_ANYIO = 'print("reply:", await ch.push('
QS_TRIO_NATIVE = "from stx_trio import Socket"
QS_RUN = "print(run(main"
JOIN = '"market:closed"'
PUSH = "async def place("
CANCEL = "anyio.move_on_after(0.25)"
LEAVE = 'a = await sock.join("room:a")'
RECEIVE = 'orders.on("fill"'
QUEUE = 'dispatch="queue"'
OVERFLOW = 'overflow="error"'
HANDLER_ERRORS = "def on_handler_error(exc, msg):\n        # Already logged"
TYPED = "class MarketUpdate(msgspec.Struct)"
HOOKS = "async def on_rejoin("
RETRY = "RETRY = RetryPolicy("
CREDENTIALS = "async def login()"
TLS = "def tls_context("
PICOWS = 'transport="picows"'
STATS = "async def report("
TESTING = "class Bot:"
MANUAL = "await sock.connect()"
DECLARE = "sock.run()"
PRESENCE = "room.presence.on_join(on_join)"
MARKERS = (
    QS_ASYNCIO,
    QS_TRIO_ANYIO,
    QS_TRIO_NATIVE,
    QS_RUN,
    JOIN,
    PUSH,
    CANCEL,
    LEAVE,
    RECEIVE,
    QUEUE,
    OVERFLOW,
    HANDLER_ERRORS,
    TYPED,
    HOOKS,
    RETRY,
    CREDENTIALS,
    TLS,
    PICOWS,
    STATS,
    TESTING,
    MANUAL,
    DECLARE,
    PRESENCE,
)

JoinHandler = Callable[[str, Any, ServerConnection], tuple[str, Any]]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


def block(marker: str) -> str:
    """The one block of the page that contains ``marker``."""
    (found,) = [b for b in BLOCKS if marker in b]
    return found


def namespace(marker: str) -> dict[str, Any]:
    """The globals of the block with ``marker``, executed as a module (not as a script)."""
    ns: dict[str, Any] = {"__name__": "drivers_doc"}
    exec(compile(block(marker), f"{DOC.name}[{marker}]", "exec"), ns)
    return ns


async def run_main(marker: str | dict[str, Any], *args: Any) -> None:
    """Run the ``main`` of a block (a marker, or a namespace from :func:`namespace`)."""
    ns = namespace(marker) if isinstance(marker, str) else marker
    main: Callable[..., Awaitable[Any]] = ns["main"]
    with anyio.fail_after(LIMIT):
        await main(*args)


def watch_joins(ns: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch) -> anyio.Event:
    """Make the block's socket class ``name`` set the returned event once a join returns.

    The server's ``wait_for_join`` returns before the client has read the join reply; a test
    that cuts the connection to see a rejoin must wait for the client's side of the join.
    """
    joined = anyio.Event()
    base: type[Any] = ns[name]

    class Watched(base):  # type: ignore[misc]
        async def join(self, *args: Any, **kwargs: Any) -> Any:
            channel = await super().join(*args, **kwargs)
            joined.set()
            return channel

    monkeypatch.setitem(ns, name, Watched)
    return joined


def after_join(*messages: tuple[str, Any], response: Any = None) -> JoinHandler:
    """An ``on_join`` that accepts and then pushes ``messages``, as Phoenix's after_join."""

    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
        for event, body in messages:
            conn.push(topic, event, body)
        return "ok", {} if response is None else response

    return on_join


def sent(conn: ServerConnection, event: str) -> list[str]:
    """The topics of the frames with ``event`` that the client sent on ``conn``."""
    return [m.topic for m in conn.received if m.event == event]


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_every_block_runs() -> None:
    assert len(BLOCKS) == len(MARKERS)
    for index, text in enumerate(BLOCKS):
        hits = [m for m in MARKERS if m in text]
        assert len(hits) == 1, f"block {index} matches markers {hits}"


# ----------------------------------------------------------------------------------------
# Quick start: run as scripts, each in a thread with no event loop (the server runs here).

SCRIPTS = {
    QS_ASYNCIO: ["welcome {'n': 1}", "reply: {'body': 'hi'}"],
    QS_TRIO_ANYIO: ["reply: {'body': 'hi'}"],
    QS_TRIO_NATIVE: ["welcome {'n': 1}"],
    QS_RUN: ["{'body': 'hi'}", "{'body': 'hi'}"],  # once on asyncio, once on trio
    DECLARE: ["connected", "welcome {'n': 1}"],
}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("marker", list(SCRIPTS))
async def test_quick_start_script(marker: str, capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("room:*", on_join=after_join(("welcome", {"n": 1})))
    async with TestServer(phoenix) as server:
        source = block(marker).replace(PLACEHOLDER, server.url)
        assert server.url in source
        code = compile(source, f"{DOC.name}[{marker}]", "exec")

        def script() -> None:
            exec(code, {"__name__": "__main__"})

        with anyio.fail_after(LIMIT):
            await anyio.to_thread.run_sync(script, abandon_on_cancel=True)
    assert lines(capsys) == SCRIPTS[marker]
    for conn in phoenix.all_connections:
        assert sent(conn, "phx_leave") == ["room:lobby"]
        assert conn.close_code == 1000
    if marker == QS_TRIO_NATIVE:
        (push,) = [m for m in phoenix.all_connections[0].received if m.event == "new_msg"]
        assert push.payload == {"body": "from a task"}


# ----------------------------------------------------------------------------------------
# The other blocks: main(...) on asyncio and on trio.


async def test_join(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("market:*", on_join=after_join(response={"snapshot": "s1"}))
    phoenix.refuse_joins["market:closed"] = {"reason": "market closed"}
    async with TestServer(phoenix) as server:
        await run_main(JOIN, server.url)
    assert lines(capsys) == [
        "<Channel 'market:nhl' joined> {'snapshot': 's1'}",
        "refused: refused {'reason': 'market closed'}",
    ]
    (join, _) = [m for m in phoenix.all_connections[0].received if m.event == "phx_join"]
    assert join.payload == {"since": 0}


async def test_push(capsys: pytest.CaptureFixture[str]) -> None:
    def on_push(msg: ChannelMessage, conn: ServerConnection) -> tuple[str, Any]:
        order = msg.payload
        if order["qty"] <= 0:
            return "error", {"reason": "qty must be > 0"}
        return "ok", {"order_id": f"o-{order['client_order_id']}"}

    phoenix = PhoenixServer()
    phoenix.route("orders:*", on_push=on_push)
    async with TestServer(phoenix) as server:
        await run_main(PUSH, server.url)
    assert lines(capsys) == [
        "placed: {'order_id': 'o-c-1'}",
        "rejected: error {'reason': 'qty must be > 0'}",
    ]


async def test_cancelled_push(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("orders:*")
    phoenix.reply_delay = 10.0  # the quote goes out and is never answered in time
    async with TestServer(phoenix) as server:
        await run_main(CANCEL, server.url)
    assert lines(capsys) == ["no ack for q-1 in time"]
    conn = phoenix.all_connections[0]
    assert sent(conn, "quote") == ["orders:ada"]  # it had gone out, and went out once
    assert conn.close_code == 1000


async def test_leave_and_close(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("room:*")
    async with TestServer(phoenix) as server:
        await run_main(LEAVE, server.url)
    assert lines(capsys) == ["a: True left", "b: True socket_closed connected: False"]
    conn = phoenix.all_connections[0]
    assert sent(conn, "phx_leave") == ["room:a", "room:b"]
    assert conn.close_code == 1000


async def test_receive(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("market:*", on_join=after_join(("update", {"bid": 4500})))
    phoenix.route(
        "orders:*",
        on_join=after_join(("fill", {"qty": 3}), ("cancelled", {"client_order_id": "c-9"})),
    )
    phoenix.route(
        "trades:*", on_join=after_join(("trade", {"price": 4510}), ("halted", {}), ("late", {}))
    )
    async with TestServer(phoenix) as server:
        await run_main(RECEIVE, server.url)
    assert sorted(lines(capsys)) == [
        "cancelled: c-9",
        "fill: 3",
        "market: {'bid': 4500}",
        "trade: halted {}",
        "trade: trade {'price': 4510}",
    ]


async def test_queue_dispatch(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("market:*", on_join=after_join(("update", {"seq": 1}), ("update", {"seq": 2})))
    async with TestServer(phoenix) as server:
        await run_main(QUEUE, server.url)
    assert lines(capsys) == [
        "market:nhl {'seq': 1}",
        "market:nhl {'seq': 2}",
        "market:nba {'seq': 1}",
        "market:nba {'seq': 2}",
    ]


async def test_overflow_error(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # 150 diffs right after the join reply, in one write: they reach the client together,
    # before the example starts reading, and the 101st finds the queue of 100 full.
    diffs = [("diff", {"price": 4000 + i, "qty": i}) for i in range(150)]
    phoenix = PhoenixServer()
    phoenix.route("book:*", on_join=after_join(*diffs))
    with caplog.at_level(logging.WARNING):
        async with TestServer(phoenix) as server:
            await run_main(OVERFLOW, server.url)
    # Every one of the 150 is accounted for: 100 applied, the 101st found the queue full, and
    # the 49 after it arrived for a channel already failed (and being left).
    assert lines(capsys) == ["fell behind on book:nhl: 50 lost, 100 applied"]
    assert sent(phoenix.all_connections[0], "phx_leave") == ["book:nhl"]
    assert "queue full (100 messages, first overflow on 'book:nhl')" in caplog.text


async def test_handler_errors(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    updates = [("update", {"bid": 4500}), ("update", {"ask": 4600}), ("update", {"bid": 4510})]
    phoenix = PhoenixServer()
    phoenix.route("market:*", on_join=after_join(*updates))
    with caplog.at_level(logging.WARNING):
        async with TestServer(phoenix) as server:
            await run_main(HANDLER_ERRORS, server.url)
    assert lines(capsys) == [
        "bid: 4500",
        "handler error in market:nhl update: KeyError('bid')",
        "bid: 4510",
        "1 error(s)",
    ]
    (record,) = [r for r in caplog.records if "raised on" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.exc_info is not None  # with its traceback


async def test_typed_payloads(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    good = {"market_id": "m1", "bids": [{"price": 4500, "quantity": 3}]}
    bad = {"market_id": "m1", "bids": [{"price": "high", "quantity": 3}]}
    updates = [("market_update", body) for body in (good, bad, bad, good)]
    phoenix = PhoenixServer()
    phoenix.route("market:*", on_join=after_join(*updates))
    # Compiled without this file's `from __future__ import annotations`, as a user's module
    # would be: msgspec reads the Structs' annotations (strings would need the module).
    ns: dict[str, Any] = {"__name__": "drivers_doc"}
    exec(compile(block(TYPED), f"{DOC.name}[{TYPED}]", "exec", dont_inherit=True), ns)
    with caplog.at_level(logging.WARNING):
        async with TestServer(phoenix) as server:
            await run_main(ns, server.url)
    invalid = "invalid market_update: Expected `int`, got `str` - at `$.bids[0].price`"
    assert lines(capsys) == [
        "m1 best bid 4500",
        invalid,
        invalid,
        "m1 best bid 4500",
        "invalid payloads: 2",
    ]
    warned = [r for r in caplog.records if "not a valid MarketUpdate" in r.getMessage()]
    assert len(warned) == 1  # once per event of the channel


async def test_hooks_and_rejoin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = namespace(HOOKS)
    joined = watch_joins(ns, "Socket", monkeypatch)
    phoenix = PhoenixServer()
    phoenix.route("orders:*")
    async with TestServer(phoenix) as server, anyio.create_task_group() as tg:
        tg.start_soon(run_main, ns, server.url)
        with anyio.fail_after(LIMIT):
            await joined.wait()
        server.drop_all()
    out = lines(capsys)
    assert out[0] == "connected"
    assert out[1].startswith("disconnected: transport closed")
    assert "; reconnecting in " in out[1]
    assert out[2:] == [
        "connected",
        "rejoined orders:ada: 1 open order(s) after reconciling",
        "disconnected: client closed (close code 1000)",
    ]
    assert [sent(c, "phx_join") for c in phoenix.all_connections] == [["orders:ada"]] * 2


async def test_retry_gives_up_on_1008(capsys: pytest.CaptureFixture[str]) -> None:
    ns = namespace(RETRY)
    policy = ns["RETRY"]
    assert (policy.max_attempts, policy.max_refusals, policy.max_backoff) == (20, 3, 10.0)
    phoenix = PhoenixServer()
    phoenix.route("orders:*")
    async with TestServer(phoenix) as server, anyio.create_task_group() as tg:
        tg.start_soon(run_main, RETRY, server.url)
        await server.wait_for_join("orders:ada")
        server.close_all(1008)
    assert lines(capsys) == [
        "gave up: gave up after 1 attempt(s): the server closed the connection (close code 1008)"
        " | close code: 1008"
    ]
    assert len(phoenix.all_connections) == 1  # 1008 is final: no reconnect


async def test_stx_token_refresh(monkeypatch: pytest.MonkeyPatch) -> None:
    ns = namespace(CREDENTIALS)
    assert await ns["login"]() == "fake-jwt"  # the page's fake, as written
    tokens = iter(["jwt-1", "jwt-2"])
    calls = 0

    async def login() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(0)  # the HTTP round trip
        return next(tokens)

    monkeypatch.setitem(ns, "login", login)
    monkeypatch.delenv("STX_TOKEN", raising=False)
    joined = watch_joins(ns, "STXWebSocket", monkeypatch)
    phoenix = PhoenixServer()
    phoenix.route("*")
    async with TestServer(phoenix) as server:
        monkeypatch.setenv("STX_WS_URL", server.url)
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_main, ns)
            with anyio.fail_after(LIMIT):
                await joined.wait()
            server.drop_all()
    conns = phoenix.all_connections
    assert [c.params["token"] for c in conns] == ["jwt-1", "jwt-2"]
    assert [sent(c, "phx_join") for c in conns] == [["market_info"]] * 2
    assert calls == 2


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def cafile(tls_ca: trustme.CA, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    yield path


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})])
async def test_picows_and_uvloop(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("room:*")
    async with TestServer(phoenix) as server:
        await run_main(PICOWS, server.url)
    assert lines(capsys) == ["picows reply: {'body': 'fast'}"]


async def test_tls(tls_ca: trustme.CA, cafile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    phoenix = PhoenixServer()
    phoenix.route("room:*")
    async with TestServer(phoenix, ssl_context=server_ctx) as server:
        assert server.url.startswith("wss://")
        await run_main(TLS, server.url, str(cafile))
        assert lines(capsys) == ["joined over TLS"]
        # Verification is on by default: without the CA the certificate is refused.
        with anyio.fail_after(LIMIT), pytest.raises(GaveUpError, match="CERTIFICATE_VERIFY"):
            async with Socket(server.url, retry=None) as sock:
                await sock.join("room:lobby")


async def test_stats(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("room:*")
    async with TestServer(phoenix) as server:
        await run_main(STATS, server.url)
    assert lines(capsys) == ["messages=0 dropped=0 reconnects=0"]


async def test_testing_example() -> None:
    ns = namespace(TESTING)
    tests = [fn for name, fn in ns.items() if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        assert inspect.iscoroutinefunction(test)
        with anyio.fail_after(LIMIT):
            await test()


# ----------------------------------------------------------------------------------------
# Without async with: connect and close by hand; presence with two sockets.


async def test_manual_connect_and_close(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("room:*")
    async with TestServer(phoenix) as server:
        await run_main(MANUAL, server.url)
    assert lines(capsys) == ["open joined", "{'body': 'hi'}", "closed closed"]
    (conn,) = phoenix.all_connections
    assert sent(conn, "phx_leave") == ["room:lobby"] and conn.close_code == 1000


async def test_presence_with_two_sockets(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    members: dict[str, Any] = {}

    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
        # As a Phoenix channel tracking presence: the state to the newcomer, a diff to the rest.
        user = payload["user"]
        joined = {user: {"metas": [{"phx_ref": user}]}}
        for other in phoenix.joined(topic):
            if other is not conn:
                other.broadcast(topic, "presence_diff", {"joins": joined, "leaves": {}})
        members.update(joined)
        conn.presence_state(topic, members)
        return "ok", {}

    phoenix.route("room:*", on_join=on_join)
    async with TestServer(phoenix) as server:
        await run_main(PRESENCE, server.url)
    assert lines(capsys) == ["joined: alice", "joined: bob", "['alice', 'bob']"]
