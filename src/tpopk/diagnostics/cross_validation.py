"""PSIS-LOO cross-validation, Pareto-k, LOO-PIT and model comparison for multi-DVID fits.

ArviZ does the work (Vehtari, Gelman & Gabry 2017; Vehtari et al. 2024). What tpopk adds
is the handling of its several observation types: each ``y_<dvid>`` has its own
log-likelihood variable, and the combined LOO treats all observations of all types as
one set of data points (their ``obs_<dvid>`` positions are unique in the event table).

For BLQ observations the log-likelihood is the M3 term ``log P(y <= LLOQ)`` and the
posterior predictive is censored at the LLOQ, so the LOO-PIT of such a point is drawn
uniformly over ``[0, P(y <= LLOQ)]`` by ArviZ's tie randomisation: the randomised PIT of a
censored observation, uniform when the model is right.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from arviz_plots import PlotCollection
from arviz_stats.base import array_stats
from arviz_stats.utils import ELPDData
from scipy import special

from tpopk.diagnostics.observations import observation_types


def _combined_log_likelihood(tree: xr.DataTree) -> xr.DataTree:
    """Pool every ``y_<dvid>`` log-likelihood into one ``y`` on dim ``observation``."""
    parts = []
    for dvid in observation_types(tree):
        part = tree["log_likelihood"][f"y_{dvid}"].reset_coords(drop=True)  # ID_<dvid>, ...
        part = part.rename({f"obs_{dvid}": "observation"})
        parts.append(part.assign_coords(dvid=("observation", [dvid] * part.sizes["observation"])))
    combined = xr.concat(parts, dim="observation").sortby("observation").rename("y")
    return xr.DataTree.from_dict(
        {
            "posterior": tree["posterior"].to_dataset(),
            "log_likelihood": combined.to_dataset(),
        }
    )


def _flat_tail(ratios: np.ndarray, r_eff: float) -> np.ndarray:
    """Observations whose largest importance ratios, the draws PSIS fits, are all equal.

    ``ratios`` is ``-log_lik`` as (sample, observation). The tail is the one ArviZ's PSIS
    fits (its own tail-size rule, so the two cannot drift apart). Its Pareto fit fails on
    such a tail: a BLQ point whose ``log P(y <= LLOQ)`` varies only in subnormal digits, or
    a chain stuck for more draws than the tail holds at an observation's lowest likelihood.
    """
    n_tail = int(array_stats._get_ps_tails(ratios.shape[0], r_eff, tail="right"))
    tail = np.sort(ratios, axis=0)[-n_tail:]
    # ratios within a factor exp(1e-12) of each other: smoothing them changes nothing
    return np.asarray(tail[-1] - tail[0] < 1e-12)


def _psis(tree: xr.DataTree, log_lik: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    """PSIS log weights and Pareto-k, tolerating observations whose ratio tail is flat.

    A BLQ observation far below its LLOQ has ``log P(y <= LLOQ) = 0`` in every draw, and
    ArviZ's tail fit fails on it (see ``_flat_tail`` for the other cases). Where the
    largest ratio is shared by all the tail's draws, no draw carries more than
    ``1/n_tail`` of the weight, and Pareto smoothing would return the ratios unchanged:
    such points get plain normalised importance weights (uniform where the
    log-likelihood is constant), with Pareto-k 0.
    """
    sample = ["chain", "draw"]
    obs_dim = next(str(d) for d in log_lik.dims if d not in sample)
    # relative efficiency as ArviZ computes it: mean-ESS over all posterior values / draws
    ess = az.ess(tree["posterior"].to_dataset(), method="mean")
    n_samples = log_lik.sizes["chain"] * log_lik.sizes["draw"]
    reff = float(np.mean(np.hstack([ess[v].values.ravel() for v in ess.data_vars]))) / n_samples
    reff = 1.0 if log_lik.sizes["chain"] == 1 else reff
    ratios = -log_lik.transpose(*sample, obs_dim).values.reshape(n_samples, -1)
    flat = _flat_tail(ratios, reff)
    log_lik = log_lik.transpose(*sample, obs_dim)
    plain = ratios - special.logsumexp(ratios, axis=0)
    log_weights = log_lik.copy(data=plain.reshape(log_lik.shape))
    pareto_k = xr.zeros_like(log_lik.isel(chain=0, draw=0, drop=True)).rename("pareto_k")
    if not flat.all():
        smoothed, k = log_lik.isel({obs_dim: ~flat}).azstats.psislw(r_eff=reff, dim=sample)
        log_weights[{obs_dim: ~flat}] = smoothed.transpose(*sample, obs_dim).values
        pareto_k[{obs_dim: ~flat}] = k.values
    return log_weights, pareto_k


def loo(tree: xr.DataTree, dvid: str | None = None) -> ELPDData:
    """PSIS-LOO of one observation type, or of all observations together.

    Parameters
    ----------
    tree
        Fit DataTree with ``posterior`` and ``log_likelihood`` groups.
    dvid
        Observation type (``y_<dvid>``); ``None`` pools every type into one dim
        ``observation`` (coordinate: event-table position; ``dvid`` coordinate beside it).

    Returns
    -------
    arviz_stats.utils.ELPDData
        ``elpd``, ``se``, ``p``, pointwise ``elpd_i`` and ``pareto_k`` (values above
        ``good_k`` mark observations whose LOO estimate is unreliable, often subjects
        with few data or outliers).
    """
    if dvid is None:
        tree, name = _combined_log_likelihood(tree), "y"
    else:
        name = f"y_{dvid}"
    log_weights, pareto_k = _psis(tree, tree["log_likelihood"].to_dataset()[name])
    return az.loo(tree, var_name=name, pointwise=True, log_weights=log_weights, pareto_k=pareto_k)


def loo_summary(tree: xr.DataTree) -> pd.DataFrame:
    """ELPD-LOO per observation type and for all together, with Pareto-k counts.

    Returns
    -------
    pandas.DataFrame
        Index: each DVID, then ``all``. Columns ``elpd``, ``se``, ``p_loo``, ``n``,
        ``good_k`` (threshold) and ``n_bad_k`` (observations with Pareto-k above it).
    """
    rows = {}
    for dvid in [*observation_types(tree), None]:
        with warnings.catch_warnings():
            # the table counts these points and loo_warnings says what they mean
            warnings.filterwarnings("ignore", "Estimated shape parameter of Pareto", UserWarning)
            result = loo(tree, dvid)
        rows[dvid or "all"] = {
            "elpd": result.elpd,
            "se": result.se,
            "p_loo": result.p,
            "n": result.n_data_points,
            "good_k": result.good_k,
            "n_bad_k": int((result.pareto_k > result.good_k).sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def loo_warnings(table: pd.DataFrame) -> list[str]:
    """Say in plain words where PSIS-LOO cannot be trusted, one sentence per observation type.

    Parameters
    ----------
    table
        Output of :func:`loo_summary`; its ``all`` row repeats the per-type points.

    Returns
    -------
    list of str
        Empty when every Pareto k is at or below its threshold.
    """
    return [
        f"Pareto k is above {row['good_k']:.2g} for {int(row['n_bad_k'])} of {int(row['n'])} "
        f"{name} observations: their leave-one-out predictions are unreliable, so the "
        f"ELPD-LOO of {name} is too. In a hierarchical model these are usually the few "
        "observations that pin a subject's own parameters, or outliers; look at them in "
        "the individual fits, and compare models by K-fold cross-validation instead."
        for name, row in table.drop(index="all", errors="ignore").iterrows()
        if row["n_bad_k"] > 0
    ]


def loo_pit(tree: xr.DataTree, dvid: str | None = None) -> xr.Dataset:
    """LOO-PIT values ``P(y_rep_i <= y_i | y_-i)`` of each observation.

    Uniform on [0, 1] when the model's predictive distribution is calibrated; piled at
    0 and 1 when it is too narrow, at 0.5 when too wide, skewed when biased.

    Parameters
    ----------
    tree
        Fit DataTree with ``posterior``, ``posterior_predictive``, ``log_likelihood`` and
        ``observed_data``.
    dvid
        Observation type; ``None`` for every type (one variable ``y_<dvid>`` each).
    """
    names = [f"y_{d}" for d in ([dvid] if dvid is not None else observation_types(tree))]
    weights = {name: _psis(tree, tree["log_likelihood"].to_dataset()[name]) for name in names}
    result: xr.Dataset = az.loo_pit(
        tree,
        var_names=names,
        log_weights=xr.Dataset({name: w for name, (w, _) in weights.items()}),
        pareto_k=xr.Dataset({name: k for name, (_, k) in weights.items()}),
    )
    return result


def loo_compare(trees: Mapping[str, xr.DataTree], dvid: str | None = None) -> pd.DataFrame:
    """Rank fits of the same data by ELPD-LOO (stacking weights); trial arms: :func:`tpopk.compare`.

    Parameters
    ----------
    trees
        ``{model name: fit DataTree}``; all fitted to the same observations.
    dvid
        Compare on one observation type, or on all together (``None``).

    Returns
    -------
    pandas.DataFrame
        ArviZ's comparison table: ``rank``, ``elpd``, ``p``, ``elpd_diff``, ``weight``,
        ``se``, ``dse``, ``warning``.
    """
    result: pd.DataFrame = az.compare({name: loo(tree, dvid) for name, tree in trees.items()})
    return result


def plot_khat(elpd: ELPDData) -> PlotCollection:
    """Pareto-k of each observation (from :func:`loo`) with the reliability threshold."""
    return az.plot_khat(elpd, backend="matplotlib")


def plot_loo_pit(tree: xr.DataTree, dvid: str | None = None) -> PlotCollection:
    """ECDF of the LOO-PIT values with a simultaneous uniformity envelope, per DVID."""
    dvids = [dvid] if dvid is not None else observation_types(tree)
    return az.plot_loo_pit(tree, var_names=[f"y_{d}" for d in dvids], backend="matplotlib")


def plot_loo_compare(comparison: pd.DataFrame) -> PlotCollection:
    """ELPD of each model with its standard error and the difference to the best one."""
    return az.plot_compare(comparison, backend="matplotlib")
