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
    for label in ("bare wsproto + json", "stx_proto (stdlib)", "stx_proto (orjson)"):
        assert label in out
    assert "msg/s" in out
