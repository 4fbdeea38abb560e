"""Replay every input kept under ``tests/fuzz/regressions/<target>/`` through its target.

A crash the atheris harness (``make fuzz``) finds is copied here as a file once fixed, so it
stays fixed; the seeds here are the inputs of the bugs and edges the fuzzing was built around.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .targets import TARGETS

ROOT = Path(__file__).parent / "regressions"
CASES = sorted(
    (target, path) for target in TARGETS for path in (ROOT / target).iterdir() if path.is_file()
)


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_regression(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())


def test_every_target_has_inputs_kept() -> None:
    assert {target for target, _ in CASES} == set(TARGETS)
