"""Fuzz target ``serializer_text`` of ``tests/fuzz/targets.py``.

Run: ``python -m fuzz.serializer_text [libFuzzer options]``.
"""

from fuzz._main import fuzz

if __name__ == "__main__":
    fuzz("serializer_text")
