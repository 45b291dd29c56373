"""Individual parameters: typical value × covariate effects × log-normal IIV.

A typical value ``per`` a covariate (``pop_cl`` in L/h/kg, ``per = "WT"``) is
multiplied by the subject's value of it before the effects and the IIV. A fraction with
``iiv_scale = "logit"`` is logit-normal instead: ``P = expit(logit(pop_P) + eta_P)``.

For a parameter ``P`` the posterior holds ``pop_P`` (typical value, natural scale),
``omega_P`` (SD of the log-normal IIV), ``z_P`` (standard-normal deviates: the IIV is
non-centred, which samples far better than the centred form when data per subject are
sparse), ``eta_P = omega_P * z_P`` and ``P`` (individual values, dim ``subject``).
A parameter with ``centered = true`` samples ``eta_P ~ Normal(0, omega_P)`` directly
instead (no ``z_P``): the better geometry when every subject's data pin its own value
(rich PK sampling), where the non-centred form turns into a funnel of its own.
Covariate coefficients are named ``beta_P_<COVARIATE>``. A parameter whose IIV differs
between levels of a categorical covariate (``iiv_by``) has ``omega_P_<LEVEL>`` for those
levels, ``omega_P`` for the rest, and each subject's SD in ``iiv_P``.

**Sampling coordinates.** With ``reparameterise=True`` (what fits sample) two Gaussian
parts of the prior are sampled in the order the data inform them; the joint prior, and
so the posterior, is the same, and ``pop_P``, ``beta_P_<COVARIATE>``, ``pop_P_agonist``
and ``z_P_agonist`` keep their names as deterministics:

- a categorical covariate whose reference level no subject has (an ITP-only study under
  a healthy-volunteer reference): the data inform the typical value of each level they
  hold, ``log pop_P + beta[level]``, not its two terms, which the priors alone separate
  (a ridge). The sampler draws those typical values, ``log_pop_P_<COVARIATE>`` (dim
  ``<covariate>_in_data``; jointly normal, their prior marginal), then the reference
  from its exact conditional normal given them, ``z_pop_P`` (standard normal); the
  coefficients of levels the data lack are ``z_beta_P_<COVARIATE>`` (standard normal).
- a partially pooled typical value in a study of at least :data:`ROTATE_POOLING_FROM`
  agonists: the data inform each agonist's, not the pooled one. The sampler draws
  ``log_pop_P_agonist`` (multivariate normal given ``tau_P``), then the pooled value
  from its conditional given them, ``z_pop_P``. With fewer agonists the deviates stay
  non-centred (``z_P_agonist``).

Both need a ``LogNormal`` typical-value prior (and ``Normal`` coefficients); other
priors keep the card's form. Simulations use the card's form (``reparameterise=False``),
whose free variables are the population parameters themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import NDArray
from pymc_extras.prior import Prior
from pytensor.tensor import TensorVariable

from tpopk.model.card import CardError, CovariateEffect, IIVBlock, ModelCard, ParameterSpec

#: Fewest agonists for which ``reparameterise`` samples each agonist's typical value
#: (centred) rather than its deviate from the pooled one: with two agonists the pooling
#: scale ``tau`` is barely informed and the centred form is a funnel as ``tau`` -> 0
#: (benchmarks/README.md, "Study posterior geometry": 36 divergences on the demo study).
ROTATE_POOLING_FROM = 3


def fixed(value: float) -> TensorVariable:
    """Return a card's fixed number as a float64 constant.

    ``pt.as_tensor(0.5)`` is a float32 constant (PyTensor picks the narrowest float that
    holds a Python float exactly), and a graph whose inputs are all such constants then
    computes in single precision.
    """
    return pt.as_tensor(np.float64(value))


def _coefficient(name: str, effect: CovariateEffect, dims: str | None = None) -> TensorVariable:
    if isinstance(effect.coefficient, float | int):
        return fixed(effect.coefficient)
    if dims is None:
        return effect.coefficient.create_variable(name)
    return type(effect.coefficient)(
        effect.coefficient.distribution, dims=dims, **effect.coefficient.parameters
    ).create_variable(name)


def _column(covariates: pd.DataFrame, column: str, where: str) -> pd.Series:
    """Return the subjects' ``column``; a CardError starting with ``where`` if it is missing."""
    if column not in covariates.columns:
        raise CardError(
            f"{where} covariate '{column}' is not in the data "
            f"(subject covariates: {sorted(covariates.columns)})"
        )
    return covariates[column]


