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

        The counts carry the visit-to-visit variation (drawn here and nowhere else in
        a trial). The first call of a trial has no doses and asks for the screening
        counts and the visit-0 count, its calendar shifted so that the first screening
        count is at time 0 (the visit-0 count is its last column); later calls use the
        trial's calendar, visit 0 at time 0.
        """
        ...


def sample_population(
    design: TrialDesign, n_patients: int | None, seed: int, *, draws: int = 1
) -> xr.Dataset:
    """Draw the virtual patients (or screening candidates) of every arm.

    Parameters
    ----------
    design
        The trial.
    n_patients
        Patients per arm and draw; with screening or cohorts these are candidates, of
        whom those who pass are enrolled. ``None`` makes every arm enrol the patients it
        enrolled in the real trial (its ``n``, or its cohorts' ``n``), screening
        ``enrolment.candidates`` candidates per patient where enrolment is judged on
        counts; every arm then has the largest arm's patients, those beyond an arm's
        own not enrolled.
    seed
        Seed of the NumPy generator (the same seed gives the same patients).
    draws
        Independent trials drawn at once, draw-major (patients ``0..P-1`` of the first,
        then the next ...; :func:`split_draws` separates them after the run).

    Returns
    -------
    xarray.Dataset
        Dims ``arm, patient``: ``baseline_platelets`` (10^9/L, the patient's own level
        before treatment, which the response model should start from), ``WT`` (kg),
        ``EAST_ASIAN`` and ``SPLENECTOMY`` (0/1) and ``DISEASE`` (text);
        ``population.sel(arm=name).to_dataframe()`` gives one arm's patients as a
        covariate table. Designs with visit windows add each patient's visit times
        ``visit_time`` (h, dims ``arm, patient, visit``).
    """
    if draws < 1:
        raise ValueError(f"draws must be ≥ 1, got {draws}")
    if n_patients is None:
        per_draw = _trial_size(design)
    elif n_patients < 1:
        raise ValueError(f"n_patients must be ≥ 1, got {n_patients}")
    else:
        per_draw = n_patients
    rng = np.random.default_rng(seed)
    population = design.population
    shape = (len(design.arms), per_draw * draws)
    east_asian = rng.random(shape) < population.east_asian_fraction
    splenectomy = rng.random(shape) < population.splenectomy_fraction
    weight = _truncated_lognormal(rng, population.weight, shape)
    baseline = _truncated_lognormal(rng, population.baseline_platelets, shape)
    if population.baseline_platelets_splenectomised is not None:
        apart = _truncated_lognormal(rng, population.baseline_platelets_splenectomised, shape)
        baseline = np.where(splenectomy, apart, baseline)
    dims = ("arm", "patient")
    variables: dict[str, tuple[tuple[str, ...], npt.NDArray[np.generic], dict[str, str]]] = {
        "baseline_platelets": (dims, baseline, {"units": "10^9/L"}),
        "WT": (dims, weight, {"units": "kg"}),
        "EAST_ASIAN": (dims, east_asian.astype(np.int64), {}),
        "SPLENECTOMY": (dims, splenectomy.astype(np.int64), {}),
        "DISEASE": (dims, np.full(shape, population.disease), {}),
    }
    if design.visits.windows:
        times = design.visits.draw_hours(rng, shape)
        variables["visit_time"] = ((*dims, "visit"), times, {"units": "h"})
    return xr.Dataset(
        variables,
        coords={"arm": [arm.name for arm in design.arms], "patient": np.arange(shape[1])},
        attrs={"trial": design.name, "draws": draws, "trial_sized": int(n_patients is None)},
    )


def _screens(design: TrialDesign) -> bool:
    """Whether enrolment is judged on counts (so not every candidate enrols)."""
    rule = design.enrolment
    return bool(design.cohorts) or rule.below is not None or rule.at_least is not None


def _trial_size(design: TrialDesign) -> int:
    """Patients per arm and draw for trial-sized arms (candidates where screened)."""
    caps = {arm.name: design.enrolment_cap(arm) for arm in design.arms}
    if missing := [name for name, cap in caps.items() if cap is None]:
        raise TrialDesignError(
            f"trial '{design.name}': arm(s) {missing} give no n, so the arms cannot enrol "
            "the real trial's patients (give arms.n or cohorts.n, or ask for n_patients)"
        )
    factor = design.enrolment.candidates if _screens(design) else 1.0
    return max(int(np.ceil(sum((cap or {}).values()) * factor)) for cap in caps.values())


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
        ``held``, ``stopped`` (by a rule), ``rescued`` (at or before the visit),
        ``rescue_given`` (at the visit) and ``visit_time`` (h, each patient's own time
        of the visit, which differs from ``time`` in visit windows);
        ``baseline_platelets`` (the visit-0 count), ``enrolled`` (passed screening and
        fell in a cohort, and within a trial-sized arm's ``n``; endpoints count these
        patients alone, and the others' counts are ``nan``), ``cohort`` (name, ``""``
        for none) and the covariates on ``arm, patient``; the dosing
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
    draws = int(population.attrs.get("draws", 1))
    trial_sized = bool(population.attrs.get("trial_sized", 0))
    arms = [
        _run_arm(
            design,
            arm,
            responders[arm.name],
            population.sel(arm=arm.name),
            design.enrolment_cap(arm) if trial_sized else None,
            draws,
        )
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
            "rescue_given": (visit_dims, stack("rescue_given")),
            "visit_time": (visit_dims, stack("visit_time"), {"units": "h"}),
            "baseline_platelets": (("arm", "patient"), stack("baseline"), {"units": "10^9/L"}),
            "enrolled": (("arm", "patient"), stack("enrolled")),
            "cohort": (("arm", "patient"), stack("cohort")),
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
    design: TrialDesign,
    arm: Arm,
    responder: ResponseModel,
    covariates: xr.Dataset,
    cap: Mapping[str | None, int] | None,
    draws: int,
) -> dict[str, npt.NDArray[np.generic]]:
    """Simulate one arm visit by visit; arrays per patient (and visit / dose slot)."""
    titration = design.titration_of(arm)
    visits = design.visits.hours
    windowed = design.visits.windowed
    n = responder.n_patients
    times: FloatArray = (
        covariates["visit_time"].to_numpy()
        if "visit_time" in covariates
        else np.broadcast_to(visits, (n, visits.size)).copy()
    )
    # titration decides the doses at fixed visits only; a window's visit is an assessment
    deciding_at = [j for j in range(visits.size) if j not in windowed]
    slots = int(np.ceil(arm.duration / titration.interval - 1e-9))
    slot_time: FloatArray = titration.interval * np.arange(slots, dtype=float)
    table = titration.schedule(slots)  # [levels, slots]
    amount = np.zeros((n, slots))  # what the patient receives (0 on placebo)
    east_asian = covariates["EAST_ASIAN"].to_numpy() == 1
    rescued = np.zeros(n, dtype=bool)
    rescues = np.zeros((n, len(design.rescue)), dtype=np.int64)  # given so far, per rule
    added = np.zeros((n, visits.size))  # count added by transfusions (10^9/L)
    record = {
        key: np.zeros((n, visits.size), dtype=dtype)
        for key, dtype in (
            ("platelets", float),
            ("dose_level", np.int64),
            ("dose_given", float),
            ("held", bool),
            ("stopped", bool),
            ("rescued", bool),
            ("rescue_given", bool),
        )
    }
    # Screening counts and the visit-0 count come from one call with no doses, so the
    # response model draws their visit-to-visit variation as for any visits. Without
    # doses a patient's level does not change with time: the calendar is shifted to
    # start at the first screening count, as the engines start at time 0.
    screening = design.enrolment.screening_hours()
    before = np.broadcast_to(
        np.append(screening, 0.0) - screening[:1].sum(), (n, 1 + screening.size)
    )
    counts = responder.platelets(np.zeros((n, 1)), np.zeros((n, 1)), before)
    baseline = counts[:, -1].copy()
    enrolled, cohort = _enrol(design, counts[:, :-1], baseline, cap, draws, arm.name)
    state = _TitrationState(titration, _start_levels(arm, baseline, east_asian, cohort))
    # Each patient's counts at every visit come from one simulation of a planned course:
    # the doses decided so far, then the current level continued to the end. A patient is
    # re-simulated only when a decision changes that plan, and later visits read their
    # count off it (a count depends only on the doses before it).
    planned = np.full((n, slots), np.nan)  # the course each forecast was simulated with
    forecast = np.zeros((n, visits.size))
    dosing = np.zeros(n, dtype=bool)
    for j, visit in enumerate(visits):
        deciding = j in deciding_at
        counts = (baseline if j == 0 else forecast[:, j]) + added[:, j]
        if j > 0 and deciding and visit < arm.duration:  # rules act while doses remain
            state.visit(visit, counts, baseline)
        for r, rescue in enumerate(design.rescue):
            if rescue.window is None or rescue.window[0] <= visit <= rescue.window[1]:
                given = enrolled & (counts < rescue.platelets_below)
                if rescue.at_most is not None:
                    given &= rescues[:, r] < rescue.at_most
                rescues[:, r] += given
                rescued |= given
                record["rescue_given"][:, j] |= given
                if rescue.effect is not None and j + 1 < visits.size:
                    elapsed = times[:, j + 1 :] - times[:, j : j + 1]
                    added[:, j + 1 :] += np.where(given[:, None], rescue.effect.added(elapsed), 0.0)
        record["platelets"][:, j] = counts
        record["rescued"][:, j] = rescued
        record["held"][:, j] = state.status == _HELD
        record["stopped"][:, j] = state.status == _STOPPED
        if not deciding:
            record["dose_level"][:, j] = np.where(dosing, state.level, 0)
            continue
        later_decisions = [k for k in deciding_at if k > j]
        following = visits[later_decisions[0]] if later_decisions else np.inf
        upcoming = (slot_time >= visit) & (slot_time < following)
        dosing = enrolled & (state.status == _DOSING) & (visit < arm.duration)
        given_now = np.where(dosing[:, None], table[state.level - 1][:, upcoming], 0.0)
        if arm.placebo:
            given_now[:] = 0.0
        amount[:, upcoming] = given_now
        record["dose_level"][:, j] = np.where(dosing, state.level, 0)
        record["dose_given"][:, j] = given_now.sum(axis=1)

        if j + 1 < visits.size:
            later = slot_time >= following
            course = amount.copy()
            keep = dosing & (not arm.placebo)
            course[:, later] = np.where(keep[:, None], table[state.level - 1][:, later], 0.0)
            changed = np.flatnonzero(enrolled & ~np.all(course == planned, axis=1))
            if changed.size:
                forecast[changed] = _simulate(responder, changed, slot_time, course, times)
                planned[changed] = course[changed]
    record["platelets"][~enrolled] = np.nan
    return {
        **record,
        "visit_time": times,
        "baseline": baseline,
        "enrolled": enrolled,
        "cohort": cohort,
        "dose_time": np.where(amount > 0, slot_time, np.nan),
        "dose_amount": amount,
    }


def _enrol(
    design: TrialDesign,
    screening: FloatArray,
    baseline: FloatArray,
    cap: Mapping[str | None, int] | None,
    draws: int,
    arm: str,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.str_]]:
    """Who enrols, and into which cohort (``""`` for none).

    A candidate enrols if its screening counts (the visit-0 count without screening)
    meet the enrolment bounds and its entry count falls in a cohort (where the design
    has cohorts); with ``cap``, only the first ``cap`` such candidates of each draw (and
    cohort) enrol.
    """
    rule = design.enrolment
    judged = screening if screening.shape[1] else baseline[:, None]
    if rule.criterion == "mean":
        judged = judged.mean(axis=1, keepdims=True)
    passed = np.ones(baseline.shape, dtype=bool)
    if rule.below is not None:
        passed &= np.all(judged < rule.below, axis=1)
    if rule.at_least is not None:
        passed &= np.all(judged >= rule.at_least, axis=1)
    entry = screening.mean(axis=1) if screening.shape[1] else baseline
    cohort = np.full(baseline.shape, "", dtype=object)
    for group in reversed(design.cohorts):  # the first matching cohort wins
        cohort = np.where(group.contains(entry), group.name, cohort)
    if design.cohorts:
        passed &= cohort != ""
    if cap is None:
        return passed, cohort.astype(str)
    enrolled = np.zeros(baseline.shape, dtype=bool)
    per_draw = baseline.size // draws
    for draw in range(draws):
        block = slice(draw * per_draw, (draw + 1) * per_draw)
        for name, wanted in cap.items():
            member = passed[block] & (True if name is None else cohort[block] == name)
            chosen = np.flatnonzero(member)[:wanted]
            if chosen.size < wanted:
                where = "" if name is None else f" into cohort '{name}'"
                raise TrialDesignError(
                    f"arm '{arm}': {chosen.size} of {per_draw} candidates enrolled{where}, "
                    f"{wanted} needed; raise enrolment.candidates "
                    f"(now {rule.candidates:g})"
                )
            enrolled[block][chosen] = True
    return enrolled, cohort.astype(str)


def _simulate(
    responder: ResponseModel,
    patients: npt.NDArray[np.int64],
    slot_time: FloatArray,
    course: FloatArray,
    times: FloatArray,
) -> FloatArray:
    """Simulate ``patients``' courses: counts ``[len(patients), V]`` at their visit times.

    ``course`` and ``times`` hold every patient's rows. A response model with
    ``subset(patients)`` (:class:`tpopk.simulate.virtual.CardResponse`) simulates those
    patients alone; any other is run for all and the rows are taken.
    """
    n = responder.n_patients
    if not slot_time.size:  # no dose slots: one all-zero column
        slot_time, course = np.zeros(1), np.zeros((n, 1))
    subset = getattr(responder, "subset", None)
    if subset is not None and patients.size < n:
        part: ResponseModel = subset(patients)
        amounts, at, rows = course[patients], times[patients], np.arange(patients.size)
    else:
        part, amounts, at, rows = responder, np.zeros_like(course), times, patients
        amounts[patients] = course[patients]
    counts = part.platelets(
        np.broadcast_to(slot_time, amounts.shape).copy(), amounts.copy(), at.copy()
    )
    return np.asarray(counts[rows], dtype=float)


def _start_levels(
    arm: Arm,
    baseline: FloatArray,
    east_asian: npt.NDArray[np.bool_],
    cohort: npt.NDArray[np.str_],
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
        if rule.cohort is not None:
            match &= cohort == rule.cohort
        level = np.where(match, rule.level, level)
    return level


def trial_events(trial: xr.Dataset) -> pd.DataFrame:
    """Write the simulated trial as NONMEM-style event records.

    One subject per arm and enrolled patient (``ID`` by arm and patient): the doses actually
    given (``EVID`` 1, ``AMT`` in the arms' dose unit) and the visit counts (``EVID`` 0,
    ``DVID`` ``plt``, ``DV`` in 10^9/L; a visit comes before a dose at the same time),
    with ``AGONIST`` and the covariates ``WT``, ``EAST_ASIAN``, ``SPLENECTOMY``,
    ``DISEASE`` and ``ARM``. Placebo patients have no dose records.

    Returns
    -------
    pandas.DataFrame
        The records; ``frame.attrs["units"]`` holds the units to pass to
        :func:`tpopk.data.read_events`.

    Where arms dose in mg and µg/kg, the µg/kg doses are written in mg (times the
    patient's ``WT``), as one event dataset has one ``AMT`` unit.
    """
    units = sorted(set(trial["dose_unit"].to_numpy().tolist()))
    amount = trial["dose_amount"].to_numpy()
    if len(units) > 1:
        # One AMT unit per dataset: weight-based doses become mg with each patient's weight.
        if set(units) != {"mg", "µg/kg"}:
            raise TrialDesignError(f"arms dose in units {units} that no one unit holds")
        per_kg = (trial["dose_unit"] == "µg/kg").to_numpy()
        weight = trial["WT"].to_numpy()
        amount = np.where(per_kg[:, None, None], amount * weight[..., None] / 1000.0, amount)
        units = ["mg"]
    n_arms, n_patients = trial.sizes["arm"], trial.sizes["patient"]
    subject = 1 + np.arange(n_arms * n_patients).reshape(n_arms, n_patients)
    per_subject = {
        "AGONIST": np.repeat(trial["agonist"].to_numpy(), n_patients).reshape(n_arms, n_patients),
        **{name: trial[name].to_numpy() for name in COVARIATES},
        "ARM": np.repeat(trial["arm"].to_numpy(), n_patients).reshape(n_arms, n_patients),
    }
    time = trial["time"].to_numpy()
    # each patient's own visit times (visit windows), the nominal ones otherwise
    visit_time = (
        trial["visit_time"].transpose("arm", "patient", "visit").to_numpy().ravel()
        if "visit_time" in trial
        else np.tile(time, subject.size)
    )
    observed = pd.DataFrame(
        {
            "ID": np.repeat(subject.ravel(), time.size),
            "TIME": visit_time,
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
    if "enrolled" in trial:  # candidates who did not enrol were never in the trial
        frame = frame[frame["ID"].isin(subject[trial["enrolled"].to_numpy()])]
    frame = frame.sort_values(["ID", "TIME", "EVID"], kind="stable").reset_index(drop=True)
    frame.attrs["units"] = {"TIME": "h", "AMT": units[0], "plt": "10^9/L", "WT": "kg"}
    return frame
