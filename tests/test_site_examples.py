"""Every code example of ours on the documentation site runs, so the site cannot drift.

How the pages mark their blocks (the convention, by design):

- A ```` ```python ```` block is ours: it runs here, as a script (``__name__ == "__main__"``),
  on a thread with no event loop. Blocks that need a server start the loopback ``TestServer``
  themselves, so the page shows everything the example needs. After the block ran, every
  ``test_*`` function it defined is called too (a coroutine function under ``anyio.run`` on
  asyncio), so a page can show a pytest module as it would be written.
- A ```` ```text title="Output" ```` block right after a python block is what that block
  prints: the printed lines must be exactly these.
- A ```` ```py ```` block is another client's code (stx-python, realtime, ...), shown for
  comparison and never run: those clients are not dependencies of this project. Only the
  migration page may hold such blocks (checked below), so the escape hatch cannot hide an
  example of ours.

Pages with tests of their own are left to them: docs/drivers.md (tests/test_docs_drivers.py,
against the loopback server with a check per block) and the README (tests/test_docs.py and
tests/test_readme_drivers.py).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
OWN_TESTS = {"drivers.md"}  # pages whose blocks run in a test module of their own
OTHERS_ALLOWED = {"migration.md"}
LIMIT = 20  # seconds any one example may take

_FENCE = re.compile(r"^```(\S*)([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def pages() -> list[Path]:
    """Every Markdown page of the site, less the ones tested elsewhere."""
    found = sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)
    return [p for p in found if p.relative_to(DOCS).as_posix() not in OWN_TESTS]


def fences(path: Path) -> list[tuple[str, str, str]]:
    """(language, the rest of the fence line, body) of every fenced block of a page."""
    return [(m[1], m[2].strip(), m[3]) for m in _FENCE.finditer(path.read_text("utf-8"))]


def examples(path: Path) -> list[tuple[str, str | None]]:
    """Every python block of a page, with the output it says it prints (or None)."""
    blocks = fences(path)
    found: list[tuple[str, str | None]] = []
    for i, (lang, _, body) in enumerate(blocks):
        if lang != "python":
            continue
        expected = None
        if i + 1 < len(blocks) and blocks[i + 1][:2] == ("text", 'title="Output"'):
            expected = blocks[i + 1][2]
        found.append((body, expected))
    return found


CASES = [
    pytest.param(path, index, id=f"{path.relative_to(DOCS).as_posix()}[{index}]")
    for path in pages()
    for index in range(len(examples(path)))
]


def test_the_site_has_examples() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize(("path", "index"), CASES)
def test_example_runs(path: Path, index: int) -> None:
    code, expected = examples(path)[index]
    name = f"{path.relative_to(ROOT).as_posix()}[block {index}]"
    namespace: dict[str, Any] = {"__name__": "__main__"}
    out = io.StringIO()
    restore_logging = keep_logging()
    # mock.patch.dict: an example that sets $STX_WS_URL and friends leaves no trace.
    with contextlib.redirect_stdout(out), mock.patch.dict(os.environ), deadline(LIMIT):
        try:
            exec(compile(code, name, "exec"), namespace)
            for key, value in list(namespace.items()):
                if key.startswith("test_") and callable(value):
                    run_test(value)
        finally:
            restore_logging()
    if expected is not None:
        assert out.getvalue().splitlines() == expected.splitlines()


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail an example that runs longer than ``seconds`` (SIGALRM: tests run on the main
    thread), instead of hanging the suite."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"the example ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def keep_logging() -> Callable[[], None]:
    """Note the logging set-up (an example may configure it); returns what puts it back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in ("stx_anyio", "stx_trio")}

    def restore() -> None:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)

    return restore


def run_test(fn: Callable[[], Any]) -> None:
    """Call a test function a page defined: a coroutine function on asyncio."""
    if inspect.iscoroutinefunction(fn):
        anyio.run(fn)
    else:
        fn()


def test_only_the_migration_page_shows_code_that_does_not_run() -> None:
    for path in sorted(DOCS.rglob("*.md")):
        langs = {lang for lang, _, _ in fences(path)}
        if path.name not in OTHERS_ALLOWED:
            assert "py" not in langs, f"{path}: a ```py block is never run; use ```python"


def test_every_output_block_follows_an_example() -> None:
    for path in pages():
        blocks = fences(path)
        for i, (lang, rest, _) in enumerate(blocks):
            if (lang, rest) == ("text", 'title="Output"'):
                assert i > 0, f"{path}: an output block with no example before it"
                assert blocks[i - 1][0] == "python", f"{path}: output block #{i} follows no example"
