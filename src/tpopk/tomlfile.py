"""Typed TOML documents (model cards, trial designs): read, validate, report every problem."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tpopk.errors import TpopkError


def load_document[M: BaseModel](
    source: str | Path | Mapping[str, Any],
    schema: type[M],
    error: type[TpopkError],
    what: str,
) -> M:
    """Parse ``source`` and validate it as ``schema``.

    Parameters
    ----------
    source
        Path to a TOML file, the TOML text itself, or an already-parsed mapping. A
        string is a path when it is one line without ``=`` (TOML text always assigns a
        key), or names an existing file.
    schema
        The pydantic model of the document.
    error
        Raised, naming ``what`` (e.g. "model card"), if the file is missing, is not
        TOML, or does not validate; the message lists every problem with its key.
    what
        What the document is, for messages.
    """
    origin = what
    if isinstance(source, Mapping):
        table: Mapping[str, Any] = source
    else:
        text = str(source)
        if _is_path(source):
            origin, text = str(source), _read_text(Path(text), error, what)
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise error(f"{origin}: not valid TOML: {err}") from None
    try:
        return schema.model_validate(table)
    except ValidationError as err:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in err.errors()
        )
        raise error(f"{origin}: invalid {what}:\n{problems}") from None


def _is_path(source: str | Path) -> bool:
    if isinstance(source, Path):
        return True
    if "\n" in source:
        return False
    return "=" not in source or Path(source).is_file()


def _read_text(path: Path, error: type[TpopkError], what: str) -> str:
    """Read a TOML file; raise ``error`` naming what was expected if there is none."""
    if path.is_dir():
        raise error(f"{what} '{path}' is a folder; expected a TOML file")
    if not path.is_file():
        hint = ""
        if path.suffix != ".toml" and path.with_name(path.name + ".toml").is_file():
            hint = f" (did you mean '{path}.toml'?)"
        raise error(f"{what} '{path}' does not exist{hint}; expected a TOML file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file; a {what} is UTF-8 TOML text") from None
    except OSError as err:
        raise error(f"{path}: cannot be read: {err.strerror}") from None