def covariate_levels(covariates: pd.DataFrame, column: str, where: str) -> NDArray[np.str_]:
    """Each subject's level of a categorical covariate, as text.

    ``where`` names the card entry that needs it (``"residual.plt: 'sigma_by'"``) in the
    error raised when the data lack the column.
    """
    return np.asarray(_column(covariates, column, where).astype(str).to_numpy(), dtype=str)


def _covariate_values(parameter: str, column: str, covariates: pd.DataFrame) -> np.ndarray:
    values = _column(covariates, column, f"parameters.{parameter}:")
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    if np.isnan(x).any():
        missing = covariates.index[np.isnan(x)].tolist()[:5]
        raise CardError(
            f"parameters.{parameter}: covariate '{column}' must be numeric for every "
            f"subject; subjects {missing} have none"
        )
    return x


def covariate_log_effect(
    parameter: str, effect: CovariateEffect, covariates: pd.DataFrame
) -> TensorVariable:
    """Log of the multiplicative covariate effect on ``parameter``, one value per subject."""
    name = f"beta_{parameter}_{effect.covariate}"
    if effect.effect == "categorical":
        values = covariate_levels(covariates, effect.covariate, f"parameters.{parameter}:")
        unknown = set(values) - {str(effect.reference), *effect.levels}
        if unknown:
            raise CardError(
                f"parameters.{parameter}: covariate '{effect.covariate}' has levels "
                f"{sorted(unknown)} that are neither the reference nor in 'levels'"
            )
        model = pm.modelcontext(None)
        dim = f"{effect.covariate.lower()}_level"
        if dim not in model.coords:
            model.add_coord(dim, list(effect.levels))
        beta = _coefficient(name, effect, dims=dim)
        # indicator matrix subject × level; the reference level has no column
        indicator = np.stack([values == level for level in effect.levels], axis=1)
        return pt.dot(pt.as_tensor(indicator.astype(float)), beta)

    x = _covariate_values(parameter, effect.covariate, covariates)
    reference = float(effect.reference)
    beta = _coefficient(name, effect)
    if effect.effect == "threshold":
        beyond = x < reference if effect.side == "below" else x > reference
        return pt.log1p(beta * beyond.astype(float))
    if effect.effect == "power":
        if (x <= 0).any():
            raise CardError(
                f"parameters.{parameter}: power effect of '{effect.covariate}' needs "
                f"positive values"
            )
        return beta * np.log(x / reference)
    if effect.effect == "exponential":
        return beta * (x - reference)
    return pt.log1p(beta * (x - reference))  # linear


