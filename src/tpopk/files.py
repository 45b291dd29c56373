"""Atomic saves: write beside the destination, move into place only once complete.

An interrupted or failed write (an error half-way, a full disk) leaves the previous file
whole and no temporary file behind. Every file tpopk writes (fit files, reports, event
datasets, JSON tables) goes through here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a staging path to write to; it replaces ``path`` when the block completes.

    The staging path has ``path``'s name (writers that pick a format by suffix see the right
    one) inside a new hidden directory beside ``path``, on the same file system, so the
    final move is a rename. A directory (a zarr store) can be staged too: an existing one
    at ``path`` is moved aside first, since a rename cannot replace a non-empty directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        staged = folder / path.name
        yield staged
        if staged.is_dir() and path.is_dir():
            path.rename(folder / "previous")
        staged.replace(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write(path: str | Path, text: str | Iterable[str]) -> Path:
    """Write UTF-8 ``text`` (a string, or chunks of one) to ``path`` atomically.

    The file reaches the disk (``fsync``) before it replaces ``path``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    chunks = [text] if isinstance(text, str) else text
    with atomic_path(path) as staged, staged.open("w", encoding="utf-8", newline="") as out:
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return Path(path)
