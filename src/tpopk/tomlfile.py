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
        Path to a TOML file, the TOML text itself, or an already-parsed mapping.
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
        path = Path(text)
        if isinstance(source, Path) or (text.endswith(".toml") and "\n" not in text):
            if not path.is_file():
                raise error(f"{what} '{path}' does not exist")
            origin, text = str(path), path.read_text(encoding="utf-8")
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
