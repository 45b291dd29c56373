"""η- and ε-shrinkage: how far individual estimates collapse towards the population.

η-shrinkage of parameter ``P`` (Savic & Karlsson, AAPS J 11:558, 2009) with the
posterior mean of each subject's η standing in for the EBE:

    shrinkage_P = 1 - SD_i(E[η_P,i | y]) / E[ω_P | y]

with the sample SD over subjects (``ddof=1``). Where the IIV SD differs between covariate
levels (``iiv_P``, one SD per subject) each subject's η is first divided by its own
E[ω_P,i | y]: ``1 - SD_i(E[η_P,i | y] / E[ω_P,i | y])``, the same number when every ω is
equal. Above about 0.2-0.3, plots of individual
estimates (η vs covariates, IPRED-based GOF) mislead: the estimates carry the prior, not
the data. ε-shrinkage of an observation type is ``1 - SD(IWRES)`` over its quantified
observations (IWRES as in :mod:`tpopk.diagnostics.goodness_of_fit`); when high, IPRED
follows the observations too closely for IPRED-based diagnostics to detect misfit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from arviz_plots import PlotCollection
from scipy import stats

from tpopk.diagnostics.goodness_of_fit import individual_weighted_residuals
from tpopk.diagnostics.observations import DiagnosticsError, observation_types


def eta_shrinkage(tree: xr.DataTree, var_names: Sequence[str] | None = None) -> xr.Dataset:
    """η-shrinkage per parameter with IIV.

    Parameters
    ----------
    tree
        Fit DataTree.
    var_names
        Parameters (``"cl"``) or their η variables (``"eta_cl"``); default every
        ``eta_<P>`` in the posterior.

    Returns
    -------
    xarray.Dataset
        On dim ``parameter``: ``shrinkage``, ``omega`` (posterior mean; averaged over
        subjects where it differs between them) and ``sd_eta``
        (SD over subjects of the posterior-mean η); ``eta_mean`` on
        ``(parameter, subject)``.
    """
    posterior = tree["posterior"].to_dataset()
    if var_names is None:
        names = [str(v)[4:] for v in posterior.data_vars if str(v).startswith("eta_")]
    else:
        names = [name.removeprefix("eta_") for name in var_names]
    if missing := [
        n for n in names if f"eta_{n}" not in posterior or f"omega_{n}" not in posterior
    ]:
        raise DiagnosticsError(f"no IIV (eta_/omega_ variables) for {missing} in the posterior")
    # An agonist's own parameters are indexed by its subjects (dim ``subject_<agonist>``,
    # the same IDs as ``subject``): align them on ``subject``, NaN where a subject has no
    # such parameter, so each SD is over the subjects that have it.
    means = {n: _on_subject(posterior[f"eta_{n}"].mean(("chain", "draw"))) for n in names}
    eta_mean = xr.concat(list(means.values()), dim="parameter", join="outer").assign_coords(
        parameter=names
    )
    # each subject's IIV SD: its own where it depends on a covariate level, else omega_P
    omega_subject = xr.concat(
        [
            _on_subject(posterior[f"iiv_{n}"].mean(("chain", "draw")))
            if f"iiv_{n}" in posterior
            else posterior[f"omega_{n}"].mean(("chain", "draw")).broadcast_like(means[n])
            for n in names
        ],
        dim="parameter",
        join="outer",
    ).assign_coords(parameter=names)
    omega = omega_subject.mean("subject")
    sd_eta = eta_mean.std("subject", ddof=1)
    return xr.Dataset(
        {
            "shrinkage": 1 - (eta_mean / omega_subject).std("subject", ddof=1),
            "omega": omega,
            "sd_eta": sd_eta,
            "eta_mean": eta_mean,
        }
    )


def _on_subject(eta: xr.DataArray) -> xr.DataArray:
    """``eta`` with its per-subject dim named ``subject``."""
    (dim,) = eta.dims
    return eta.rename({dim: "subject"}) if dim != "subject" else eta


def epsilon_shrinkage(tree: xr.DataTree, dvids: Sequence[str] | None = None) -> xr.DataArray:
    """ε-shrinkage ``1 - SD(IWRES)`` per observation type (BLQ observations left out).

    Returns
    -------
    xarray.DataArray
        Dim ``dvid``.
    """
    dvids = list(dvids) if dvids is not None else observation_types(tree)
    values = []
    for dvid in dvids:
        iwres = individual_weighted_residuals(tree, dvid)["iwres"].values
        values.append(1 - float(np.nanstd(iwres, ddof=1)))
    return xr.DataArray(values, dims="dvid", coords={"dvid": dvids}, name="epsilon_shrinkage")


#: Panels per row of :func:`plot_eta_shrinkage`.
COLUMNS = 4


def _draw_eta(
    da: xr.DataArray, target: Any, *, omega: xr.DataArray, shrinkage: xr.DataArray
) -> list[Any]:
    """Histogram of posterior-mean η with the N(0, ω) density the IIV model implies."""
    artists = list(target.hist(da.values, bins=15, density=True, alpha=0.6)[2])
    sd = float(omega)
    grid = np.linspace(-4 * sd, 4 * sd, 200)
    artists += target.plot(grid, stats.norm.pdf(grid, scale=sd), color="k", linewidth=1)
    # two lines: parameter names of agonist-specific IIV are long
    target.set_title(
        f"η {da['parameter'].item()}\nshrinkage {100 * float(shrinkage):.0f}%", fontsize="medium"
    )
    target.set_xlabel("posterior mean η")
    return artists


def plot_eta_shrinkage(shrinkage_data: xr.Dataset) -> PlotCollection:
    """One panel per parameter: posterior-mean η against N(0, ω), shrinkage in the title.

    Parameters
    ----------
    shrinkage_data
        Output of :func:`eta_shrinkage`.

    Returns
    -------
    arviz_plots.PlotCollection
        Matplotlib backend; figure ``pc.viz["figure"].item()``.
    """
    panels = shrinkage_data.sizes["parameter"]
    columns = min(panels, COLUMNS)
    pc = PlotCollection.wrap(
        shrinkage_data[["eta_mean"]],
        cols=["parameter"],
        col_wrap=COLUMNS,
        backend="matplotlib",
        # a fixed size per panel, so titles and ticks keep their room however many
        figure_kwargs={
            "figsize": (3.2 * columns, 2.8 * -(-panels // COLUMNS)),
            "layout": "constrained",
        },
    )
    pc.map(
        _draw_eta,
        "eta",
        omega=shrinkage_data["omega"],
        shrinkage=shrinkage_data["shrinkage"],
        store_artist=False,
    )
    return pc
