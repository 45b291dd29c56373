"""Residual error models and the M3 likelihood for observations below the LLOQ.

Each observation type (DVID) has its own error model. An observation flagged BLQ
contributes ``P(y <= LLOQ)`` (Beal's M3 method), which PyMC expresses as a
left-censored distribution whose observed value sits at the censoring bound.

A log-normal error with a ``fluctuation`` (:class:`tpopk.model.card.Fluctuation`) makes
a subject's log observations one multivariate normal: covariance
``a_i a_j exp(-|t_i - t_j| / tau) + diag(e_i^2)``, ``a`` the deviation's stationary SD,
``e`` the white error's and ``tau = half_life / ln 2``. The deviation is marginalised
exactly: subjects are padded to a common number of observations and the covariance is
factorised by a batched Cholesky. The density of observation ``k`` is reported
conditional on the subject's earlier ones (``y_k | y_1..y_k-1``, the prediction-error
decomposition), so the pointwise log-likelihood sums to the joint one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import NDArray
from pytensor.tensor import TensorVariable
from pytensor.tensor.linalg import cholesky, solve_triangular

from tpopk.model.card import CardError, Fluctuation, ResidualSpec


def ou_correlation(lag: Any, half_life: Any, xp: Any = np) -> Any:
    """Correlation of the fluctuation between two times ``lag`` (h) apart.

    ``xp`` is ``numpy`` or ``pytensor.tensor``: one formula for the likelihood and the
    simulator.
    """
    return xp.exp(-np.log(2.0) * xp.abs(lag) / half_life)


@dataclass(frozen=True)
class SubjectLayout:
    """Where each observation sits when subjects are padded to ``[S, K]``, time-ordered.

    ``row``/``col`` give observation ``n``'s cell; ``time`` is ``[S, K]`` (padding 0) and
    ``mask`` marks the real cells.
    """

    row: NDArray[np.int64]
    col: NDArray[np.int64]
    time: NDArray[np.float64]
    mask: NDArray[np.bool_]

    @classmethod
    def of(cls, subject: NDArray[np.int64], time: NDArray[np.float64]) -> SubjectLayout:
        """Lay out observations of ``subject`` (any labels) at ``time`` (h)."""
        subject, time = np.asarray(subject), np.asarray(time, dtype=float)
        _, row = np.unique(subject, return_inverse=True)
        order = np.lexsort((time, row))
        col = np.empty(row.size, dtype=np.int64)
        starts = np.r_[0, np.flatnonzero(np.diff(row[order])) + 1]
        counts = np.diff(np.r_[starts, row.size])
        col[order] = np.arange(row.size) - np.repeat(starts, counts)
        n_rows, width = int(row.max(initial=-1)) + 1, int(col.max(initial=-1)) + 1
        padded = np.zeros((n_rows, width))
        padded[row, col] = time
        mask = np.zeros((n_rows, width), dtype=bool)
        mask[row, col] = True
        return cls(row.astype(np.int64), col, padded, mask)


def fluctuation_log_density(
    residual: TensorVariable,
    sd: TensorVariable,
    share: TensorVariable,
    half_life: TensorVariable,
    layout: SubjectLayout,
) -> TensorVariable:
    """Log density of each log-scale residual given its subject's earlier ones.

    ``residual`` (log observation - log prediction) and ``sd`` (total single-observation
    log SD) are per observation; ``share`` and ``half_life`` are scalars (see
    :class:`tpopk.model.card.Fluctuation`). The terms of one subject sum to its
    multivariate normal log density.
    """
    cell = (layout.row, layout.col)
    shape = layout.mask.shape
    persistent = pt.set_subtensor(pt.zeros(shape)[cell], pt.sqrt(share) * sd)
    # padding: unit variance, uncorrelated, residual 0; its terms are never read
    white_var = pt.set_subtensor(pt.ones(shape)[cell], (1.0 - share) * sd**2)
    padded = pt.set_subtensor(pt.zeros(shape)[cell], residual)
    lag = layout.time[:, :, None] - layout.time[:, None, :]
    covariance = persistent[:, :, None] * persistent[:, None, :] * ou_correlation(
        lag, half_life, pt
    ) + white_var[:, :, None] * np.eye(shape[1])
    chol = cholesky(covariance)
    # (L * I).sum(-1) for the diagonal: its gradient stays elementwise (numba-compilable)
    diag = (chol * np.eye(shape[1])).sum(axis=-1)
    z = solve_triangular(chol, padded[..., None], lower=True)[..., 0]
    terms = -0.5 * z**2 - pt.log(diag) - 0.5 * np.log(2.0 * np.pi)
    return terms[cell]


def draw_log_fluctuation(
    rng: np.random.Generator,
    layout: SubjectLayout,
    sd: NDArray[np.float64],
    share: NDArray[np.float64] | float,
    half_life: NDArray[np.float64] | float,
) -> NDArray[np.float64]:
    """Draw each observation's log-scale deviation: the OU path plus white error.

    ``sd``, ``share`` and ``half_life`` are per observation (or scalars). The path is
    drawn by its exact transition between a subject's successive times.
    """
    cells = []
    for value, padding in ((sd, 0.0), (share, 0.0), (half_life, 1.0)):
        cell = np.full(layout.mask.shape, padding)
        cell[layout.row, layout.col] = np.broadcast_to(value, layout.row.shape)
        cells.append(cell)
    sd_cells, share_cells, half_life_cells = cells
    path = np.empty(layout.mask.shape)
    path[:, 0] = rng.standard_normal(path.shape[0])
    for k in range(1, path.shape[1]):
        lag = layout.time[:, k] - layout.time[:, k - 1]
        rho = ou_correlation(lag, half_life_cells[:, k])
        path[:, k] = rho * path[:, k - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(path.shape[0])
    white = rng.standard_normal(layout.mask.shape) * np.sqrt(1 - share_cells)
    deviation = (np.sqrt(share_cells) * path + white) * sd_cells
    return np.asarray(deviation[layout.row, layout.col])


def fluctuation_variables(spec: Fluctuation, name: str) -> tuple[TensorVariable, TensorVariable]:
    """Create ``share_fluct_<name>`` and ``half_life_fluct_<name>`` in the current model."""
    return (
        spec.share.create_variable(f"share_fluct_{name}"),
        spec.half_life.create_variable(f"half_life_fluct_{name}"),
    )


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
    fluctuation: tuple[TensorVariable, TensorVariable, SubjectLayout] | None = None,
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
    fluctuation
        ``(share, half_life, layout)`` of a within-subject fluctuation (log-normal error
        only; :func:`fluctuation_variables`, :meth:`SubjectLayout.of`); ``sd`` is then
        the total single-observation log SD.
    """
    values = np.where(blq, lloq, observed)
    lognormal = error == "lognormal"
    if lognormal and (values <= 0).any():
        first = np.flatnonzero(values <= 0)[:5].tolist()
        raise CardError(
            f"residual.{dvid}: log-normal error needs positive observations; {dvid} "
            f"observations at positions {first} are <= 0 (flag them BLQ with an LLOQ)"
        )
    if fluctuation is not None:
        if not lognormal:
            raise CardError(f"residual.{dvid}: 'fluctuation' needs log-normal error")
        if blq.any():
            # M3 under correlated errors needs multivariate normal CDFs of every BLQ run
            raise CardError(
                f"residual.{dvid}: 'fluctuation' does not take BLQ observations ({int(blq.sum())} "
                f"{dvid} rows flagged); drop the fluctuation or the BLQ rows"
            )
        return _fluctuating(dvid, pt.log(prediction), sd, values, dims, *fluctuation)
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