def individual_parameters(
    specs: Mapping[str, ParameterSpec],
    covariates: pd.DataFrame,
    iiv_block: IIVBlock | None = None,
    *,
    suffix: str = "",
    subject_dim: str = "subject",
    agonist_index: NDArray[np.int64] | None = None,
    reparameterise: bool = False,
) -> dict[str, TensorVariable]:
    """Create the population, IIV and individual variables of every card parameter.

    Must be called inside a ``pm.Model`` with the ``subject_dim`` coordinate (and an
    ``agonist`` coordinate when a parameter is partially pooled).

    Parameters
    ----------
    specs
        The card's parameters.
    covariates
        One row per subject of ``subject_dim``, in coordinate order.
    iiv_block
        Correlated IIV, if the card declares one.
    suffix
        Appended to every variable name (``pop_cl_eltrombopag``): agonist cards in a
        study have their own parameters.
    subject_dim
        Dimension of the individual values.
    agonist_index
        Agonist (position in the ``agonist`` coordinate) of each subject; needed for
        partially pooled parameters, whose typical value varies between agonists:
        ``pop_<P>_agonist = pop_<P> * exp(tau_<P> * z)``.
    reparameterise
        Sample typical values in the coordinates the data inform (module docstring):
        the same model, a posterior without the ridges that only priors bound.

    Returns
    -------
    dict
        Individual value of each parameter, shape ``(n_subjects,)`` (fixed values are
        scalars).
    """
    n_subjects = len(covariates)
    eta = _correlated_eta(specs, iiv_block, suffix, subject_dim) if iiv_block else {}
    values: dict[str, TensorVariable] = {}
    for name, spec in specs.items():
        label = f"{name}{suffix}"
        if spec.value is not None:
            values[name] = fixed(spec.value)
            continue
        if spec.from_covariate is not None:
            values[name] = pt.as_tensor(_covariate_values(name, spec.from_covariate, covariates))
            continue
        assert spec.prior is not None  # guaranteed by ParameterSpec validation
        effects = list(spec.covariates)
        if spec.pooling == "partial" and agonist_index is None:
            raise CardError(f"parameters.{name}: partial pooling needs a study of agonists")
        by_level = _effect_to_rotate(spec, covariates) if reparameterise else None
        if by_level is not None:
            log_value = _typical_values_by_level(label, spec, by_level, covariates)
            effects.remove(by_level)
        elif spec.pooling == "partial":
            assert spec.tau is not None
            assert agonist_index is not None
            tau = spec.tau.create_variable(f"tau_{label}")
            rotate = len(pm.modelcontext(None).coords["agonist"]) >= ROTATE_POOLING_FROM
            if reparameterise and rotate and _lognormal(spec.prior) is not None:
                per_agonist = _typical_values_by_agonist(label, spec.prior, tau)
            else:
                pop = spec.prior.create_variable(f"pop_{label}")
                z_agonist = pm.Normal(f"z_{label}_agonist", 0.0, 1.0, dims="agonist")
                per_agonist = pm.Deterministic(
                    f"pop_{label}_agonist", pop * pt.exp(tau * z_agonist), dims="agonist"
                )
            log_value = pt.log(per_agonist)[agonist_index]
        else:
            pop = spec.prior.create_variable(f"pop_{label}")
            log_value = pt.log(pop) * pt.ones(n_subjects)
        for effect in effects:
            log_value = log_value + covariate_log_effect(label, effect, covariates)
        if spec.per is not None:
            per = _covariate_values(name, spec.per, covariates)
            if (per <= 0).any():
                raise CardError(
                    f"parameters.{name}: 'per' = '{spec.per}' scales the typical value, so "
                    f"every subject needs a positive {spec.per}"
                )
            log_value = log_value + np.log(per)
        if spec.iiv is not None:
            omega = spec.iiv.create_variable(f"omega_{label}")
            if spec.iiv_by is not None:
                omega = _level_omega(label, spec, covariates, omega, subject_dim)
            if spec.centered:
                eta[name] = pm.Normal(f"eta_{label}", 0.0, omega, dims=subject_dim)
            else:
                z = pm.Normal(f"z_{label}", 0.0, 1.0, dims=subject_dim)
                eta[name] = pm.Deterministic(f"eta_{label}", omega * z, dims=subject_dim)
        if spec.iiv_scale == "logit":  # log_value is log pop_P: no effects (card-checked)
            logit = log_value - pt.log1p(-pt.exp(log_value)) + eta[name]
            values[name] = pm.Deterministic(label, pt.sigmoid(logit), dims=subject_dim)
            continue
        if name in eta:
            log_value = log_value + eta[name]
        values[name] = pm.Deterministic(label, pt.exp(log_value), dims=subject_dim)
    return values


