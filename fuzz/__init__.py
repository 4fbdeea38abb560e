"""The atheris harness of ``make fuzz``: one module per target of ``tests/fuzz/targets.py``."""
