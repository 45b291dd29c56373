"""Dose equivalence: the dose of one arm's agonist that matches another arm's endpoint.

For a pair (*reference* arm A, *arm* B) every posterior draw runs A as designed and B at
each level of its titration as a fixed dose (everyone at that level for B's whole
course, no titration rules), all on the same virtual patients (common random numbers,
so neighbouring doses differ by the dose's effect alone). Per endpoint, B's curve over
the levels is made monotone (isotonic regression, in the direction the posterior median
curve takes: overshoot rises with dose, time to response falls) and the dose at which it
equals A's endpoint is read off by interpolation between the bracketing levels, linear
in log dose (where Emax-type curves are closest to straight). Endpoints counted in
patients tie often; a curve equal to A's value over several levels gives the geometric
middle of that stretch.

A draw whose reference lies beyond the curve is kept and counted, never dropped: *below
the grid* when B's lowest level already goes past A's value, *above the grid* when B's
highest level does not reach it, *undefined* when A's endpoint or B's whole curve is
undefined (``nan``, e.g. time to response without responders) or the curve equals A's
value over the whole grid (the endpoint does not tell the doses apart, as with no
responders anywhere). Its equivalent dose is
``nan`` in the draws. The summaries are order statistics (inverted CDF) of the defined
draws, beyond-grid draws entering as ``-inf`` / ``+inf``: an interval end that falls
among them is reported as infinite rather than narrowed by leaving them out.

Doses are in the titration's ``dose_unit`` per administration (mg or µg/kg); a level
given as a pattern over dosing slots (avatrombopag's 20 mg twice a week) counts as its
mean amount per slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import xarray as xr
from scipy.optimize import isotonic_regression

from tpopk.errors import TpopkError
from tpopk.simulate.design import StartRule, TrialDesign

FloatArray = npt.NDArray[np.float64]

#: What became of a draw: the order of the ``outcome`` dimension.
OUTCOMES = ("matched", "below_grid", "above_grid", "undefined")
_MATCHED, _BELOW, _ABOVE, _UNDEFINED = range(len(OUTCOMES))


@dataclass(frozen=True)
class DoseGrid:
    """A reference arm and another arm's titration levels as fixed doses, as one trial.

    Build it with :meth:`of`. ``design`` has the reference arm first, then one arm per
    level of ``arm`` named ``<arm>@<level number>``.
    """

    reference: str
    arm: str
    doses: tuple[float, ...]
    dose_unit: str
    design: TrialDesign

    @classmethod
    def of(cls, design: TrialDesign, reference: str, arm: str) -> DoseGrid:
        """Give ``arm`` of ``design`` at each of its titration's levels beside ``reference``.

        Raises
        ------
        TpopkError
            If either arm is not in the design, ``arm`` is a placebo arm, or its levels'
            doses do not increase.
        """
        arms = {a.name: a for a in design.arms}
        for name in (reference, arm):
            if name not in arms:
                raise TpopkError(f"dose equivalence: no arm '{name}' (arms: {', '.join(arms)})")
        other = arms[arm]
        if other.placebo:
            raise TpopkError(f"dose equivalence: arm '{arm}' is a placebo arm, it has no dose")
        titration = design.titration_of(other)
        doses = tuple(float(np.mean(level)) for level in titration.levels)
        if np.any(np.diff(doses) <= 0):
            raise TpopkError(
                f"dose equivalence: the levels of titration '{other.titration}' do not "
                f"increase in mean dose per slot ({', '.join(f'{d:g}' for d in doses)})"
            )
        titrations = dict(design.titrations)
        fixed = []
        for number, level in enumerate(titration.levels, start=1):
            key = f"{other.titration}@{number}"
            titrations[key] = titration.model_copy(update={"levels": (level,), "rules": ()})
            fixed.append(
                other.model_copy(
                    update={
                        "name": f"{other.name}@{number}",
                        "titration": key,
                        "start": (StartRule(level=1),),
                    }
                )
            )
        grid = design.model_copy(
            update={"arms": (arms[reference], *fixed), "titrations": titrations}
        )
        return cls(reference, arm, doses, titration.dose_unit, grid)

    def curves(self, values: xr.Dataset) -> xr.Dataset:
        """Split endpoints of :attr:`design` (dims ``arm, draw``) into reference and curve.

        Returns
        -------
        xarray.Dataset
            ``reference_<endpoint>`` (``draw``) and ``curve_<endpoint>`` (``level,
            draw``), levels numbered from 1 with their dose ``grid_dose`` (in
            ``dose_unit``) as a coordinate.
        """
        levels = [arm.name for arm in self.design.arms[1:]]
        out: dict[str, xr.DataArray] = {}
        for name, data in values.data_vars.items():
            out[f"reference_{name}"] = data.sel(arm=self.reference).drop_vars("arm")
            curve = data.sel(arm=levels).rename(arm="level")
            out[f"curve_{name}"] = curve.assign_coords(level=np.arange(1, len(levels) + 1))
        return xr.Dataset(out).assign_coords(grid_dose=("level", np.array(self.doses)))


def stack_curves(curves: Sequence[xr.Dataset]) -> xr.Dataset:
    """Stack :meth:`DoseGrid.curves` along ``pair``, shorter grids padded with ``nan`` levels.

    ``grid_dose`` becomes a ``pair, level`` coordinate.
    """
    width = max(c.sizes["level"] for c in curves)
    padded = [c.reindex(level=np.arange(1, width + 1)) for c in curves]
    return xr.concat(padded, dim="pair", coords="all", join="exact")


def equivalent_doses(
    doses: FloatArray, curve: FloatArray, reference: FloatArray, *, increasing: bool
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Dose at which each draw's dose-response curve equals its reference value.

    Parameters
    ----------
    doses
        ``[L]`` grid doses, positive and increasing (``nan`` entries are left out).
    curve
        ``[N, L]`` endpoint at each dose per draw (``nan`` entries are left out).
    reference
        ``[N]`` value to match per draw.
    increasing
        Whether the endpoint rises with dose (else it falls).

    Returns
    -------
    dose, outcome
        ``[N]`` equivalent dose (``nan`` unless matched) and ``[N]`` index into
        :data:`OUTCOMES`. Between levels the curve is interpolated linearly in log
        dose; where the monotone curve equals the reference over several levels, the
        geometric middle of those levels is returned, over all of them it is undefined.
    """
    sign = 1.0 if increasing else -1.0
    dose = np.full(reference.shape, np.nan)
    outcome = np.full(reference.shape, _UNDEFINED, dtype=np.int64)
    for i in range(reference.size):
        keep = np.isfinite(curve[i]) & np.isfinite(doses)
        if not keep.any() or not np.isfinite(reference[i]):
            continue
        x, y, target = doses[keep], sign * curve[i, keep], sign * reference[i]
        if np.any(np.diff(y) < 0):  # chance dips (finite patients): monotone fit
            y = np.asarray(isotonic_regression(y).x, dtype=float)
        reached = np.flatnonzero(y >= target)
        if reached.size == 0:
            outcome[i] = _ABOVE
            continue
        k = reached[0]
        if y[k] == target:
            last = np.flatnonzero(y == target)[-1]  # ties are contiguous on a monotone curve
            if k == 0 and last == y.size - 1:
                continue
            dose[i] = x[k] if last == k else np.sqrt(x[k] * x[last])
        elif k == 0:
            outcome[i] = _BELOW
            continue
        else:
            share = (target - y[k - 1]) / (y[k] - y[k - 1])
            dose[i] = x[k - 1] * (x[k] / x[k - 1]) ** share
        outcome[i] = _MATCHED
    return dose, outcome


