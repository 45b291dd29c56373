"""Closed-loop execution of a trial design: each visit's count decides the next doses.

The patient is a :class:`ResponseModel` (the lead's PK/PD engines with posterior draws,
or a toy in tests); this module only applies the design. For every arm, visit by
visit: ask the response model for the count at the visit given the doses decided so
far, apply the starting-dose rules (visit 0) or the titration rules, record rescue, and
fill in the doses up to the next visit. All patients of an arm move together as NumPy
arrays; a posterior sample is simulated by flattening draws into patients.

Cost: each patient is simulated over the whole schedule once for its starting course
and once more each time a decision changes its doses (the current level is assumed to
continue until the next change), so a fixed course or a placebo arm takes two
response-model calls (the baseline, then every visit at once). Exact, because a count
depends only on the doses before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
from scipy.stats import norm

from tpopk.simulate.design import Arm, LogNormal, Titration, TrialDesign, TrialDesignError

FloatArray = npt.NDArray[np.float64]

_DOSING: Final = 0
_HELD: Final = 1
_STOPPED: Final = 2

#: Patient covariates a population carries into the trial and its event records.
COVARIATES: Final = ("WT", "EAST_ASIAN", "SPLENECTOMY", "DISEASE")


class ResponseModel(Protocol):
    """Platelet response of a set of virtual patients to any dosing history."""

    @property
    def n_patients(self) -> int:
        """Number of patients ``P``."""
        ...

    def platelets(
        self, dose_time: FloatArray, dose_amount: FloatArray, times: FloatArray
    ) -> FloatArray:
        """Platelet counts (10^9/L) ``[P, T]`` at ``times`` ``[P, T]`` (h).

        ``dose_time`` and ``dose_amount`` are ``[P, D]`` (h; amount in the arm's dose
        unit, mg or µg/kg per administration, padded with amount 0).
        """
        ...


def sample_population(design: TrialDesign, n_patients: int, seed: int) -> xr.Dataset:
    """Draw the virtual patients of every arm from the design's population.

    Parameters
    ----------
    design
        The trial.
    n_patients
        Patients per arm.
    seed
        Seed of the NumPy generator (the same seed gives the same patients).

    Returns
    -------
    xarray.Dataset
        Dims ``arm, patient``: ``baseline_platelets`` (10^9/L, the count the response
        model should start from), ``WT`` (kg), ``EAST_ASIAN`` and ``SPLENECTOMY`` (0/1)
        and ``DISEASE`` (text); ``population.sel(arm=name).to_dataframe()`` gives one
        arm's patients as a covariate table.
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be ≥ 1, got {n_patients}")
    rng = np.random.default_rng(seed)
    population = design.population
    shape = (len(design.arms), n_patients)
    east_asian = rng.random(shape) < population.east_asian_fraction
    splenectomy = rng.random(shape) < population.splenectomy_fraction
    weight = _truncated_lognormal(rng, population.weight, shape)
    baseline = _truncated_lognormal(rng, population.baseline_platelets, shape)
    if population.baseline_platelets_splenectomised is not None:
        apart = _truncated_lognormal(rng, population.baseline_platelets_splenectomised, shape)
        baseline = np.where(splenectomy, apart, baseline)
    dims = ("arm", "patient")
    return xr.Dataset(
        {
            "baseline_platelets": (dims, baseline, {"units": "10^9/L"}),
            "WT": (dims, weight, {"units": "kg"}),
            "EAST_ASIAN": (dims, east_asian.astype(np.int64)),
            "SPLENECTOMY": (dims, splenectomy.astype(np.int64)),
            "DISEASE": (dims, np.full(shape, population.disease)),
        },
        coords={"arm": [arm.name for arm in design.arms], "patient": np.arange(n_patients)},
        attrs={"trial": design.name},
    )


def _truncated_lognormal(
    rng: np.random.Generator, spec: LogNormal, shape: tuple[int, int]
) -> FloatArray:
    """Inverse-CDF draws of a log-normal truncated to ``[lower, upper)``."""
    median, sd_log, lower, upper = spec.median, spec.sd_log, spec.lower, spec.upper
    if sd_log == 0:
        return np.full(shape, median)
    low = 0.0 if lower is None or lower <= 0 else norm.cdf(np.log(lower / median) / sd_log)
    high = 1.0 if upper is None else norm.cdf(np.log(upper / median) / sd_log)
    quantile = low + (high - low) * rng.random(shape)
    values: FloatArray = median * np.exp(sd_log * norm.ppf(quantile))
    return values