def _lognormal(prior: Prior) -> tuple[float, float] | None:
    """``(mu, sigma)`` of a LogNormal prior with fixed parameters, else None."""
    return _normal_parameters(prior, "LogNormal")


def _normal_parameters(prior: Prior, distribution: str) -> tuple[Any, Any] | None:
    if prior.distribution != distribution or set(prior.parameters) != {"mu", "sigma"}:
        return None
    values = [prior.parameters[k] for k in ("mu", "sigma")]
    if any(isinstance(v, Prior) for v in values):
        return None  # hierarchical parameters: no closed-form rotation
    return values[0], values[1]


def _effect_to_rotate(spec: ParameterSpec, covariates: pd.DataFrame) -> CovariateEffect | None:
    """Return the categorical effect whose reference level the data lack, if rotatable.

    Rotated: a shared parameter with a LogNormal typical value and a categorical effect
    with Normal coefficients, at least one of whose levels, and not the reference, some
    subject has. With the reference in the data the card's form is already the one the
    data inform.
    """
    assert spec.prior is not None
    if spec.pooling != "shared" or _lognormal(spec.prior) is None:
        return None
    for effect in spec.covariates:
        if (
            effect.effect != "categorical"
            or isinstance(effect.coefficient, float | int)
            or _normal_parameters(effect.coefficient, "Normal") is None
            or effect.covariate not in covariates.columns
        ):
            continue
        present = set(covariates[effect.covariate].astype(str))
        if str(effect.reference) not in present and present & set(effect.levels):
            return effect
    return None


def _conditional_reference(
    mu0: float, sd0: float, typical: TensorVariable, mu: TensorVariable, sd: TensorVariable
) -> tuple[TensorVariable, TensorVariable]:
    """Mean and SD of ``m`` given ``typical = m + e``.

    ``m ~ Normal(mu0, sd0)``, ``e_k ~ Normal(mu_k, sd_k)`` independent: the precision-
    weighted combination of the prior and each ``typical_k - mu_k``.
    """
    precision = 1.0 / sd0**2 + pt.sum(1.0 / sd**2)
    mean = (mu0 / sd0**2 + pt.sum((typical - mu) / sd**2)) / precision
    return mean, 1.0 / pt.sqrt(precision)


def _marginal_typical(
    name: str, mu0: float, sd0: float, mu: TensorVariable, sd: TensorVariable, dims: str
) -> TensorVariable:
    """``typical_k = m + e_k`` with ``m`` integrated out: normal, covariance sd0^2 + diag(sd^2)."""
    k = mu.shape[0]
    cov = sd0**2 * pt.ones((k, k)) + pt.diag(sd**2)
    return pm.MvNormal(name, mu=mu0 + mu, cov=cov, dims=dims)


