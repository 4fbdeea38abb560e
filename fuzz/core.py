"""Fuzz target ``core`` of ``tests/fuzz/targets.py``.

Run: ``python -m fuzz.core [libFuzzer options]``.
"""

from fuzz._main import fuzz

if __name__ == "__main__":
    fuzz("core")