def run_trial(
    design: TrialDesign, responders: Mapping[str, ResponseModel], population: xr.Dataset
) -> xr.Dataset:
    """Run every arm of a trial in closed loop.

    Parameters
    ----------
    design
        The trial.
    responders
        One response model per arm name, each with the arm's ``P`` patients, built from
        ``population`` (same patient order).
    population
        Output of :func:`sample_population` for the same design (covariates used by the
        starting-dose rules and carried into the result).

    Returns
    -------
    xarray.Dataset
        Dims ``arm, patient, visit`` (coordinate ``time`` in h on ``visit``):
        ``platelets`` (10^9/L, the count at each visit, before that day's dose),
        ``dose_level`` (1 = lowest; 0 while held, stopped or after dosing ended),
        ``dose_given`` (amount given from this visit until the next, arm's dose unit),
        ``held``, ``stopped`` (by a rule) and ``rescued`` (at or before the visit);
        ``baseline_platelets`` and the covariates on ``arm, patient``; the dosing
        actually given as ``dose_time`` (h, ``nan`` padding) and ``dose_amount`` on
        ``arm, patient, dose``; per arm ``agonist``, ``dose_unit``, ``route``, ``placebo``.
    """
    names = [arm.name for arm in design.arms]
    missing = [name for name in names if name not in responders]
    if missing:
        raise TrialDesignError(f"no response model for arm(s) {missing}")
    absent = sorted(set(names) - set(population["arm"].to_numpy().tolist()))
    if absent:
        raise TrialDesignError(f"the population has no patients for arm(s) {absent}")
    sizes = {arm.name: responders[arm.name].n_patients for arm in design.arms}
    if len(set(sizes.values())) != 1 or population.sizes["patient"] not in sizes.values():
        raise TrialDesignError(
            f"every arm needs the population's {population.sizes['patient']} patients; "
            f"response models have {sizes}"
        )
    arms = [
        _run_arm(design, arm, responders[arm.name], population.sel(arm=arm.name))
        for arm in design.arms
    ]
    width = max(a["dose_time"].shape[1] for a in arms)

    def stack(key: str, pad: float | None = None) -> npt.NDArray[np.generic]:
        """Stack one record over arms; dose-slot records are padded to equal width."""
        parts = [a[key] for a in arms]
        if pad is not None:
            parts = [
                np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=pad) for p in parts
            ]
        return np.stack(parts)

    visit_dims = ("arm", "patient", "visit")
    return xr.Dataset(
        {
            "platelets": (visit_dims, stack("platelets"), {"units": "10^9/L"}),
            "dose_level": (visit_dims, stack("dose_level")),
            "dose_given": (visit_dims, stack("dose_given")),
            "held": (visit_dims, stack("held")),
            "stopped": (visit_dims, stack("stopped")),
            "rescued": (visit_dims, stack("rescued")),
            "baseline_platelets": (("arm", "patient"), stack("baseline"), {"units": "10^9/L"}),
            "dose_time": (("arm", "patient", "dose"), stack("dose_time", np.nan), {"units": "h"}),
            "dose_amount": (("arm", "patient", "dose"), stack("dose_amount", 0.0)),
            **{name: population[name].sel(arm=names).variable for name in COVARIATES},
            "agonist": ("arm", [arm.agonist for arm in design.arms]),
            "dose_unit": ("arm", [design.titration_of(arm).dose_unit for arm in design.arms]),
            "route": ("arm", [arm.route for arm in design.arms]),
            "placebo": ("arm", [arm.placebo for arm in design.arms]),
        },
        coords={
            "arm": names,
            "patient": population["patient"].to_numpy(),
            "visit": np.arange(design.visits.hours.size),
            "time": ("visit", design.visits.hours, {"units": "h"}),
        },
        attrs={"trial": design.name},
    )


