"""Normalised prediction distribution errors (NPDE) from simulated replicates.

For subject ``i`` with observations ``y_i`` (vector of ``n_i``) and ``K`` simulated
replicates ``y_i^(k)`` (Brendel, Comets, Laffont, Laveille & Mentré, Pharm Res 23:2036,
2006; Comets, Brendel & Mentré, CMPB 90:154, 2008):

1. ``E_i`` and ``V_i``: mean vector and covariance matrix of the replicates.
2. Decorrelation by the Cholesky factor ``V_i = L_i L_i^T`` (the default of the R
   package npde): ``y*_i = L_i^{-1} (y_i - E_i)`` and ``y*_i^(k) = L_i^{-1} (y_i^(k) - E_i)``.
   Within-subject correlation (shared η) would otherwise make the errors dependent.
3. ``pde_ij`` = fraction of replicates with ``y*_ij^(k) < y*_ij``; 0 and 1 are moved to
   ``1/(2K)`` and ``1 - 1/(2K)``.
4. ``npde_ij = Φ^{-1}(pde_ij)``: N(0, 1), independent, when the model is right.

``npd`` is the same without step 2 (each observation against its own marginal). BLQ
observations are left out of each subject's vector (``nan``); imputing them (Nguyen et al.
2012) is not done. The replicates should be new-subject simulations from the population
model; the fitted ``posterior_predictive`` group reuses each subject's posterior η, which
conditions on the data and pulls the NPDE towards 0 (variance below 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from arviz_plots import PlotCollection
from scipy import stats

from tpopk.diagnostics.observations import DiagnosticsError, observations, simulated_draws

FloatArray = npt.NDArray[np.float64]


def prediction_discrepancies(
    observed: FloatArray, replicates: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Decorrelated and plain prediction discrepancies of one subject.

    Parameters
    ----------
    observed
        ``(n,)`` observations of the subject.
    replicates
        ``(K, n)`` simulated replicates of the same observations.

    Returns
    -------
    (pde, pd)
        ``(n,)`` each, in ``[1/(2K), 1 - 1/(2K)]``.
    """
    k = len(replicates)
    mean = replicates.mean(axis=0)
    covariance = np.atleast_2d(np.cov(replicates, rowvar=False))
    try:
        factor = np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:
        raise DiagnosticsError(
            "the replicates of a subject have a singular covariance (fewer replicates than "
            "observations, or an observation that never varies); use more draws"
        ) from None
    decorrelated = np.linalg.solve(factor, observed - mean)
    simulated = np.linalg.solve(factor, (replicates - mean).T).T
    low, high = 1 / (2 * k), 1 - 1 / (2 * k)
    pde = np.clip((simulated < decorrelated).mean(axis=0), low, high)
    plain = np.clip((replicates < observed).mean(axis=0), low, high)
    return pde, plain


def npde(
    tree: xr.DataTree,
    dvid: str,
    *,
    group: str = "posterior_predictive",
    num_draws: int | None = 1000,
    seed: int = 0,
) -> xr.Dataset:
    """NPDE and NPD of each observation of one type (see the module docstring).

    Parameters
    ----------
    tree
        Fit DataTree.
    dvid
        Observation type.
    group
        Group holding the replicates ``y_<dvid>`` (dims ``chain, draw, obs_<dvid>``).
    num_draws
        Number of replicates used (seeded random subset; all if ``None``).
    seed
        Seed of the subset.

    Returns
    -------
    xarray.Dataset
        :func:`~tpopk.diagnostics.observations.observations` plus ``npde`` and ``npd`` on
        dim ``obs_<dvid>`` (``nan`` on BLQ rows). Attrs: ``mean``, ``variance``,
        ``p_mean`` (t-test of mean 0), ``p_variance`` (chi-square test of variance 1),
        ``p_normal`` (Shapiro-Wilk) and ``p_global`` (smallest of the three times 3,
        Bonferroni, as in the npde package).
    """
    data = observations(tree, dvid)
    replicates = simulated_draws(tree, dvid, group, num_draws, seed)
    dv, blq, subject = data["dv"].values, data["blq"].values, data["subject"].values
    pde = np.full(len(dv), np.nan)
    plain = np.full(len(dv), np.nan)
    for who in np.unique(subject):
        rows = np.flatnonzero((subject == who) & ~blq)
        if rows.size:
            pde[rows], plain[rows] = prediction_discrepancies(dv[rows], replicates[:, rows])
    values = stats.norm.ppf(pde)
    data["npde"] = (f"obs_{dvid}", values)
    data["npd"] = (f"obs_{dvid}", stats.norm.ppf(plain))
    data.attrs |= {"dvid": dvid, "n_replicates": len(replicates), **npde_tests(values)}
    return data


