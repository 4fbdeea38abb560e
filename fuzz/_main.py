"""Run one fuzz target under atheris (libFuzzer options come from the command line)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def fuzz(name: str) -> None:
    """Fuzz the target ``name`` of ``tests/fuzz/targets.py`` with atheris; never returns.

    A crash (an exception or a failed invariant) is written as ``crash-<sha1>`` in the current
    directory and the process exits non-zero: copy the file into
    ``tests/fuzz/regressions/<name>/`` once fixed. Raises ImportError without atheris.
    """
    import atheris  # the `fuzz` extra

    with atheris.instrument_imports(include=["stx_proto", "wsproto", "h11", "tests"]):
        from tests.fuzz.targets import TARGETS

    target: Callable[[bytes], None] = TARGETS[name]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
