"""docs/guarantees.md names the tests behind each promise: every one of them must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "guarantees.md"
_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_the_guarantees_name_tests() -> None:
    assert len(_REF.findall(DOC.read_text(encoding="utf-8"))) >= 40


def test_every_test_the_guarantees_name_exists() -> None:
    missing = []
    for path, name in _REF.findall(DOC.read_text(encoding="utf-8")):
        source = (ROOT / path).read_text(encoding="utf-8") if (ROOT / path).exists() else ""
        pattern = rf"^(async def|def|class) {name}\b|^{name} = "
        if not re.search(pattern, source, re.M):
            missing.append(f"{path}::{name}")
    assert not missing, missing
