"""Trial endpoints: per-arm summaries of simulated platelet counts.

Every endpoint is a function of the trial Dataset made by
:func:`tpopk.simulate.run_trial` (variables ``platelets``, ``rescued`` and
``baseline_platelets``, dims ``arm, patient, visit`` and the visit coordinate ``time``
in hours). Each reduces over ``visit`` and ``patient`` and keeps every other dimension,
so a ``draw`` dimension (posterior draws) passes straight through.

Trial designs name endpoints in TOML; :func:`evaluate_endpoints` turns those
specifications into one Dataset::

    [[endpoints]]
    name = "response_week_8"
    kind = "responder_at"
    at = "8 weeks"
    response = { at_least = 50 }

A *response* at a visit is a count in ``[at_least, at_most]`` (10^9/L), optionally also
at least ``fold_baseline`` times and ``rise_from_baseline`` above the visit-0 count;
with ``without_rescue`` a visit at or after the patient's first rescue is never a
response (its rescue therapy, not the drug, may explain the count).

Endpoints summarise the *enrolled* patients (the trial's ``enrolled``, where screening,
cohorts or trial-sized arms left candidates out), narrowed by an endpoint's ``subgroup``
(a cohort, ancestry, splenectomy or a baseline range), so each cohort or subgroup gets
its own result. Durations (days above, time to response, ...) use the visits' nominal
times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
import xarray as xr
from pydantic import Field, model_validator

from tpopk.simulate.duration import Hours
from tpopk.typed import FrozenModel

#: How an endpoint summarises its patients.
Statistic = Literal["median", "mean"]


class Response(FrozenModel):
    """What counts as a platelet response at one visit.

    Parameters
    ----------
    at_least
        Lowest responding count (10^9/L, inclusive).
    at_most
        Highest responding count (10^9/L, inclusive); ``None`` for no upper bound.
    fold_baseline
        Also at least this multiple of the visit-0 count (e.g. 2 for IWG's "doubling").
    rise_from_baseline
        Also at least this much above the visit-0 count (10^9/L).
    without_rescue
        Visits at or after the first rescue never count as responses.
    """

    at_least: float = Field(ge=0)
    at_most: float | None = Field(default=None, gt=0)
    fold_baseline: float | None = Field(default=None, gt=0)
    rise_from_baseline: float | None = None
    without_rescue: bool = False

    @model_validator(mode="after")
    def _range_ordered(self) -> Response:
        if self.at_most is not None and self.at_most < self.at_least:
            raise ValueError(f"at_most ({self.at_most}) is below at_least ({self.at_least})")
        return self


def responding(trial: xr.Dataset, response: Response) -> xr.DataArray:
    """Whether each patient responds at each visit (bool, same dims as ``platelets``)."""
    platelets = trial["platelets"]
    ok = platelets >= response.at_least
    if response.at_most is not None:
        ok &= platelets <= response.at_most
    if response.fold_baseline is not None:
        ok &= platelets >= response.fold_baseline * trial["baseline_platelets"]
    if response.rise_from_baseline is not None:
        ok &= platelets - trial["baseline_platelets"] >= response.rise_from_baseline
    if response.without_rescue:
        ok &= ~trial["rescued"]
    return ok


def _in_window(trial: xr.Dataset, window: tuple[float, float] | None) -> xr.Dataset:
    """Visits whose time (h) lies in the closed window; the whole trial for ``None``."""
    if window is None:
        return trial
    time = trial["time"].to_numpy()
    keep = (time >= window[0]) & (time <= window[1])
    if not keep.any():
        raise ValueError(f"no visit lies between {window[0]:g} h and {window[1]:g} h")
    return trial.isel(visit=np.flatnonzero(keep))


def _at_visit(trial: xr.Dataset, at: float) -> xr.Dataset:
    """Select the visit at time ``at`` (h); ``ValueError`` if none is scheduled then."""
    time = trial["time"].to_numpy()
    match = np.flatnonzero(np.isclose(time, at, rtol=0.0, atol=1e-6))
    if match.size == 0:
        raise ValueError(f"no visit at {at:g} h (visits at {', '.join(f'{t:g}' for t in time)} h)")
    return trial.isel(visit=int(match[0]))


def enrolled(trial: xr.Dataset) -> xr.DataArray:
    """Return the patients an endpoint is computed over (bool, ``platelets`` less ``visit``).

    All patients, unless the trial marks who was ``enrolled`` (screening, cohorts,
    trial-sized arms) or an endpoint narrowed it to a subgroup.
    """
    if "enrolled" in trial:
        return trial["enrolled"]
    return xr.ones_like(trial["platelets"].isel(visit=0, drop=True), dtype=bool)


def _over_patients(value: xr.DataArray, trial: xr.Dataset, statistic: str) -> xr.DataArray:
    """Median or mean over the enrolled patients (``nan`` where there are none)."""
    kept = value.where(enrolled(trial))
    return kept.median("patient") if statistic == "median" else kept.mean("patient")


def _fraction(flags: xr.DataArray, trial: xr.Dataset, name: str) -> xr.DataArray:
    share = _over_patients(flags, trial, "mean")
    return share.rename(name).assign_attrs(units="fraction of patients")


def responders_at(trial: xr.Dataset, response: Response, at: float) -> xr.DataArray:
    """Fraction of patients responding at the visit at time ``at`` (h).

    Raises
    ------
    ValueError
        If no visit is scheduled at ``at``.
    """
    return _fraction(responding(_at_visit(trial, at), response), trial, "responder_at")


def responders_ever(
    trial: xr.Dataset, response: Response, window: tuple[float, float] | None = None
) -> xr.DataArray:
    """Fraction of patients responding at least once in the window (h)."""
    flags = responding(_in_window(trial, window), response).any("visit")
    return _fraction(flags, trial, "ever")


def responders_in_assessments(
    trial: xr.Dataset,
    response: Response,
    min_fraction: float,
    window: tuple[float, float] | None = None,
) -> xr.DataArray:
    """Fraction of patients responding at no fewer than ``min_fraction`` of the visits."""
    share = responding(_in_window(trial, window), response).mean("visit")
    return _fraction(share >= min_fraction - 1e-12, trial, "assessment_fraction")


def durable_responders(
    trial: xr.Dataset,
    response: Response,
    min_visits: int,
    window: tuple[float, float] | None = None,
) -> xr.DataArray:
    """Fraction of patients responding at ``min_visits`` or more visits in the window.

    Romiplostim's pivotal "durable response" is ≥ 6 responding weekly counts in weeks
    18-25 without rescue: ``min_visits=6``, ``window=(18 * 168, 25 * 168)``.
    """
    count = responding(_in_window(trial, window), response).sum("visit")
    return _fraction(count >= min_visits, trial, "durable")


def time_to_response(
    trial: xr.Dataset, response: Response, window: tuple[float, float] | None = None
) -> xr.DataArray:
    """Median time (days) of the first responding visit, among patients who respond.

    ``nan`` where no patient of an arm responds in the window.
    """
    part = _in_window(trial, window)
    flags = responding(part, response)
    first = part["time"].where(flags).min("visit", skipna=True) / 24.0
    median = _over_patients(first, trial, "median")
    return median.rename("time_to_response").assign_attrs(units="d")


def time_in_response(
    trial: xr.Dataset, response: Response, window: tuple[float, float] | None = None
) -> xr.DataArray:
    """Mean cumulative time (weeks) in response.

    A responding visit counts until the next scheduled visit (the last visit of the
    trial counts as long as the interval before it), so with weekly counts this is the
    number of responding weeks, as in romiplostim's "weeks with response".
    """
    time = trial["time"].to_numpy()
    if time.size < 2:
        raise ValueError("time in response needs at least two visits")
    span = np.diff(time, append=time[-1] + (time[-1] - time[-2]))
    spans = trial.assign_coords(span=("visit", span))
    part = _in_window(spans, window)
    weeks = (responding(part, response) * part["span"]).sum("visit") / 168.0
    mean = _over_patients(weeks, trial, "mean")
    return mean.rename("time_in_response").assign_attrs(units="week")


def overshoot(
    trial: xr.Dataset, above: float, window: tuple[float, float] | None = None
) -> xr.DataArray:
    """Fraction of patients with any count strictly above ``above`` (10^9/L) in the window."""
    high = (_in_window(trial, window)["platelets"] > above).any("visit")
    return _fraction(high, trial, "overshoot")


def time_to_peak(trial: xr.Dataset, window: tuple[float, float] | None = None) -> xr.DataArray:
    """Median time (days) of each patient's highest count in the window."""
    part = _in_window(trial, window)
    peak_at = part["time"].isel(visit=part["platelets"].argmax("visit")) / 24.0
    median = _over_patients(peak_at, trial, "median")
    return median.rename("time_to_peak").assign_attrs(units="d")


def peak_fold_change(trial: xr.Dataset, window: tuple[float, float] | None = None) -> xr.DataArray:
    """Median ratio of each patient's highest count in the window to the baseline count."""
    peak = _in_window(trial, window)["platelets"].max("visit")
    ratio = _over_patients(peak / trial["baseline_platelets"], trial, "median")
    return ratio.rename("peak_fold_change").assign_attrs(units="ratio to baseline")


def fold_change_at(trial: xr.Dataset, at: float) -> xr.DataArray:
    """Median ratio of the count at the visit at ``at`` (h) to the baseline count."""
    fold = _at_visit(trial, at)["platelets"] / trial["baseline_platelets"]
    ratio = _over_patients(fold, trial, "median")
    return ratio.rename("fold_change_at").assign_attrs(units="ratio to baseline")


def count_at(trial: xr.Dataset, at: float, statistic: Statistic = "median") -> xr.DataArray:
    """Median (or mean) count (10^9/L) at the visit at ``at`` (h)."""
    value = _over_patients(_at_visit(trial, at)["platelets"], trial, statistic)
    return value.rename("count_at").assign_attrs(units="10^9/L")


def change_from_baseline_at(
    trial: xr.Dataset, at: float, statistic: Statistic = "mean"
) -> xr.DataArray:
    """Mean (or median) change (10^9/L) from the visit-0 count to the count at ``at`` (h)."""
    change = _at_visit(trial, at)["platelets"] - trial["baseline_platelets"]
    value = _over_patients(change, trial, statistic)
    return value.rename("change_from_baseline_at").assign_attrs(units="10^9/L")


def days_above(
    trial: xr.Dataset,
    response: Response,
    window: tuple[float, float] | None = None,
    statistic: Statistic = "median",
) -> xr.DataArray:
    """Median (or mean) over patients of the days with a count meeting ``response``.

    As in :func:`time_in_response`, a visit counts until the next scheduled visit (the
    last as long as the interval before it): with daily counts, the number of days
    the count was at or above the threshold.
    """
    time = trial["time"].to_numpy()
    if time.size < 2:
        raise ValueError("days above a threshold need at least two visits")
    span = np.diff(time, append=time[-1] + (time[-1] - time[-2]))
    part = _in_window(trial.assign_coords(span=("visit", span)), window)
    days = (responding(part, response) * part["span"]).sum("visit") / 24.0
    value = _over_patients(days, trial, statistic)
    return value.rename("days_above").assign_attrs(units="d")


def rescue_free(trial: xr.Dataset, window: tuple[float, float] | None = None) -> xr.DataArray:
    """Fraction of patients given no rescue (e.g. no platelet transfusion) in the window."""
    given = _in_window(trial, window)["rescue_given"].any("visit")
    return _fraction(~given, trial, "rescue_free")


Window = tuple[Hours, Hours]


class Subgroup(FrozenModel):
    """Patients an endpoint is computed over: every given condition holds.

    Parameters
    ----------
    cohort
        Patients of this cohort (a name under ``[[cohorts]]``).
    east_asian, splenectomy
        Patients of (``true``) or not of (``false``) East-Asian ancestry / splenectomised.
    baseline_below, baseline_at_least
        Visit-0 count ``<`` / ``≥`` this (10^9/L).
    """

    cohort: str | None = None
    east_asian: bool | None = None
    splenectomy: bool | None = None
    baseline_below: float | None = Field(default=None, gt=0)
    baseline_at_least: float | None = Field(default=None, ge=0)

    def members(self, trial: xr.Dataset) -> xr.DataArray:
        """Whether each patient belongs (bool, dims of ``baseline_platelets``)."""
        ok = xr.ones_like(trial["baseline_platelets"], dtype=bool)
        if self.cohort is not None:
            ok &= trial["cohort"] == self.cohort
        if self.east_asian is not None:
            ok &= (trial["EAST_ASIAN"] == 1) == self.east_asian
        if self.splenectomy is not None:
            ok &= (trial["SPLENECTOMY"] == 1) == self.splenectomy
        if self.baseline_below is not None:
            ok &= trial["baseline_platelets"] < self.baseline_below
        if self.baseline_at_least is not None:
            ok &= trial["baseline_platelets"] >= self.baseline_at_least
        return ok


class _Endpoint(FrozenModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = ""
    window: Window | None = None
    subgroup: Subgroup | None = None

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Compute the endpoint per arm over the enrolled patients of its subgroup."""
        if self.subgroup is not None:
            trial = trial.assign(enrolled=enrolled(trial) & self.subgroup.members(trial))
        return self._value(trial)

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        raise NotImplementedError

    @model_validator(mode="after")
    def _window_ordered(self) -> _Endpoint:
        if self.window is not None and self.window[1] < self.window[0]:
            raise ValueError("window ends before it starts")
        return self


class ResponderAt(_Endpoint):
    """Responders at one visit (``at``, a duration such as ``"8 weeks"``)."""

    kind: Literal["responder_at"]
    at: Hours
    response: Response

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of patients responding at the visit."""
        return responders_at(trial, self.response, self.at)


class ResponderEver(_Endpoint):
    """Responders at least once in the window."""

    kind: Literal["responder_ever"]
    response: Response

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of patients responding at least once."""
        return responders_ever(trial, self.response, self.window)


class AssessmentFraction(_Endpoint):
    """Responders at no fewer than ``min_fraction`` of the assessments in the window."""

    kind: Literal["assessment_fraction"]
    response: Response
    min_fraction: float = Field(gt=0, le=1)

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of patients responding at enough assessments."""
        return responders_in_assessments(trial, self.response, self.min_fraction, self.window)


class Durable(_Endpoint):
    """Responders at ``min_visits`` or more visits of the window."""

    kind: Literal["durable"]
    response: Response
    min_visits: int = Field(ge=1)

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of durable responders."""
        return durable_responders(trial, self.response, self.min_visits, self.window)


class TimeToResponse(_Endpoint):
    """Median days to the first response, among responders."""

    kind: Literal["time_to_response"]
    response: Response

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Median time to first response (d)."""
        return time_to_response(trial, self.response, self.window)


class TimeInResponse(_Endpoint):
    """Mean cumulative weeks in response."""

    kind: Literal["time_in_response"]
    response: Response

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Mean weeks in response."""
        return time_in_response(trial, self.response, self.window)


class Overshoot(_Endpoint):
    """Patients with any count above ``above`` (10^9/L)."""

    kind: Literal["overshoot"]
    above: float = Field(gt=0)

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of patients overshooting."""
        return overshoot(trial, self.above, self.window)


class TimeToPeak(_Endpoint):
    """Median days to each patient's highest count in the window."""

    kind: Literal["time_to_peak"]

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Median time of the peak (d)."""
        return time_to_peak(trial, self.window)


class PeakFoldChange(_Endpoint):
    """Median ratio of each patient's highest count in the window to baseline."""

    kind: Literal["peak_fold_change"]

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Median peak / baseline."""
        return peak_fold_change(trial, self.window)


class FoldChangeAt(_Endpoint):
    """Median ratio of the count at one visit (``at``) to baseline."""

    kind: Literal["fold_change_at"]
    at: Hours

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Median count / baseline at the visit."""
        return fold_change_at(trial, self.at)


class CountAt(_Endpoint):
    """Median (or mean) count at one visit (``at``)."""

    kind: Literal["count_at"]
    at: Hours
    statistic: Statistic = "median"

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Count at the visit (10^9/L)."""
        return count_at(trial, self.at, self.statistic)


class ChangeFromBaselineAt(_Endpoint):
    """Mean (or median) change from the visit-0 count at one visit (``at``)."""

    kind: Literal["change_from_baseline_at"]
    at: Hours
    statistic: Statistic = "mean"

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Change from baseline (10^9/L)."""
        return change_from_baseline_at(trial, self.at, self.statistic)


class DaysAbove(_Endpoint):
    """Median (or mean) days with a count meeting ``response`` in the window."""

    kind: Literal["days_above"]
    response: Response
    statistic: Statistic = "median"

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Days above the threshold (d)."""
        return days_above(trial, self.response, self.window, self.statistic)


class RescueFree(_Endpoint):
    """Patients given no rescue in the window (L-PLUS: no pre-procedure transfusion)."""

    kind: Literal["rescue_free"]

    def _value(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of patients without rescue."""
        return rescue_free(trial, self.window)


#: Endpoints read at one visit (``at``), which the design must schedule.
AtVisit = (ResponderAt, FoldChangeAt, CountAt, ChangeFromBaselineAt)

#: One endpoint of a trial design, told apart by its ``kind``.
Endpoint = Annotated[
    ResponderAt
    | ResponderEver
    | AssessmentFraction
    | Durable
    | TimeToResponse
    | TimeInResponse
    | Overshoot
    | TimeToPeak
    | PeakFoldChange
    | FoldChangeAt
    | CountAt
    | ChangeFromBaselineAt
    | DaysAbove
    | RescueFree,
    Field(discriminator="kind"),
]


def evaluate_endpoints(trial: xr.Dataset, endpoints: Sequence[Endpoint]) -> xr.Dataset:
    """Evaluate endpoints on a simulated trial.

    Parameters
    ----------
    trial
        Output of :func:`tpopk.simulate.run_trial`.
    endpoints
        Specifications, e.g. ``design.endpoints``.

    Returns
    -------
    xarray.Dataset
        One variable per endpoint name, dims ``arm`` (plus any extra dims of ``trial``
        except ``patient`` and ``visit``), with ``units`` and ``description`` attributes.
    """
    values = {}
    for endpoint in endpoints:
        # scalar coordinates (e.g. the visit a responder_at endpoint selected) would clash
        value = endpoint.evaluate(trial).reset_coords(drop=True)
        values[endpoint.name] = value.rename(endpoint.name).assign_attrs(
            kind=endpoint.kind, description=endpoint.description
        )
    return xr.Dataset(values)
