"""Simulation-based calibration (SBC): does the sampler recover the prior that made the data.

Each replicate draws parameters θ̃ from the prior, simulates a dataset from them and fits
it. If model and sampler are right, the rank of θ̃ among the ``L`` posterior draws (the
number of draws below it) is uniform on ``0..L`` (Talts et al. 2018, arXiv:1804.06788),
whatever the model. Ranks piled at both ends mean posteriors too narrow, a hump in the
middle too wide, a slope a biased posterior.

Uniformity is checked per parameter with Pearson's χ² test over rank bins; the plot is
ArviZ's Δ-ECDF of the fractional ranks (Säilynoja et al. 2022) or a rank histogram with
the binomial band each bin count should fall in. Posterior draws should be thinned to
roughly independent ones first (``L`` ≲ the bulk ESS), or autocorrelation alone makes
the ranks non-uniform.

Simulating and fitting the replicates is the caller's part (``benchmarks/sbc.py`` does
it for a small population PK model, locally or on Dask); this module only needs the
prior draws and the posterior draws of each replicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from arviz_plots import PlotCollection, plot_ecdf_pit
from scipy import stats

from tpopk.diagnostics.convergence import element_labels
from tpopk.diagnostics.observations import DiagnosticsError

#: Dimension that indexes the SBC replicates.
REPLICATE_DIM = "replicate"


def sbc_ranks(
    prior: xr.Dataset,
    posterior: xr.Dataset,
    var_names: Sequence[str] | None = None,
    sample_dims: Sequence[str] = ("chain", "draw"),
) -> xr.Dataset:
    """Rank of each replicate's generating prior draw among its posterior draws.

    Parameters
    ----------
    prior
        The parameter values that generated each replicate's data, dim ``replicate``
        (plus any parameter dims).
    posterior
        Posterior draws of the same variables fitted to each replicate: dims
        ``replicate`` and ``sample_dims``.
    var_names
        Variables to rank; default every variable present in both.
    sample_dims
        The posterior's draw dimensions, pooled into the ``L`` draws ranked against.

    Returns
    -------
    xarray.Dataset
        Integer ranks ``0..L`` (posterior draws strictly below the prior draw), dim
        ``replicate`` (plus parameter dims); attrs ``n_draws`` = ``L``.
    """
    names = (
        list(var_names)
        if var_names is not None
        else [str(v) for v in prior.data_vars if v in posterior.data_vars]
    )
    if not names:
        raise DiagnosticsError("prior and posterior share no variables to rank")
    for name, data in (("prior", prior), ("posterior", posterior)):
        if missing := [n for n in names if n not in data.data_vars]:
            raise DiagnosticsError(f"{missing} not in the {name} draws")
        if REPLICATE_DIM not in data.dims:
            raise DiagnosticsError(f"the {name} draws have no '{REPLICATE_DIM}' dimension")
    dims = [d for d in sample_dims if d in posterior.dims]
    if not dims:
        raise DiagnosticsError(f"the posterior has none of the sample dims {list(sample_dims)}")
    n_draws = int(np.prod([posterior.sizes[d] for d in dims]))
    ranks = (posterior[names] < prior[names]).sum(dims).astype(np.int64)
    ranks.attrs["n_draws"] = n_draws
    return ranks


def _bin_edges(n_draws: int, bins: int) -> np.ndarray:
    """Integer edges splitting the ``L + 1`` possible ranks into ``bins`` near-equal bins."""
    return np.unique(np.floor(np.linspace(0, n_draws + 1, bins + 1)).astype(np.int64))


def sbc_uniformity(ranks: xr.Dataset, bins: int | None = None) -> pd.DataFrame:
    """Pearson χ² test of uniform ranks, per parameter element.

    Parameters
    ----------
    ranks
        Output of :func:`sbc_ranks`.
    bins
        Number of rank bins; default ``min(20, replicates // 5)`` so each bin expects at
        least 5 replicates (the usual validity condition of the χ² approximation). Each
        bin's expected share is its number of possible ranks over ``L + 1``.

    Returns
    -------
    pandas.DataFrame
        Indexed by parameter (``name`` or ``name[coord]``): ``chi2``, ``dof``,
        ``p_value``, ``replications``, ``bins``. A small ``p_value`` (below 0.01, say,
        after allowing for the number of parameters tested) rejects calibration.
    """
    n_draws = int(ranks.attrs["n_draws"])
    n = ranks.sizes[REPLICATE_DIM]
    bins = bins if bins is not None else max(2, min(20, n // 5))
    edges = _bin_edges(n_draws, min(bins, n_draws + 1))
    expected = n * np.diff(edges) / (n_draws + 1)
    stacked = ranks.transpose(REPLICATE_DIM, ...)
    rows = []
    labels = element_labels(stacked.isel({REPLICATE_DIM: 0}, drop=True))
    columns = [
        np.asarray(stacked[name].values).reshape(n, -1)[:, j]
        for name in stacked.data_vars
        for j in range(int(np.prod(stacked[name].shape[1:])))
    ]
    for label, values in zip(labels, columns, strict=True):
        counts = np.histogram(values, bins=edges)[0]
        chi2, p_value = stats.chisquare(counts, expected)
        rows.append(
            {
                "parameter": label,
                "chi2": float(chi2),
                "dof": len(counts) - 1,
                "p_value": float(p_value),
                "replications": n,
                "bins": len(counts),
            }
        )
    return pd.DataFrame(rows).set_index("parameter")


def fractional_ranks(ranks: xr.Dataset) -> xr.Dataset:
    """Ranks mapped to ``(rank + 1/2) / (L + 1)``: uniform on (0, 1) when calibrated."""
    n_draws = int(ranks.attrs["n_draws"])
    return (ranks + 0.5) / (n_draws + 1)


def _draw_rank_histogram(
    da: xr.DataArray, target: Any, *, edges: np.ndarray, n_draws: int, ci_prob: float
) -> list[Any]:
    """Rank counts per bin over the band a uniform rank's bin count falls in."""
    n = da.size
    share = np.diff(edges) / (n_draws + 1)
    tail = (1 - ci_prob) / 2
    low, high = stats.binom.ppf(tail, n, share), stats.binom.ppf(1 - tail, n, share)
    artists = [
        target.fill_between(
            edges,
            np.append(low, low[-1]),
            np.append(high, high[-1]),
            step="post",
            color="0.85",
            linewidth=0,
        )
    ]
    artists += list(target.hist(da.values, bins=edges, histtype="step", color="C0")[2])
    coords = [str(da[d].item()) for d in da.coords if d in da.coords and da[d].ndim == 0]
    target.set_title(str(da.name) + (f"[{','.join(coords)}]" if coords else ""))
    target.set_xlabel(f"rank among {n_draws} posterior draws")
    target.set_ylabel("replicates")
    return artists


def plot_sbc(
    ranks: xr.Dataset,
    *,
    var_names: Sequence[str] | None = None,
    kind: Literal["ecdf", "hist"] = "ecdf",
    bins: int | None = None,
    ci_prob: float = 0.95,
) -> PlotCollection:
    """Plot SBC ranks: ArviZ's Δ-ECDF of fractional ranks, or a rank histogram.

    Parameters
    ----------
    ranks
        Output of :func:`sbc_ranks`.
    var_names
        Variables to plot; default all.
    kind
        ``"ecdf"``: :func:`arviz_plots.plot_ecdf_pit` (ECDF minus the uniform CDF with
        ArviZ's uniformity test; points outside its envelope flagged). ``"hist"``: rank
        counts in the bins of :func:`sbc_uniformity` over the pointwise ``ci_prob``
        binomial band of a uniform rank.
    bins
        Bins of the histogram (as in :func:`sbc_uniformity`).
    ci_prob
        Envelope probability.

    Returns
    -------
    arviz_plots.PlotCollection
        Matplotlib backend; figure ``pc.viz["figure"].item()``.
    """
    data = ranks[list(var_names)] if var_names is not None else ranks
    if kind == "ecdf":
        tree = xr.DataTree.from_dict({"prior_sbc": fractional_ranks(data)})
        return plot_ecdf_pit(
            tree,
            group="prior_sbc",
            sample_dims=[REPLICATE_DIM],
            envelope_prob=ci_prob,
            backend="matplotlib",
            col_wrap=4,
            figure_kwargs={"layout": "constrained"},
        )
    n_draws = int(ranks.attrs["n_draws"])
    n = ranks.sizes[REPLICATE_DIM]
    edges = _bin_edges(n_draws, bins if bins is not None else max(2, min(20, n // 5)))
    parameter_dims = [str(d) for d in data.dims if d != REPLICATE_DIM]
    pc = PlotCollection.wrap(
        data,
        cols=["__variable__", *parameter_dims],
        col_wrap=4,
        backend="matplotlib",
        figure_kwargs={"layout": "constrained"},
    )
    pc.map(
        _draw_rank_histogram,
        "rank_histogram",
        edges=edges,
        n_draws=n_draws,
        ci_prob=ci_prob,
        store_artist=False,
    )
    return pc
