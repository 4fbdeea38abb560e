"""The rows of the side-by-side benchmarks, as data.

A row is one client: this project's ``Socket`` with a set of options, a bare baseline loop,
or a Python peer. Adding an option to compare is adding a row: the options go to the Socket
constructor as they are, and a row whose options the constructor refuses (TypeError or
UsageError), or whose packages are missing, is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import attrs
from bench_common import ALL_SCENARIOS, CHANNELS, INBOUND, RTT


@attrs.frozen
class Row:
    """One client of the benchmarks.

    ``kind``: ``ours`` (``driver`` is ``stx_anyio`` or ``stx_trio``, ``options`` go to its
    Socket), ``bare`` (``client`` names the loop in bare_clients.py) or ``peer`` (``client``
    names the peer). ``loop``: ``asyncio``, ``uvloop`` or ``trio``. ``baseline``: the bare
    row this one is compared with (None: none). ``requires``: modules that must import.
    """

    label: str
    kind: str
    loop: str
    scenarios: tuple[str, ...]
    driver: str = ""
    client: str = ""
    options: dict[str, Any] = attrs.field(factory=dict)
    requires: tuple[str, ...] = ()
    baseline: str | None = None
    smoke: bool = False
    color: str = "tab:blue"

    def missing(self) -> str | None:
        """The first required module that is not installed, or None."""
        for name in self.requires:
            if importlib.util.find_spec(name) is None:
                return name
        return None


def _ours(
    driver: str,
    loop: str,
    options: dict[str, Any],
    *,
    smoke: bool = False,
    scenarios: tuple[str, ...] = (INBOUND, RTT),
) -> Row:
    json = options.get("json", "stdlib")
    extra = "".join(f", {k}={v}" for k, v in options.items() if k != "json")
    label = f"{driver} {loop} {json}{extra}"
    requires = [driver, "trio" if loop == "trio" else "anyio"]
    if loop == "uvloop":
        requires.append("uvloop")
    if json == "orjson":
        requires.append("orjson")
    for module in (options.get("engine"), options.get("transport")):
        if module is not None and module not in ("wsproto", "tcp"):
            requires.append(module)
    return Row(
        label=label,
        kind="ours",
        loop=loop,
        driver=driver,
        options=options,
        requires=tuple(requires),
        baseline=f"bare wsproto json {loop}",
        scenarios=scenarios,
        smoke=smoke,
        color="tab:blue",
    )


def _bare(engine: str, json: str, loop: str, *, smoke: bool = False, decode: bool = True) -> Row:
    requires = [engine, "trio" if loop == "trio" else "asyncio"]
    if loop == "uvloop":
        requires.append("uvloop")
    if json == "orjson":
        requires.append("orjson")
    label = f"bare {engine} {json} {loop}" if decode else f"server ceiling: bare {engine} {loop}"
    return Row(
        label=label,
        kind="bare",
        loop=loop,
        client=f"{engine}-{json}-{loop}" if decode else f"{engine}-none-{loop}",
        requires=tuple(requires),
        scenarios=(INBOUND, RTT) if decode else (INBOUND,),
        smoke=smoke,
        color="tab:gray" if decode else "black",
    )


ROWS: list[Row] = [
    # This project: each driver on each event loop, stdlib json and orjson.
    _ours("stx_anyio", "asyncio", {"json": "stdlib"}, smoke=True, scenarios=ALL_SCENARIOS),
    _ours("stx_anyio", "asyncio", {"json": "orjson"}, scenarios=(INBOUND, RTT, CHANNELS)),
    _ours("stx_anyio", "uvloop", {"json": "stdlib"}),
    _ours("stx_anyio", "uvloop", {"json": "orjson"}),
    _ours("stx_anyio", "trio", {"json": "stdlib"}),
    _ours("stx_anyio", "trio", {"json": "orjson"}),
    _ours("stx_trio", "trio", {"json": "stdlib"}, smoke=True, scenarios=ALL_SCENARIOS),
    _ours("stx_trio", "trio", {"json": "orjson"}, scenarios=(INBOUND, RTT, CHANNELS)),
    # Engines and transports of the second speed issue (skipped until the Socket takes them).
    _ours("stx_anyio", "asyncio", {"json": "orjson", "engine": "websockets"}),
    _ours("stx_anyio", "trio", {"json": "orjson", "engine": "websockets"}),
    _ours("stx_trio", "trio", {"json": "orjson", "engine": "websockets"}),
    _ours("stx_anyio", "uvloop", {"json": "orjson", "transport": "picows"}),
    # Round trips without busy-polling (the bare loops and the peers sleep in the loop's poll
    # while a reply is due; this project's Socket spins for up to busy_poll by default).
    *(
        _ours(driver, loop, {**options, "busy_poll": 0}, scenarios=(RTT,))
        for driver, loop, options in (
            ("stx_anyio", "asyncio", {"json": "stdlib"}),
            ("stx_anyio", "uvloop", {"json": "stdlib"}),
            ("stx_anyio", "trio", {"json": "stdlib"}),
            ("stx_trio", "trio", {"json": "stdlib"}),
            ("stx_trio", "trio", {"json": "orjson", "engine": "websockets"}),
            ("stx_anyio", "uvloop", {"json": "orjson", "transport": "picows"}),
        )
    ),
    # The bare loops: handshake, join, read, decode each message, count; push and await.
    _bare("wsproto", "json", "asyncio", smoke=True),
    _bare("wsproto", "orjson", "asyncio"),
    _bare("wsproto", "json", "uvloop"),
    _bare("wsproto", "json", "trio", smoke=True),
    _bare("wsproto", "orjson", "trio"),
    _bare("websockets", "orjson", "asyncio"),
    _bare("websockets", "orjson", "trio"),
    _bare("picows", "orjson", "uvloop"),
    # What the server can send: bare picows counting frames, no JSON decoding.
    _bare("picows", "none", "uvloop", decode=False),
    # The two Python peers, each in its own virtual environment.
    Row(
        label="realtime (Supabase) 2.34.1",
        kind="peer",
        loop="asyncio",
        client="realtime",
        scenarios=(INBOUND, RTT),
        color="tab:orange",
    ),
    Row(
        label="phoenix-channels-python-client 0.4.1",
        kind="peer",
        loop="asyncio",
        client="pcpc",
        scenarios=(INBOUND,),
        color="tab:orange",
    ),
]

# The peers' packages, pinned, and the script that drives each (in its own venv).
PEERS: dict[str, tuple[str, str]] = {
    "realtime": ("realtime==2.34.1", "peer_realtime.py"),
    "pcpc": ("phoenix-channels-python-client==0.4.1", "peer_pcpc.py"),
}


def find(label: str) -> Row:
    """The row labelled ``label``; raises KeyError if there is none."""
    for row in ROWS:
        if row.label == label:
            return row
    raise KeyError(label)
