"""Visual predictive checks: binned observed percentiles against simulated prediction intervals.

For each stratum (observation type × agonist, or other subject covariates) the
observations are binned by time; in each bin the observed 5/50/95th percentiles (by
default) are compared with the distribution, over simulated replicates of the whole
dataset, of the same percentiles computed from the simulated values in that bin.

Prediction-corrected VPC (Bergstrand, Hooker, Wallin & Karlsson, AAPS J 13:143, 2011):
each observed and simulated value is multiplied by ``PRED_bin / PRED_ij``, with
``PRED_ij`` the population prediction (η = 0) of that observation (the posterior median
of ``pred_<dvid>``, which :func:`tpopk.inference.fit` stores) and ``PRED_bin`` the
median PRED of its bin (their eq. 1 with lower bound 0). This removes the variability
that comes from differing doses, covariates and times within a bin. Where PRED is 0
(samples before the first dose) the correction is undefined: those observations are
left out of the prediction-corrected check and counted in its ``n_left_out``.

Values below the LLOQ (Bergstrand & Karlsson, AAPS J 11:371, 2009): an observation
flagged BLQ, and a simulated value at or below its observation's LLOQ, is known only to
be below the limit. It enters the percentile computation as −∞, so a percentile that
falls among such values is undefined and reported as ``nan`` (not drawn), in the
observed and simulated data alike. The fraction BLQ per bin is reported separately,
observed against its simulated interval, and drawn as a second row of panels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from arviz_plots import PlotCollection

from tpopk.diagnostics.observations import (
    DiagnosticsError,
    observation_types,
    observations,
    population_prediction,
    simulated_draws,
)

FloatArray = npt.NDArray[np.float64]


def _bin_edges(time: FloatArray, bins: int | Sequence[float]) -> FloatArray:
    if isinstance(bins, int):
        if bins < 1:
            raise DiagnosticsError(f"bins must be at least 1, not {bins}")
        # unique: with nominal sampling times several quantiles can coincide
        return np.unique(np.quantile(time, np.linspace(0.0, 1.0, bins + 1)))
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise DiagnosticsError("bin edges must be at least two increasing times")
    return edges


def _bin_index(time: FloatArray, edges: FloatArray) -> npt.NDArray[np.int64]:
    """Bin of each time, bins closed on the left (the last also on the right); −1 outside."""
    index = np.searchsorted(edges, time, side="right") - 1
    index[time == edges[-1]] = len(edges) - 2
    index[(time < edges[0]) | (time > edges[-1])] = -1
    return index.astype(np.int64)


def _percentiles(values: FloatArray, probs: FloatArray) -> FloatArray:
    """Percentiles along the last axis; those touching a censored (−∞) value are −∞."""
    with np.errstate(invalid="ignore"):
        result = np.quantile(values, probs, axis=-1)
    # interpolating next to −∞ gives −∞ or nan: both mean "below the LLOQ"
    return np.where(np.isnan(result), -np.inf, result)


def _finite_or_nan(values: FloatArray) -> FloatArray:
    return np.where(np.isfinite(values), values, np.nan)


def _strata(data: xr.Dataset, dvid: str, stratify_by: Sequence[str]) -> list[tuple[str, Any]]:
    """(label, mask) per stratum, in sorted order of the covariate values."""
    dim = f"obs_{dvid}"
    if missing := [c for c in stratify_by if c not in data]:
        raise DiagnosticsError(f"cannot stratify by {missing}: not a subject covariate")
    if not stratify_by:
        return [(dvid, np.ones(data.sizes[dim], dtype=bool))]
    keys = np.stack([data[c].values.astype(str) for c in stratify_by], axis=1)
    strata = []
    for key in sorted({tuple(row) for row in keys.tolist()}):
        label = ", ".join([dvid, *(f"{c}={v}" for c, v in zip(stratify_by, key, strict=True))])
        strata.append((label, np.all(keys == np.asarray(key), axis=1)))
    return strata


def vpc(
    tree: xr.DataTree,
    dvids: Sequence[str] | None = None,
    *,
    bins: int | Sequence[float] = 8,
    percentiles: Sequence[float] = (0.05, 0.5, 0.95),
    ci_prob: float = 0.9,
    stratify_by: Sequence[str] | None = None,
    prediction_corrected: bool = False,
    group: str = "posterior_predictive",
    num_draws: int | None = 1000,
    seed: int = 0,
) -> xr.Dataset:
    """Compute a (prediction-corrected) visual predictive check.

    Parameters
    ----------
    tree
        Fit DataTree.
    dvids
        Observation types to check (default: all); each is its own stratum.
    bins
        Number of time bins with equal numbers of observations (quantiles of time in each
        stratum), or the bin edges (h) shared by all strata; observations outside the
        edges are left out.
    percentiles
        Percentiles of the observations to compare, as probabilities.
    ci_prob
        Probability of the equal-tailed simulated interval around each percentile.
    stratify_by
        Subject covariates to stratify by; default ``["AGONIST"]`` when the data have an
        agonist column, else none.
    prediction_corrected
        Correct by the population prediction ``pred_<dvid>`` of the posterior
        (Bergstrand et al. 2011, see the module docstring):
        ``pcY_ij = Y_ij · PRED_bin / PRED_ij``; observations whose PRED is not positive
        (pre-dose) are left out.
    group
        Group holding the simulated replicates ``y_<dvid>``. The fitted
        ``posterior_predictive`` group simulates the same subjects with their own
        posterior η; replicates with new η (new subjects) give the classical VPC.
    num_draws
        Number of replicates used (a seeded random subset; all if ``None``).
    seed
        Seed of the subset.

    Returns
    -------
    xarray.Dataset
        Dims ``stratum``, ``bin``, ``percentile``. ``observed``, ``simulated_lower``,
        ``simulated_median``, ``simulated_upper`` and ``outside`` (observed outside the
        simulated interval) on all three; on ``stratum, bin``: ``n_obs``, ``bin_time``
        (median time), ``bin_start``, ``bin_end``, ``blq_observed`` and
        ``blq_simulated_lower/median/upper`` (fractions BLQ). Coordinate ``dvid`` and
        one per stratification covariate on ``stratum``. Undefined (BLQ) percentiles
        and empty bins are ``nan``. Attr ``n_left_out``: observations left out for a
        PRED that is not positive (0 without correction).
    """
    dvids = list(dvids) if dvids is not None else observation_types(tree)
    probs = np.asarray(percentiles, dtype=float)
    tails = np.array([(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2])
    n_bins = bins if isinstance(bins, int) else len(bins) - 1
    shape = (n_bins, len(probs))
    strata: list[dict[str, Any]] = []
    units: dict[str, str] = {}
    time_units = ""
    left_out = 0
    for dvid in dvids:
        data = observations(tree, dvid)
        units[dvid], time_units = data.attrs["units"], data.attrs["time_units"]
        if stratify_by is None:
            stratify_by = ["AGONIST"] if "AGONIST" in data else []
        sims = simulated_draws(tree, dvid, group, num_draws, seed)
        prediction = population_prediction(tree, dvid) if prediction_corrected else None
        if prediction_corrected and prediction is None:
            raise DiagnosticsError(
                f"a prediction-corrected VPC needs PRED (pred_{dvid} in the posterior)"
            )
        lloq = np.nan_to_num(data["lloq"].values, nan=-np.inf)
        observed = np.where(data["blq"].values, -np.inf, data["dv"].values)
        simulated = np.where(sims <= lloq, -np.inf, sims)
        time = np.asarray(data["time"].values, dtype=float)
        # the correction divides by PRED: pre-dose observations (PRED 0) cannot take part
        defined = prediction > 0 if prediction is not None else np.ones(len(time), dtype=bool)
        left_out += int(np.sum(~defined))
        if not defined.any():
            raise DiagnosticsError(f"PRED of '{dvid}' is nowhere positive: nothing to correct")
        for label, mask in _strata(data, dvid, stratify_by):
            mask = mask & defined
            if not mask.any():
                continue
            edges = _bin_edges(time[mask], bins)
            index = np.full(len(time), -1)
            index[mask] = _bin_index(time[mask], edges)
            row: dict[str, Any] = {
                "label": label,
                "dvid": dvid,
                **{c: str(data[c].values[mask][0]) for c in stratify_by},
                "observed": np.full(shape, np.nan),
                "simulated": np.full((*shape, 3), np.nan),
                "blq_observed": np.full(n_bins, np.nan),
                "blq_simulated": np.full((n_bins, 3), np.nan),
                "n_obs": np.zeros(n_bins, dtype=np.int64),
                "bin_time": np.full(n_bins, np.nan),
                "bin_start": np.full(n_bins, np.nan),
                "bin_end": np.full(n_bins, np.nan),
            }
            for b in range(len(edges) - 1):
                members = index == b
                if not members.any():
                    continue
                y, y_sim = observed[members], simulated[:, members]
                if prediction is not None:
                    factor = np.median(prediction[members]) / prediction[members]
                    y, y_sim = y * factor, y_sim * factor
                per_draw = _percentiles(y_sim, probs)  # (percentile, sample)
                row["observed"][b] = _finite_or_nan(_percentiles(y, probs))
                row["simulated"][b] = _finite_or_nan(_percentiles(per_draw, tails)).T
                row["blq_observed"][b] = np.mean(np.isneginf(y))
                row["blq_simulated"][b] = np.quantile(np.isneginf(y_sim).mean(axis=1), tails)
                row["n_obs"][b] = members.sum()
                row["bin_time"][b] = np.median(time[members])
                row["bin_start"][b], row["bin_end"][b] = edges[b], edges[b + 1]
            strata.append(row)
    attrs = {
        "ci_prob": ci_prob,
        "group": group,
        "prediction_corrected": int(prediction_corrected),
        "time_units": time_units,
        "n_left_out": left_out,
        **{f"units_{dvid}": unit for dvid, unit in units.items()},
    }
    return _as_dataset(strata, probs, list(stratify_by or ()), attrs)


def _as_dataset(
    strata: list[dict[str, Any]],
    probs: FloatArray,
    stratify_by: Sequence[str],
    attrs: dict[str, Any],
) -> xr.Dataset:
    def stack(key: str) -> FloatArray:
        return np.stack([row[key] for row in strata])

    simulated, blq_simulated = stack("simulated"), stack("blq_simulated")
    observed = stack("observed")
    cube = ("stratum", "bin", "percentile")
    return xr.Dataset(
        {
            "observed": (cube, observed),
            "simulated_lower": (cube, simulated[..., 0]),
            "simulated_median": (cube, simulated[..., 1]),
            "simulated_upper": (cube, simulated[..., 2]),
            "outside": (
                cube,
                (observed < simulated[..., 0]) | (observed > simulated[..., 2]),
            ),
            "n_obs": (("stratum", "bin"), stack("n_obs")),
            "bin_time": (("stratum", "bin"), stack("bin_time")),
            "bin_start": (("stratum", "bin"), stack("bin_start")),
            "bin_end": (("stratum", "bin"), stack("bin_end")),
            "blq_observed": (("stratum", "bin"), stack("blq_observed")),
            "blq_simulated_lower": (("stratum", "bin"), blq_simulated[..., 0]),
            "blq_simulated_median": (("stratum", "bin"), blq_simulated[..., 1]),
            "blq_simulated_upper": (("stratum", "bin"), blq_simulated[..., 2]),
        },
        coords={
            "stratum": [row["label"] for row in strata],
            "bin": np.arange(observed.shape[1]),
            "percentile": probs,
            "dvid": ("stratum", [row["dvid"] for row in strata]),
            **{c: ("stratum", [row[c] for row in strata]) for c in stratify_by},
        },
        attrs=attrs,
    )


def _draw_percentiles(
    da: xr.DataArray,
    target: Any,
    *,
    lower: xr.DataArray,
    median: xr.DataArray,
    upper: xr.DataArray,
    bin_time: xr.DataArray,
    ci_prob: float,
    y_label: xr.DataArray,
    x_label: str,
) -> list[Any]:
    """One stratum: a shaded simulated interval and a line of observations per percentile."""
    time = bin_time.values
    artists: list[Any] = []
    for p, percentile in enumerate(da["percentile"].values):
        name = f"{100 * percentile:g}th"
        artists.append(
            target.fill_between(
                time,
                lower.values[:, p],
                upper.values[:, p],
                alpha=0.25,
                color=f"C{p}",
                label=f"simulated {name} ({100 * ci_prob:g}% interval)",
            )
        )
        artists += target.plot(time, median.values[:, p], "--", color=f"C{p}", linewidth=1)
        artists += target.plot(time, da.values[:, p], "o-", color=f"C{p}", label=f"observed {name}")
    target.set_title(str(da["stratum"].item()))
    target.set_xlabel(x_label)
    target.set_ylabel(str(y_label.item()))
    return artists


def _draw_blq(
    da: xr.DataArray,
    target: Any,
    *,
    lower: xr.DataArray,
    upper: xr.DataArray,
    bin_time: xr.DataArray,
    x_label: str,
) -> list[Any]:
    """One stratum: observed fraction BLQ against its simulated interval."""
    artists: list[Any] = [
        target.fill_between(bin_time.values, lower.values, upper.values, alpha=0.25, color="C7")
    ]
    artists += target.plot(bin_time.values, da.values, "o-", color="C3")
    target.set_title("fraction BLQ")
    target.set_xlabel(x_label)
    target.set_ylabel("fraction BLQ")
    target.set_ylim(-0.02, 1.02)
    return artists


def plot_vpc(vpc_data: xr.Dataset, *, log_y: bool = False) -> PlotCollection:
    """Draw a VPC computed by :func:`vpc`: one column per stratum.

    The top row shows, per percentile, the observed percentile (points and line), the
    median simulated percentile (dashed) and its simulated interval (shaded). When any
    bin has BLQ observations or simulations, a second row shows the observed fraction
    BLQ against its simulated interval.

    Parameters
    ----------
    vpc_data
        Output of :func:`vpc`.
    log_y
        Logarithmic y axis for the percentile panels.

    Returns
    -------
    arviz_plots.PlotCollection
        Matplotlib backend; the figure is ``pc.viz["figure"].item()``.
    """
    rows = ["observed"]
    if np.nanmax(vpc_data["blq_simulated_upper"].values, initial=0.0) > 0 or (
        np.nanmax(vpc_data["blq_observed"].values, initial=0.0) > 0
    ):
        rows.append("blq_observed")
    pc = PlotCollection.grid(
        vpc_data[rows],
        cols=["stratum"],
        rows=["__variable__"],
        backend="matplotlib",
        figure_kwargs={
            "figsize": (4.5 * vpc_data.sizes["stratum"], 3.5 * len(rows)),
            "layout": "constrained",
        },
    )
    x_label = f"time ({vpc_data.attrs['time_units']})"
    corrected = "prediction-corrected " if vpc_data.attrs["prediction_corrected"] else ""
    y_label = xr.DataArray(
        [f"{corrected}{d} ({vpc_data.attrs[f'units_{d}']})" for d in vpc_data["dvid"].values],
        dims="stratum",
        coords={"stratum": vpc_data["stratum"]},
    )
    pc.map(
        _draw_percentiles,
        "percentiles",
        data=vpc_data[["observed"]],
        lower=vpc_data["simulated_lower"],
        median=vpc_data["simulated_median"],
        upper=vpc_data["simulated_upper"],
        bin_time=vpc_data["bin_time"],
        ci_prob=vpc_data.attrs["ci_prob"],
        y_label=y_label,
        x_label=x_label,
        store_artist=False,
    )
    if "blq_observed" in rows:
        pc.map(
            _draw_blq,
            "blq",
            data=vpc_data[["blq_observed"]],
            lower=vpc_data["blq_simulated_lower"],
            upper=vpc_data["blq_simulated_upper"],
            bin_time=vpc_data["bin_time"],
            x_label=x_label,
            store_artist=False,
        )
    targets = [pc.get_target("observed", {"stratum": s}) for s in vpc_data["stratum"].values]
    targets[0].legend(fontsize="x-small")  # one legend: every panel has the same entries
    if log_y:
        for target in targets:
            target.set_yscale("log")
    return pc
