"""Convergence of the sampler: R-hat, effective sample sizes, MCSE, divergences and E-BFMI.

The numbers come from ArviZ's summary (rank-normalised split R-hat and bulk/tail ESS of
Vehtari et al. 2021; E-BFMI of Betancourt 2016); this module selects the population
parameters, lays the numbers out as one table per fit and turns the usual thresholds
into plain-language warnings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from arviz_plots import PlotCollection

from tpopk.model.levels import population_variables

#: The per-parameter columns of :func:`convergence`, as ArviZ's summary names them.
DIAGNOSTICS = ("r_hat", "ess_bulk", "ess_tail", "mcse_mean", "mcse_sd")


def element_labels(data: xr.Dataset) -> list[str]:
    """``name`` or ``name[coord, ...]`` for every scalar element of each variable, in order.

    Elements are named by their coordinate values (``pop_tp_agonist[romiplostim]``), not
    positions, as ArviZ's summary labels them, and come in C order (``np.ravel``'s).
    """
    labels = []
    for name, array in data.data_vars.items():
        for index in np.ndindex(array.shape):
            coords = [str(array[dim].values[i]) for dim, i in zip(array.dims, index, strict=True)]
            labels.append(str(name) + (f"[{', '.join(coords)}]" if coords else ""))
    return labels


def parameter_summary(
    tree: xr.DataTree,
    var_names: Sequence[str] | None = None,
    *,
    ci_prob: float = 0.9,
    diagnostics: bool = True,
) -> pd.DataFrame:
    """ArviZ's summary (``az.summary``, unrounded) of the population parameters, with the median.

    Parameters
    ----------
    tree
        Fit DataTree with a ``posterior`` group.
    var_names
        Posterior variables; default the population-level ones
        (:func:`tpopk.model.population_variables`).
    ci_prob
        Probability of the equal-tailed credible interval.
    diagnostics
        Add ArviZ's chain diagnostics (``False`` for draws that are not Markov chains).

    Returns
    -------
    pandas.DataFrame
        One row per element, labelled as ArviZ does (``beta_cl_DISEASE[ITP]``); columns
        ``mean``, ``sd``, ``eti<ci>_lb``, ``median``, ``eti<ci>_ub`` and with
        ``diagnostics`` ``ess_bulk``, ``ess_tail``, ``r_hat``, ``mcse_mean``, ``mcse_sd``.
    """
    names = list(var_names) if var_names is not None else population_variables(tree)
    options: dict[str, Any] = {"var_names": names, "ci_prob": ci_prob, "round_to": "none"}
    kind = "all" if diagnostics else "stats"
    table: pd.DataFrame = az.summary(tree, kind=kind, ci_kind="eti", **options)
    median = az.summary(tree, kind="stats_median", **options)["median"]
    table.insert(3, "median", median)  # between the interval bounds: lower, median, upper
    table.index.name = "parameter"
    return table


def convergence(
    tree: xr.DataTree,
    var_names: Sequence[str] | None = None,
    coords: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Tabulate R-hat and bulk/tail ESS per parameter, divergences and E-BFMI per chain.

    Parameters
    ----------
    tree
        Fit DataTree with ``posterior`` and ``sample_stats`` groups.
    var_names
        Posterior variables to check; default the population-level ones
        (:func:`tpopk.model.population_variables`). Vector variables give one row per element.
    coords
        Selection applied first, e.g. ``{"subject": [1, 2]}`` with ``var_names=["cl"]``.

    Returns
    -------
    xarray.Dataset
        ``r_hat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``, ``mcse_sd`` (ArviZ's summary)
        on dim ``parameter`` (labels like ``beta_cl_DISEASE[itp]``); ``divergences``
        (count after warm-up), ``draws`` and ``bfmi`` (E-BFMI) on dim ``chain``.
    """
    names = list(var_names) if var_names is not None else population_variables(tree)
    table = az.summary(tree, var_names=names, coords=coords, kind="diagnostics", round_to="none")[
        list(DIAGNOSTICS)
    ]
    posterior = tree["posterior"].to_dataset()
    stats = tree["sample_stats"].to_dataset()
    chain = posterior["chain"].values
    divergences = (
        stats["diverging"].sum("draw").values
        if "diverging" in stats
        else np.zeros(len(chain), dtype=np.int64)
    )
    bfmi = (
        np.asarray(az.bfmi(tree)["energy"].values, dtype=float)
        if "energy" in stats
        else np.full(len(chain), np.nan)
    )
    return xr.Dataset(
        {
            **{column: ("parameter", table[column].to_numpy()) for column in DIAGNOSTICS},
            "divergences": ("chain", np.asarray(divergences, dtype=np.int64)),
            "draws": ("chain", np.full(len(chain), posterior.sizes["draw"])),
            "bfmi": ("chain", bfmi),
        },
        coords={"parameter": table.index.to_numpy(dtype=str), "chain": chain},
    )


