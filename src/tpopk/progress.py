"""Progress lines on stderr: what a long step is doing, then how long it took.

Used where a step can run for minutes without output of its own (compiling a model,
drawing a report's figures), so that a silent terminal never means a hung one.
:func:`quiet_pymc` hides PyMC's own per-call chatter ("Sampling: [y_conc]") in those
steps, which would otherwise bury the lines that say what is happening.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: PyMC's forward-sampling logger: it logs "Sampling: [...]" at INFO on every call.
PYMC_LOGGERS = ("pymc.sampling.forward",)


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


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


@contextmanager
def quiet_pymc() -> Iterator[None]:
    """Drop PyMC's INFO messages of forward sampling inside the block; warnings still show.

    Each block adds and removes its own filter rather than setting the logger's level:
    blocks that overlap in threads (trial chunks) would otherwise restore one another's
    level and leave PyMC quiet for good.
    """
    loggers = [logging.getLogger(name) for name in PYMC_LOGGERS]
    quiet = _BelowWarning()
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)
