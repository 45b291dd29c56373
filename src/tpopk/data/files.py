"""Event datasets on disk: read raw records with their line numbers, write atomically.

Reading keeps every value as found (text from a CSV, objects from a DataFrame) so that
validation can quote it back; missing values (empty, ``.``, ``NA``, ``NaN``) become
``None``. Each record remembers its CSV line (header = line 1) for messages.
"""

from __future__ import annotations

import csv
import io
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tpopk.data.violations import Violation
from tpopk.files import atomic_write

#: Text NONMEM users and spreadsheets write for a missing value.
MISSING_TOKENS = frozenset({"", ".", "NA", "NaN", "nan", "NAN"})


@dataclass(frozen=True)
class RawRecords:
    """Records as found, before validation.

    Parameters
    ----------
    values
        One column per distinct upper-case name, object dtype, ``None`` where missing.
    rows
        CSV line of each record (header = 1), aligned with ``values``.
    name
        Where the records came from, for messages.
    """

    values: pd.DataFrame
    rows: list[int]
    name: str


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() in MISSING_TOKENS
    return isinstance(value, float) and math.isnan(value)


def _header(names: list[str]) -> tuple[list[int], list[str], list[Violation]]:
    """Keep the first of names that coincide after upper-casing; report the rest."""
    keep: list[int] = []
    upper: list[str] = []
    violations: list[Violation] = []
    for position, name in enumerate(names):
        folded = name.strip().upper()
        if not folded:
            violations.append(
                Violation(
                    "blank-column-name",
                    "every header field to name a column",
                    row=1,
                    column=f"#{position + 1}",
                    value=name,
                )
            )
        elif folded in upper:
            violations.append(
                Violation(
                    "duplicate-column",
                    f"column names unique after upper-casing ({folded} appears twice)",
                    row=1,
                    column=folded,
                    value=name,
                )
            )
        else:
            keep.append(position)
            upper.append(folded)
    return keep, upper, violations


def read_csv_records(path: Path) -> tuple[RawRecords, list[Violation]]:
    """Read a CSV file into raw records, reporting empty files and ragged rows.

    Parameters
    ----------
    path
        CSV file with a header line.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        violation = Violation("unreadable-file", "a readable UTF-8 CSV file", value=str(err))
        return RawRecords(pd.DataFrame(), [], str(path)), [violation]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or not any(field.strip() for field in header):
        violation = Violation("empty-file", "a header line naming the columns", row=1)
        return RawRecords(pd.DataFrame(), [], str(path)), [violation]
    if (delimiter := _other_delimiter(header)) is not None:
        violation = Violation(
            "wrong-delimiter",
            f"comma-separated columns (this header looks {delimiter!r}-separated)",
            row=1,
            value=header[0],
        )
        return RawRecords(pd.DataFrame(), [], str(path)), [violation]
    keep, names, violations = _header(header)
    records: list[list[str]] = []
    rows: list[int] = []
    for fields in reader:
        if not any(field.strip() for field in fields):
            continue  # blank lines carry nothing; line numbers still count them
        if len(fields) != len(header):
            violations.append(
                Violation(
                    "ragged-row",
                    f"{len(header)} fields, as in the header",
                    row=reader.line_num,
                    value=f"{len(fields)} fields",
                )
            )
            continue
        records.append(fields)
        rows.append(reader.line_num)
    text_values = pd.DataFrame(records, columns=range(len(header)), dtype=object)[keep]
    text_values.columns = pd.Index(names)
    return RawRecords(_missing_as_none(text_values), rows, str(path)), violations


def _other_delimiter(header: list[str]) -> str | None:
    """Return the separator of a one-field header that splits into names, else ``None``.

    European CSV exports (``;``) and NONMEM whitespace tables read as one column, which
    would only report every required column as missing.
    """
    if len(header) != 1:
        return None
    for delimiter in (";", "\t", "|", " "):
        if len([name for name in header[0].split(delimiter) if name.strip()]) >= 2:
            return delimiter
    return None


def _missing_as_none(text: pd.DataFrame) -> pd.DataFrame:
    """Strip each text value and replace the missing-value tokens by ``None``."""
    cleaned = {}
    for column in text.columns:
        stripped = text[column].str.strip()
        cleaned[column] = stripped.astype(object).where(~stripped.isin(MISSING_TOKENS), None)
    return pd.DataFrame(cleaned, index=text.index, dtype=object)


def frame_records(frame: pd.DataFrame) -> tuple[RawRecords, list[Violation]]:
    """Turn a user's DataFrame into raw records; row ``i`` is reported as CSV line ``i + 2``.

    Parameters
    ----------
    frame
        One record per row, NONMEM-style column names in any case.
    """
    keep, names, violations = _header([str(c) for c in frame.columns])
    values = frame.iloc[:, keep].astype(object).copy()
    values.columns = pd.Index(names)
    values = values.map(lambda v: None if _is_missing(v) else v).reset_index(drop=True)
    return RawRecords(values, list(range(2, len(values) + 2)), "DataFrame"), violations


def sidecar_path(path: Path) -> Path:
    """Return where the units of ``path`` are declared: ``<stem>.units.toml`` beside it."""
    return path.with_name(f"{path.stem}.units.toml")


def read_sidecar_units(path: Path) -> tuple[dict[str, str] | None, list[Violation]]:
    """Read the units sidecar of a CSV file, if it has one.

    The sidecar is TOML with ``KEY = "unit"`` pairs at top level or in a ``[units]``
    table, e.g. ``TIME = "h"``, ``AMT = "mg"``, ``conc = "ng/mL"``.

    Parameters
    ----------
    path
        The CSV file (not the sidecar).
    """
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None, []
    where = f"units file {sidecar.name}"
    try:
        document: dict[str, Any] = tomllib.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        return None, [Violation("bad-units-file", "valid TOML", column=where, value=str(err))]
    table = document.get("units", document)
    if not isinstance(table, dict):
        return None, [Violation("bad-units-file", "a [units] table", column=where)]
    units: dict[str, str] = {}
    violations = []
    for key, unit in table.items():
        if isinstance(unit, str):
            units[key] = unit
        else:
            violations.append(
                Violation(
                    "bad-units-file", "a unit string", column=f"{where}[{key}]", value=str(unit)
                )
            )
    return units, violations


def write_records(frame: pd.DataFrame, path: Path, units: Mapping[str, str] | None) -> None:
    """Write records as CSV (missing values as ``.``) and, if given, the units sidecar.

    Each file is replaced atomically, so an interrupted write leaves the old one whole.

    Parameters
    ----------
    frame
        Records to write, one per row.
    path
        Destination CSV file.
    units
        ``{key: unit}`` to write to ``<stem>.units.toml``; ``None`` writes no sidecar.
    """
    atomic_write(path, frame.to_csv(index=False, na_rep=".", lineterminator="\n"))
    if units is not None:
        lines = [f"{key} = {_toml_string(unit)}" for key, unit in units.items()]
        atomic_write(sidecar_path(path), "\n".join(lines) + "\n")


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
