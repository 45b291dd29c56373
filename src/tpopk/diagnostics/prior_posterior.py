"""How much the data moved each population parameter away from its prior.

The measure is Garrett & Zeger's percentage overlap (Biometrics 56:1055, 2000): the area
shared by the prior and posterior densities, ``∫ min(p_prior, p_posterior)``, from 0
(the data decided) to 1 (the posterior is the prior). Above 0.35 they call a parameter
weakly identified: its estimate is informed mainly by the prior. The overlap does not
change under a monotone transformation, so positive parameters are compared on the log
scale, where their densities are smooth enough for a kernel estimate.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pymc as pm
import xarray as xr
from scipy import stats

from tpopk.diagnostics.convergence import element_labels
from tpopk.diagnostics.observations import DiagnosticsError
from tpopk.progress import quiet_pymc

#: Overlap above which a parameter is informed mainly by its prior (Garrett & Zeger 2000).
PRIOR_DOMINATED = 0.35
#: Points of the grid the two kernel densities are compared on.
GRID_POINTS = 2048


def density_overlap(prior: npt.ArrayLike, posterior: npt.ArrayLike) -> float:
    """Overlap ``∫ min(p, q)`` of the densities of two samples (Gaussian kernels, Scott).

    Both samples positive: compared on the log scale (the overlap is invariant to it).
    A sample without spread (a fixed value) overlaps another only where that one is too.
    """
    a = np.asarray(prior, dtype=float).ravel()
    b = np.asarray(posterior, dtype=float).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        raise DiagnosticsError("the overlap needs at least two finite draws of each")
    if (a > 0).all() and (b > 0).all():
        a, b = np.log(a), np.log(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float(np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0])
    # the narrower density decides the grid's resolution; each KDE reaches 4 bandwidths out
    kernels = [stats.gaussian_kde(a), stats.gaussian_kde(b)]
    spread = [float(np.sqrt(k.covariance[0, 0])) for k in kernels]
    low = min(a.min(), b.min()) - 4 * max(spread)
    high = max(a.max(), b.max()) + 4 * max(spread)
    grid = np.linspace(low, high, max(GRID_POINTS, int(8 * (high - low) / min(spread))))
    shared = np.minimum(kernels[0](grid), kernels[1](grid))
    return float(min(1.0, np.trapezoid(shared, grid)))


def prior_draws(
    model: pm.Model, var_names: list[str], draws: int = 2000, seed: int = 0
) -> xr.Dataset:
    """Draws of ``var_names`` from the model's priors (dims ``chain``, ``draw``, ...)."""
    with quiet_pymc():
        sampled = pm.sample_prior_predictive(
            draws=draws,
            model=model,
            var_names=var_names,
            random_seed=seed,
            compile_kwargs={"mode": "FAST_COMPILE"},
        )
    prior: xr.Dataset = sampled["prior"].to_dataset()
    return prior


def prior_posterior_overlap(prior: xr.Dataset, posterior: xr.Dataset) -> dict[str, float]:
    """Overlap of prior and posterior of every scalar element of ``posterior``'s variables.

    Parameters
    ----------
    prior, posterior
        Draws with dims ``chain, draw`` (and the same element dims); ``prior`` holds
        every variable of ``posterior``.

    Returns
    -------
    dict
        Overlap (0 to 1) per element, named as in :meth:`tpopk.Fit.summary`
        (``pop_cl``, ``pop_tp_agonist[romiplostim]``).
    """
    if missing := [str(v) for v in posterior.data_vars if v not in prior.data_vars]:
        raise DiagnosticsError(f"no prior draws of {missing}")
    sample = ("chain", "draw")
    labels = iter(element_labels(posterior.isel(chain=0, draw=0)))
    overlap = {}
    for name, array in posterior.data_vars.items():
        before = prior[name].stack(sample=sample).transpose("sample", ...).values
        after = array.stack(sample=sample).transpose("sample", ...).values
        flat_before = before.reshape(before.shape[0], -1)
        flat_after = after.reshape(after.shape[0], -1)
        for column in range(flat_after.shape[1]):
            overlap[next(labels)] = density_overlap(flat_before[:, column], flat_after[:, column])
    return overlap