def _rises(curve: FloatArray) -> bool:
    """Whether the endpoint rises with dose: the median over draws of last minus first level."""
    rise = []
    for row in curve:
        finite = row[np.isfinite(row)]
        if finite.size > 1:
            rise.append(finite[-1] - finite[0])
    return not rise or float(np.median(rise)) >= 0


def _censored_quantiles(
    dose: FloatArray, outcome: npt.NDArray[np.int64], probs: Sequence[float]
) -> FloatArray:
    """Inverted-CDF quantiles of the defined draws, beyond-grid ones at ``-inf`` / ``+inf``."""
    coded = np.where(outcome == _BELOW, -np.inf, np.where(outcome == _ABOVE, np.inf, dose))
    coded = coded[outcome != _UNDEFINED]
    if coded.size == 0:
        return np.full(len(probs), np.nan)
    return np.asarray(np.quantile(coded, probs, method="inverted_cdf"), dtype=float)


def summarise_equivalence(
    curves: xr.Dataset, grids: Sequence[DoseGrid], ci_prob: float
) -> xr.DataTree:
    """Equivalent doses per endpoint and pair from dose-response curves.

    Parameters
    ----------
    curves
        :meth:`DoseGrid.curves` of every grid, stacked along ``pair`` (same order as
        ``grids``; levels padded with ``nan``), with a ``draw`` dimension.
    grids
        The grids the curves came from.
    ci_prob
        Probability mass of the equal-tailed intervals.

    Returns
    -------
    xarray.DataTree
        Root: ``dose_<endpoint>`` (``pair, stat``: median, lower, upper) and
        ``fraction_<endpoint>`` (``pair, outcome``: matched, below_grid, above_grid,
        undefined; sums to 1), with ``reference``, ``arm`` and ``dose_unit`` along
        ``pair``. ``draws``: ``dose_<endpoint>`` (``pair, draw``, ``nan`` unless
        matched) beside the ``reference_<endpoint>`` and ``curve_<endpoint>`` it came
        from, and ``grid_dose`` (``pair, level``).
    """
    tail = (1 - ci_prob) / 2
    probs = (0.5, tail, 1 - tail)
    names = [
        str(n)[len("reference_") :] for n in curves.data_vars if str(n).startswith("reference_")
    ]
    doses = curves["grid_dose"].transpose("pair", "level").to_numpy()
    summary: dict[str, xr.DataArray] = {}
    per_draw: dict[str, xr.DataArray] = {}
    for name in names:
        curve = curves[f"curve_{name}"].transpose("pair", "draw", "level").to_numpy()
        reference = curves[f"reference_{name}"].transpose("pair", "draw").to_numpy()
        dose = np.full(reference.shape, np.nan)
        stats = np.full((len(grids), 3), np.nan)
        fraction = np.zeros((len(grids), len(OUTCOMES)))
        for p in range(len(grids)):
            dose[p], outcome = equivalent_doses(
                doses[p], curve[p], reference[p], increasing=_rises(curve[p])
            )
            stats[p] = _censored_quantiles(dose[p], outcome, probs)
            fraction[p] = np.bincount(outcome, minlength=len(OUTCOMES)) / outcome.size
        what = f"dose of 'arm' whose {name} equals that of 'reference'"
        summary[f"dose_{name}"] = xr.DataArray(
            stats, dims=("pair", "stat"), attrs={"description": what}
        )
        summary[f"fraction_{name}"] = xr.DataArray(
            fraction,
            dims=("pair", "outcome"),
            attrs={"units": "fraction of draws", "description": f"{what}: outcome of the draws"},
        )
        per_draw[f"dose_{name}"] = xr.DataArray(
            dose, dims=("pair", "draw"), attrs={"description": what}
        )
    along = {
        "pair": np.arange(len(grids)),
        "reference": ("pair", [g.reference for g in grids]),
        "arm": ("pair", [g.arm for g in grids]),
        "dose_unit": ("pair", [g.dose_unit for g in grids]),
    }
    root = xr.Dataset(summary, coords={**along, "stat": ["median", "lower", "upper"]})
    root = root.assign_coords(outcome=list(OUTCOMES))
    draws = curves.assign(per_draw).assign_coords(pair=np.arange(len(grids)))
    return xr.DataTree.from_dict({"/": root, "draws": draws})
