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

:func:`simulate_sbc` runs the replicates of a PyMC model with nutpie, in this process or
on Dask (:func:`tpopk.parallel.run_tasks`); :func:`sbc_ranks` ranks prior draws among
posterior draws from anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr
from arviz_plots import PlotCollection, plot_ecdf_pit
from scipy import stats

from tpopk.diagnostics.convergence import element_labels
from tpopk.diagnostics.observations import DiagnosticsError
from tpopk.parallel import run_tasks

if TYPE_CHECKING:
    import pymc as pm

#: Dimension that indexes the SBC replicates.
REPLICATE_DIM = "replicate"
#: Groups :func:`simulate_sbc` returns besides ``ranks``.
SBC_GROUPS = ("prior", "posterior", "observed_data", "sample_stats")


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


def _replicate_seeds(seed: int, index: int) -> tuple[int, int]:
    """Seeds of replicate ``index``'s prior draw and of its fit: a function of both alone."""
    prior_seed, fit_seed = np.random.SeedSequence((seed, index)).generate_state(2)
    return int(prior_seed), int(fit_seed)


def _dims(model: pm.Model, name: str) -> tuple[str, ...]:
    """Dimension names of a model variable, PyMC's ``<name>_dim_<i>`` where it has none."""
    named = model.named_vars_to_dims.get(name) or (None,) * model[name].ndim
    return tuple(d if d is not None else f"{name}_dim_{i}" for i, d in enumerate(named))


def _sbc_chunk(
    model: pm.Model,
    var_names: list[str],
    indices: list[int],
    seed: int,
    settings: dict[str, Any],
) -> dict[str, xr.Dataset]:
    """Replicates ``indices``, dim ``replicate``: one dataset per group of ``SBC_GROUPS``.

    The forward sampler and nutpie's model are compiled once per chunk; each replicate
    reseeds the sampler's RNGs and swaps the observations in as shared data.
    """
    import nutpie
    import pymc as pm
    import pytensor
    from pymc.pytensorf import reseed_rngs
    from pymc.sampling.forward import compile_forward_sampling_function

    observed = [str(rv.name) for rv in model.observed_RVs]
    outputs = [model[name] for name in [*var_names, *observed]]
    forward, _ = compile_forward_sampling_function(
        outputs, vars_in_trace=[], basic_rvs=model.basic_RVs, random_seed=False
    )
    rngs = [v for v in forward.get_shared() if isinstance(v.get_value(), np.random.Generator)]
    shared = {
        name: pytensor.shared(
            np.asarray(model.rvs_to_values[model[name]].eval()), name=f"sbc_{name}"
        )
        for name in observed
    }
    fitted = pm.observe(model, {name: shared[name] for name in observed})
    compiled = nutpie.compile_pymc_model(fitted, var_names=var_names)
    dims = {name: _dims(model, name) for name in [*var_names, *observed]}
    coords = {
        d: (d, list(model.coords[d])) for ds in dims.values() for d in ds if d in model.coords
    }
    groups: dict[str, list[xr.Dataset]] = {g: [] for g in SBC_GROUPS}
    for index in indices:
        prior_seed, fit_seed = _replicate_seeds(seed, index)
        reseed_rngs(rngs, prior_seed)
        values = dict(zip([*var_names, *observed], forward(), strict=True))
        data = {name: np.asarray(values[name], dtype=shared[name].dtype) for name in observed}
        tree = nutpie.sample(
            compiled.with_data(**{f"sbc_{name}": y for name, y in data.items()}),
            draws=settings["draws"],
            tune=settings["tune"],
            chains=settings["chains"],
            cores=1,
            seed=fit_seed,
            target_accept=settings["target_accept"],
            progress_bar=False,
        )
        posterior = tree["posterior"].to_dataset()
        n_samples = posterior.sizes["chain"] * posterior.sizes["draw"]
        keep = np.linspace(0, n_samples - 1, settings["keep"]).round().astype(int)
        thinned: dict[str, Any] = {}
        for name in var_names:
            flat = np.asarray(posterior[name].values).reshape(n_samples, *np.shape(values[name]))
            thinned[name] = (("draw", *dims[name]), flat[keep])
        divergences = int(tree["sample_stats"]["diverging"].sum())
        by_group: dict[str, dict[str, Any]] = {
            "prior": {name: (dims[name], values[name]) for name in var_names},
            "posterior": thinned,
            "observed_data": {name: (dims[name], data[name]) for name in observed},
            "sample_stats": {"divergences": ((), divergences)},
        }
        for group, variables in by_group.items():
            groups[group].append(xr.Dataset(variables, coords=coords))
    return {group: xr.concat(parts, dim=REPLICATE_DIM) for group, parts in groups.items()}


