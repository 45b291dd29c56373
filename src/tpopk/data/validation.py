"""Rules an event dataset must satisfy; every broken rule becomes a :class:`Violation`.

Each rule looks at the typed records and yields one violation per offending record
(or one for the whole file). All rules run, so a user sees every problem at once.
Rules are written against NONMEM's semantics; where tpopk is stricter than NONMEM
(non-decreasing TIME even across resets, one block of records per ID), the message
says what tpopk expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from tpopk.data.records import BoolArray, TypedRecords, blq_flags, named_responses
from tpopk.data.schema import (
    CONSTANT_COVARIATES,
    DOSING_COLUMNS,
    INTEGER_COLUMNS,
    KNOWN_COVARIATES,
    MODELLED_RATE_CODES,
    NO_MISSING_COLUMNS,
    OBSERVATION_TYPES,
    REQUIRED_COLUMNS,
    Evid,
)
from tpopk.data.units import Units, is_molar, is_standard_key
from tpopk.data.violations import Violation

Rule = Callable[[TypedRecords, Units], Iterator[Violation]]


def _at(
    records: TypedRecords, where: BoolArray, rule: str, column: str, expected: str
) -> Iterator[Violation]:
    """One violation per record flagged in ``where``, quoting the value found in ``column``."""
    found = records.raw[column] if column in records.present else None
    for index in np.flatnonzero(where):
        value = None if found is None else found.iloc[index]
        yield Violation(
            rule,
            expected,
            row=int(records.rows[index]),
            column=column,
            value="missing" if value is None and found is not None else _text(value),
        )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def required_columns(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """ID, TIME and DV must be present (an empty file is reported on its own)."""
    if not r.present:
        return
    for column in REQUIRED_COLUMNS:
        if column not in r.present:
            yield Violation("missing-column", f"a column named {column}", row=1, column=column)


def no_records(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """Require at least one record after the header."""
    if len(r.rows) == 0 and len(r.present) > 0:
        yield Violation("no-records", "at least one data record after the header", row=2)


def numbers(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """Numeric items must be finite numbers, whole where NONMEM needs integers."""
    for column, unparsable in r.unparsable.items():
        yield from _at(r, unparsable, "non-numeric", column, f"a finite number in {column}")
        if column in INTEGER_COLUMNS:
            value = r.number[column]
            whole = np.isnan(value) | (value == np.round(value))
            yield from _at(r, ~whole, "non-integer", column, f"a whole number in {column}")


def missing_values(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """ID, TIME, EVID, CMT and MDV need a value on every record (when the column exists)."""
    for column in NO_MISSING_COLUMNS:
        if column in r.present:
            yield from _at(
                r, r.missing(column), "missing-value", column, f"a value in {column} on every row"
            )


def contiguous_ids(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """Each subject's records form one block (NONMEM would silently start a new subject)."""
    if "ID" not in r.number or len(r.rows) == 0:
        return
    ids = r.number["ID"]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    seen: dict[float, int] = {}
    for start in starts:
        subject = ids[start]
        if np.isnan(subject):
            continue
        if subject in seen:
            yield Violation(
                "id-not-contiguous",
                f"all records of ID {subject:g} in one block (it already began at row "
                f"{seen[subject]})",
                row=int(r.rows[start]),
                column="ID",
                value=str(r.raw["ID"].iloc[start]),
            )
        else:
            seen[subject] = int(r.rows[start])


