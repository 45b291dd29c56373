"""Goodness of fit: observations against population and individual predictions, and IWRES.

IPRED is the posterior median of ``ipred_<dvid>`` (the individual prediction with each
subject's own η), PRED that of ``pred_<dvid>`` (η = 0), both stored by
:func:`tpopk.inference.fit`. IWRES is the observation's
residual scaled by the residual-error SD at IPRED, the plug-in version of NONMEM's
IWRES with posterior medians for IPRED and the sigmas; the error model is read from
which ``sigma_<kind>_<dvid>`` variables the posterior holds:

- additive: ``(DV - IPRED) / sigma_add``
- proportional: ``(DV - IPRED) / (sigma_prop * IPRED)``
- combined: ``(DV - IPRED) / sqrt(sigma_add^2 + (sigma_prop * IPRED)^2)``
- lognormal: ``(log DV - log IPRED) / sigma_log``

BLQ observations (their DV is the LLOQ) have no residual: IWRES is ``nan`` there and the
plots leave them out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import xarray as xr
from arviz_plots import PlotCollection

from tpopk.diagnostics.observations import (
    DiagnosticsError,
    observations,
    population_prediction,
)


def _median(tree: xr.DataTree, name: str) -> xr.DataArray:
    return tree["posterior"].to_dataset()[name].median(("chain", "draw"))


def individual_weighted_residuals(tree: xr.DataTree, dvid: str) -> xr.Dataset:
    """IPRED (posterior median) and IWRES of each observation of one type.

    Returns
    -------
    xarray.Dataset
        :func:`~tpopk.diagnostics.observations.observations` plus ``ipred`` and ``iwres``
        on dim ``obs_<dvid>``.
    """
    data = observations(tree, dvid)
    ipred = _median(tree, f"ipred_{dvid}").values
    dv = data["dv"].values
    sds = _residual_sds(tree, data, dvid)
    if not sds:
        raise DiagnosticsError(f"no residual-error SD (sigma_*_{dvid}) in the posterior")
    zeros = np.zeros(dv.shape)
    log_sd = sds.get("log", np.full(dv.shape, np.nan))
    variance = np.nan_to_num(sds.get("add", zeros)) ** 2
    variance = variance + (np.nan_to_num(sds.get("prop", zeros)) * ipred) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        iwres = np.where(
            np.isfinite(log_sd),
            (np.log(dv) - np.log(ipred)) / log_sd,
            (dv - ipred) / np.sqrt(np.where(variance > 0, variance, np.nan)),
        )
    data["ipred"] = (f"obs_{dvid}", ipred)
    data["iwres"] = (f"obs_{dvid}", np.where(data["blq"].values, np.nan, iwres))
    return data


def _residual_sds(tree: xr.DataTree, data: xr.Dataset, dvid: str) -> dict[str, npt.NDArray[Any]]:
    """Posterior-median residual SD per observation, by error kind present.

    A cross-agonist fit gives each agonist its own concentration error,
    ``sigma_<kind>_<dvid>_<agonist>``, which applies to that agonist's subjects' rows.
    A residual with ``sigma_by`` gives the subjects at each listed level of its covariate
    that level's sigma: a posterior variable whose attrs ``sigma_by`` and ``level`` name
    the covariate and the level (:func:`tpopk.inference.fit` writes them).
    """
    posterior = tree["posterior"]
    n = data.sizes[f"obs_{dvid}"]
    agonist = (
        np.char.lower(data["AGONIST"].values.astype(str)) if "AGONIST" in data else np.full(n, "")
    )
    # each row's observation name in the fit: the DVID, or DVID_<agonist> where the
    # agonist has its own sigma
    fit_name = np.full(n, dvid, dtype=object)
    for name in np.unique(agonist):
        if name and any(f"sigma_{kind}_{dvid}_{name}" in posterior for kind in _KINDS):
            fit_name[agonist == name] = f"{dvid}_{name}"
    level_sigmas = _level_sigmas(posterior.to_dataset(), data, set(fit_name))
    sds = {}
    for kind in _KINDS:
        values = np.full(n, np.nan)
        for name in np.unique(fit_name):
            rows = fit_name == name
            if f"sigma_{kind}_{name}" in posterior:
                values[rows] = float(_median(tree, f"sigma_{kind}_{name}"))
            for level, at_level in level_sigmas.get(f"sigma_{kind}_{name}", []):
                values[rows & at_level] = float(_median(tree, f"sigma_{kind}_{name}_{level}"))
        if np.isfinite(values).any():
            sds[kind] = values
    return sds


_KINDS = ("add", "prop", "log")


def _level_sigmas(
    posterior: xr.Dataset, data: xr.Dataset, names: set[str]
) -> dict[str, list[tuple[str, npt.NDArray[np.bool_]]]]:
    """``{sigma: [(level, rows at that level)]}`` of the ``sigma_by`` sigmas in the posterior.

    ``sigma`` is the one-sigma name (``sigma_log_plt``); its level sigmas are
    ``<sigma>_<level>`` with attrs ``sigma_by`` (the covariate) and ``level``.
    """
    found: dict[str, list[tuple[str, npt.NDArray[np.bool_]]]] = {}
    for variable in map(str, posterior.data_vars):
        attrs = posterior[variable].attrs
        if "sigma_by" not in attrs:
            continue
        column, level = str(attrs["sigma_by"]), str(attrs["level"])
        sigma = variable.removesuffix(f"_{level}")
        if not any(sigma == f"sigma_{kind}_{name}" for kind in _KINDS for name in names):
            continue
        if column not in data:
            raise DiagnosticsError(
                f"'{variable}' applies to subjects with {column} = {level}, but the "
                f"observations have no {column} covariate"
            )
        found.setdefault(sigma, []).append((level, data[column].values.astype(str) == level))
    return found


def goodness_of_fit(tree: xr.DataTree, dvid: str) -> xr.Dataset:
    """Observations with PRED, IPRED and IWRES, for the classic four GOF panels.

    Parameters
    ----------
    tree
        Fit DataTree.
    dvid
        Observation type.

    Returns
    -------
    xarray.Dataset
        On dim ``obs_<dvid>``: ``dv``, ``time``, ``subject``, ``blq``, ``lloq``,
        covariates, ``ipred``, ``iwres`` and, where the posterior holds ``pred_<dvid>``,
        ``pred`` (without it the DV-vs-PRED panel is left out). Attrs ``dvid``,
        ``units``, ``time_units``.
    """
    data = individual_weighted_residuals(tree, dvid)
    prediction = population_prediction(tree, dvid)
    if prediction is not None:
        data["pred"] = (f"obs_{dvid}", prediction)
    data.attrs["dvid"] = dvid
    return data


def _scatter(
    da: xr.DataArray,
    target: Any,
    *,
    x: xr.DataArray,
    y: xr.DataArray,
    x_label: str,
    y_label: str,
    identity: bool,
) -> list[Any]:
    """Points (BLQ left out), a zero or identity reference line and axis labels."""
    keep = np.isfinite(x.values) & np.isfinite(y.values)
    artists: list[Any] = [target.scatter(x.values[keep], y.values[keep], s=8, alpha=0.6)]
    if identity:
        low = float(min(x.values[keep].min(), y.values[keep].min()))
        high = float(max(x.values[keep].max(), y.values[keep].max()))
        artists += target.plot([low, high], [low, high], color="k", linewidth=1)
    else:
        artists.append(target.axhline(0.0, color="k", linewidth=1))
    target.set_xlabel(x_label)
    target.set_ylabel(y_label)
    target.set_title(f"{y_label} vs {x_label}")
    return artists


def plot_goodness_of_fit(gof_data: xr.Dataset) -> PlotCollection:
    """DV vs PRED (when given), DV vs IPRED, IWRES vs time and IWRES vs IPRED.

    Parameters
    ----------
    gof_data
        Output of :func:`goodness_of_fit`.

    Returns
    -------
    arviz_plots.PlotCollection
        One panel per plot, matplotlib backend; figure ``pc.viz["figure"].item()``.
    """
    dvid, units = gof_data.attrs["dvid"], gof_data.attrs["units"]
    dv = gof_data["dv"].where(~gof_data["blq"])
    observed = f"{dvid} ({units})"
    panels = {
        "dv_vs_pred": ("pred", dv, f"PRED ({units})", observed, True),
        "dv_vs_ipred": ("ipred", dv, f"IPRED ({units})", observed, True),
        "iwres_vs_time": (
            "time",
            gof_data["iwres"],
            f"time ({gof_data.attrs['time_units']})",
            "IWRES",
            False,
        ),
        "iwres_vs_ipred": ("ipred", gof_data["iwres"], f"IPRED ({units})", "IWRES", False),
    }
    panels = {k: v for k, v in panels.items() if v[0] in gof_data}
    layout = xr.Dataset({name: xr.DataArray(0.0) for name in panels})
    pc = PlotCollection.wrap(
        layout,
        cols=["__variable__"],
        col_wrap=2 if len(panels) == 4 else 3,
        backend="matplotlib",
        figure_kwargs={
            "figsize": (9.0, 7.0) if len(panels) == 4 else (13.5, 3.5),
            "layout": "constrained",
        },
    )
    for name, (x_name, y, x_label, y_label, identity) in panels.items():
        pc.map(
            _scatter,
            name,
            data=layout[[name]],
            x=gof_data[x_name],
            y=y,
            x_label=x_label,
            y_label=y_label,
            identity=identity,
            store_artist=False,
        )
    return pc
