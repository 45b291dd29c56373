"""The event table: validated NONMEM-style records, their doses, observations and arrays.

:func:`read_events` is the one way in: it reads a CSV file or DataFrame, validates every
record (raising :class:`EventDataError` with all violations) and returns an immutable
:class:`EventTable`. The table expands ``ADDL``/``II`` into explicit doses, keeps
steady-state doses as single ``SS`` records for the closed-form PK engine, and packs
per-subject padded arrays for vectorised models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr

from tpopk.data.files import (
    frame_records,
    read_csv_records,
    read_sidecar_units,
    sidecar_path,
    write_records,
)
from tpopk.data.records import canonical_frame, dvid_name, named_responses, type_records
from tpopk.data.schema import DOSE_EVIDS, RESET_EVIDS, Evid
from tpopk.data.units import DEFAULT_UNITS, Units, canonical_key, resolve_units
from tpopk.data.validation import validate
from tpopk.data.violations import EventDataError, Violation

#: Columns of :attr:`EventTable.doses`, before the optional ``AGONIST``.
DOSE_COLUMNS = ("ID", "TIME", "AMT", "RATE", "DURATION", "CMT", "SS", "II", "EVID", "UNTIL")


@dataclass(frozen=True)
class SubjectArrays:
    """Per-subject padded dose arrays and flat observation arrays (all read-only).

    Doses are ``[S, D]`` with ``D`` the most doses any subject has; padding has
    ``dose_mask`` False and ``dose_amt`` 0. Observations are flat ``[N]`` in record order,
    with ``obs_subject`` indexing ``subject_ids``.

    Parameters
    ----------
    subject_ids
        ``[S]`` subject IDs in order of appearance.
    dose_time
        ``[S, D]`` dose times (TIME units).
    dose_amt
        ``[S, D]`` amounts (AMT units; 0 on padding and on steady-state constant infusions).
    dose_rate
        ``[S, D]`` infusion rates (AMT units per TIME unit); 0 for a bolus.
    dose_duration
        ``[S, D]`` infusion durations AMT/RATE (TIME units); 0 for a bolus, ``inf`` for a
        steady-state constant infusion.
    dose_cmt
        ``[S, D]`` dosing compartment, NONMEM ``CMT`` numbered per PK model
        (:attr:`tpopk.pk.PKModel.compartments`; 1 on padding).
    dose_ss
        ``[S, D]`` NONMEM SS: 0 none, 1 steady state (resets the system first), 2 steady
        state added to the current state.
    dose_ii
        ``[S, D]`` interdose interval of steady-state doses (TIME units), else 0.
    dose_until
        ``[S, D]`` time at which a later reset (EVID 3/4 or an SS 1 dose) wipes this
        dose's contribution; ``inf`` if none.
    dose_mask
        ``[S, D]`` True on real doses.
    obs_subject, obs_time, obs_dv, obs_dvid, obs_cmt, obs_lloq, obs_blq
        ``[N]`` subject index, time, DV, observation type, compartment (0 = the model's
        default), lower limit of quantification (``nan`` if none) and censoring flag.
    """

    subject_ids: npt.NDArray[np.int64]
    dose_time: npt.NDArray[np.float64]
    dose_amt: npt.NDArray[np.float64]
    dose_rate: npt.NDArray[np.float64]
    dose_duration: npt.NDArray[np.float64]
    dose_cmt: npt.NDArray[np.int64]
    dose_ss: npt.NDArray[np.int64]
    dose_ii: npt.NDArray[np.float64]
    dose_until: npt.NDArray[np.float64]
    dose_mask: npt.NDArray[np.bool_]
    obs_subject: npt.NDArray[np.int64]
    obs_time: npt.NDArray[np.float64]
    obs_dv: npt.NDArray[np.float64]
    obs_dvid: npt.NDArray[np.str_]
    obs_cmt: npt.NDArray[np.int64]
    obs_lloq: npt.NDArray[np.float64]
    obs_blq: npt.NDArray[np.bool_]

    def __post_init__(self) -> None:
        """Freeze every array so no model can change the data under another."""
        for field in fields(self):
            getattr(self, field.name).flags.writeable = False


def expand_doses(frame: pd.DataFrame) -> pd.DataFrame:
    """List every dose explicitly: ``ADDL`` more doses every ``II`` after each record.

    Steady-state records stay single records with their ``II``; additional doses are
    ordinary (SS 0, II 0) doses. As in NONMEM, a reset (EVID 3/4) cancels additional
    doses not yet given. ``UNTIL`` is when a later reset or SS 1 dose wipes the dose
    (a record later in the file at the same time counts as later).

    Parameters
    ----------
    frame
        Canonical event frame.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DOSE_COLUMNS` (plus ``AGONIST`` if present), sorted by subject
        (order of appearance) and time. ``DURATION`` is AMT/RATE for infusions, 0 for a
        bolus and ``inf`` for a steady-state constant infusion (AMT 0).
    """
    evid = frame["EVID"].to_numpy()
    is_dose = np.isin(evid, [int(e) for e in DOSE_EVIDS])
    is_reset = np.isin(evid, [int(e) for e in RESET_EVIDS])
    # An SS 1 dose resets the system before it, like EVID 3/4 (NONMEM semantics).
    wipes = is_reset | (is_dose & (frame["SS"].to_numpy() == 1))
    time = frame["TIME"].to_numpy(dtype=np.float64)
    ids = frame["ID"].to_numpy()
    block = np.cumsum(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else ids  # subject index
    records = np.flatnonzero(is_dose)
    counts = frame["ADDL"].to_numpy()[records] + 1
    parent = np.repeat(records, counts)  # record each dose comes from
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    dose_time = time[parent] + k * frame["II"].to_numpy()[parent]
    # A reset after the record cancels its additional doses from the reset on.
    keep = (k == 0) | (dose_time < _next_time(is_reset, parent, time, block))
    parent, k, dose_time = parent[keep], k[keep], dose_time[keep]
    until = _next_time(wipes, parent, time, block)  # right for the record itself (k = 0)
    later = k > 0  # additional doses: the first wipe at or after their time
    until[later] = _time_at_or_after(wipes, time, block, block[parent[later]], dose_time[later])
    first = k == 0
    column = {name: frame[name].to_numpy()[parent] for name in frame.columns}
    doses = pd.DataFrame(
        {
            "ID": column["ID"],
            "TIME": dose_time,
            "AMT": column["AMT"],
            "RATE": column["RATE"],
            "CMT": column["CMT"],
            "SS": np.where(first, column["SS"], 0),
            "II": np.where(first & (column["SS"] != 0), column["II"], 0.0),
            "EVID": np.where(first, column["EVID"], int(Evid.DOSE)),
            "UNTIL": until,
            **({"AGONIST": column["AGONIST"]} if "AGONIST" in frame.columns else {}),
        }
    )
    doses = doses.iloc[np.lexsort((dose_time, block[parent]))]  # stable: record order on ties
    amount, rate = doses["AMT"].to_numpy(), doses["RATE"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        duration = np.where(rate > 0, amount / np.where(rate > 0, rate, 1.0), 0.0)
    doses.insert(4, "DURATION", np.where((rate > 0) & (amount == 0), np.inf, duration))
    types = {"ID": np.int64, "CMT": np.int64, "SS": np.int64, "EVID": np.int64}
    expanded: pd.DataFrame = doses.astype(types).reset_index(drop=True)
    return expanded


def _next_time(
    marked: npt.NDArray[np.bool_],
    after: npt.NDArray[np.int64],
    time: npt.NDArray[np.float64],
    block: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    """Time of the first marked record after each position, within its subject; else inf."""
    positions = np.flatnonzero(marked)
    if positions.size == 0:
        return np.full(after.shape, np.inf)
    following = np.minimum(np.searchsorted(positions, after, side="right"), positions.size - 1)
    candidate = positions[following]
    found = (candidate > after) & (block[candidate] == block[after])
    return np.where(found, time[candidate], np.inf)


def _time_at_or_after(
    marked: npt.NDArray[np.bool_],
    time: npt.NDArray[np.float64],
    block: npt.NDArray[np.int64],
    query_block: npt.NDArray[np.int64],
    query_time: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Time of the first marked record at or after each query time, within its subject."""
    if not marked.any() or query_time.size == 0:
        return np.full(query_time.shape, np.inf)
    # Records are sorted by (subject, time); an integer key keeps that order exactly.
    grid = np.unique(time)
    width = grid.size + 1
    key = block[marked] * width + np.searchsorted(grid, time[marked])
    query = query_block * width + np.searchsorted(grid, query_time)
    index = np.minimum(np.searchsorted(key, query), key.size - 1)
    found = (key[index] >= query) & (block[marked][index] == query_block)
    return np.where(found, time[marked][index], np.inf)


@dataclass(frozen=True, eq=False)
class EventTable:
    """Validated, immutable NONMEM-style event records with their units.

    Build with :func:`read_events`. Every DataFrame it returns is a fresh copy.

    Parameters
    ----------
    _records
        Canonical frame (see :attr:`frame`); private, read it through :attr:`frame`.
    units
        Declared units.
    _rows
        CSV line of each record (header = 1), ``None`` where the records came without.
    """

    _records: pd.DataFrame
    units: Units
    _rows: tuple[int, ...] | None = None

    def row_of(self, position: int) -> int:
        """CSV line (header = 1) of the record at ``position`` in :attr:`frame`.

        For records read from a DataFrame, the line its CSV export would have.
        """
        return self._rows[position] if self._rows is not None else position + 2

    @property
    def frame(self) -> pd.DataFrame:
        """Canonical records: upper-case NONMEM columns, NONMEM EVID, covariates last.

        Columns ``ID, TIME, EVID, AMT, DV, CMT, MDV, RATE, II, ADDL, SS, DVID`` (name,
        ``""`` where none), ``LLOQ``, ``BLQ`` (0/1), ``AGONIST`` (lower-case name, missing
        where none; only if the data have it), then covariates in file order.
        """
        return self._records.copy()

    @property
    def subjects(self) -> npt.NDArray[np.int64]:
        """Subject IDs in order of appearance."""
        return np.asarray(pd.unique(self._records["ID"]), dtype=np.int64)

    @cached_property
    def _doses(self) -> pd.DataFrame:
        return expand_doses(self._records)

    @property
    def doses(self) -> pd.DataFrame:
        """Every dose explicitly: ADDL/II expanded, SS doses single (see :func:`expand_doses`)."""
        return self._doses.copy()

    @property
    def observations(self) -> pd.DataFrame:
        """Observation records (EVID 0, MDV 0), all canonical columns."""
        mask = (self._records["EVID"] == Evid.OBSERVATION) & (self._records["MDV"] == 0)
        return self._records[mask].copy()

    @property
    def covariates(self) -> pd.DataFrame:
        """Baseline covariates: per subject (index ``ID``), each column's first given value.

        Includes ``AGONIST`` (the first agonist the subject's records name) when present.
        """
        columns = self._covariate_columns
        table = self._records[["ID", *columns]].groupby("ID", sort=False).first()
        return table.reindex(self.subjects)

    @property
    def _covariate_columns(self) -> list[str]:
        start = list(self._records.columns).index("BLQ") + 1
        return [str(c) for c in self._records.columns[start:]]

    def subject_arrays(self, dvid: str | int | None = None) -> SubjectArrays:
        """Pack doses per subject and observations flat, ready for vectorised models.

        Parameters
        ----------
        dvid
            Keep only observations of this type (name or NONMEM code); ``None`` keeps all.
        """
        subjects = self.subjects
        position = {subject: index for index, subject in enumerate(subjects)}
        doses = self._doses
        slot = doses.groupby("ID", sort=False).cumcount().to_numpy()
        row = doses["ID"].map(position).to_numpy()
        width = int(slot.max()) + 1 if len(doses) else 0
        shape = (len(subjects), width)

        def padded(column: str, fill: float) -> npt.NDArray[np.float64]:
            array = np.full(shape, fill, dtype=np.float64)
            array[row, slot] = doses[column].to_numpy(dtype=np.float64)
            return array

        mask = np.zeros(shape, dtype=bool)
        mask[row, slot] = True
        obs = self.observations
        if dvid is not None:
            obs = obs[obs["DVID"] == self._dvid_name(dvid)]
        return SubjectArrays(
            subject_ids=subjects,
            dose_time=padded("TIME", 0.0),
            dose_amt=padded("AMT", 0.0),
            dose_rate=padded("RATE", 0.0),
            dose_duration=padded("DURATION", 0.0),
            dose_cmt=padded("CMT", 1).astype(np.int64),
            dose_ss=padded("SS", 0).astype(np.int64),
            dose_ii=padded("II", 0.0),
            dose_until=padded("UNTIL", np.inf),
            dose_mask=mask,
            obs_subject=obs["ID"].map(position).to_numpy(dtype=np.int64),
            obs_time=obs["TIME"].to_numpy(dtype=np.float64),
            obs_dv=obs["DV"].to_numpy(dtype=np.float64),
            obs_dvid=obs["DVID"].to_numpy(dtype=str),
            obs_cmt=obs["CMT"].to_numpy(dtype=np.int64),
            obs_lloq=obs["LLOQ"].to_numpy(dtype=np.float64),
            obs_blq=obs["BLQ"].to_numpy() == 1,
        )

    @staticmethod
    def _dvid_name(dvid: str | int) -> str:
        name = dvid_name(dvid)
        if name is None:
            raise EventDataError([Violation("unknown-dvid", "a known DVID", value=str(dvid))])
        return name

    def to_xarray(self) -> xr.Dataset:
        """Return the arrays as a Dataset with dims ``subject``, ``dose`` and ``obs``.

        Dose and observation variables are named as in :class:`SubjectArrays`; baseline
        covariates are variables on ``subject``; units are in each variable's ``units``
        attribute (``obs_dv`` and ``obs_lloq`` carry ``units_<dvid>`` attributes instead).
        """
        arrays = self.subject_arrays()
        time, amt = self.units["TIME"], self.units["AMT"]
        unit_of = {
            "dose_time": time,
            "dose_amt": amt,
            "dose_rate": self.units.rate,
            "dose_duration": time,
            "dose_ii": time,
            "dose_until": time,
            "obs_time": time,
        }
        data: dict[str, xr.Variable] = {}
        for field in fields(arrays):
            if field.name == "subject_ids":
                continue
            values = getattr(arrays, field.name)
            dims = ("subject", "dose") if field.name.startswith("dose_") else ("obs",)
            attrs = {"units": unit_of[field.name]} if field.name in unit_of else {}
            if field.name in ("obs_dv", "obs_lloq"):
                attrs = {f"units_{d}": self.units[d] for d in np.unique(arrays.obs_dvid)}
            data[field.name] = xr.Variable(dims, values, attrs)
        covariates = self.covariates
        for column in covariates.columns:
            attrs = {"units": self.units["WT"]} if column == "WT" else {}
            data[str(column)] = xr.Variable(("subject",), covariates[column].to_numpy(), attrs)
        return xr.Dataset(data, coords={"subject": arrays.subject_ids})

    def describe(self) -> str:
        """Return a short summary: subjects, doses, observations per DVID, time span, units."""
        obs = self.observations
        doses = self._doses
        per_type = obs.groupby("DVID", sort=False).size()
        counts = ", ".join(f"{name} {count}" for name, count in per_type.items()) or "none"
        units = ", ".join(f"{name} {self.units[str(name)]}" for name in per_type.index)
        time = self._records["TIME"]
        lines = [
            f"{len(self.subjects)} subjects, {len(doses)} doses "
            f"({int(self._records['EVID'].isin([int(e) for e in DOSE_EVIDS]).sum())} dose records"
            f", {int((doses['SS'] != 0).sum())} steady state), {len(obs)} observations ({counts})",
            f"time {time.min():g} to {time.max():g} {self.units['TIME']}; "
            f"AMT in {self.units['AMT']}; DV in {units or '-'}",
        ]
        if "AGONIST" in self._records.columns:
            given = sorted(self._records["AGONIST"].dropna().unique())
            lines.append(f"agonists: {', '.join(given) or 'none'}")
        covariates = [c for c in self._covariate_columns if c != "AGONIST"]
        lines.append(f"covariates: {', '.join(covariates) or 'none'}")
        return "\n".join(lines)


def read_events(
    source: str | Path | pd.DataFrame,
    units: Mapping[str, str] | None = None,
    agonists: Iterable[str] | None = None,
    *,
    require_units: bool = False,
) -> EventTable:
    """Read and validate NONMEM-style event records.

    Parameters
    ----------
    source
        CSV file (header line, missing values empty or ``.``) or a DataFrame.
    units
        ``{column or DVID: unit}`` (e.g. ``{"AMT": "µg/kg", "conc": "ng/mL"}``), merged
        over the defaults TIME h, AMT mg, WT kg, conc ng/mL, plt/wbc/anc 10^9/L, tpo pg/mL.
        ``None`` reads ``<csv stem>.units.toml`` beside a CSV file if there is one.
    agonists
        Agonist names accepted besides the five TPO-RAs (for generic drugs).
    require_units
        Refuse to default: the unit of TIME, of AMT (if any dose), of every observation
        type present and of WT (if a column) must be declared, in ``units`` or the
        sidecar. A concentration read in the wrong unit fits without complaint, so
        the command line always asks for this.

    Returns
    -------
    EventTable
        The validated records.

    Raises
    ------
    EventDataError
        Listing every violation found (rows numbered as CSV lines, header = row 1).
    """
    violations: list[Violation] = []
    if isinstance(source, pd.DataFrame):
        raw, found = frame_records(source)
    else:
        path = Path(source)
        raw, found = read_csv_records(path)
        if units is None:
            units, sidecar_violations = read_sidecar_units(path)
            violations += sidecar_violations
    violations += found
    records = type_records(raw, agonists or ())
    resolved, unit_violations = resolve_units(units, named_responses(records))
    violations += unit_violations
    violations += validate(records, resolved)
    if violations:
        raise EventDataError(sorted(violations, key=_row_order), raw.name)
    events = EventTable(canonical_frame(records), resolved, tuple(int(r) for r in records.rows))
    if require_units:
        where = "units" if isinstance(source, pd.DataFrame) else sidecar_path(Path(source)).name
        if missing := undeclared_units(events, units, where):
            raise EventDataError(missing, raw.name)
    return events


def undeclared_units(
    events: EventTable, declared: Mapping[str, str] | None, where: str = "units"
) -> list[Violation]:
    """One violation per unit the data need that ``declared`` (from ``where``) leaves out."""
    frame = events.frame
    needed = ["TIME"]
    needed += ["AMT"] if (frame["EVID"].isin([int(e) for e in DOSE_EVIDS])).any() else []
    needed += sorted(set(events.observations["DVID"]))
    needed += ["WT"] if "WT" in frame.columns else []
    given = {canonical_key(str(key)) for key in (declared or {})}
    given |= {str(key).strip().lower() for key in (declared or {})}  # named responses
    example = ", ".join(f'{key} = "{DEFAULT_UNITS.get(key, "<unit>")}"' for key in needed)
    return [
        Violation(
            "undeclared-unit",
            f"its unit declared in {where} (units are never assumed), e.g. {example}",
            column=f"units[{key}]",
        )
        for key in needed
        if key not in given
    ]


def _row_order(violation: Violation) -> int:
    return -1 if violation.row is None else violation.row


def write_events(events: EventTable | pd.DataFrame, path: str | Path) -> None:
    """Write records to CSV atomically (temp file beside it, then rename).

    An :class:`EventTable` is written as its canonical frame together with its units
    sidecar ``<stem>.units.toml``, so :func:`read_events` reads back the same table.

    Parameters
    ----------
    events
        Event table, or a DataFrame of records written as is (no sidecar).
    path
        Destination CSV file; its folder must exist.
    """
    if isinstance(events, EventTable):
        write_records(events._records, Path(path), events.units.as_dict())
    else:
        write_records(events, Path(path), None)