def simulate_sbc(
    model: pm.Model,
    var_names: Sequence[str],
    *,
    replications: int = 100,
    draws: int = 250,
    tune: int = 500,
    chains: int = 2,
    keep: int = 99,
    target_accept: float = 0.8,
    seed: int = 0,
    chunk: int = 25,
    scheduler: str | None = None,
    progressbar: bool = False,
) -> xr.DataTree:
    """Simulation-based calibration of ``model`` with nutpie: simulate, fit, rank.

    Replicate ``i`` draws every variable and the observations from the prior (the
    model's observed variables are replaced by the simulated values), fits them with
    nutpie and keeps ``keep`` evenly thinned posterior draws of ``var_names``. Its seeds
    derive from ``(seed, i)`` alone, so the ranks do not depend on ``chunk``, on
    ``scheduler`` nor on ``replications`` (the first ``n`` replicates of a longer run
    are those of a run of ``n``).

    Parameters
    ----------
    model
        A PyMC model with at least one observed variable (its values are ignored), e.g.
        the one :func:`tpopk.model.build_model` returns; pickled to Dask workers.
    var_names
        Variables ranked (free or deterministic).
    replications
        Number of replicates.
    draws, tune, chains, target_accept
        nutpie's settings for each fit; chains run one after another (``cores=1``), so a
        single-threaded Dask worker runs one fit at a time.
    keep
        Posterior draws ranked per replicate (``L``), thinned evenly over all chains'
        draws; should not exceed the bulk ESS.
    seed
        Seed of the whole run.
    chunk
        Replicates per job; each job compiles the model once.
    scheduler
        Where the jobs run (:func:`tpopk.parallel.run_tasks`): ``None`` here,
        ``"local"`` on a local Dask cluster, else a Dask scheduler's address.
    progressbar
        Show progress over jobs.

    Returns
    -------
    xarray.DataTree
        Groups, all with ``replicate = 0..replications-1``: ``/ranks``
        (:func:`sbc_ranks`), ``/prior`` (the generating values of ``var_names``),
        ``/observed_data`` (the simulated observations), ``/posterior`` (the thinned
        draws, dims ``replicate, draw``) and ``/sample_stats`` (``divergences`` per
        replicate).

    Raises
    ------
    DiagnosticsError
        If the model has no observed variable, ``var_names`` is empty or names a
        variable the model lacks, or ``keep`` exceeds ``chains * draws``.
    """
    names = list(var_names)
    if not model.observed_RVs:
        raise DiagnosticsError("the model has no observed variable to simulate and fit")
    if not names:
        raise DiagnosticsError("var_names is empty: name the variables to rank")
    if missing := [name for name in names if name not in model.named_vars]:
        raise DiagnosticsError(f"{missing} are not variables of the model")
    if not 1 <= keep <= chains * draws:
        raise DiagnosticsError(f"keep must be in 1..chains*draws = {chains * draws}, got {keep}")
    if replications < 1 or chunk < 1:
        raise DiagnosticsError(f"replications and chunk must be >= 1, got {replications}, {chunk}")
    settings = {"draws": draws, "tune": tune, "chains": chains, "target_accept": target_accept}
    settings["keep"] = keep
    jobs = [
        (model, names, list(range(start, min(start + chunk, replications))), seed, settings)
        for start in range(0, replications, chunk)
    ]
    chunks = run_tasks(
        _sbc_chunk, jobs, scheduler=scheduler, progressbar=progressbar, desc="SBC replicates"
    )
    coords = {REPLICATE_DIM: np.arange(replications)}
    groups = {
        group: xr.concat([c[group] for c in chunks], dim=REPLICATE_DIM).assign_coords(coords)
        for group in SBC_GROUPS
    }
    ranks = sbc_ranks(groups["prior"], groups["posterior"], sample_dims=("draw",))
    return xr.DataTree.from_dict({"ranks": ranks, **groups})


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