def split_draws(trial: xr.Dataset, draws: int) -> xr.Dataset:
    """Give a trial run on posterior draws flattened into patients its ``draw`` dimension.

    Parameters
    ----------
    trial
        Output of :func:`run_trial` whose ``patient`` dimension holds ``draws`` blocks of
        patients, draw-major (patients ``0..P-1`` of draw 0, then of draw 1, ...).
    draws
        Number of posterior draws.

    Returns
    -------
    xarray.Dataset
        The same variables with ``patient`` split into ``draw, patient``; every endpoint
        then gives one value per draw and arm.
    """
    flat = trial.sizes["patient"]
    if draws < 1 or flat % draws:
        raise ValueError(f"{flat} patients do not split into {draws} draws")
    per_draw = flat // draws
    index = pd.MultiIndex.from_arrays(
        [np.repeat(np.arange(draws), per_draw), np.tile(np.arange(per_draw), draws)],
        names=["draw", "patient_in_draw"],
    )
    stacked = trial.drop_vars("patient").rename(patient="flat")
    stacked = stacked.assign_coords(xr.Coordinates.from_pandas_multiindex(index, "flat"))
    return stacked.unstack("flat").rename(patient_in_draw="patient")


class _TitrationState:
    """Where every patient of one arm stands: level, dosing status, rule streaks.

    Levels are numbered from 1 (lowest). A patient is dosing, held (waiting for a count
    below ``resume_below``) or stopped for good.
    """

    def __init__(self, titration: Titration, start: npt.NDArray[np.int64]) -> None:
        n = start.size
        self.rules = titration.rules
        self.top = len(titration.levels)
        self.level = start.copy()
        self.status = np.full(n, _DOSING)
        self.changed_at = np.zeros(n)  # h; when the current level began
        self.streak = np.zeros((n, len(self.rules)), dtype=np.int64)
        self.resume_below = np.zeros(n)
        self.resume_change = np.zeros(n, dtype=np.int64)

    def visit(self, time: float, counts: FloatArray, baseline: FloatArray) -> None:
        """Apply the visit's count: end holds, then let the first applicable rule act."""
        resume = (self.status == _HELD) & (counts < self.resume_below)
        self._move(resume, self.resume_change, time)
        self.status[resume] = _DOSING
        self.changed_at[resume] = time  # a restart begins a new stretch, even if clamped
        deciding = (self.status == _DOSING) & ~resume
        # Streaks count consecutive visits, since the last change, whose counts meet
        # each rule's conditions; all are updated before any rule acts (a held patient's
        # streaks fall to 0, so a restart counts afresh).
        for r, rule in enumerate(self.rules):
            meets = deciding & rule.platelet_condition(counts, baseline)
            self.streak[:, r] = np.where(meets, self.streak[:, r] + 1, 0)
        acted = np.zeros(self.level.size, dtype=bool)
        for r, rule in enumerate(self.rules):
            fires = deciding & ~acted & (self.streak[:, r] >= rule.consecutive_visits)
            if rule.min_time_at_level is not None:
                fires &= time - self.changed_at >= rule.min_time_at_level - 1e-9
            if rule.at_level == "highest":
                fires &= self.level == self.top
            elif rule.at_level == "lowest":
                fires &= self.level == 1
            acted |= fires
            if rule.action in ("increase", "decrease"):
                self._move(fires, 1 if rule.action == "increase" else -1, time)
            elif rule.action == "hold":
                self.status[fires] = _HELD
                self.resume_below[fires] = rule.resume_below or 0.0
                self.resume_change[fires] = rule.resume_change
            else:
                self.status[fires] = _STOPPED

    def _move(
        self, who: npt.NDArray[np.bool_], step: int | npt.NDArray[np.int64], time: float
    ) -> None:
        """Change the level of ``who`` by ``step``, clamped to the levels there are."""
        target = np.clip(self.level + step, 1, self.top)
        moved = who & (target != self.level)
        self.level = np.where(moved, target, self.level)
        self.changed_at[moved] = time
        self.streak[moved] = 0


