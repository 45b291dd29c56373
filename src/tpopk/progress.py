"""Progress lines on stderr: what a long step is doing, then how long it took.

Used where a step can run for minutes without output of its own (compiling a model,
drawing a report's figures), so that a silent terminal never means a hung one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def step(command: str, name: str, enabled: bool = True) -> Iterator[None]:
    """Print ``tpopk COMMAND: NAME ...`` on stderr, and ``... done (S s)`` when it ends."""
    start = time.perf_counter()
    if enabled:
        print(f"tpopk {command}: {name} ...", file=sys.stderr, flush=True)
    yield
    if enabled:
        elapsed = time.perf_counter() - start
        print(f"tpopk {command}: {name} done ({elapsed:.1f} s)", file=sys.stderr, flush=True)
