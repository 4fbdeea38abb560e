"""Fuzz target ``serializer_binary`` of ``tests/fuzz/targets.py``.

Run: ``python -m fuzz.serializer_binary [libFuzzer options]``.
"""

from fuzz._main import fuzz

if __name__ == "__main__":
    fuzz("serializer_binary")
