"""CHANGELOG.md names every documented schema at its current version, under a release.

The rule (CHANGELOG.md's head): a change to ``tpopk.summary/N``, ``tpopk.compare/N`` or the
fit file's format gets an entry naming the schema's current identifier, under a new version
heading that is pyproject.toml's version. A schema constant changed without that entry, or
an entry left under Unreleased, fails here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tpopk.inference import FIT_FORMAT

ROOT = Path(__file__).parents[1]
CHANGELOG = ROOT / "CHANGELOG.md"
HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?$", re.M)


def json_schemas() -> set[str]:
    """Every ``tpopk.<name>/<N>`` string literal in the package's source."""
    found: set[str] = set()
    for path in (ROOT / "src" / "tpopk").rglob("*.py"):
        found |= set(re.findall(r"""["'](tpopk\.[a-z_]+/\d+)["']""", path.read_text("utf-8")))
    return found


def schema_identifiers() -> list[str]:
    return [*sorted(json_schemas()), f"fit format {FIT_FORMAT}"]


def sections() -> list[tuple[str, str]]:
    """(version, text) of each ``## [version]`` section, newest first."""
    text = CHANGELOG.read_text(encoding="utf-8")
    heads = list(HEADING.finditer(text))
    ends = [h.start() for h in heads[1:]] + [len(text)]
    return [(h["version"], text[h.end() : end]) for h, end in zip(heads, ends, strict=True)]


def released() -> list[str]:
    return [version for version, _ in sections() if version != "Unreleased"]


def test_the_documented_json_schemas_are_found() -> None:
    # the identifiers README.md documents; a new one must be added to the rule and here
    assert json_schemas() == {"tpopk.summary/1", "tpopk.compare/1"}


@pytest.mark.parametrize("identifier", schema_identifiers())
def test_schema_is_named_under_a_released_version(identifier: str) -> None:
    where = [version for version, text in sections() if identifier in text]
    assert where, (
        f"CHANGELOG.md does not name {identifier!r}: a changed schema needs an entry and a "
        "version bump (see the rule at its head)"
    )
    assert where[0] != "Unreleased", (
        f"{identifier!r} is first named under Unreleased: a schema change is released with "
        "a version bump (pyproject.toml's version and a '## [X.Y.Z] - date' heading)"
    )


def test_pyproject_version_is_the_newest_release() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
    assert released(), "CHANGELOG.md has no release heading"
    assert released()[0] == version, (
        f"pyproject.toml says {version}, the newest CHANGELOG.md release is {released()[0]}"
    )


def test_releases_are_dated_and_newest_first() -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    heads = [h for h in HEADING.finditer(text) if h["version"] != "Unreleased"]
    assert all(h["date"] for h in heads), "every release heading needs '- YYYY-MM-DD'"
    keys = [tuple(int(p) for p in h["version"].split(".")) for h in heads]
    assert keys == sorted(keys, reverse=True)
    assert [h["date"] for h in heads] == sorted((h["date"] for h in heads), reverse=True)
