"""Bundled example datasets, loaded as validated event tables.

The public files are kept byte-for-byte as published (see ``PROVENANCE.md`` beside
them); their loaders translate rxode2 event codes into NONMEM semantics and declare the
units. ``itp_study.csv`` is SYNTHETIC: simulated by :mod:`tpopk.simulate.synthetic` from
the model library at the values in ``itp_study.values.json``.

``CATALOGUE`` maps a short name to each loader.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.resources import as_file, files
from typing import Any, Final

import numpy as np
import pandas as pd

from tpopk.data import EventDataError, EventTable, Evid, Violation, read_events
from tpopk.data.files import read_sidecar_units
from tpopk.datasets.reference import (
    compare_with_reference,
    omega_cv,
    reference_estimates,
    reference_events,
)

#: rxode2 event code of wbcSim.csv: infusion into CMT 1 (start/stop pairs).
RXODE2_INFUSION_CMT1: Final = 10101


def _bundled(name: str) -> pd.DataFrame:
    with files(__name__).joinpath(name).open("r", encoding="utf-8") as stream:
        return pd.read_csv(stream)


def load_theophylline() -> EventTable:
    """Load theophylline, single oral dose: 12 subjects, 12 doses, 132 concentrations.

    Read as ``tpopk validate`` reads it: rxode2's EVID 101 (bolus into CMT 1, the
    depot) is NONMEM EVID 1, and the units come from the sidecar ``theo_sd.units.toml``
    (TIME h, AMT mg, concentration ``conc`` (CMT 2) mg/L, WT kg).
    """
    with as_file(files(__name__).joinpath("theo_sd.csv")) as path:
        return read_events(path, require_units=True)


def infusions_from_start_stop(raw: pd.DataFrame, code: int) -> pd.DataFrame:
    """Turn rxode2 start/stop infusion pairs into one NONMEM infusion record each.

    rxode2's classic coding writes the infusion rate in both ``AMT`` and ``RATE`` at the
    start (positive) and again, negated, at the stop. The NONMEM record keeps the start
    time and rate and gets ``AMT = RATE x (stop - start)``, so its duration AMT/RATE
    equals the stop time minus the start time.

    Parameters
    ----------
    raw
        Records as published, rows in file order.
    code
        rxode2 EVID of the infusion rows.

    Raises
    ------
    EventDataError
        If a start has no matching stop (same ID, negated rate) before the next start.
    """
    records = raw.astype({"AMT": float, "RATE": float})
    is_infusion = (records["EVID"] == code).to_numpy()
    problems = []
    drop: list[int] = []
    open_start: dict[object, int] = {}  # subject -> position of its running infusion
    for position in map(int, np.flatnonzero(is_infusion)):
        subject = records["ID"].iloc[position]
        rate = float(records["RATE"].iloc[position])
        if rate > 0 and subject not in open_start:
            open_start[subject] = position
            continue
        start = open_start.pop(subject, None)
        if start is None or rate != -float(records["RATE"].iloc[start]):
            problems.append(
                Violation(
                    "unpaired-infusion",
                    "each start (+RATE) followed by a stop with -RATE for the same ID",
                    row=position + 2,
                    column="RATE",
                    value=str(rate),
                )
            )
            continue
        duration = float(records["TIME"].iloc[position] - records["TIME"].iloc[start])
        records.loc[records.index[start], "AMT"] = float(records["RATE"].iloc[start]) * duration
        drop.append(position)
    problems += [
        Violation("unpaired-infusion", "a stop record for this start", row=p + 2, column="RATE")
        for p in open_start.values()
    ]
    if problems:
        raise EventDataError(problems, "rxode2 infusion records")
    records = records.drop(index=records.index[drop])
    records.loc[records["EVID"] == code, "EVID"] = int(Evid.DOSE)
    return records.reset_index(drop=True)


def load_wbc_sim() -> EventTable:
    """Load the simulated Friberg myelosuppression data (paclitaxel -> WBC): 45 subjects.

    The 104 rxode2 start/stop infusion rows become 52 NONMEM infusions into CMT 1
    (see :func:`infusions_from_start_stop`); observations are ``DVID`` ``wbc`` in CMT 3.
    Per-subject paclitaxel PK ``CLI`` (L/h), ``V1I`` (L), ``V2I`` (L) stay covariates.
    Units (TIME h, AMT µmol, WBC 10^9/L) from the sidecar ``wbcSim.units.toml``.
    """
    raw = infusions_from_start_stop(_bundled("wbcSim.csv"), RXODE2_INFUSION_CMT1)
    dose = raw["EVID"] == Evid.DOSE
    raw["DV"] = raw["DV"].where(~dose)  # the file writes DV 0 on dose rows; it means nothing
    raw["DVID"] = np.where(dose, "", "wbc")
    with as_file(files(__name__).joinpath("wbcSim.csv")) as path:
        units, problems = read_sidecar_units(path)
    if problems or units is None:
        raise EventDataError(problems, "wbcSim.units.toml")
    return read_events(raw, units=units, require_units=True)


def _sidecar(name: str) -> dict[str, str]:
    """Units declared in a bundled ``<stem>.units.toml``."""
    with as_file(files(__name__).joinpath(name)) as path:
        units, problems = read_sidecar_units(path)
    if problems or units is None:
        raise EventDataError(problems, f"the units of {name}")
    return dict(units)


def doses_from_amt(raw: pd.DataFrame) -> pd.DataFrame:
    """Give NONMEM records without ``EVID``/``MDV`` their event types from ``AMT``.

    NONMEM reads a record with ``AMT > 0`` as a dose and any other as an observation
    when the data have no ``EVID`` or ``MDV`` item. Doses get ``EVID 1`` and no ``DV``
    (their ``DV 0`` is a placeholder, not a measurement); observations get ``EVID 0``.
    """
    if "EVID" in raw.columns or "MDV" in raw.columns:
        raise EventDataError(
            [Violation("evid-given", "records without EVID and MDV (AMT decides)", column="EVID")],
            "NONMEM records",
        )
    records = raw.copy()
    dose = records["AMT"].to_numpy(dtype=float) > 0
    records["EVID"] = np.where(dose, int(Evid.DOSE), int(Evid.OBSERVATION))
    records["DV"] = records["DV"].where(~dose)
    return records


def load_phenobarbital() -> EventTable:
    """Load phenobarbital in neonates (Grasela & Donn 1985): 59 subjects, 155 concentrations.

    ``pheno.dta`` is the NONMEM table as published (``$INPUT ID TIME AMT WGT APGR DV FA1
    FA2``, whitespace-separated, no EVID): a record with ``AMT > 0`` is an IV bolus into
    the central compartment (CMT 1, :func:`doses_from_amt`), the others concentrations
    (``DVID`` ``conc``, CMT 1). ``WGT`` becomes ``WT`` (kg) and ``APGR`` (Apgar score,
    1-10) stays a covariate; ``FA1``/``FA2``, dose flags of the NONMEM runs, are dropped.
    Units (TIME h, AMT mg, conc mg/L, WT kg) from ``pheno.units.toml``.
    """
    with files(__name__).joinpath("pheno.dta").open("r", encoding="utf-8") as stream:
        raw = pd.read_csv(stream, sep=r"\s+")
    raw = doses_from_amt(raw.drop(columns=["FA1", "FA2"]).rename(columns={"WGT": "WT"}))
    raw["CMT"] = 1
    raw["DVID"] = np.where(raw["EVID"] == Evid.DOSE, "", "conc")
    return read_events(raw, units=_sidecar("pheno.dta"), require_units=True)


def load_warfarin() -> EventTable:
    """Load warfarin PK and prothrombin complex activity: 32 subjects, one oral dose each.

    ``warfarin.csv`` is nlmixr2data's table as published (lower-case columns ``id, time,
    amt, dv, dvid, evid, wt, age, sex``). Its ``dvid`` ``cp`` (plasma warfarin, mg/L)
    becomes ``conc``, observed in the central compartment (CMT 2; the dose, EVID 1, goes
    to the depot, CMT 1); ``pca`` (prothrombin complex activity, % of normal) stays a named
    response, observed in CMT 3 after the PK model's compartments. ``sex`` becomes the
    flag ``SEX`` (1 female, 0 male). 251 concentrations and 232 PCA values; units in
    ``warfarin.units.toml``.
    """
    raw = _bundled("warfarin.csv")
    raw.columns = [str(c).upper() for c in raw.columns]
    dose = raw["EVID"] == Evid.DOSE
    raw["DVID"] = np.where(dose, "", raw["DVID"].replace({"cp": "conc"}))
    raw["DV"] = raw["DV"].where(~dose)
    raw["CMT"] = np.select([dose, raw["DVID"] == "conc"], [1, 2], 3)
    raw["SEX"] = np.where(raw["SEX"] == "female", 1, 0)
    return read_events(raw, units=_sidecar("warfarin.csv"), require_units=True)


def load_itp_study() -> EventTable:
    """Load the SYNTHETIC multi-agonist ITP study: 5 agonists x 6 subjects, 6 weeks.

    Simulated by tpopk from ``models/thrombopoiesis.toml`` and the five agonist cards
    with every population value at its prior median (:func:`itp_study_values`); see
    ``PROVENANCE.md``. Per subject: one dose record (``II``/``ADDL``, AMT mg, romiplostim
    3 µg/kg converted by weight), 6 concentrations (``DVID`` ``conc``, ng/mL, CMT 2) and
    9 platelet counts (``plt``, 10^9/L, CMT 3); covariates ``AGONIST``, ``WT``,
    ``EAST_ASIAN``, ``SPLENECTOMY``, ``DISEASE`` (ITP) and ``FED`` (0). Units are read
    from the sidecar ``itp_study.units.toml``.
    """
    with as_file(files(__name__).joinpath("itp_study.csv")) as path:
        return read_events(path)


def itp_study_values() -> dict[str, Any]:
    """Return the generating values of :func:`load_itp_study` (cards, population, command).

    ``population`` maps posterior variable names (``pop_cl_eltrombopag``,
    ``omega_plt0``, ``beta_plt0_DISEASE``, ...) to the value, natural units, that
    generated the data; vectors follow the model's coordinates (``disease_level`` ITP,
    CLD; ``agonist`` in the order of ``cards``).
    """
    text = files(__name__).joinpath("itp_study.values.json").read_text(encoding="utf-8")
    values: dict[str, Any] = json.loads(text)
    return values


#: Bundled datasets by short name.
CATALOGUE: Final[dict[str, Callable[[], EventTable]]] = {
    "theophylline": load_theophylline,
    "wbc_sim": load_wbc_sim,
    "itp_study": load_itp_study,
    "phenobarbital": load_phenobarbital,
    "warfarin": load_warfarin,
}

__all__ = [
    "CATALOGUE",
    "compare_with_reference",
    "doses_from_amt",
    "infusions_from_start_stop",
    "itp_study_values",
    "load_itp_study",
    "load_phenobarbital",
    "load_theophylline",
    "load_warfarin",
    "load_wbc_sim",
    "omega_cv",
    "reference_estimates",
    "reference_events",
]