def _fluctuating(
    dvid: str,
    mu: TensorVariable,
    sd: TensorVariable,
    values: NDArray[np.float64],
    dims: str,
    share: TensorVariable,
    half_life: TensorVariable,
    layout: SubjectLayout,
) -> TensorVariable:
    """``y_<dvid>``: log-normal observations whose log deviations fluctuate (module doc)."""

    def logp(
        value: TensorVariable,
        mu: TensorVariable,
        sd: TensorVariable,
        share: TensorVariable,
        half_life: TensorVariable,
    ) -> TensorVariable:
        log_value = pt.log(value)
        return fluctuation_log_density(log_value - mu, sd, share, half_life, layout) - log_value

    def random(
        mu: NDArray[np.float64],
        sd: NDArray[np.float64],
        share: NDArray[np.float64],
        half_life: NDArray[np.float64],
        rng: np.random.Generator | None = None,
        size: tuple[int, ...] | None = None,
    ) -> NDArray[np.float64]:
        if size is not None and tuple(size) != np.shape(mu):
            raise ValueError(f"y_{dvid} draws one value per observation, not size {size}")
        # PyMC may hand the scalars over broadcast; the draw takes them per observation
        deviation = draw_log_fluctuation(np.random.default_rng(rng), layout, sd, share, half_life)
        return np.asarray(np.exp(mu + deviation))

    return pm.CustomDist(
        f"y_{dvid}",
        mu,
        pt.broadcast_to(sd, mu.shape),
        share,
        half_life,
        logp=logp,
        random=random,
        observed=values,
        dims=dims,
    )