def _typical_values_by_level(
    label: str, spec: ParameterSpec, effect: CovariateEffect, covariates: pd.DataFrame
) -> TensorVariable:
    """Each subject's log typical value, sampled per level of ``effect`` in the data.

    Exactly the card's prior of ``pop_<P>`` and ``beta_<P>_<COVARIATE>`` (module
    docstring); both are kept as deterministics.
    """
    assert spec.prior is not None
    assert not isinstance(effect.coefficient, float | int)
    mu0, sd0 = cast(tuple[float, float], _lognormal(spec.prior))
    mu_beta, sd_beta = cast(tuple[Any, Any], _normal_parameters(effect.coefficient, "Normal"))
    levels = list(effect.levels)
    mu_beta = np.broadcast_to(np.asarray(mu_beta, dtype=float), len(levels))
    sd_beta = np.broadcast_to(np.asarray(sd_beta, dtype=float), len(levels))
    values = covariate_levels(covariates, effect.covariate, f"parameters.{label}:")
    if unknown := set(values) - set(levels):
        raise CardError(
            f"parameters.{label}: covariate '{effect.covariate}' has levels "
            f"{sorted(unknown)} that are neither the reference nor in 'levels'"
        )
    present = [i for i, level in enumerate(levels) if level in set(values)]
    absent = [i for i in range(len(levels)) if i not in present]
    model = pm.modelcontext(None)
    prefix = effect.covariate.lower()
    dims = {"level": range(len(levels)), "in_data": present, "not_in_data": absent}
    for dim, where in dims.items():
        if where and f"{prefix}_{dim}" not in model.coords:
            model.add_coord(f"{prefix}_{dim}", [levels[i] for i in where])
    typical = _marginal_typical(
        f"log_pop_{label}_{effect.covariate}",
        mu0,
        sd0,
        pt.as_tensor(mu_beta[present]),
        pt.as_tensor(sd_beta[present]),
        f"{prefix}_in_data",
    )
    mean, sd = _conditional_reference(
        mu0, sd0, typical, pt.as_tensor(mu_beta[present]), pt.as_tensor(sd_beta[present])
    )
    log_pop = mean + sd * pm.Normal(f"z_pop_{label}", 0.0, 1.0)
    pm.Deterministic(f"pop_{label}", pt.exp(log_pop))
    beta = pt.zeros(len(levels))
    beta = pt.set_subtensor(beta[present], typical - log_pop)
    if absent:
        z = pm.Normal(f"z_beta_{label}_{effect.covariate}", 0.0, 1.0, dims=f"{prefix}_not_in_data")
        beta = pt.set_subtensor(beta[absent], mu_beta[absent] + sd_beta[absent] * z)
    beta = pm.Deterministic(f"beta_{label}_{effect.covariate}", beta, dims=f"{prefix}_level")
    indicator = np.stack([values == level for level in levels], axis=1).astype(float)
    return log_pop + pt.dot(pt.as_tensor(indicator), beta)


def _typical_values_by_agonist(label: str, prior: Prior, tau: TensorVariable) -> TensorVariable:
    """Each agonist's typical value, then the pooled one given them (module docstring).

    Exactly the card's prior ``pop_<P>_agonist = pop_<P> * exp(tau_<P> * z)``; ``pop_<P>``,
    ``pop_<P>_agonist`` and ``z_<P>_agonist`` are kept as deterministics.
    """
    mu0, sd0 = cast(tuple[float, float], _lognormal(prior))
    k = len(pm.modelcontext(None).coords["agonist"])
    mu, sd = pt.zeros(k), tau * pt.ones(k)
    typical = _marginal_typical(f"log_pop_{label}_agonist", mu0, sd0, mu, sd, "agonist")
    mean, sd_pop = _conditional_reference(mu0, sd0, typical, mu, sd)
    log_pop = mean + sd_pop * pm.Normal(f"z_pop_{label}", 0.0, 1.0)
    pm.Deterministic(f"pop_{label}", pt.exp(log_pop))
    pm.Deterministic(f"z_{label}_agonist", (typical - log_pop) / tau, dims="agonist")
    return pm.Deterministic(f"pop_{label}_agonist", pt.exp(typical), dims="agonist")


def _level_omega(
    label: str,
    spec: ParameterSpec,
    covariates: pd.DataFrame,
    omega: TensorVariable,
    subject_dim: str,
) -> TensorVariable:
    """Each subject's IIV SD: its level's ``omega_<P>_<LEVEL>``, else ``omega_<P>``.

    Every level's omega is created whether or not the data hold that level, so fits and
    simulations of other populations share one set of population variables. The
    per-subject SD is kept as ``iiv_<P>`` for the η-shrinkage.
    """
    assert spec.iiv_by is not None
    values = covariate_levels(covariates, spec.iiv_by.covariate, f"parameters.{label}: 'iiv_by'")
    per_subject = omega * pt.ones(len(values))
    for level, prior in spec.iiv_by.levels.items():
        level_omega = prior.create_variable(f"omega_{label}_{level}")
        per_subject = pt.where(pt.as_tensor(values == level), level_omega, per_subject)
    return pm.Deterministic(f"iiv_{label}", per_subject, dims=subject_dim)


