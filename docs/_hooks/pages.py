"""Pages that other parts of the project produce, and that the site must build without.

A MkDocs hook (``hooks:`` in mkdocs.yml). ``docs/benchmarks.md`` is written by ``make bench``
(the figures of this machine): when it is missing, the site gets a page in its place that says
how to produce it, and no figure at all.
"""

from __future__ import annotations

from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

BENCHMARKS = "benchmarks.md"

PLACEHOLDER = """# Benchmarks

This build of the site has no benchmark figures: `docs/benchmarks.md` is written by the
benchmarks themselves, on the machine that runs them, and it was not there when the site was
built. To produce it, run

```sh
make bench
```

in a clone of the repository, then build the site again (`make docs`). The figures depend on
the machine: compare the lines of one run with each other, not with another machine's.
"""


def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    """MkDocs hook: add the placeholder benchmarks page when docs/benchmarks.md is missing."""
    if files.get_file_from_path(BENCHMARKS) is None:
        files.append(File.generated(config, BENCHMARKS, content=PLACEHOLDER))
    return files
