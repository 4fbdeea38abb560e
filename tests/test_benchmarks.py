"""The benchmarks stay runnable: a short smoke run of each."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_core_throughput_quick(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["core_throughput.py", "--quick"])
    runpy.run_path(str(BENCHMARKS / "core_throughput.py"), run_name="__main__")
    out = capsys.readouterr().out
    for label in (
        "bare wsproto + json",
        "bare websockets + json",
        "stx_proto (stdlib)",
        "stx_proto (orjson)",
        "stx_proto (stdlib, ws)",
        "stx_proto (orjson, ws)",
        "stx_proto (typed)",
        "stx_proto (typed client, dict event)",
        "stx_proto (typed, ws)",
    ):
        assert label in out
    assert "msg/s" in out


def test_engine_parse_quick(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["engine_parse.py", "--quick"])
    runpy.run_path(str(BENCHMARKS / "engine_parse.py"), run_name="__main__")
    rows = [line for line in capsys.readouterr().out.splitlines() if "us/frame" in line]
    assert [row[:32].strip() for row in rows] == [
        "bare wsproto",
        "engine wsproto",
        "bare websockets ClientProtocol",
        "engine websockets",
    ]


def test_driver_throughput_quick(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["driver_throughput.py", "--quick"])
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds benchmarks/ to it
    runpy.run_path(str(BENCHMARKS / "driver_throughput.py"), run_name="__main__")
    out = capsys.readouterr().out
    # Each row: the label (26 wide), the rate, the time, and the messages dropped (none).
    rows = {line[:26].strip(): line.split() for line in out.splitlines() if "/s " in line}
    assert sorted(label for label, row in rows.items() if "msg/s" in row) == [
        "stx_anyio asyncio inline",
        "stx_anyio asyncio queue",
        "stx_anyio asyncio task",
        "stx_anyio trio inline",
        "stx_trio inline",
    ]
    assert sorted(label for label, row in rows.items() if "rt/s" in row) == [
        "stx_anyio asyncio",
        "stx_trio",
    ]
    assert all(row[-1] == "0" for row in rows.values())


def test_transport_compare_quick(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["transport_compare.py", "--quick"])
    runpy.run_path(str(BENCHMARKS / "transport_compare.py"), run_name="__main__")
    out = capsys.readouterr().out
    for label in ("tcp asyncio (default)", "picows uvloop orjson"):
        assert out.count(label) == 2  # a burst line and a round-trip line
    assert "msg/s" in out and "rt/s" in out


def test_side_by_side_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The side-by-side harness end to end, small: its own server process, one client
    process per run, every smoke row in every scenario it has, and the page."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds benchmarks/ to it
    module = runpy.run_path(str(BENCHMARKS / "side_by_side.py"), run_name="side_by_side")
    out = tmp_path / "bench.md"
    report = module["main"](["--smoke", "--out", str(out)])
    ran = 0
    for row in report.rows:
        assert row.label not in report.skipped, report.skipped
        for scenario in row.scenarios:
            outcome = report.outcome(row.label, scenario)
            assert outcome.errors == [], (row.label, scenario, outcome.errors)
            assert len(outcome.results) == 1, (row.label, scenario)
            figures = outcome.results[0]
            assert all(isinstance(v, int | float) and v >= 0 for v in figures.values())
            ran += 1
    assert {r.kind for r in report.rows} == {"ours", "bare"}
    assert ran >= 10
    slow = [
        report.outcome(r.label, "slow").results[0] for r in report.rows if "slow" in r.scenarios
    ]
    # The slow consumer's queue (300) overflows: the losses are counted, never hidden.
    assert slow and all(s["dropped"] > 0 for s in slow)
    assert all(s["handled"] + s["dropped"] + s["queued_at_end"] == s["received"] for s in slow)
    assert all(s["received"] == 3_000 and s["queued_at_end"] <= 301 for s in slow)
    text = out.read_text()
    for title in ("## Inbound", "## Push round trip", "joined channels", "slow consumer"):
        assert title in text
    assert "n/a" not in text


def test_loop_iterations_quick(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop-iterations tool end to end (its own server process), and a guard on the hops
    of a round trip without busy-polling: two turns of trio's scheduler (the push leaves from
    the caller's task; the reply is handed over in the turn that reads it), five asyncio
    iterations (through the writer task, the reader and the pump)."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds benchmarks/ to it
    module = runpy.run_path(str(BENCHMARKS / "loop_iterations.py"), run_name="loop_iterations")
    rows = module["main"](["--quick"])
    assert [(client, busy) for client, busy, _, _ in rows] == [
        ("stx_trio trio", 0.0001),
        ("stx_trio trio", 0.0),
        ("stx_anyio trio", 0.0001),
        ("stx_anyio trio", 0.0),
        ("stx_anyio asyncio", 0.0001),
        ("stx_anyio asyncio", 0.0),
    ]
    sleeping = {client: per_push for client, busy, per_push, _ in rows if busy == 0.0}
    # A little slack: a turn can split when the machine is busy (a timer, a late reply).
    assert 2.0 <= sleeping["stx_trio trio"] <= 2.5
    assert 2.0 <= sleeping["stx_anyio trio"] <= 2.5
    assert 4.0 <= sleeping["stx_anyio asyncio"] <= 6.0
    assert all(mean > 0 for _, _, _, mean in rows)
    assert "iterations" in capsys.readouterr().out


def test_profile_stages_gives_each_sample_to_its_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = runpy.run_path(str(BENCHMARKS / "profile_stages.py"), run_name="profile_stages")
    source = tmp_path / "stx_proto" / "_channel.py"
    source.parent.mkdir()
    source.write_text("x = 1\n                    parsed = loads(data)\n")
    loop = "run (asyncio/runners.py:118)"
    profile = tmp_path / "prof.txt"
    profile.write_text(
        "\n".join(
            [
                f"{loop};ChannelSet.on_messages (stx_proto/_channel.py:2) 40",  # the decode
                f"{loop};ChannelSet.on_messages (stx_proto/_channel.py:1) 10",
                f"{loop};StdlibJsonCodec.loads (stx_proto/_codec.py:81) 10",
                f"{loop};FrameScanner.feed (stx_proto/_fast_frames.py:126) 10",
                f"{loop};receive_data (wsproto/connection.py:10) 5",
                f"{loop};Session._drain (stx_proto/driver/session.py:858) 10",
                f"{loop};Dispatcher.deliver (stx_proto/driver/dispatch.py:155) 5",
                f"{loop};Counter.__call__ (bench_client.py:86) 5",
                loop + " 5",
                "_find_and_load (<frozen importlib._bootstrap>:1176) 99",  # start-up: left out
            ]
        )
    )
    table = module["main"]([str(profile), "--root", str(tmp_path)])
    assert table["prof.txt"] == {
        "JSON decoding": 50.0,
        "WebSocket frames": 15.0,
        "Phoenix layer (the core)": 10.0,
        "driver kit: draining the core": 10.0,
        "driver kit: feeding and dispatch": 5.0,
        "the handler": 5.0,
        "event loop and socket I/O": 5.0,
    }
    assert "JSON decoding" in capsys.readouterr().out