def times(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """TIME is ≥ 0 and does not decrease within a subject."""
    if "TIME" not in r.number or "ID" not in r.number:
        return
    time, ids = r.number["TIME"], r.number["ID"]
    yield from _at(r, time < 0, "negative-time", "TIME", "TIME ≥ 0")
    same_subject = np.r_[False, ids[1:] == ids[:-1]]
    decreasing = same_subject & np.r_[False, time[1:] < time[:-1]]
    yield from _at(
        r, decreasing, "decreasing-time", "TIME", "TIME not below the previous record's of this ID"
    )


def evid_and_mdv(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """EVID is a NONMEM code 0-4; MDV is 0/1 and 1 on every non-observation record."""
    evid, mdv = r.number["EVID"], r.number["MDV"]
    known = np.isin(evid, [int(e) for e in Evid]) | np.isnan(evid)
    yield from _at(
        r,
        ~known,
        "unknown-evid",
        "EVID",
        "EVID 0 (obs), 1 (dose), 2 (other), 3 (reset), 4 (reset and dose); rxode2 "
        "bolus codes 100 c + 1 need CMT c or no CMT; rxode2 infusion codes 10000 + 100 c + 1 "
        "need a start (+RATE) and then a stop (-RATE) for the same ID, and CMT c or no CMT",
    )
    if "MDV" in r.present:
        yield from _at(r, ~np.isin(mdv, [0, 1]) & ~np.isnan(mdv), "mdv-value", "MDV", "MDV 0 or 1")
        mismatch = (mdv == 0) & known & ~np.isnan(evid) & (evid != Evid.OBSERVATION)
        yield from _at(
            r, mismatch, "mdv-evid-mismatch", "MDV", "MDV 1 on records that are not observations"
        )


def doses(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """Dose records carry a positive AMT (or are steady-state constant infusions)."""
    amount, rate, ss = r.number["AMT"], r.number["RATE"], r.number["SS"]
    dose = r.is_dose
    constant_infusion = (ss == 1) & (rate > 0)  # NONMEM: AMT 0, RATE > 0, SS 1, II 0
    without = dose & (np.isnan(amount) | ((amount == 0) & ~constant_infusion))
    yield from _at(r, without, "dose-without-amt", "AMT", "AMT > 0 on a dose record (EVID 1/4)")
    yield from _at(r, amount < 0, "negative-amt", "AMT", "AMT ≥ 0")


def dosing_items_off_doses(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """AMT, RATE, II, ADDL, SS mean nothing outside dose records and must be 0 there."""
    # Records with an unknown EVID are reported once, by evid_and_mdv, not again here.
    elsewhere = np.isin(r.number["EVID"], [int(Evid.OBSERVATION), int(Evid.OTHER), int(Evid.RESET)])
    for column in DOSING_COLUMNS:
        if column in r.present:
            value = np.nan_to_num(r.number[column])
            yield from _at(
                r,
                elsewhere & (value != 0),
                "dosing-item-off-dose",
                column,
                f"{column} 0 or missing except on dose records (EVID 1/4)",
            )


def rates(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """RATE is 0 (bolus) or a positive infusion rate with a positive AMT."""
    amount, rate, ss = r.number["AMT"], r.number["RATE"], r.number["SS"]
    dose = r.is_dose
    modelled = np.isin(rate, list(MODELLED_RATE_CODES))
    yield from _at(
        r,
        dose & modelled,
        "modelled-rate",
        "RATE",
        "RATE ≥ 0: modelled rate (-1) or duration (-2) are not supported; give the rate",
    )
    yield from _at(
        r, (rate < 0) & ~modelled, "negative-rate", "RATE", "RATE 0 (bolus) or > 0 (infusion)"
    )
    inconsistent = dose & (rate > 0) & (amount == 0) & (ss != 1)
    yield from _at(
        r,
        inconsistent,
        "rate-without-amt",
        "RATE",
        "an infusion RATE with AMT > 0 (AMT 0 only for a steady-state constant infusion)",
    )


def dosing_schedule(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """II, ADDL and SS must describe a schedule NONMEM would accept."""
    amount, rate, ii, addl, ss = (r.number[c] for c in ("AMT", "RATE", "II", "ADDL", "SS"))
    dose = r.is_dose
    constant_infusion = (ss == 1) & (amount == 0) & (rate > 0)
    yield from _at(r, ii < 0, "negative-ii", "II", "II ≥ 0")
    yield from _at(r, addl < 0, "negative-addl", "ADDL", "ADDL ≥ 0")
    yield from _at(r, ~np.isin(ss, [0, 1, 2]), "unknown-ss", "SS", "SS 0, 1 or 2")
    yield from _at(
        r,
        dose & (ii > 0) & (addl == 0) & (ss == 0),
        "ii-without-addl-ss",
        "II",
        "II only with ADDL > 0 or SS 1/2",
    )
    yield from _at(
        r, dose & (addl > 0) & (ii == 0), "addl-without-ii", "II", "II > 0 when ADDL > 0"
    )
    yield from _at(
        r,
        dose & (ss != 0) & (ii == 0) & ~constant_infusion,
        "ss-without-ii",
        "II",
        "II > 0 on a steady-state dose (II 0 only for a constant infusion: AMT 0, RATE > 0)",
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        duration = np.where(rate > 0, amount / rate, 0.0)
    yield from _at(
        r,
        dose & (ss != 0) & (ii > 0) & (duration > ii),
        "ss-infusion-longer-than-ii",
        "RATE",
        "a steady-state infusion that ends within II (AMT/RATE ≤ II)",
    )


def compartments(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """Doses go to a compartment ≥ 1; observations to ≥ 1 or 0 (the model's default)."""
    if "CMT" not in r.present:
        return
    cmt = r.number["CMT"]
    yield from _at(r, r.is_dose & (cmt <= 0), "cmt-not-positive", "CMT", "CMT ≥ 1 on a dose")
    yield from _at(
        r,
        ~r.is_dose & (cmt < 0),
        "cmt-not-positive",
        "CMT",
        "CMT ≥ 0 (0 = default observation compartment; turning compartments off is unsupported)",
    )


def observations(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """Observations need a DV (unless censored), of a known type, and none is negative."""
    if "DV" not in r.present:
        return  # reported as a missing column
    obs = r.is_observation
    dv = r.number["DV"]
    blq = blq_flags(r)
    yield from _at(
        r,
        obs & np.isnan(dv) & ~blq & ~r.unparsable.get("DV", np.zeros(len(dv), bool)),
        "dv-missing",
        "DV",
        "a DV on an observation record (EVID 0, MDV 0); set MDV 1 to skip it",
    )
    yield from _at(r, obs & (dv < 0), "negative-dv", "DV", "DV ≥ 0 (counts and concentrations)")
    if "DVID" in r.present:
        given = ~r.missing("DVID")
        names = ", ".join(f"{t.code} {name}" for name, t in OBSERVATION_TYPES.items())
        unknown = given & np.array([v is None for v in r.dvid])
        yield from _at(
            r, unknown, "unknown-dvid", "DVID", f"a known DVID ({names}) or a response name"
        )
        declared = dict(units.items)
        for response in sorted(named_responses(r) - set(declared)):
            yield from _at(
                r,
                obs & (r.dvid == response),
                "undeclared-response",
                "DVID",
                f"a known DVID ({names}), or the unit of response '{response}' declared "
                f'(units {response} = "%", say) for a response a model card names',
            )
        yield from _at(
            r, obs & ~given, "missing-dvid", "DVID", "a DVID on every observation record"
        )


def censoring(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """BLQ is a 0/1 flag that needs an LLOQ; LLOQ is ≥ 0 and consistent with DV."""
    lloq, dv = r.number["LLOQ"], r.number["DV"]
    yield from _at(r, lloq < 0, "negative-lloq", "LLOQ", "LLOQ ≥ 0")
    if "BLQ" not in r.present:
        return
    flag = r.number["BLQ"]
    yield from _at(r, ~np.isin(flag, [0, 1]) & ~np.isnan(flag), "blq-value", "BLQ", "BLQ 0 or 1")
    yield from _at(
        r,
        (flag == 1) & np.isnan(lloq),
        "blq-without-lloq",
        "LLOQ",
        "an LLOQ on every record flagged BLQ 1",
    )
    yield from _at(
        r,
        r.is_observation & (flag == 0) & (dv < lloq),
        "blq-inconsistent",
        "BLQ",
        "BLQ 1 where DV is below LLOQ",
    )


def subjects_observed(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """Every subject contributes at least one observation."""
    if "ID" not in r.number or len(r.rows) == 0:
        return
    table = pd.DataFrame({"ID": r.number["ID"], "obs": r.is_observation})
    table["position"] = np.arange(len(table))
    summary = table.dropna(subset=["ID"]).groupby("ID", sort=False)
    observed = summary["obs"].any()
    first = summary["position"].min()
    for subject in observed.index[~observed.to_numpy()]:
        position = int(first[subject])
        yield Violation(
            "no-observations",
            f"at least one observation (EVID 0, MDV 0) for ID {subject:g}",
            row=int(r.rows[position]),
            column="ID",
            value=str(r.raw["ID"].iloc[position]),
        )


def duplicate_rows(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """No record repeats another one exactly."""
    repeated = r.raw.duplicated(keep="first").to_numpy()
    if not repeated.any():
        return
    involved = np.flatnonzero(r.raw.duplicated(keep=False).to_numpy())
    first_row: dict[tuple[object, ...], int] = {}
    for index in involved:
        key = tuple(r.raw.iloc[index])
        first_row.setdefault(key, int(r.rows[index]))
        if repeated[index]:
            yield Violation(
                "duplicate-row",
                f"each record once (same as row {first_row[key]})",
                row=int(r.rows[index]),
            )


def agonists(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """AGONIST names a known drug, and every dose says which."""
    if "AGONIST" not in r.present:
        return
    given = ~r.missing("AGONIST")
    unknown = given & np.array([v is None for v in r.agonist])
    names = ", ".join(sorted(r.known_agonists))
    yield from _at(r, unknown, "unknown-agonist", "AGONIST", f"one of {names} (any case)")
    yield from _at(
        r, r.is_dose & ~given, "missing-agonist", "AGONIST", "an AGONIST on every dose record"
    )


def _value_key(value: object) -> object:
    """Compare covariate values as numbers where they are numbers ("1" equals "1.0")."""
    try:
        return float(str(value))
    except ValueError:
        return str(value).strip()


def covariates(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """Known covariates hold what they mean; baseline-type ones stay constant per subject."""
    for column in r.covariate_columns:
        rule = KNOWN_COVARIATES.get(column)
        if rule is None:
            continue
        raw = r.raw[column]
        value = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        given = raw.notna().to_numpy()
        if rule.kind == "positive":
            bad = given & ~(value > 0)
            yield from _at(r, bad, "covariate-not-positive", column, f"{column} > 0")
        elif rule.kind == "flag":
            bad = given & ~np.isin(value, [0, 1])
            yield from _at(r, bad, "covariate-flag", column, f"{column} 0 or 1")
        elif rule.kind == "category":
            bad = given & ~((value >= 0) & (value == np.round(value)))
            yield from _at(r, bad, "covariate-category", column, f"{column} a whole number ≥ 0")
    if "ID" not in r.number:
        return
    for column in [c for c in r.covariate_columns if c in CONSTANT_COVARIATES]:
        first: dict[float, tuple[object, object]] = {}  # subject -> (comparable, as found)
        for index, (subject, value) in enumerate(zip(r.number["ID"], r.raw[column], strict=True)):
            if value is None or np.isnan(subject):
                continue
            key = _value_key(value)
            baseline, found = first.setdefault(subject, (key, value))
            if key != baseline:
                yield Violation(
                    "covariate-not-constant",
                    f"{column} constant within ID {subject:g} (it was {found})",
                    row=int(r.rows[index]),
                    column=column,
                    value=str(value),
                )


def declared_units(r: TypedRecords, units: Units) -> Iterator[Violation]:
    """Units must fit together: per-kg doses need WT, doses and concentrations share a basis."""
    for key, unit in units.items:
        if not is_standard_key(key) and key not in r.present and key not in named_responses(r):
            yield Violation(
                "unknown-unit-key",
                "units for TIME, AMT, WT, a DVID or a column of the data",
                column=f"units[{key}]",
                value=unit,
            )
    if units.dose_per_weight:
        if "WT" not in r.present:
            yield Violation(
                "weight-dose-without-wt",
                f"a WT column (kg), since AMT is declared in {units['AMT']}",
                column="WT",
            )
        else:
            yield from _at(
                r,
                r.is_dose & r.missing("WT"),
                "weight-dose-without-wt",
                "WT",
                f"WT on every dose record, since AMT is in {units['AMT']}",
            )
    has_conc = bool(np.any(r.is_observation & (r.dvid == "conc")))
    if has_conc and r.is_dose.any() and is_molar(units["AMT"]) != is_molar(units["conc"]):
        yield Violation(
            "unit-basis-mismatch",
            "AMT and conc both in mass units or both in molar units "
            f"(AMT {units['AMT']}, conc {units['conc']}); a molar mass is not data",
            column="units[AMT]",
            value=units["AMT"],
        )


RULES: tuple[Rule, ...] = (
    required_columns,
    no_records,
    numbers,
    missing_values,
    contiguous_ids,
    times,
    evid_and_mdv,
    doses,
    dosing_items_off_doses,
    rates,
    dosing_schedule,
    compartments,
    observations,
    censoring,
    subjects_observed,
    duplicate_rows,
    agonists,
    covariates,
    declared_units,
)


def validate(records: TypedRecords, units: Units) -> list[Violation]:
    """Run every rule and return all violations, rule by rule.

    Parameters
    ----------
    records
        Typed records.
    units
        Units resolved for the dataset.
    """
    return [violation for rule in RULES for violation in rule(records, units)]
