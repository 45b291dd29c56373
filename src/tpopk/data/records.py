"""Typed view of raw records: numbers parsed, NONMEM defaults filled, names canonical.

This is what validation rules look at and what the canonical frame is built from.
Defaults follow NONMEM: without ``EVID``, a record with ``AMT > 0`` is a dose, one with
``MDV = 1`` is an "other" event and the rest are observations; without ``MDV``, it is 0
on observations and 1 elsewhere; missing ``RATE``, ``II``, ``ADDL``, ``SS`` mean 0;
without ``CMT``, doses go to compartment 1 and all other records to compartment 0,
NONMEM's "default observation compartment" of the model; without ``DVID``, observations
are ``conc``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from tpopk.data.files import RawRecords
from tpopk.data.schema import (
    AGONISTS,
    DEFAULT_DVID,
    DOSE_EVIDS,
    DVID_CODES,
    NUMERIC_COLUMNS,
    OBSERVATION_TYPES,
    RESERVED_COLUMNS,
    RESPONSE_NAME,
    Evid,
)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]


@dataclass(frozen=True)
class TypedRecords:
    """Records with every reserved column parsed and defaulted.

    Parameters
    ----------
    raw
        Values as found (``None`` where missing), upper-case column names.
    rows
        CSV line of each record (header = 1).
    number
        Float value of every numeric reserved column, defaults filled where the column
        is absent; ``nan`` where a value is missing or not a finite number.
    unparsable
        Per numeric column present: value given but not a finite number.
    dvid
        Canonical observation-type name per record, ``None`` if missing or unknown.
    agonist
        Canonical (lower-case) agonist per record, ``None`` if missing or unknown.
    known_agonists
        Agonist names accepted in this dataset.
    """

    raw: pd.DataFrame
    rows: npt.NDArray[np.int64]
    number: dict[str, FloatArray]
    unparsable: dict[str, BoolArray]
    dvid: ObjectArray
    agonist: ObjectArray
    known_agonists: frozenset[str]

    @property
    def present(self) -> frozenset[str]:
        """Upper-case names of the columns the dataset has."""
        return frozenset(str(c) for c in self.raw.columns)

    @property
    def covariate_columns(self) -> list[str]:
        """Columns that are not reserved NONMEM items, in file order."""
        return [str(c) for c in self.raw.columns if c not in RESERVED_COLUMNS]

    @property
    def is_dose(self) -> BoolArray:
        """Dose records (EVID 1 or 4)."""
        return np.isin(self.number["EVID"], [int(e) for e in DOSE_EVIDS])

    @property
    def is_observation(self) -> BoolArray:
        """Observation records that count (EVID 0 and MDV 0)."""
        number = self.number
        observed: BoolArray = (number["EVID"] == Evid.OBSERVATION) & (number["MDV"] == 0)
        return observed

    def missing(self, column: str) -> BoolArray:
        """Whether each record lacks a value in ``column`` (all true if the column is absent)."""
        if column not in self.present:
            return np.ones(len(self.rows), dtype=bool)
        return self.raw[column].isna().to_numpy()


def parse_numbers(values: pd.Series) -> tuple[FloatArray, BoolArray]:
    """Parse a column to floats; flag values that are given but not finite numbers.

    Parameters
    ----------
    values
        Object column, ``None`` where missing.
    """
    parsed = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    unparsable = values.notna().to_numpy() & ~np.isfinite(parsed)
    parsed[unparsable] = np.nan
    return parsed, unparsable


def dvid_name(value: object) -> str | None:
    """Canonical name of a DVID value, ``None`` if it is none.

    A known observation type by name or NONMEM code (``conc``, ``2``), or a named
    response (lower-cased, :data:`~tpopk.data.schema.RESPONSE_NAME`); an unknown numeric
    code or any other text is ``None``.
    """
    text = str(value).strip().lower()
    if text in OBSERVATION_TYPES:
        return text
    try:
        code = float(text)
    except ValueError:
        return text if RESPONSE_NAME.fullmatch(text) else None
    return DVID_CODES.get(int(code)) if code.is_integer() else None


def named_responses(records: TypedRecords) -> frozenset[str]:
    """DVID names in the records that are not known observation types (``pca``)."""
    return frozenset(str(v) for v in records.dvid if v is not None) - set(OBSERVATION_TYPES)


def _rxode2_boluses(number: dict[str, FloatArray]) -> None:
    """Read rxode2's classic bolus codes as NONMEM doses, in place.

    rxode2 writes a bolus into compartment ``c`` as EVID ``100 c + 1`` (101 into the
    depot of theophylline's published file): NONMEM's EVID 1 with CMT ``c``. Where the
    CMT column names another compartment the code is left for validation to report.
    Infusion codes (``10000 + 100 c + 1``) are :func:`_rxode2_infusions`'.
    """
    evid, cmt = number["EVID"], number["CMT"]
    target = (evid - 1) / 100
    bolus = (evid > 100) & (evid < 10000) & (evid % 100 == 1) & (np.isnan(cmt) | (cmt == target))
    evid[bolus] = float(Evid.DOSE)
    cmt[bolus] = target[bolus]


def _rxode2_infusions(number: dict[str, FloatArray]) -> None:
    """Read rxode2's classic infusion codes as NONMEM infusions, in place.

    rxode2 writes an infusion into compartment ``c`` as EVID ``10000 + 100 c + 1`` twice:
    at its start with the rate in ``AMT`` and ``RATE``, and at its end with both negated.
    The start becomes NONMEM's EVID 1 into CMT ``c`` with that ``RATE`` and ``AMT = RATE x
    duration``; the end an EVID 2 record (neither dose nor observation), so every row keeps
    its line number. A start without its end (same ID and code, the rate negated), or a
    CMT column naming another compartment, is left for validation to report.
    """
    evid, cmt, rate = number["EVID"], number["CMT"], number["RATE"]
    ids, time, amount = number.get("ID"), number.get("TIME"), number.get("AMT")
    if ids is None or time is None or amount is None:
        return
    coded = (evid > 10000) & (evid < 20000) & (evid % 100 == 1)
    running: dict[tuple[float, float], int] = {}  # (ID, code) -> row of its open start
    for row in map(int, np.flatnonzero(coded)):
        key = (float(ids[row]), float(evid[row]))
        if rate[row] > 0 and key not in running:
            running[key] = row
            continue
        start = running.pop(key, None)
        target = (evid[row] % 10000 - 1) / 100
        if (
            start is None
            or rate[row] != -rate[start]
            or not (np.isnan(cmt[start]) or cmt[start] == target)
        ):
            continue
        amount[start] = rate[start] * (time[row] - time[start])
        evid[start], cmt[start] = float(Evid.DOSE), target
        evid[row], amount[row], rate[row] = float(Evid.OTHER), 0.0, 0.0
        cmt[row] = target


def type_records(raw: RawRecords, extra_agonists: Iterable[str] = ()) -> TypedRecords:
    """Parse and default the reserved columns of raw records.

    Parameters
    ----------
    raw
        Records as read by :mod:`tpopk.data.files`.
    extra_agonists
        Agonist names accepted besides the five TPO-RAs (case-insensitive).
    """
    values = raw.values
    n = len(values)
    number: dict[str, FloatArray] = {}
    unparsable: dict[str, BoolArray] = {}
    for column in NUMERIC_COLUMNS:
        if column in values.columns:
            number[column], unparsable[column] = parse_numbers(values[column])
    zeros = np.zeros(n)
    for column in ("RATE", "II", "ADDL", "SS"):  # NONMEM reads a missing dosing item as 0
        number[column] = np.nan_to_num(number.get(column, zeros), nan=0.0)
    amount = number.get("AMT", zeros)
    if "EVID" not in number:
        given_mdv = number.get("MDV", zeros)
        number["EVID"] = np.select(
            [np.nan_to_num(amount) > 0, given_mdv == 1],
            [float(Evid.DOSE), float(Evid.OTHER)],
            float(Evid.OBSERVATION),
        )
    cmt_given = "CMT" in number
    if not cmt_given:
        number["CMT"] = np.full(n, np.nan)
    _rxode2_boluses(number)
    _rxode2_infusions(number)
    evid = number["EVID"]
    dose = np.isin(evid, [int(e) for e in DOSE_EVIDS])
    derived_mdv = np.where(evid == Evid.OBSERVATION, 0.0, 1.0)
    given_or_derived = number.get("MDV", derived_mdv)
    number["MDV"] = np.where(np.isnan(given_or_derived), derived_mdv, given_or_derived)
    # A missing AMT is a violation on a dose record and means 0 anywhere else.
    number["AMT"] = np.where(~dose & np.isnan(amount), 0.0, amount)
    number.setdefault("DV", np.full(n, np.nan))
    number.setdefault("LLOQ", np.full(n, np.nan))
    if not cmt_given:  # without a CMT column, doses not placed by an rxode2 code go to 1
        number["CMT"] = np.where(np.isnan(number["CMT"]), np.where(dose, 1.0, 0.0), number["CMT"])
    if "DVID" in values.columns:
        dvid = np.array([None if v is None else dvid_name(v) for v in values["DVID"]], object)
    else:
        dvid = np.full(n, None, dtype=object)
        dvid[evid == Evid.OBSERVATION] = DEFAULT_DVID
    known = frozenset(AGONISTS) | frozenset(a.strip().lower() for a in extra_agonists)
    agonist = np.full(n, None, dtype=object)
    if "AGONIST" in values.columns:
        lowered = [None if v is None else str(v).strip().lower() for v in values["AGONIST"]]
        agonist[:] = [v if v in known else None for v in lowered]
    return TypedRecords(
        raw=values,
        rows=np.asarray(raw.rows, dtype=np.int64),
        number=number,
        unparsable=unparsable,
        dvid=dvid,
        agonist=agonist,
        known_agonists=known,
    )


def blq_flags(records: TypedRecords) -> BoolArray:
    """Censored observations: ``BLQ = 1`` if the column is given, else ``DV < LLOQ``."""
    number = records.number
    flags: BoolArray
    if "BLQ" in number:
        flags = np.nan_to_num(number["BLQ"]) == 1
    else:
        flags = records.is_observation & (number["DV"] < number["LLOQ"])
    return flags


def canonical_frame(records: TypedRecords) -> pd.DataFrame:
    """Build the canonical frame of valid records (upper-case NONMEM columns, typed).

    Parameters
    ----------
    records
        Typed records that passed validation.
    """
    number = records.number
    frame = pd.DataFrame(
        {
            "ID": number["ID"].astype(np.int64),
            "TIME": number["TIME"],
            "EVID": number["EVID"].astype(np.int64),
            "AMT": number["AMT"],
            "DV": number["DV"],
            "CMT": number["CMT"].astype(np.int64),
            "MDV": number["MDV"].astype(np.int64),
            "RATE": number["RATE"],
            "II": number["II"],
            "ADDL": number["ADDL"].astype(np.int64),
            "SS": number["SS"].astype(np.int64),
            "DVID": [name or "" for name in records.dvid],
            "LLOQ": number["LLOQ"],
            "BLQ": blq_flags(records).astype(np.int64),
        }
    )
    if "AGONIST" in records.present:
        frame["AGONIST"] = records.agonist  # None where not given
    for column in records.covariate_columns:
        parsed, unparsable = parse_numbers(records.raw[column])
        frame[column] = parsed if not unparsable.any() else records.raw[column].to_numpy()
    return frame