def _run_arm(
    design: TrialDesign, arm: Arm, responder: ResponseModel, covariates: xr.Dataset
) -> dict[str, npt.NDArray[np.generic]]:
    """Simulate one arm visit by visit; arrays per patient (and visit / dose slot)."""
    titration = design.titration_of(arm)
    visits = design.visits.hours
    n = responder.n_patients
    slots = int(np.ceil(arm.duration / titration.interval - 1e-9))
    slot_time: FloatArray = titration.interval * np.arange(slots, dtype=float)
    table = titration.schedule(slots)  # [levels, slots]
    amount = np.zeros((n, slots))  # what the patient receives (0 on placebo)
    east_asian = covariates["EAST_ASIAN"].to_numpy() == 1
    rescued = np.zeros(n, dtype=bool)
    record = {
        key: np.zeros((n, visits.size), dtype=dtype)
        for key, dtype in (
            ("platelets", float),
            ("dose_level", np.int64),
            ("dose_given", float),
            ("held", bool),
            ("stopped", bool),
            ("rescued", bool),
        )
    }
    # Each patient's counts at every visit come from one simulation of a planned course:
    # the doses decided so far, then the current level continued to the end. A patient is
    # re-simulated only when a decision changes that plan, and later visits read their
    # count off it (a count depends only on the doses before it).
    planned = np.full((n, slots), np.nan)  # the course each forecast was simulated with
    forecast = np.zeros((n, visits.size))
    for j, visit in enumerate(visits):
        if j == 0:
            counts = responder.platelets(
                np.zeros((n, 1)), np.zeros((n, 1)), np.full((n, 1), visit)
            )[:, 0]
            baseline = counts.copy()
            state = _TitrationState(titration, _start_levels(arm, baseline, east_asian))
        else:
            counts = forecast[:, j]
            if visit < arm.duration:  # rules act only while doses remain to be decided
                state.visit(visit, counts, baseline)
        for rescue in design.rescue:
            if rescue.window is None or rescue.window[0] <= visit <= rescue.window[1]:
                rescued |= counts < rescue.platelets_below

        following = visits[j + 1] if j + 1 < visits.size else np.inf
        upcoming = (slot_time >= visit) & (slot_time < following)
        dosing = (state.status == _DOSING) & (visit < arm.duration)
        given = np.where(dosing[:, None], table[state.level - 1][:, upcoming], 0.0)
        if arm.placebo:
            given[:] = 0.0
        amount[:, upcoming] = given
        record["platelets"][:, j] = counts
        record["dose_level"][:, j] = np.where(dosing, state.level, 0)
        record["dose_given"][:, j] = given.sum(axis=1)
        record["held"][:, j] = state.status == _HELD
        record["stopped"][:, j] = state.status == _STOPPED
        record["rescued"][:, j] = rescued

        if j + 1 < visits.size:
            later = slot_time >= following
            course = amount.copy()
            keep = dosing & (not arm.placebo)
            course[:, later] = np.where(keep[:, None], table[state.level - 1][:, later], 0.0)
            changed = np.flatnonzero(~np.all(course == planned, axis=1))
            if changed.size:
                forecast[changed] = _simulate(
                    responder, changed, slot_time, course[changed], visits
                )
                planned[changed] = course[changed]
    return {
        **record,
        "baseline": baseline,
        "dose_time": np.where(amount > 0, slot_time, np.nan),
        "dose_amount": amount,
    }


def _simulate(
    responder: ResponseModel,
    patients: npt.NDArray[np.int64],
    slot_time: FloatArray,
    course: FloatArray,
    visits: FloatArray,
) -> FloatArray:
    """Simulate ``patients``' whole courses: counts ``[len(patients), V]`` at every visit.

    A response model with ``subset(patients)`` (:class:`tpopk.simulate.virtual.CardResponse`)
    simulates those patients alone; any other is run for all and the rows are taken.
    """
    n = responder.n_patients
    if not slot_time.size:  # no dose slots: one all-zero column
        slot_time, course = np.zeros(1), np.zeros((patients.size, 1))
    subset = getattr(responder, "subset", None)
    if subset is not None and patients.size < n:
        part: ResponseModel = subset(patients)
        amounts, rows = course, np.arange(patients.size)
    else:
        part, amounts, rows = responder, np.zeros((n, course.shape[1])), patients
        amounts[patients] = course
    m = part.n_patients
    counts = part.platelets(
        np.broadcast_to(slot_time, amounts.shape).copy(),
        amounts.copy(),
        np.broadcast_to(visits, (m, visits.size)).copy(),
    )
    return np.asarray(counts[rows], dtype=float)


