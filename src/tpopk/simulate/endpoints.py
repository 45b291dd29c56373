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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
import xarray as xr
from pydantic import Field, model_validator

from tpopk.simulate.duration import Hours
from tpopk.typed import FrozenModel


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


def _fraction(flags: xr.DataArray, name: str) -> xr.DataArray:
    return flags.mean("patient").rename(name).assign_attrs(units="fraction of patients")


def responders_at(trial: xr.Dataset, response: Response, at: float) -> xr.DataArray:
    """Fraction of patients responding at the visit at time ``at`` (h).

    Raises
    ------
    ValueError
        If no visit is scheduled at ``at``.
    """
    return _fraction(responding(_at_visit(trial, at), response), "responder_at")


def responders_ever(
    trial: xr.Dataset, response: Response, window: tuple[float, float] | None = None
) -> xr.DataArray:
    """Fraction of patients responding at least once in the window (h)."""
    return _fraction(responding(_in_window(trial, window), response).any("visit"), "ever")


def responders_in_assessments(
    trial: xr.Dataset,
    response: Response,
    min_fraction: float,
    window: tuple[float, float] | None = None,
) -> xr.DataArray:
    """Fraction of patients responding at no fewer than ``min_fraction`` of the visits."""
    share = responding(_in_window(trial, window), response).mean("visit")
    return _fraction(share >= min_fraction - 1e-12, "assessment_fraction")


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
    return _fraction(count >= min_visits, "durable")


def time_to_response(
    trial: xr.Dataset, response: Response, window: tuple[float, float] | None = None
) -> xr.DataArray:
    """Median time (days) of the first responding visit, among patients who respond.

    ``nan`` where no patient of an arm responds in the window.
    """
    part = _in_window(trial, window)
    flags = responding(part, response)
    first = part["time"].where(flags).min("visit", skipna=True) / 24.0
    median = first.median("patient", skipna=True)
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
    return weeks.mean("patient").rename("time_in_response").assign_attrs(units="week")


def overshoot(
    trial: xr.Dataset, above: float, window: tuple[float, float] | None = None
) -> xr.DataArray:
    """Fraction of patients with any count strictly above ``above`` (10^9/L) in the window."""
    high = (_in_window(trial, window)["platelets"] > above).any("visit")
    return _fraction(high, "overshoot")


def time_to_peak(trial: xr.Dataset, window: tuple[float, float] | None = None) -> xr.DataArray:
    """Median time (days) of each patient's highest count in the window."""
    part = _in_window(trial, window)
    peak_at = part["time"].isel(visit=part["platelets"].argmax("visit")) / 24.0
    return peak_at.median("patient").rename("time_to_peak").assign_attrs(units="d")


def peak_fold_change(trial: xr.Dataset, window: tuple[float, float] | None = None) -> xr.DataArray:
    """Median ratio of each patient's highest count in the window to the baseline count."""
    peak = _in_window(trial, window)["platelets"].max("visit")
    ratio = (peak / trial["baseline_platelets"]).median("patient")
    return ratio.rename("peak_fold_change").assign_attrs(units="ratio to baseline")


def fold_change_at(trial: xr.Dataset, at: float) -> xr.DataArray:
    """Median ratio of the count at the visit at ``at`` (h) to the baseline count."""
    ratio = (_at_visit(trial, at)["platelets"] / trial["baseline_platelets"]).median("patient")
    return ratio.rename("fold_change_at").assign_attrs(units="ratio to baseline")


Window = tuple[Hours, Hours]


class _Endpoint(FrozenModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = ""
    window: Window | None = None

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

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of patients responding at the visit."""
        return responders_at(trial, self.response, self.at)


class ResponderEver(_Endpoint):
    """Responders at least once in the window."""

    kind: Literal["responder_ever"]
    response: Response

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of patients responding at least once."""
        return responders_ever(trial, self.response, self.window)


class AssessmentFraction(_Endpoint):
    """Responders at no fewer than ``min_fraction`` of the assessments in the window."""

    kind: Literal["assessment_fraction"]
    response: Response
    min_fraction: float = Field(gt=0, le=1)

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of patients responding at enough assessments."""
        return responders_in_assessments(trial, self.response, self.min_fraction, self.window)


class Durable(_Endpoint):
    """Responders at ``min_visits`` or more visits of the window."""

    kind: Literal["durable"]
    response: Response
    min_visits: int = Field(ge=1)

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of durable responders."""
        return durable_responders(trial, self.response, self.min_visits, self.window)


class TimeToResponse(_Endpoint):
    """Median days to the first response, among responders."""

    kind: Literal["time_to_response"]
    response: Response

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Median time to first response (d)."""
        return time_to_response(trial, self.response, self.window)


class TimeInResponse(_Endpoint):
    """Mean cumulative weeks in response."""

    kind: Literal["time_in_response"]
    response: Response

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Mean weeks in response."""
        return time_in_response(trial, self.response, self.window)


class Overshoot(_Endpoint):
    """Patients with any count above ``above`` (10^9/L)."""

    kind: Literal["overshoot"]
    above: float = Field(gt=0)

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Fraction of patients overshooting."""
        return overshoot(trial, self.above, self.window)


class TimeToPeak(_Endpoint):
    """Median days to each patient's highest count in the window."""

    kind: Literal["time_to_peak"]

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Median time of the peak (d)."""
        return time_to_peak(trial, self.window)


class PeakFoldChange(_Endpoint):
    """Median ratio of each patient's highest count in the window to baseline."""

    kind: Literal["peak_fold_change"]

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Median peak / baseline."""
        return peak_fold_change(trial, self.window)


class FoldChangeAt(_Endpoint):
    """Median ratio of the count at one visit (``at``) to baseline."""

    kind: Literal["fold_change_at"]
    at: Hours

    def evaluate(self, trial: xr.Dataset) -> xr.DataArray:
        """Median count / baseline at the visit."""
        return fold_change_at(trial, self.at)


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
    | FoldChangeAt,
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
