"""The README's Python examples run as written (from a folder with the model library)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)


def test_readme_has_python_examples() -> None:
    assert python_blocks()


@pytest.mark.slow  # the five-line example fits theophylline (2 chains x 500 draws)
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the examples name cards relative to the checkout and write into the working folder
    (tmp_path / "models").symlink_to(ROOT / "models")
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks()[index], f"README.md python block {index}", "exec"), {})


def test_layout_table_names_every_module_and_top_level_folder() -> None:
    """The README's layout table matches the tree: each entry of src/tpopk and the top level."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("## Layout") :].split("\n## ", 1)[0]
    named = set(re.findall(r"`([^`]+)`", table))
    named |= {Path(n).name.removesuffix("/") for n in named}
    package = ROOT / "src" / "tpopk"
    entries = [p for p in package.iterdir() if p.name not in {"__init__.py", "py.typed"}]
    entries = [p for p in entries if not p.name.startswith((".", "__"))]
    missing = [
        p.name
        for p in entries
        if p.name not in named and not any(n.startswith(f"src/tpopk/{p.name}/") for n in named)
    ]
    missing += [
        name
        for name in ("models", "notebooks", "benchmarks", "docs", "tests")
        if (ROOT / name).is_dir() and f"{name}/" not in named
    ]
    assert not missing, f"README's layout table does not name {missing}"
