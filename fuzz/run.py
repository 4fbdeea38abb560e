"""``make fuzz``: every target for a bounded time and at least ``--runs`` inputs each.

With atheris installed (the ``fuzz`` extra) each target runs in its own process under
libFuzzer (``-runs``, ``-max_total_time``), with a corpus directory under ``.fuzz/`` so later
runs start from what earlier ones found. Without atheris, the hypothesis properties of
``tests/fuzz`` run with the ``fuzz-deep`` profile instead. Exits non-zero on any crash.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

TARGETS = ("serializer_text", "serializer_binary", "engine", "core")
ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Run the targets; return the process exit code (0: no crash)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--max-time", type=int, default=600, help="seconds per target at most")
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    args = parser.parse_args()
    try:
        import atheris  # noqa: F401
    except ImportError as exc:
        print(f"atheris unavailable ({exc}): running the hypothesis targets at a high count")
        env = dict(os.environ, STX_FUZZ_PROFILE="fuzz-deep")
        cmd = [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider"]
        return subprocess.call(cmd, cwd=ROOT, env=env)
    failed = []
    for name in args.targets:
        corpus = ROOT / ".fuzz" / name
        corpus.mkdir(parents=True, exist_ok=True)
        seeds = ROOT / "tests" / "fuzz" / "regressions" / name
        cmd = [
            sys.executable,
            "-m",
            f"fuzz.{name}",
            f"-runs={args.runs}",
            f"-max_total_time={args.max_time}",
            "-max_len=4096",
            "-print_final_stats=1",
            f"-artifact_prefix={ROOT / '.fuzz'}/{name}-",
            str(corpus),
            str(seeds),
        ]
        start = time.monotonic()
        print(f"== {name}: {args.runs} inputs, at most {args.max_time} s", flush=True)
        code = subprocess.call(cmd, cwd=ROOT)
        print(f"== {name}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"crashes in: {', '.join(failed)} (inputs in .fuzz/)")
        return 1
    print("no crash in any target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
