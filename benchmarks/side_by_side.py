"""The side-by-side benchmarks: every client against one blast and echo server, interleaved.

Starts blast_server.py in its own process (127.0.0.1, a free port), then runs each client of
bench_rows.py in its own process per measurement (so CPU time and peak RSS are that
client's), round-robin over the clients, repeated; reports medians. The two Python peers run
from their own virtual environments under ``.bench/``, created here on first use.

    python benchmarks/side_by_side.py                 # the full run: docs/benchmarks.md + charts
    python benchmarks/side_by_side.py --smoke --out /tmp/bench.md   # a few seconds, no peers

The full run writes ``docs/benchmarks.md`` and ``docs/img/bench-*.png``; every figure on
that page comes from the run that wrote it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))
from bench_common import CHANNELS, INBOUND, RESULT_PREFIX, RTT, SLOW  # noqa: E402
from bench_rows import PEERS, ROWS, Row  # noqa: E402

ROOT = _HERE.parent
BENCH_DIR = ROOT / ".bench"
SCENARIOS = (INBOUND, RTT, CHANNELS, SLOW)
# Seconds one client process may take, per scenario (it is killed past that).
TIMEOUTS = {INBOUND: 120.0, RTT: 90.0, CHANNELS: 120.0, SLOW: 300.0}
SERVER_START = 60.0  # seconds for the server to build its blasts and print its port
PEER_INSTALL = 600.0  # seconds for one peer's virtual environment to be created


@attrs.frozen
class Plan:
    """What one run measures: message counts per scenario, repetitions, which rows."""

    counts: dict[str, int]
    reps: int
    smoke: bool
    queue_size: int | None  # for the slow consumer (None: the Socket's default)
    peers: bool
    charts: bool
    timeout_scale: float = 1.0
    #: Fewer repetitions for some scenarios (a scenario absent here has ``reps``).
    reps_by_scenario: dict[str, int] = attrs.field(factory=dict)

    def reps_of(self, scenario: str) -> int:
        """How many times ``scenario`` is measured."""
        return min(self.reps, self.reps_by_scenario.get(scenario, self.reps))


# Five repetitions of the ratios' scenarios (this shared machine's run-to-run noise is
# larger than the differences they measure); the slow consumer, a minute a run and a bound
# on memory rather than a ratio, runs once; the channels, three times.
FULL = Plan(
    counts={INBOUND: 100_000, RTT: 2_000, CHANNELS: 10_000, SLOW: 200_000},
    reps=5,
    smoke=False,
    queue_size=None,
    peers=True,
    charts=True,
    reps_by_scenario={CHANNELS: 3, SLOW: 1},
)
SMOKE = Plan(
    counts={INBOUND: 3_000, RTT: 200, CHANNELS: 300, SLOW: 3_000},
    reps=1,
    smoke=True,
    queue_size=300,
    peers=False,
    charts=False,
    timeout_scale=0.25,
)


@attrs.define
class Outcome:
    """Every run of one row in one scenario: results (dicts of figures) and errors."""

    results: list[dict[str, Any]] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)

    def values(self, key: str) -> list[float]:
        """``key`` of every run that produced it."""
        return [float(r[key]) for r in self.results if isinstance(r.get(key), int | float)]

    def median(self, key: str) -> float | None:
        """The median of ``key`` over the runs that produced it, or None."""
        values = self.values(key)
        return statistics.median(values) if values else None

    def best(self, key: str, *, lowest: bool = False) -> float | None:
        """The best run's ``key`` (the highest, or the lowest for a time), or None: the run
        the machine disturbed least."""
        values = self.values(key)
        if not values:
            return None
        return min(values) if lowest else max(values)


@attrs.define
class Report:
    """The outcome of a run: per (row label, scenario), and the rows skipped (with why)."""

    plan: Plan
    rows: list[Row]
    outcomes: dict[tuple[str, str], Outcome] = attrs.field(factory=dict)
    skipped: dict[str, str] = attrs.field(factory=dict)
    started: datetime = attrs.field(factory=lambda: datetime.now(timezone.utc))
    seconds: float = 0.0
    versions: dict[str, str] = attrs.field(factory=dict)

    def outcome(self, label: str, scenario: str) -> Outcome:
        """The outcome of ``label`` in ``scenario`` (empty if it never ran)."""
        return self.outcomes.setdefault((label, scenario), Outcome())

    def ran(self, scenario: str) -> list[Row]:
        """The rows that ran ``scenario`` (not skipped)."""
        return [r for r in self.rows if scenario in r.scenarios and r.label not in self.skipped]


# ------------------------------------------------------------------------------------------
# Processes


class BlastServer:
    """blast_server.py in its own process; ``port`` once started. Use as a context manager."""

    def __init__(self, max_count: int, peer_count: int, log: Path) -> None:
        self._args = [
            sys.executable,
            str(_HERE / "blast_server.py"),
            "--max-count",
            str(max_count),
            "--peer-count",
            str(peer_count),
        ]
        self._log = log
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> BlastServer:
        self._log.parent.mkdir(parents=True, exist_ok=True)
        with self._log.open("w") as log:
            self._proc = subprocess.Popen(
                self._args, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT
            )
        try:
            stdout = self._proc.stdout
            assert stdout is not None
            ready, _, _ = select.select([stdout], [], [], SERVER_START)
            line = stdout.readline() if ready else ""
            if not line.startswith("PORT "):
                raise RuntimeError(f"the blast server did not start (see {self._log})")
            self.port = int(line.split()[1])
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Terminate the server (kill it if it lingers)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def alive(self) -> bool:
        """True while the server process runs."""
        return self._proc is not None and self._proc.poll() is None


def peer_python(name: str) -> Path:
    """The interpreter of peer ``name``'s virtual environment."""
    return BENCH_DIR / f"venv-{name}" / "bin" / "python"


