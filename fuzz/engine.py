"""Fuzz target ``engine`` of ``tests/fuzz/targets.py``.

Run: ``python -m fuzz.engine [libFuzzer options]``.
"""

from fuzz._main import fuzz

if __name__ == "__main__":
    fuzz("engine")