def npde_tests(values: FloatArray) -> dict[str, float]:
    """Mean, variance and the tests of N(0, 1) of Comets et al. (2008) on finite NPDE."""
    x = values[np.isfinite(values)]
    n = len(x)
    variance = float(np.var(x, ddof=1))
    chi2 = (n - 1) * variance
    p_variance = float(2 * min(stats.chi2.cdf(chi2, n - 1), stats.chi2.sf(chi2, n - 1)))
    p_mean = float(stats.ttest_1samp(x, 0.0).pvalue)
    p_normal = float(stats.shapiro(x).pvalue)
    return {
        "mean": float(np.mean(x)),
        "variance": variance,
        "p_mean": p_mean,
        "p_variance": p_variance,
        "p_normal": p_normal,
        "p_global": min(1.0, 3 * min(p_mean, p_variance, p_normal)),
    }


def _draw_npde(
    da: xr.DataArray, target: Any, *, panel: str, time: xr.DataArray, pred: xr.DataArray | None
) -> list[Any]:
    values = da.values
    keep = np.isfinite(values)
    if panel == "qq":
        theoretical = stats.norm.ppf((np.arange(1, keep.sum() + 1) - 0.5) / keep.sum())
        artists = [target.scatter(theoretical, np.sort(values[keep]), s=8)]
        artists += target.plot(theoretical, theoretical, color="k", linewidth=1)
        target.set_xlabel("N(0, 1) quantile")
        target.set_ylabel("NPDE quantile")
        target.set_title("QQ plot against N(0, 1)")
    elif panel == "histogram":
        artists = list(target.hist(values[keep], bins=20, density=True, alpha=0.6)[2])
        grid = np.linspace(-4, 4, 200)
        artists += target.plot(grid, stats.norm.pdf(grid), color="k", linewidth=1)
        target.set_xlabel("NPDE")
        target.set_title("distribution")
    else:
        x = time if panel == "time" else pred
        assert x is not None  # plot_npde draws the PRED panel only when PRED is given
        artists = [target.scatter(x.values[keep], values[keep], s=8, alpha=0.6)]
        for level in (-1.96, 0.0, 1.96):
            artists.append(target.axhline(level, color="k", linewidth=1, linestyle=":"))
        name = "time" if panel == "time" else "PRED"
        target.set_xlabel(f"{name} ({x.attrs['units']})")
        target.set_ylabel("NPDE")
        target.set_title(f"NPDE vs {name}")
    return artists


def plot_npde(npde_data: xr.Dataset, pred: npt.ArrayLike | None = None) -> PlotCollection:
    """QQ plot, histogram against the N(0, 1) density, NPDE against time and PRED.

    Parameters
    ----------
    npde_data
        Output of :func:`npde`.
    pred
        Population prediction (η = 0) of each observation, aligned with ``obs_<dvid>``
        (:func:`tpopk.diagnostics.population_prediction`); without it the NPDE-vs-PRED
        panel is left out.

    Returns
    -------
    arviz_plots.PlotCollection
        Three or four panels, matplotlib backend; figure ``pc.viz["figure"].item()``.
    """
    dvid = npde_data.attrs["dvid"]
    prediction = None if pred is None else np.asarray(pred, dtype=float).ravel()
    size = npde_data.sizes[f"obs_{dvid}"]
    if prediction is not None and prediction.size != size:
        raise DiagnosticsError(
            f"PRED of '{dvid}' has {prediction.size} values but there are {size} '{dvid}' "
            "observations (give one value per obs_<dvid> position, in order)"
        )
    panels = ("qq", "histogram", "time", *(("pred",) if prediction is not None else ()))
    layout = xr.Dataset(dict.fromkeys(panels, npde_data["npde"]))
    pc = PlotCollection.wrap(
        layout,
        cols=["__variable__"],
        col_wrap=2 if len(panels) == 4 else 3,
        backend="matplotlib",
        figure_kwargs={
            "figsize": (9.0, 7.0) if len(panels) == 4 else (12.0, 3.5),
            "layout": "constrained",
        },
    )
    time = npde_data["time"].assign_attrs(units=npde_data.attrs["time_units"])
    pred_data = (
        xr.DataArray(prediction, dims=f"obs_{dvid}", attrs={"units": npde_data.attrs["units"]})
        if prediction is not None
        else None
    )
    for panel in panels:
        pc.map(
            _draw_npde,
            panel,
            data=layout[[panel]],
            panel=panel,
            time=time,
            pred=pred_data,
            store_artist=False,
        )
    pc.add_title(f"NPDE of {npde_data.attrs['dvid']}")
    return pc