def _correlated_eta(
    specs: Mapping[str, ParameterSpec], block: IIVBlock, suffix: str, subject_dim: str
) -> dict[str, TensorVariable]:
    """Non-centred correlated IIV: eta = L · z with L the Cholesky factor of Omega.

    ``L`` has an LKJ(``block.eta``) prior on the correlation and the block's ``sd``
    prior on each ``omega`` (NONMEM's ``$OMEGA BLOCK``).
    """
    names = list(block.parameters)
    model = pm.modelcontext(None)
    block_dim = f"iiv_block{suffix}"
    model.add_coord(block_dim, names)
    sd_dist = getattr(pm, block.sd.distribution).dist(**block.sd.parameters, shape=len(names))
    chol, _, omegas = pm.LKJCholeskyCov(
        block_dim, eta=block.eta, n=len(names), sd_dist=sd_dist, compute_corr=True
    )
    z = pm.Normal(f"z_{block_dim}", 0.0, 1.0, dims=(subject_dim, block_dim))
    correlated = pt.dot(z, chol.T)
    eta: dict[str, TensorVariable] = {}
    for i, name in enumerate(names):
        pm.Deterministic(f"omega_{name}{suffix}", omegas[i])
        eta[name] = pm.Deterministic(f"eta_{name}{suffix}", correlated[:, i], dims=subject_dim)
    return eta


#: Units of the log-scale SDs: IIV (``omega_``), between-agonist (``tau_``), log error.
LOG_SD = "SD of log"


def population_unit(name: str, cards: Sequence[ModelCard], units: Mapping[str, str]) -> str:
    """Return the unit of a population parameter, from the names above and the cards.

    Parameters
    ----------
    name
        Posterior name, with or without its element (``pop_cl``, ``omega_cl_ITP``,
        ``beta_cl_WT``, ``sigma_add_conc``, ``pop_tp_agonist[romiplostim]``).
    cards
        The fitted cards: they give each parameter's unit and covariate effects.
    units
        Units of the observation types (``{"conc": "mg/L"}``), for additive errors.

    Returns
    -------
    str
        ``""`` for a name this scheme does not know.
    """
    base = name.split("[")[0]
    prefix, _, rest = base.partition("_")
    specs = {p: s for card in reversed(cards) for p, s in card.parameters.items()}
    # the parameter is the longest card name that starts the rest (cl in cl_WT, cl_ITP)
    owners = [p for p in specs if rest == p or rest.startswith(f"{p}_")]
    owner = max(owners, key=len, default=None)
    if prefix == "pop" and owner is not None:
        return specs[owner].unit
    if prefix in ("omega", "tau"):
        return LOG_SD
    if prefix == "beta" and owner is not None:
        covariate = rest.removeprefix(f"{owner}_")
        effect = next((c for c in specs[owner].covariates if c.covariate == covariate), None)
        if effect is None:
            return ""
        reference = (
            f"{effect.reference:g}" if isinstance(effect.reference, float) else effect.reference
        )
        return {
            "power": f"exponent of {covariate}/{reference}",
            "categorical": f"log ratio to {covariate} {effect.reference}",
        }.get(effect.effect, f"per unit of {covariate}")
    if prefix == "sigma":
        kind, _, observed = rest.partition("_")
        dvid = max(
            (d for d in units if observed == d or observed.startswith(f"{d}_")),
            key=len,
            default=None,
        )
        return {"add": units.get(dvid, "") if dvid else "", "prop": "fraction", "log": LOG_SD}.get(
            kind, ""
        )
    return ""
