"""Residual error models and the M3 likelihood for observations below the LLOQ.

Each observation type (DVID) has its own error model. An observation flagged BLQ
contributes ``P(y <= LLOQ)`` (Beal's M3 method), which PyMC expresses as a
left-censored distribution whose observed value sits at the censoring bound.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import NDArray
from pytensor.tensor import TensorVariable

from tpopk.model.card import CardError, ResidualSpec


def residual_sd(
    spec: ResidualSpec,
    name: str,
    prediction: TensorVariable,
    levels: NDArray[np.str_] | None = None,
) -> TensorVariable:
    """Create the ``sigma_<kind>_<name>`` variables and return the residual SD per observation.

    For ``lognormal`` the SD is on the log scale; otherwise on the observation scale.
    With ``sigma_by``, ``levels`` holds each observation's subject's covariate value and
    observations at a listed level take ``sigma_<kind>_<name>_<LEVEL>``; every level's
    sigma is created whether or not the data hold it, as for ``iiv_by``.
    """
    if spec.error == "combined":
        assert spec.sigma_add is not None
        assert spec.sigma_prop is not None
        additive = spec.sigma_add.create_variable(f"sigma_add_{name}")
        proportional = spec.sigma_prop.create_variable(f"sigma_prop_{name}") * prediction
        return pt.sqrt(additive**2 + proportional**2)
    named = spec.sigmas(name)
    variable, prior = named.pop(None)
    sigma = prior.create_variable(variable) * pt.ones_like(prediction)
    if named and levels is None:
        raise CardError(f"residual.{name}: 'sigma_by' needs each observation's level")
    for level, (variable, prior) in named.items():
        sigma = pt.where(pt.as_tensor(levels == level), prior.create_variable(variable), sigma)
    # the prediction is floored positive for proportional error (build._floor)
    return sigma * prediction if spec.error == "proportional" else sigma


def likelihood(
    error: str,
    dvid: str,
    prediction: TensorVariable,
    sd: TensorVariable,
    observed: NDArray[np.float64],
    blq: NDArray[np.bool_],
    lloq: NDArray[np.float64],
    dims: str,
) -> TensorVariable:
    """Add the likelihood ``y_<dvid>`` of one observation type to the current model.

    Parameters
    ----------
    error
        Residual error model (:attr:`ResidualSpec.error`); ``lognormal`` is log-normal
        around the prediction, the others normal.
    dvid
        Observation type; names the variable ``y_<dvid>``.
    prediction, sd
        Individual prediction and residual SD of each observation (from
        :func:`residual_sd`), in the units of ``observed``.
    observed, blq, lloq
        Observed values, BLQ flags and the LLOQ of each observation; BLQ rows are
        censored at their LLOQ (M3).
    dims
        Name of the observation dimension of this DVID.
    """
    values = np.where(blq, lloq, observed)
    lognormal = error == "lognormal"
    if lognormal and (values <= 0).any():
        first = np.flatnonzero(values <= 0)[:5].tolist()
        raise CardError(
            f"residual.{dvid}: log-normal error needs positive observations; {dvid} "
            f"observations at positions {first} are <= 0 (flag them BLQ with an LLOQ)"
        )
    family = pm.LogNormal if lognormal else pm.Normal
    mu = pt.log(prediction) if lognormal else prediction
    if not blq.any():
        return family(f"y_{dvid}", mu=mu, sigma=sd, observed=values, dims=dims)
    lower = np.where(blq, lloq, 0.0 if lognormal else -np.inf)
    return pm.Censored(
        f"y_{dvid}",
        family.dist(mu=mu, sigma=sd),
        lower=lower,
        upper=None,
        observed=values,
        dims=dims,
    )