def ensure_peer(name: str) -> str | None:
    """Create peer ``name``'s virtual environment (pip install of its pinned version) unless
    it is there; return None when ready, else why not."""
    pin, _script = PEERS[name]
    venv = BENCH_DIR / f"venv-{name}"
    stamp = venv / ".bench-pin"
    if stamp.exists() and stamp.read_text() == pin and peer_python(name).exists():
        return None
    print(f"creating {venv} with {pin} ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(peer_python(name)), "-m", "pip", "install", "--quiet", pin],
    ]
    for step in steps:
        try:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=PEER_INSTALL, check=False
            )
        except subprocess.TimeoutExpired:
            return f"`{' '.join(step[-2:])}` timed out"
        if done.returncode != 0:
            return f"`{' '.join(step[-2:])}` failed: {done.stderr.strip()[-300:]}"
    stamp.write_text(pin)
    return None


def peer_versions(name: str) -> dict[str, str]:
    """The versions of the packages in peer ``name``'s environment that matter here."""
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for d in ('realtime', 'phoenix-channels-python-client', 'websockets', 'pydantic'):\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    try:
        done = subprocess.run(
            [str(peer_python(name)), "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        versions: dict[str, str] = json.loads(done.stdout)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        return {}
    return versions


def command(row: Row, scenario: str, port: int, plan: Plan) -> list[str]:
    """The command line of one client run."""
    count = str(plan.counts[scenario])
    if row.kind == "peer":
        _pin, script = PEERS[row.client]
        args = [str(peer_python(row.client)), str(_HERE / script), scenario]
    else:
        args = [sys.executable, str(_HERE / "bench_client.py"), row.label, scenario]
    args += ["--port", str(port), "--count", count]
    if scenario == SLOW and plan.queue_size is not None:
        args += ["--queue-size", str(plan.queue_size)]
    return args


def run_client(row: Row, scenario: str, port: int, plan: Plan) -> dict[str, Any]:
    """Run one client process; return its result, or ``{"error": ...}``. A process that
    outlives its timeout is killed."""
    args = command(row, scenario, port, plan)
    timeout = TIMEOUTS[scenario] * plan.timeout_scale
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s (killed)"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {done.returncode}: {tail[:300]}"}


# ------------------------------------------------------------------------------------------
# Which rows run


def skip_reason(row: Row) -> str | None:
    """Why ``row`` cannot run here (a package missing, an option refused), or None."""
    if row.kind == "peer":
        return None
    missing = row.missing()
    if missing is not None:
        return f"{missing} is not installed"
    if row.kind == "ours":
        return refused(row)
    return None


def refused(row: Row) -> str | None:
    """Why the row's Socket refuses its options (TypeError or UsageError), or None."""
    module = __import__(row.driver)
    from stx_proto import UsageError

    try:
        module.Socket("ws://127.0.0.1:9/socket", **row.options)
    except (TypeError, UsageError) as exc:
        return f"the Socket refuses {row.options}: {exc}"
    return None


def select_rows(plan: Plan, only: Sequence[str]) -> list[Row]:
    """The rows of this run: the smoke rows for a smoke run, no peers unless asked, and
    only those whose label contains one of ``only`` (when given)."""
    rows = [r for r in ROWS if (r.smoke or not plan.smoke) and (plan.peers or r.kind != "peer")]
    if only:
        rows = [r for r in rows if any(o in r.label for o in only)]
    return rows


# ------------------------------------------------------------------------------------------
# The run


def run(plan: Plan, only: Sequence[str] = ()) -> Report:
    """Measure every selected row in every scenario it has, interleaved; return the report."""
    start = time.perf_counter()
    report = Report(plan, select_rows(plan, only))
    for row in report.rows:
        reason = skip_reason(row)
        if reason is None and row.kind == "peer":
            reason = ensure_peer(row.client)
            if reason is None:
                report.versions.update(peer_versions(row.client))
        if reason is not None:
            report.skipped[row.label] = reason
            print(f"{row.label}: skipped: {reason}", flush=True)
    max_count = max(plan.counts[INBOUND], plan.counts[SLOW])
    with BlastServer(max_count, plan.counts[INBOUND], BENCH_DIR / "server.log") as server:
        for rep in range(plan.reps):
            for scenario in SCENARIOS:
                if rep >= plan.reps_of(scenario):
                    continue
                for row in report.ran(scenario):
                    if not server.alive():
                        raise RuntimeError("the blast server died (see .bench/server.log)")
                    result = run_client(row, scenario, server.port, plan)
                    outcome = report.outcome(row.label, scenario)
                    if "error" in result:
                        outcome.errors.append(str(result["error"]))
                    else:
                        outcome.results.append(result)
                    print(
                        f"[{rep + 1}/{plan.reps_of(scenario)}] {scenario:<8} {row.label}: "
                        f"{summary(scenario, result)}",
                        flush=True,
                    )
    report.seconds = time.perf_counter() - start
    return report


def _reps_text(plan: Plan) -> str:
    """``5 repetitions`` or ``5 repetitions (channels: 3, slow: 1)``."""
    fewer = [f"{s}: {plan.reps_of(s)}" for s in SCENARIOS if plan.reps_of(s) != plan.reps]
    text = f"{plan.reps} repetition{'s' if plan.reps != 1 else ''}"
    return f"{text} ({', '.join(fewer)})" if fewer else text


def summary(scenario: str, result: dict[str, Any]) -> str:
    """One line about one result, for the progress output."""
    if "error" in result:
        return f"FAILED: {result['error']}"
    if scenario == INBOUND:
        return f"{result['msg_per_s']:,.0f} msg/s, {result['cpu_us_per_msg']:.1f} us/msg"
    if scenario == RTT:
        return f"median {result['median_us']:.0f} us, p99 {result['p99_us']:.0f} us"
    if scenario == CHANNELS:
        return (
            f"{result['kb_per_channel']:.2f} KB/channel, peak {result['peak_rss_kb'] / 1024:.0f}"
            f" MB, rejoined in {result['rejoin_seconds']:.3f} s"
        )
    return (
        f"peak {result['peak_rss_kb'] / 1024:.0f} MB, dropped {result['dropped']:,}, "
        f"handled {result['handled']:,}"
    )


# ------------------------------------------------------------------------------------------
# The page


def machine() -> list[tuple[str, str]]:
    """(what, value) pairs describing this machine and its Python."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.release()})"
    except OSError:
        pass
    return [
        ("CPU", model),
        ("cores", str(os.cpu_count())),
        ("OS", system),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
    ]


def versions() -> dict[str, str]:
    """The versions of this project and of the libraries measured, in this environment."""
    out = {}
    for dist in ("stx-ws", "wsproto", "anyio", "trio", "orjson", "uvloop", "picows", "websockets"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _ratio(
    report: Report, row: Row, scenario: str, key: str, best: bool | None = None
) -> float | None:
    """``key`` of ``row`` over the bare wsproto + json loop's on the same event loop: of the
    medians, or (``best`` given: True for the highest is best, False for the lowest) of the
    best runs."""
    base_label = f"bare wsproto json {row.loop}"
    mine_o, base_o = report.outcome(row.label, scenario), report.outcome(base_label, scenario)
    if best is None:
        mine, base = mine_o.median(key), base_o.median(key)
    else:
        mine, base = mine_o.best(key, lowest=not best), base_o.best(key, lowest=not best)
    if mine is None or not base:
        return None
    return mine / base


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _errors(report: Report, scenario: str) -> list[str]:
    lines = []
    for row in report.ran(scenario):
        for error in report.outcome(row.label, scenario).errors:
            lines.append(f"- {row.label}: a run failed: {error}")
    return [*lines, ""] if lines else lines


def _inbound_section(report: Report) -> list[str]:
    rows = sorted(
        report.ran(INBOUND),
        key=lambda r: -(report.outcome(r.label, INBOUND).median("msg_per_s") or 0),
    )
    body = []
    for row in rows:
        o = report.outcome(row.label, INBOUND)
        rss = o.median("peak_rss_kb")
        body.append(
            [
                row.label,
                _fmt(o.median("msg_per_s"), ",.0f"),
                _fmt(_ratio(report, row, INBOUND, "msg_per_s"), ".2f"),
                _fmt(o.best("msg_per_s"), ",.0f"),
                _fmt(_ratio(report, row, INBOUND, "msg_per_s", best=True), ".2f"),
                _fmt(o.median("cpu_us_per_msg"), ".1f"),
                _fmt(None if rss is None else rss / 1024, ".0f"),
                str(len(o.results)),
            ]
        )
    n = report.plan.counts[INBOUND]
    return [
        "## Inbound: a blast of market updates",
        "",
        f"{n:,} messages of about 300 bytes, encoded beforehand and written by the server as "
        "fast as the socket takes them, after a warm-up blast; timed from the push that asks "
        "for the blast to the handler's last message. "
        "CPU is the client process's user + system time over the same interval. *vs bare* "
        "is msg/s over the bare wsproto + json loop on the same event loop: of the medians, "
        "and of the best runs (*best*: the run the machine disturbed least; on a shared "
        "machine one client's runs can differ by half, so the best runs' ratio is the "
        "steadier one).",
        "",
        *_table(
            [
                "client",
                "msg/s",
                "vs bare wsproto+json",
                "best msg/s",
                "best vs bare",
                "CPU µs/msg",
                "peak RSS MB",
                "runs",
            ],
            body,
        ),
        "",
        *_errors(report, INBOUND),
    ]


def _ceiling_section(report: Report) -> list[str]:
    ceiling_label = "server ceiling: bare picows uvloop"
    ceiling = report.outcome(ceiling_label, INBOUND).median("msg_per_s")
    decoded = [
        (report.outcome(r.label, INBOUND).median("msg_per_s") or 0.0, r.label)
        for r in report.ran(INBOUND)
        if r.label != ceiling_label
    ]
    ours = [d for d in decoded if not d[1].startswith(("bare", "realtime", "phoenix"))]
    if ceiling is None or not decoded:
        return []
    best, best_label = max(decoded)
    lines = [
        "## The server is not the bottleneck",
        "",
        f"A bare picows client on uvloop that only counts frames (no JSON decoding) took "
        f"**{ceiling:,.0f} msg/s** from the blast server: {ceiling / best:.1f} times the "
        f"fastest client that decodes ({best_label}, {best:,.0f} msg/s)",
    ]
    if ours:
        our_best, our_label = max(ours)
        lines[-1] += (
            f", and {ceiling / our_best:.1f} times this project's fastest "
            f"({our_label}, {our_best:,.0f} msg/s)."
        )
    else:
        lines[-1] += "."
    return [*lines, ""]


def _rtt_section(report: Report) -> list[str]:
    rows = sorted(
        report.ran(RTT), key=lambda r: report.outcome(r.label, RTT).median("median_us") or 1e9
    )
    body = []
    for row in rows:
        o = report.outcome(row.label, RTT)
        body.append(
            [
                row.label,
                _fmt(o.median("median_us"), ".0f"),
                _fmt(o.median("p99_us"), ".0f"),
                _fmt(_ratio(report, row, RTT, "median_us"), ".2f"),
                _fmt(o.best("median_us", lowest=True), ".0f"),
                _fmt(_ratio(report, row, RTT, "median_us", best=False), ".2f"),
                str(len(o.results)),
            ]
        )
    n = report.plan.counts[RTT]
    return [
        "## Push round trip",
        "",
        f"{n:,} sequential pushes of a ~300-byte payload to the echo (after {max(10, n // 10)} "
        "for warm-up), each awaited before the next; the server's decoding and reply are part "
        "of every round trip. Medians over the runs of each run's median and p99. *vs bare* "
        "is the median over the bare wsproto + json loop's on the same event loop (lower is "
        "faster); *best* is the lowest of the runs' medians, and its ratio the same over the "
        "bare loop's best. phoenix-channels-python-client has no push with a reply. "
        "This project's rows busy-poll for the reply by default (``busy_poll``, 100 µs: the "
        "caller keeps the event loop turning instead of sleeping while a nearby server's reply "
        "is due); the bare loops and the peers sleep in the loop's poll, as do the rows marked "
        "``busy_poll=0``.",
        "",
        *_table(
            [
                "client",
                "median µs",
                "p99 µs",
                "vs bare wsproto+json",
                "best median µs",
                "best vs bare",
                "runs",
            ],
            body,
        ),
        "",
        *_errors(report, RTT),
    ]


def own_baseline(row: Row) -> str | None:
    """The bare loop of the WebSocket library a row of this project runs on, when that is
    not wsproto: websockets' ``ClientProtocol`` + orjson, or picows + orjson."""
    if row.kind != "ours":
        return None
    if row.options.get("transport") == "picows":
        return f"bare picows orjson {row.loop}"
    if row.options.get("engine") == "websockets":
        return f"bare websockets orjson {row.loop}"
    return None


def _engines_section(report: Report) -> list[str]:
    body = []
    for row in report.rows:
        base = own_baseline(row)
        if base is None:
            continue
        cells = [row.label]
        for scenario, key, best in ((INBOUND, "msg_per_s", True), (RTT, "median_us", False)):
            mine, theirs = report.outcome(row.label, scenario), report.outcome(base, scenario)
            if not mine.results or not theirs.results:
                cells += ["", "", ""]
                continue
            m, b = mine.median(key), theirs.median(key)
            bm, bb = mine.best(key, lowest=not best), theirs.best(key, lowest=not best)
            cells += [
                _fmt(m, ",.0f"),
                _fmt(m / b if m is not None and b else None, ".2f"),
                _fmt(bm / bb if bm is not None and bb else None, ".2f"),
            ]
        body.append([*cells[:1], base, *cells[1:]])
    if not body:
        return []
    return [
        "## Engines and transports against their own bare loops",
        "",
        'Each row of `engine="websockets"` and `transport="picows"` over the bare loop '
        "of the same library on the same event loop (the figures of the two sections above): "
        "inbound msg/s (higher is faster), and the push round trip's median µs (lower is "
        "faster), as ratios of the medians and of the best runs.",
        "",
        *_table(
            [
                "client",
                "its bare loop",
                "msg/s",
                "vs bare",
                "best vs best",
                "round trip µs",
                "vs bare",
                "best vs best",
            ],
            body,
        ),
        "",
    ]


def _channels_section(report: Report) -> list[str]:
    body = []
    for row in report.ran(CHANNELS):
        o = report.outcome(row.label, CHANNELS)
        peak = o.median("peak_rss_kb")
        body.append(
            [
                row.label,
                _fmt(o.median("join_seconds"), ".2f"),
                _fmt(o.median("kb_per_channel"), ".2f"),
                _fmt(None if peak is None else peak / 1024, ".0f"),
                _fmt(o.median("rejoin_seconds"), ".3f"),
                _fmt(o.median("rejoin_after_open_seconds"), ".3f"),
                str(len(o.results)),
            ]
        )
    n = report.plan.counts[CHANNELS]
    return [
        f"## {n:,} joined channels: memory, and the rejoin after a dropped connection",
        "",
        f"One socket joins {n:,} topics (joins in batches of 500 in flight, each channel with "
        "an `on_message` handler). *KB per channel* is the growth of the current RSS over the "
        "joins, divided by the channels. Then the server resets the connection (a `drop` "
        "push: no close frame); the socket reconnects after 10 ms (`RetryPolicy("
        "initial_backoff=0.01, jitter=False)`) and every channel rejoins by itself. *Rejoined* "
        "is from the drop to the last `on_rejoin` call; *after reopen* from the new "
        "connection's `on_open`.",
        "",
        *_table(
            [
                "client",
                "joins s",
                "KB per channel",
                "peak RSS MB",
                "drop → all rejoined s",
                "reopen → all rejoined s",
                "runs",
            ],
            body,
        ),
        "",
        *_errors(report, CHANNELS),
    ]


def _slow_section(report: Report) -> list[str]:
    body = []
    for row in report.ran(SLOW):
        o = report.outcome(row.label, SLOW)
        peak = o.median("peak_rss_kb")
        body.append(
            [
                row.label,
                _fmt(o.median("received"), ",.0f"),
                _fmt(o.median("handled"), ",.0f"),
                _fmt(o.median("dropped"), ",.0f"),
                _fmt(o.median("queued_at_end"), ",.0f"),
                _fmt(o.median("seconds"), ".1f"),
                _fmt(None if peak is None else peak / 1024, ".0f"),
                str(len(o.results)),
            ]
        )
    n = report.plan.counts[SLOW]
    queue = report.plan.queue_size or 10_000  # the Socket's default
    return [
        "## A slow consumer under a blast",
        "",
        f"A blast of {n:,} messages to a handler that awaits a 1 ms sleep per message (so at "
        f"most about 1,000 a second), with a queue of {queue:,} (drop oldest), heartbeats "
        "off (a heartbeat's reply would wait behind the rest of the blast, about a minute at "
        "this pace, and time out: the socket would reconnect and lose the blast). The run "
        "ends once the socket has received the whole blast (`stats.messages`); *dropped* is "
        "`sock.stats.dropped`; *queued at the end* is what is neither handled nor dropped "
        "(the run checks it is within the queue's bound: no message lost uncounted). Reads "
        "wait (up to 50 ms each) while the handler queue is over half full, so the blast "
        "takes a while to arrive.",
        "",
        *_table(
            [
                "client",
                "received",
                "handled",
                "dropped",
                "queued at the end",
                "seconds",
                "peak RSS MB",
                "runs",
            ],
            body,
        ),
        "",
        *_errors(report, SLOW),
    ]


def page(report: Report, images: Sequence[str]) -> str:
    """The markdown of ``docs/benchmarks.md`` for ``report``."""
    stamp = report.started.strftime("%Y-%m-%d %H:%M UTC")
    plan = report.plan
    lines = [
        "# Benchmarks",
        "",
        f"<!-- Generated by `make bench` (benchmarks/side_by_side.py) on {stamp}. Do not "
        "edit: run it again. -->",
        "",
        f"Every figure on this page comes from one run of `make bench`, started **{stamp}**, "
        f"which took {report.seconds / 60:.1f} minutes: {_reps_text(plan)}, the clients "
        "interleaved (round-robin over the clients within each repetition), medians of the "
        "repetitions. Each client runs in its own process, so the CPU time and the peak RSS "
        "are that client's alone. The server is `benchmarks/blast_server.py`, in its own "
        "process on 127.0.0.1, sending frames encoded beforehand. The machine is shared "
        "(2 cores, other work running): read the ratios more than the absolute figures. "
        "Where a message's time goes, and what was cut: [Where the time goes]"
        "(performance.md).",
        "",
        "## Machine and versions",
        "",
        *_table(["", ""], [*machine(), *sorted({**versions(), **report.versions}.items())]),
        "",
        "The peers are installed by the run itself, each in its own virtual environment "
        "under `.bench/` (realtime pins an older websockets). They are never dependencies "
        "of this project.",
        "",
        *_ceiling_section(report),
        *_inbound_section(report),
        *_rtt_section(report),
        *_engines_section(report),
        *_channels_section(report),
        *_slow_section(report),
    ]
    if report.skipped:
        lines += ["## Rows skipped", ""]
        lines += [f"- {label}: skipped: {why}" for label, why in report.skipped.items()]
        lines.append("")
    if images:
        lines += [
            "## Charts",
            "",
            "Blue: this project; gray: the bare loops; orange: the peers; black: the server's "
            "ceiling (frames counted, not decoded). Memory: green, the joined channels; purple, "
            "the slow consumer.",
            "",
        ]
        lines += [f"![{Path(i).stem}]({i})" for i in images]
        lines.append("")
    lines += [
        "## How each client is measured",
        "",
        "- **this project**: `stx_anyio.Socket` on asyncio, on asyncio with uvloop "
        "(`anyio.run(..., backend_options={'use_uvloop': True})`) and on trio, and "
        "`stx_trio.Socket` on trio, with `json='stdlib'` and `json='orjson'`; inline dispatch, "
        "an `on_message` handler that counts; public API only. Rows for options a Socket does "
        "not take yet are listed as skipped. On either engine the core parses a server's "
        "plain frames (a whole message in one frame) itself, with `stx_proto/_fast_frames.py`, "
        "and frames its own pushes on wsproto; the libraries get the handshake, control frames, "
        "fragments and errors. The bare loops run every frame through the library: that is "
        "why this project's rows can pass 1.0x.",
        "- **bare loops** (`benchmarks/bench_client.py`): what a minimal Phoenix client must "
        "do and nothing more: handshake, join, read 64 KiB at a time, decode every message, "
        "count; push and wait for the reply. wsproto (asyncio streams or trio streams), "
        "websockets' sans-IO `ClientProtocol`, and picows on uvloop.",
        "- **realtime** (`benchmarks/peer_realtime.py`): `AsyncRealtimeClient`, "
        "`channel.on_broadcast`, `channel.subscribe()`, `channel.push()` with "
        "`push.receive('ok', ...)`. It speaks vsn 1.0.0, so the server sends it object frames "
        "and Realtime's broadcast envelope.",
        "- **phoenix-channels-python-client** (`benchmarks/peer_pcpc.py`): "
        "`subscribe_to_topic(topic, callback)`, its queue raised to hold the blast (its "
        "default of 1,000 drops the rest). It drops vsn 2.0.0 messages with a null join_ref "
        "(Phoenix broadcasts) as stale, so the server sends it channel pushes carrying its "
        "join_ref; it has no push API, so its blast is requested on its own connection with "
        "a raw frame, and it has no round trip.",
        "",
    ]
    return "\n".join(lines)


def charts(report: Report, img_dir: Path, link_prefix: str) -> list[str]:
    """Draw the PNG charts into ``img_dir``; return their links (``link_prefix`` + name)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    links = []

    def bars(
        name: str,
        title: str,
        xlabel: str,
        items: list[tuple[str, float, str]],
        extra: list[float] | None = None,
    ) -> None:
        if not items:
            return
        fig, ax = plt.subplots(figsize=(9, 0.38 * len(items) + 1.4))
        labels = [i[0] for i in items]
        ax.barh(labels, [i[1] for i in items], color=[i[2] for i in items])
        if extra is not None:
            ax.scatter(extra, labels, marker="|", s=200, color="black", label="p99", zorder=3)
            ax.legend(loc="lower right")
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_title(f"{title} ({report.started.strftime('%Y-%m-%d %H:%M UTC')})")
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(img_dir / name, dpi=90)
        plt.close(fig)
        links.append(link_prefix + name)

    inbound = sorted(
        (
            (r.label, report.outcome(r.label, INBOUND).median("msg_per_s") or 0.0, r.color)
            for r in report.ran(INBOUND)
        ),
        key=lambda i: -i[1],
    )
    bars("bench-inbound.png", "Inbound messages per second", "msg/s (median)", inbound)
    rtt_rows = sorted(
        report.ran(RTT), key=lambda r: report.outcome(r.label, RTT).median("median_us") or 0.0
    )
    bars(
        "bench-rtt.png",
        "Push round trip",
        "µs (median bar, p99 tick)",
        [
            (r.label, report.outcome(r.label, RTT).median("median_us") or 0.0, r.color)
            for r in rtt_rows
        ],
        [report.outcome(r.label, RTT).median("p99_us") or 0.0 for r in rtt_rows],
    )
    memory = [
        (
            f"{r.label}: {report.plan.counts[CHANNELS]:,} channels",
            (report.outcome(r.label, CHANNELS).median("peak_rss_kb") or 0.0) / 1024,
            "tab:green",
        )
        for r in report.ran(CHANNELS)
    ] + [
        (
            f"{r.label}: slow consumer",
            (report.outcome(r.label, SLOW).median("peak_rss_kb") or 0.0) / 1024,
            "tab:purple",
        )
        for r in report.ran(SLOW)
    ]
    bars("bench-memory.png", "Peak RSS", "MB (median)", memory)
    return links


def main(argv: list[str] | None = None) -> Report:
    """Run the benchmarks, write the page (and charts); return the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds: smoke rows only")
    parser.add_argument(
        "--reps", type=int, default=None, help="repetitions (full run: 5; fewer for some)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--only", action="append", default=[], help="rows whose label has this")
    parser.add_argument("--no-peers", action="store_true", help="leave the two peers out")
    parser.add_argument("--no-charts", action="store_true")
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.reps is not None:
        plan = attrs.evolve(plan, reps=max(1, args.reps))
    if args.no_peers:
        plan = attrs.evolve(plan, peers=False)
    if args.no_charts:
        plan = attrs.evolve(plan, charts=False)
    report = run(plan, args.only)
    images: list[str] = []
    if plan.charts:
        img_dir = args.out.parent / "img"
        images = charts(report, img_dir, "img/")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(page(report, images))
    print(f"\nwrote {args.out} ({report.seconds / 60:.1f} minutes)")
    return report


if __name__ == "__main__":
    main()