def _start_levels(
    arm: Arm, baseline: FloatArray, east_asian: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int64]:
    """Return each patient's starting level: that of the first matching start rule."""
    level = np.zeros(baseline.shape, dtype=np.int64)
    for rule in reversed(arm.start):  # earlier rules overwrite later ones
        match = np.ones(baseline.shape, dtype=bool)
        if rule.east_asian is not None:
            match &= east_asian == rule.east_asian
        if rule.baseline_below is not None:
            match &= baseline < rule.baseline_below
        if rule.baseline_at_least is not None:
            match &= baseline >= rule.baseline_at_least
        level = np.where(match, rule.level, level)
    return level


def trial_events(trial: xr.Dataset) -> pd.DataFrame:
    """Write the simulated trial as NONMEM-style event records.

    One subject per arm and patient (``ID`` 1, 2, ... arm by arm): the doses actually
    given (``EVID`` 1, ``AMT`` in the arms' dose unit) and the visit counts (``EVID`` 0,
    ``DVID`` ``plt``, ``DV`` in 10^9/L; a visit comes before a dose at the same time),
    with ``AGONIST`` and the covariates ``WT``, ``EAST_ASIAN``, ``SPLENECTOMY``,
    ``DISEASE`` and ``ARM``. Placebo patients have no dose records.

    One event dataset has one ``AMT`` unit: where arms dose in mg and in µg/kg
    (``itp_label_comparison.toml``), the µg/kg doses are written as mg, times each
    patient's ``WT`` (which the records carry, so the dose is still readable per kg).

    Returns
    -------
    pandas.DataFrame
        The records; ``frame.attrs["units"]`` holds the units to pass to
        :func:`tpopk.data.read_events`.
    """
    units = sorted(set(trial["dose_unit"].to_numpy().tolist()))
    amount = trial["dose_amount"].to_numpy()
    if len(units) > 1:
        per_kg = (trial["dose_unit"] == "µg/kg").to_numpy()[:, None, None]
        # µg/kg x kg = µg, / 1000 = mg
        amount = np.where(per_kg, amount * trial["WT"].to_numpy()[:, :, None] / 1000.0, amount)
        units = ["mg"]
    n_arms, n_patients = trial.sizes["arm"], trial.sizes["patient"]
    subject = 1 + np.arange(n_arms * n_patients).reshape(n_arms, n_patients)
    per_subject = {
        "AGONIST": np.repeat(trial["agonist"].to_numpy(), n_patients).reshape(n_arms, n_patients),
        **{name: trial[name].to_numpy() for name in COVARIATES},
        "ARM": np.repeat(trial["arm"].to_numpy(), n_patients).reshape(n_arms, n_patients),
    }
    time = trial["time"].to_numpy()
    observed = pd.DataFrame(
        {
            "ID": np.repeat(subject.ravel(), time.size),
            "TIME": np.tile(time, subject.size),
            "EVID": 0,
            "AMT": 0.0,
            "DV": trial["platelets"].to_numpy().ravel(),
            "MDV": 0,
            "DVID": "plt",
            **{k: np.repeat(v.ravel(), time.size) for k, v in per_subject.items()},
        }
    )
    dose_time = trial["dose_time"].to_numpy()
    given = np.isfinite(dose_time) & (amount > 0)
    which = np.nonzero(given)
    dosed = pd.DataFrame(
        {
            "ID": subject[which[0], which[1]],
            "TIME": dose_time[given],
            "EVID": 1,
            "AMT": amount[given],
            "DV": np.nan,
            "MDV": 1,
            "DVID": "",
            **{k: v[which[0], which[1]] for k, v in per_subject.items()},
        }
    )
    frame = pd.concat([observed, dosed], ignore_index=True)
    frame = frame.sort_values(["ID", "TIME", "EVID"], kind="stable").reset_index(drop=True)
    frame.attrs["units"] = {"TIME": "h", "AMT": units[0], "plt": "10^9/L", "WT": "kg"}
    return frame
