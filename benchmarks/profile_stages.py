"""Split a py-spy profile of an inbound run into the stages of a message's path.

Reads py-spy's raw (collapsed) output, one ``frame;frame;...;leaf count`` line per stack, and
gives each sample to the stage of its innermost frame: the table of docs/performance.md.

    py-spy record -r 2000 -f raw -o prof.txt -- python benchmarks/bench_client.py \\
        "stx_trio trio stdlib" inbound --port N --count 1000000
    python benchmarks/profile_stages.py prof.txt [more.txt ...]

The start-up (imports, compiling) is left out; the warm-up blast, a tenth of the timed one,
counts with it. Run it where the profiled files are (or give ``--root``): the in-place decode
is told apart from the rest of ``ChannelSet.on_messages`` by its source line.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

STAGES = (
    "JSON decoding",
    "WebSocket frames",
    "Phoenix layer (the core)",
    "driver kit: draining the core",
    "driver kit: feeding and dispatch",
    "the handler",
    "event loop and socket I/O",
)

#: ``ChannelSet.on_messages``' line that calls the codec's ``loads`` (its decode in place).
_INLINE_LOADS = "parsed = loads(data)"
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^():]*):(?P<line>\d+)\)$")
_FRAME_FUNCTIONS = {
    "FrameScanner.feed",
    "_utf8_so_far",
    "Client._on_ws_events",
    "WsprotoEngine.receive",
    "WebsocketsEngine.receive",
    "PicowsStream.on_ws_frame",
}
_KIT_PREFIXES = ("Session.", "Dispatcher.", "Connection.", "PicowsStream.", "Router.")
_CORE_PREFIXES = ("ChannelSet.", "Client.", "TimerQueue.", "Heartbeat.", "Outbox.")
# Stacks of the start-up and of the warm-up, left out.
_SKIPPED = ("importlib", "_compile_bytecode")


def stage(leaf: str, source_line: str = "") -> str:
    """The stage of a sample whose innermost frame is ``leaf`` (``function (file:line)``);
    ``source_line`` is that line's source, when known."""
    match = _FRAME.match(leaf)
    function = match["function"] if match else leaf
    path = match["file"] if match else ""
    if function.endswith("Codec.loads") or (
        function == "ChannelSet.on_messages" and _INLINE_LOADS in source_line
    ):
        return "JSON decoding"
    if function in _FRAME_FUNCTIONS or path.split("/", 1)[0] in ("wsproto", "websockets"):
        return "WebSocket frames"
    if function.startswith(_CORE_PREFIXES):
        return "Phoenix layer (the core)"
    if function == "Session._drain":
        return "driver kit: draining the core"
    if function.startswith(_KIT_PREFIXES):
        return "driver kit: feeding and dispatch"
    if function.startswith("Counter."):
        return "the handler"
    return "event loop and socket I/O"


def shares(lines: Iterable[str], root: Path) -> dict[str, float]:
    """Each stage's share (percent) of the samples in py-spy raw ``lines``; ``root`` is
    where the profiled files are (to read a leaf's source line)."""
    counts: Counter[str] = Counter()
    sources: dict[str, list[str]] = {}
    for line in lines:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack or any(skip in stack for skip in _SKIPPED):
            continue
        leaf = stack.split(";")[-1]
        source = ""
        match = _FRAME.match(leaf)
        if match and match["function"] == "ChannelSet.on_messages":
            path = root / match["file"]
            if path.is_file():
                text = sources.setdefault(str(path), path.read_text().splitlines())
                index = int(match["line"]) - 1
                source = text[index] if 0 <= index < len(text) else ""
        counts[stage(leaf, source)] += int(n)
    total = sum(counts.values())
    return {name: 100 * counts[name] / total if total else 0.0 for name in STAGES}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print one column of shares per profile; return them by file name."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="where the profiled files are"
    )
    args = parser.parse_args(argv)
    table = {p.name: shares(p.read_text().splitlines(), args.root) for p in args.profiles}
    print(f"{'stage':<34}" + "".join(f"{name[:24]:>26}" for name in table))
    for name in STAGES:
        print(f"{name:<34}" + "".join(f"{column[name]:>25.0f}%" for column in table.values()))
    return table


if __name__ == "__main__":
    main()