def convergence_warnings(
    table: xr.Dataset,
    *,
    rhat_max: float = 1.01,
    ess_min: float = 400.0,
    bfmi_min: float = 0.3,
) -> list[str]:
    """Say in plain words what is wrong with the sampling, one sentence per problem.

    Parameters
    ----------
    table
        Output of :func:`convergence`.
    rhat_max
        R-hat above this means the chains have not mixed (Vehtari et al. 2021: 1.01).
    ess_min
        Bulk or tail ESS below this is too few effective draws for stable 90% intervals.
    bfmi_min
        E-BFMI below this means the sampler explores the energy poorly (Betancourt 2016).

    Returns
    -------
    list of str
        Empty when nothing crosses a threshold.
    """
    messages = []

    def listed(mask: np.ndarray, column: str) -> str:
        chosen = table[column].values[mask]
        names = table["parameter"].values[mask]
        shown = ", ".join(f"{n} ({v:.3g})" for n, v in list(zip(names, chosen, strict=True))[:8])
        more = f" and {mask.sum() - 8} more" if mask.sum() > 8 else ""
        return shown + more

    high_rhat = np.asarray(table["r_hat"].values > rhat_max)
    if high_rhat.any():
        messages.append(
            f"R-hat is above {rhat_max} for {high_rhat.sum()} parameter(s): "
            f"{listed(high_rhat, 'r_hat')}. The chains disagree; run longer or "
            "reparameterise before trusting the estimates."
        )
    for column, kind in (("ess_bulk", "bulk"), ("ess_tail", "tail")):
        low = np.asarray(table[column].values < ess_min)
        if low.any():
            messages.append(
                f"The {kind} effective sample size is below {ess_min:g} for {low.sum()} "
                f"parameter(s): {listed(low, column)}. "
                + (
                    "Means and medians are imprecise; draw more samples."
                    if kind == "bulk"
                    else "Interval bounds are imprecise; draw more samples."
                )
            )
    divergences = int(table["divergences"].sum())
    if divergences:
        total = int(table["draws"].sum())
        messages.append(
            f"{divergences} of {total} draws ({100 * divergences / total:.2g}%) ended in a "
            "divergence: the sampler could not follow the posterior's curvature, so the "
            "draws may be biased. Raise target_accept or reparameterise."
        )
    low_bfmi = np.asarray(table["bfmi"].values < bfmi_min)
    if low_bfmi.any():
        chains = ", ".join(str(c) for c in table["chain"].values[low_bfmi])
        values = ", ".join(f"{v:.2f}" for v in table["bfmi"].values[low_bfmi])
        messages.append(
            f"E-BFMI is below {bfmi_min} in chain(s) {chains} ({values}): the sampler "
            "explores the tails poorly (often a funnel in the IIV); consider a "
            "non-centred or rescaled parameterisation."
        )
    return messages


def plot_convergence(
    tree: xr.DataTree,
    var_names: Sequence[str] | None = None,
    coords: Mapping[str, Any] | None = None,
) -> PlotCollection:
    """Rank plots per chain and the marginal posterior of each checked parameter.

    Uniform, overlapping rank distributions across chains mean the chains mixed.

    Parameters
    ----------
    tree
        Fit DataTree.
    var_names, coords
        As in :func:`convergence`.

    Returns
    -------
    arviz_plots.PlotCollection
        Matplotlib backend; the figure is ``pc.viz["figure"].item()``.
    """
    names = list(var_names) if var_names is not None else population_variables(tree)
    # One row (rank, density) per parameter element, however many: ArviZ refuses more than
    # rcParams["plot.max_subplots"] (40) panels, and a two-agonist study has ~40 elements.
    selected = tree["posterior"].dataset[names]
    if coords:
        selected = selected.sel(coords)
    panels = 2 * sum(int(np.prod(v.shape[2:], dtype=int)) for v in selected.data_vars.values())
    limit = max(int(az.rcParams["plot.max_subplots"]), panels)
    with az.rc_context({"plot.max_subplots": limit}):
        pc = az.plot_rank_dist(
            tree,
            var_names=names,
            coords=coords,
            backend="matplotlib",
            # room per row for the test's p-value above the ranks and a long y label
            figure_kwargs={"figsize": (12.0, 2.2 * len(names)), "layout": "constrained"},
        )
    # each row's x labels would sit under the row below (the y labels name the rows):
    # keep only "Fractional ranks" under the last rank panel
    for axes in pc.viz["figure"].item().axes:
        spec = axes.get_subplotspec()
        if spec is not None and not (spec.is_last_row() and spec.is_last_col()):
            axes.set_xlabel("")
    return pc
