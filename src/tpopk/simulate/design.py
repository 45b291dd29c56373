"""Trial designs as data: population, visits, arms, titration rules, rescue, endpoints.

A design is a TOML file in ``models/trials/`` read by :func:`load_trial` into a frozen
:class:`TrialDesign`. Durations carry their unit (``"14 d"``, ``"8 weeks"``); platelet
counts are 10^9/L; doses are in the titration's ``dose_unit`` (mg or µg/kg) per
administration.

Titration is data. A titration has ordered dose *levels* (level 1 is the lowest). A
level is one amount per administration, or a repeating pattern of amounts over
consecutive dosing slots for less-than-daily regimens (avatrombopag's 20 mg twice a
week on a 24 h grid is ``[20, 0, 0, 20, 0, 0, 0]``; slot ``k`` of the trial takes entry
``k mod len(pattern)``). At each visit the *rules* are tried in order and the first
whose conditions all hold acts: ``increase`` or ``decrease`` one level (clamped to the
levels there are), ``hold`` dosing until a count is below ``resume_below`` and then
restart ``resume_change`` levels away, or ``stop`` for good. Rules are evaluated only
while doses remain to be decided (before the arm's ``duration`` ends), so a short fixed
course (avatrombopag 40/60 mg x 5 days, lusutrombopag 3 mg x up to 7 days) is the
same machinery with one level per course and at most a stopping rule.

Visit 0 (time 0) gives the baseline count, which with the covariates picks each
patient's starting level; a visit on a dosing day comes before that day's dose.

What the trials did beyond dosing: ``[enrolment]`` enrols candidates on screening counts
that carry the visit-to-visit variation (:class:`Enrolment`, regression to the mean);
``[[cohorts]]`` split patients by their entry count, each with its own start level and
results (:class:`Cohort`); an arm's ``n`` (or its cohorts') sizes trial-sized runs;
``visits.windows`` put a visit on each patient's own day (:class:`VisitWindow`); a
rescue's ``effect`` raises the later counts (:class:`Transfusion`). A
minimal design::

    name = "example"
    [population]
    disease = "ITP"
    baseline_platelets = { median = 13, sd_log = 0.8, upper = 30 }
    weight = { median = 70, sd_log = 0.26 }
    east_asian_fraction = 0.0
    splenectomy_fraction = 0.0
    [visits]
    unit = "week"
    every = 1
    until = 8
    [titrations.label]
    dose_unit = "mg"
    interval = "24 h"
    levels = [25, 50, 75]
    rules = [{ action = "increase", platelets_below = 50, min_time_at_level = "14 d" }]
    [[arms]]
    name = "drug"
    agonist = "eltrombopag"
    route = "oral"
    titration = "label"
    start = [{ east_asian = true, level = 1 }, { level = 2 }]
    duration = "8 weeks"
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    model_validator,
)

from tpopk.data.schema import AGONISTS
from tpopk.errors import TpopkError
from tpopk.simulate.duration import HOURS_PER, Hours
from tpopk.simulate.endpoints import AtVisit, Endpoint
from tpopk.tomlfile import load_document
from tpopk.typed import FrozenModel

FloatArray = npt.NDArray[np.float64]


class TrialDesignError(TpopkError):
    """A trial design that cannot be read or does not describe a runnable trial."""


class LogNormal(FrozenModel):
    """A log-normal distribution, optionally truncated to ``[lower, upper)``.

    Parameters
    ----------
    median
        Median before truncation (same unit as the quantity).
    sd_log
        Standard deviation of the natural logarithm (0 gives the median for everyone).
    lower, upper
        Truncation bounds, e.g. a trial's inclusion criterion (``upper`` is exclusive).
    """

    distribution: Literal["lognormal"] = "lognormal"
    median: float = Field(gt=0)
    sd_log: float = Field(ge=0)
    lower: float | None = Field(default=None, ge=0)
    upper: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> LogNormal:
        if self.lower is not None and self.upper is not None and self.upper <= self.lower:
            raise ValueError(f"upper ({self.upper}) must exceed lower ({self.lower})")
        if self.sd_log == 0 and not (self.lower or 0) <= self.median < (self.upper or np.inf):
            raise ValueError("with sd_log 0 the median must lie inside [lower, upper)")
        return self


class Population(FrozenModel):
    """Who is enrolled.

    Parameters
    ----------
    disease
        ``"ITP"``, ``"CLD"`` (chronic liver disease) or ``"HV"`` (healthy volunteers).
    baseline_platelets
        Distribution of the baseline count (10^9/L); the response model is expected to
        honour it (see :func:`tpopk.simulate.sample_population`).
    baseline_platelets_splenectomised
        Its distribution among splenectomised patients, where the literature gives one
        apart; ``None`` uses ``baseline_platelets`` for everyone.
    weight
        Distribution of body weight (kg).
    east_asian_fraction, splenectomy_fraction
        Probability that a patient is of East-Asian ancestry / splenectomised.
    """

    disease: Literal["ITP", "CLD", "HV"]
    baseline_platelets: LogNormal
    baseline_platelets_splenectomised: LogNormal | None = None
    weight: LogNormal
    east_asian_fraction: float = Field(ge=0, le=1)
    splenectomy_fraction: float = Field(ge=0, le=1)


class VisitWindow(FrozenModel):
    """A visit whose time differs between patients: a procedure day in days 10-13.

    Each patient's visit falls on one of ``start, start + 1, ..., end`` (whole units of
    the visits' ``unit``), each equally likely. Its nominal time (what endpoints' ``at``
    names) is ``start``. It is an assessment: titration rules do not act at it, rescue
    does.
    """

    name: str = Field(min_length=1)
    start: float = Field(gt=0)
    end: float

    @model_validator(mode="after")
    def _ordered(self) -> VisitWindow:
        if self.end < self.start:
            raise ValueError(f"window '{self.name}' ends ({self.end:g}) before it starts")
        return self

    def days(self) -> npt.NDArray[np.float64]:
        """Return the possible times (in the visits' unit)."""
        count = int(np.floor(self.end - self.start + 1e-9)) + 1
        return self.start + np.arange(count, dtype=np.float64)


class Visits(FrozenModel):
    """Platelet-count visits: listed ``times`` and/or every ``every`` from 0 to ``until``.

    All numbers are in ``unit`` (``"h"``, ``"day"`` or ``"week"``). Visit 0 must be at
    time 0: its count is the baseline and decides the starting dose. A visit on a
    dosing day happens before that day's dose. ``windows`` add visits whose time is
    drawn per patient (:class:`VisitWindow`).
    """

    unit: Literal["h", "day", "week"]
    times: tuple[float, ...] = ()
    every: float | None = Field(default=None, gt=0)
    until: float | None = Field(default=None, ge=0)
    windows: tuple[VisitWindow, ...] = ()

    @model_validator(mode="after")
    def _starts_at_zero(self) -> Visits:
        if (self.every is None) != (self.until is None):
            raise ValueError("'every' and 'until' go together")
        fixed = self._fixed_hours()
        if fixed.size == 0 or fixed[0] != 0.0:
            raise ValueError("the first visit must be at time 0 (the baseline count)")
        if fixed.min() < 0:
            raise ValueError("visit times must be ≥ 0")
        names = [w.name for w in self.windows]
        if len(set(names)) != len(names):
            raise ValueError(f"visit window names repeat: {names}")
        # A window's visit must keep its place among the visits for every patient.
        spans = sorted((w.start, w.end, w.name) for w in self.windows)
        for (_, end, name), (start, _, other) in pairwise(spans):
            if start <= end:
                raise ValueError(f"visit windows '{name}' and '{other}' overlap")
        for start, end, name in spans:
            inside = fixed[(fixed >= start * HOURS_PER[self.unit] - 1e-9)]
            if inside.size and inside[0] <= end * HOURS_PER[self.unit] + 1e-9:
                raise ValueError(
                    f"visit window '{name}' ({start:g}-{end:g} {self.unit}) contains the "
                    f"fixed visit at {inside[0] / HOURS_PER[self.unit]:g} {self.unit}"
                )
        return self

    def _fixed_hours(self) -> npt.NDArray[np.float64]:
        listed = np.asarray(self.times, dtype=float)
        if self.every is not None and self.until is not None:
            count = int(np.floor(self.until / self.every + 1e-9)) + 1
            listed = np.concatenate([listed, self.every * np.arange(count)])
        return np.unique(np.round(listed * HOURS_PER[self.unit], 9))

    @property
    def hours(self) -> npt.NDArray[np.float64]:
        """Sorted nominal visit times (h): fixed visits and each window's start."""
        starts = np.array([w.start for w in self.windows], dtype=float) * HOURS_PER[self.unit]
        return np.sort(np.concatenate([self._fixed_hours(), np.round(starts, 9)]))

    @property
    def windowed(self) -> dict[int, VisitWindow]:
        """Windows by the index of their visit in :attr:`hours`."""
        hours = self.hours
        scale = HOURS_PER[self.unit]
        return {int(np.flatnonzero(np.isclose(hours, w.start * scale))[0]): w for w in self.windows}

    def draw_hours(self, rng: np.random.Generator, shape: tuple[int, ...]) -> FloatArray:
        """Each patient's visit times (h), ``shape + (visits,)``: windows drawn uniformly."""
        times = np.broadcast_to(self.hours, (*shape, self.hours.size)).copy()
        for index, window in self.windowed.items():
            days = window.days()
            times[..., index] = days[rng.integers(days.size, size=shape)] * HOURS_PER[self.unit]
        return times


class Rule(FrozenModel):
    """One titration rule: conditions at a visit → an action.

    Parameters
    ----------
    action
        ``"increase"``, ``"decrease"``, ``"hold"`` or ``"stop"``.
    platelets_below, platelets_above, platelets_at_least
        Count ``<``, ``>`` or ``≥`` this value (10^9/L).
    rise_from_baseline_at_least
        Count at least this much above the baseline (10^9/L).
    consecutive_visits
        The count conditions held at this many consecutive visits since the last dose
        change (romiplostim: > 200 for 2 consecutive weeks).
    min_time_at_level
        The current level was given for at least this long (e.g. ``"14 d"``).
    at_level
        Only at the ``"highest"`` or ``"lowest"`` level.
    resume_below, resume_change
        For ``hold``: restart once a count is below ``resume_below``, ``resume_change``
        levels from the held one (default one lower).
    description
        The rule in words, with its source.
    """

    action: Literal["increase", "decrease", "hold", "stop"]
    platelets_below: float | None = Field(default=None, ge=0)
    platelets_above: float | None = Field(default=None, ge=0)
    platelets_at_least: float | None = Field(default=None, ge=0)
    rise_from_baseline_at_least: float | None = Field(default=None, ge=0)
    consecutive_visits: int = Field(default=1, ge=1)
    min_time_at_level: Hours | None = None
    at_level: Literal["highest", "lowest"] | None = None
    resume_below: float | None = Field(default=None, gt=0)
    resume_change: int = -1
    description: str = ""

    @model_validator(mode="after")
    def _complete(self) -> Rule:
        counts = (
            self.platelets_below,
            self.platelets_above,
            self.platelets_at_least,
            self.rise_from_baseline_at_least,
        )
        if all(c is None for c in counts):
            raise ValueError("a rule needs a platelet condition (platelets_below/above/at_least)")
        if self.action == "hold" and self.resume_below is None:
            raise ValueError("a 'hold' rule needs resume_below (the count that ends the hold)")
        if self.action != "hold" and self.resume_below is not None:
            raise ValueError("resume_below belongs to 'hold' rules only")
        return self

    def platelet_condition(
        self, platelets: npt.NDArray[np.float64], baseline: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.bool_]:
        """Whether the count conditions hold, per patient."""
        ok = np.ones(platelets.shape, dtype=bool)
        if self.platelets_below is not None:
            ok &= platelets < self.platelets_below
        if self.platelets_above is not None:
            ok &= platelets > self.platelets_above
        if self.platelets_at_least is not None:
            ok &= platelets >= self.platelets_at_least
        if self.rise_from_baseline_at_least is not None:
            ok &= platelets - baseline >= self.rise_from_baseline_at_least
        return ok


def _dose_unit(value: object) -> object:
    text = str(value).strip().replace("\u03bc", "µ").replace("mcg", "µg").replace("ug", "µg")
    return text if text in ("mg", "µg/kg") else value


def _known_agonist(value: str) -> str:
    name = value.strip().lower()
    if name not in AGONISTS:
        raise ValueError(f"'{value}' is not one of {', '.join(AGONISTS)}")
    return name


def _pattern(value: object) -> object:
    return (value,) if isinstance(value, int | float) else value


DoseLevel = Annotated[tuple[Annotated[float, Field(ge=0)], ...], BeforeValidator(_pattern)]


class Titration(FrozenModel):
    """Dose levels and the rules that move between them.

    Parameters
    ----------
    dose_unit
        ``"mg"`` or ``"µg/kg"`` (``"ug/kg"`` accepted), per administration.
    interval
        Time between dosing slots (``"24 h"``, ``"1 week"``).
    levels
        Ordered lowest to highest; each an amount or a repeating pattern per slot.
    rules
        Tried in order at each visit; the first that applies acts.
    description
        The rules in words, with sources.
    """

    dose_unit: Annotated[Literal["mg", "µg/kg"], BeforeValidator(_dose_unit)]
    interval: Hours = Field(gt=0)
    levels: tuple[DoseLevel, ...] = Field(min_length=1)
    rules: tuple[Rule, ...] = ()
    description: str = ""

    @model_validator(mode="after")
    def _levels_dose(self) -> Titration:
        for number, level in enumerate(self.levels, start=1):
            if not level or max(level) <= 0:
                raise ValueError(f"level {number} gives no dose")
        # increase/decrease move one level up/down, so the order is the dose order: the
        # mean amount per slot (a pattern's average) must rise from level to level.
        means = [sum(level) / len(level) for level in self.levels]
        for number, (low, high) in enumerate(pairwise(means), start=1):
            if high <= low:
                raise ValueError(
                    f"levels must rise from lowest to highest: level {number + 1} gives "
                    f"{high:g} {self.dose_unit} per slot on average, level {number} {low:g}"
                )
        return self

    def schedule(self, slots: int) -> npt.NDArray[np.float64]:
        """Amount at every level for each of ``slots`` dosing slots, ``[levels, slots]``."""
        index = np.arange(slots)
        return np.array([np.asarray(lv)[index % len(lv)] for lv in self.levels], dtype=float)


class StartRule(FrozenModel):
    """Starting level for patients matching every given condition.

    Parameters
    ----------
    level
        Level number (1 = lowest).
    east_asian
        Only patients of (``true``) or not of (``false``) East-Asian ancestry.
    baseline_below, baseline_at_least
        Only patients whose baseline count is ``<`` / ``≥`` this (10^9/L).
    cohort
        Only patients of this cohort (a name under ``[[cohorts]]``).
    """

    level: int = Field(ge=1)
    east_asian: bool | None = None
    baseline_below: float | None = None
    baseline_at_least: float | None = None
    cohort: str | None = None

    @property
    def unconditional(self) -> bool:
        """Whether every patient matches."""
        conditions = (self.east_asian, self.baseline_below, self.baseline_at_least, self.cohort)
        return all(c is None for c in conditions)


class Arm(FrozenModel):
    """One arm: an agonist given by a titration from a starting level for ``duration``.

    Parameters
    ----------
    name
        Arm label (unique in the design).
    agonist
        One of the five TPO-receptor agonists.
    route
        ``"oral"`` or ``"sc"``.
    titration
        Name of a table under ``[titrations]``.
    start
        Starting-level rules, first match wins; the last must be unconditional.
    duration
        How long doses are given (slots at ``0, interval, ...`` before it).
    placebo
        Dose levels are titrated as usual (blinded) but no drug is given.
    n
        Patients randomised to this arm in the real trial: the patients a trial-sized run
        enrols (:func:`tpopk.simulate.sample_population` with ``n_patients=None``).
    description
        The arm in words, with sources.
    """

    name: str = Field(min_length=1)
    agonist: Annotated[str, AfterValidator(_known_agonist)]
    route: Literal["oral", "sc"]
    titration: str
    start: tuple[StartRule, ...] = Field(min_length=1)
    duration: Hours = Field(gt=0)
    placebo: bool = False
    n: int | None = Field(default=None, ge=1)
    description: str = ""

    @model_validator(mode="after")
    def _start_covers_everyone(self) -> Arm:
        if not self.start[-1].unconditional:
            raise ValueError("the last start rule must have no conditions (it catches everyone)")
        return self


class Transfusion(FrozenModel):
    """What one rescue does to later counts: it adds ``rise`` (10^9/L), which then wanes.

    Give one of ``lifespan`` (transfused platelets of all ages: the added count falls
    linearly to 0 over one platelet lifespan) or ``half_life`` (falls exponentially).
    """

    rise: float = Field(gt=0)
    lifespan: Hours | None = Field(default=None, gt=0)
    half_life: Hours | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_decay(self) -> Transfusion:
        if (self.lifespan is None) == (self.half_life is None):
            raise ValueError("give one of lifespan (linear decline) or half_life (exponential)")
        return self

    def added(self, elapsed: FloatArray) -> FloatArray:
        """Count added (10^9/L) ``elapsed`` h after the transfusion (0 before or at it)."""
        after = elapsed > 0
        if self.lifespan is not None:
            left = np.clip(1.0 - elapsed / self.lifespan, 0.0, 1.0)
        else:
            left = 0.5 ** (np.maximum(elapsed, 0.0) / (self.half_life or 1.0))
        return np.where(after, self.rise * left, 0.0)


class Rescue(FrozenModel):
    """Rescue therapy given at a visit within ``window`` whose count is below ``platelets_below``.

    The rescue is recorded (``rescued`` from that visit on, ``rescue_events`` counts
    them). With ``effect`` it is given at every such visit (up to ``at_most`` times per
    patient) and raises the later counts (:class:`Transfusion`); without it, its effect
    on counts is not simulated (response models know only the agonist doses).
    """

    platelets_below: float = Field(gt=0)
    window: tuple[Hours, Hours] | None = None
    effect: Transfusion | None = None
    at_most: int | None = Field(default=None, ge=1)
    description: str = ""


class Enrolment(FrozenModel):
    """Who enters the trial, judged on counts measured before visit 0.

    The population's ``baseline_platelets`` is then each candidate's true level, and the
    screening counts are model counts with visit-to-visit variation, so the enrolled
    patients' true levels regress towards the population's (regression to the mean).

    Parameters
    ----------
    screening_counts
        Counts taken before visit 0, ``screening_interval`` apart, the last one
        ``screening_interval`` before visit 0; 0 judges on the visit-0 count.
    screening_interval
        Time between screening counts.
    criterion
        ``"each"``: every screening count must meet the bounds; ``"mean"``: their mean.
    below, at_least
        The bounds (10^9/L): ``count < below`` and ``count ≥ at_least``.
    candidates
        Patients screened per patient enrolled, when arms enrol their real ``n``
        (:func:`tpopk.simulate.sample_population` with ``n_patients=None``).
    """

    screening_counts: int = Field(default=0, ge=0)
    screening_interval: Hours = Field(default=168.0, gt=0)
    criterion: Literal["each", "mean"] = "each"
    below: float | None = Field(default=None, gt=0)
    at_least: float | None = Field(default=None, ge=0)
    candidates: float = Field(default=3.0, ge=1)

    def screening_hours(self) -> FloatArray:
        """Return the times of the screening counts (h, negative, ascending)."""
        return -self.screening_interval * np.arange(self.screening_counts, 0, -1, dtype=float)


class Cohort(FrozenModel):
    """Patients whose entry count lies in ``[at_least, below)`` (10^9/L).

    The entry count is the mean of the screening counts, or the visit-0 count without
    screening. With cohorts, a patient in none is not enrolled. ``n`` gives the patients
    each arm enrolled into the cohort (by arm name), for trial-sized arms.
    """

    name: str = Field(min_length=1)
    below: float | None = Field(default=None, gt=0)
    at_least: float | None = Field(default=None, ge=0)
    n: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    description: str = ""

    def contains(self, count: FloatArray) -> npt.NDArray[np.bool_]:
        """Whether each entry count lies in the cohort's range."""
        ok = np.ones(count.shape, dtype=bool)
        if self.below is not None:
            ok &= count < self.below
        if self.at_least is not None:
            ok &= count >= self.at_least
        return ok


class TrialDesign(FrozenModel):
    """A virtual clinical trial: population, visits, arms with titration, rescue, endpoints."""

    name: str = Field(min_length=1)
    description: str = ""
    sources: tuple[str, ...] = ()
    population: Population
    visits: Visits
    titrations: dict[str, Titration] = Field(min_length=1)
    arms: tuple[Arm, ...] = Field(min_length=1)
    rescue: tuple[Rescue, ...] = ()
    enrolment: Enrolment = Enrolment()
    cohorts: tuple[Cohort, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> TrialDesign:
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names repeat: {names}")
        cohorts = [c.name for c in self.cohorts]
        if len(set(cohorts)) != len(cohorts):
            raise ValueError(f"cohort names repeat: {cohorts}")
        for cohort in self.cohorts:
            if unknown := sorted(set(cohort.n) - set(names)):
                raise ValueError(f"cohort '{cohort.name}': n names no arm {unknown}")
        for arm in self.arms:
            if arm.titration not in self.titrations:
                raise ValueError(
                    f"arm '{arm.name}': titration '{arm.titration}' is not one of "
                    f"{sorted(self.titrations)}"
                )
            top = len(self.titrations[arm.titration].levels)
            for start in arm.start:
                if start.level > top:
                    raise ValueError(
                        f"arm '{arm.name}': start level {start.level} but the titration "
                        f"has {top} levels"
                    )
                if start.cohort is not None and start.cohort not in cohorts:
                    raise ValueError(
                        f"arm '{arm.name}': start cohort '{start.cohort}' is not one of {cohorts}"
                    )
            per_cohort = [c.n[arm.name] for c in self.cohorts if arm.name in c.n]
            if per_cohort and arm.n is not None and sum(per_cohort) != arm.n:
                raise ValueError(
                    f"arm '{arm.name}': n = {arm.n} but its cohorts' n add up to {sum(per_cohort)}"
                )
        for endpoint in self.endpoints:
            group = endpoint.subgroup
            if group is not None and group.cohort is not None and group.cohort not in cohorts:
                raise ValueError(
                    f"endpoint '{endpoint.name}': subgroup cohort '{group.cohort}' is not one "
                    f"of {cohorts}"
                )
        endpoint_names = [e.name for e in self.endpoints]
        if len(set(endpoint_names)) != len(endpoint_names):
            raise ValueError(f"endpoint names repeat: {endpoint_names}")
        visits = self.visits.hours
        for endpoint in self.endpoints:
            if isinstance(endpoint, AtVisit) and not np.any(np.isclose(visits, endpoint.at)):
                raise ValueError(f"endpoint '{endpoint.name}': no visit at {endpoint.at / 24:g} d")
        return self

    def enrolment_cap(self, arm: Arm) -> dict[str | None, int] | None:
        """Patients the arm enrolled: by cohort where every cohort gives it, else in all.

        ``None`` where the design does not say (the arm has no ``n``).
        """
        if self.cohorts and all(arm.name in c.n for c in self.cohorts):
            return {c.name: c.n[arm.name] for c in self.cohorts}
        return None if arm.n is None else {None: arm.n}

    def titration_of(self, arm: Arm) -> Titration:
        """Return the titration an arm follows."""
        return self.titrations[arm.titration]


def load_trial(source: str | Path | Mapping[str, Any]) -> TrialDesign:
    """Read and validate a trial design.

    Parameters
    ----------
    source
        Path to a TOML design, the TOML text itself, or an already-parsed mapping.

    Raises
    ------
    TrialDesignError
        If the file is missing, is not TOML, or does not describe a runnable trial; the
        message lists every problem with its key (e.g. ``arms.1.start.0.level``).
    """
    return load_document(source, TrialDesign, TrialDesignError, "trial design")
