from pathlib import Path

import pytest

from tpopk.files import atomic_path, atomic_write


def test_atomic_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "table.json"
    atomic_write(path, "old")
    assert atomic_write(path, iter(["n", "ew"])) == path
    assert path.read_text(encoding="utf-8") == "new"
    assert [p.name for p in path.parent.iterdir()] == ["table.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("before")

    def chunks():  # type: ignore[no-untyped-def]
        yield "half"
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        atomic_write(path, chunks())
    assert path.read_text() == "before"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_staged_directory_replaces_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "fit.zarr"
    for content in ("first", "second"):
        with atomic_path(path) as staged:
            staged.mkdir()
            (staged / "data").write_text(content)
    assert (path / "data").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["fit.zarr"]
