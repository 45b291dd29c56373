"""Model cards: declarative, typed descriptions of a population PK/PD model.

A card is a TOML file. It names the structural model, and for each parameter its
prior on the typical value, its unit, its inter-individual variability, its covariate
effects and the source the prior came from. Cards are data: they are validated on load
and never executed. Example::

    name = "oral_1cmt"
    [structure]
    pk = "oral_1cmt"

    [parameters.cl]
    unit = "L/h"
    prior = { dist = "LogNormal", mu = 1.0, sigma = 1.0 }
    iiv = { dist = "HalfNormal", sigma = 0.5 }
    source = "weakly informative: CL/F between 0.4 and 20 L/h"
    covariates = [{ covariate = "WT", effect = "power", reference = 70, coefficient = 0.75 }]

    [residual.conc]
    error = "additive"
    sigma_add = { dist = "HalfNormal", sigma = 1.0 }

Priors are :class:`pymc_extras.prior.Prior` objects (``dist`` names the PyMC
distribution, the other keys are its parameters), so a typo in a distribution or
parameter name fails when the card is loaded, not when the model is sampled.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)
from pymc_extras.prior import Prior, UnsupportedDistributionError

from tpopk.errors import TpopkError
from tpopk.tomlfile import load_document
from tpopk.typed import FrozenModel

CardKind = Literal["pk", "pkpd", "system", "agonist"]


class CardError(TpopkError):
    """A model card that cannot be read or does not describe a valid model."""


def structural_parameters(structure: Structure) -> list[tuple[str, str | None, float | None]]:
    """``(name, unit, default)`` of every parameter the selected structures declare.

    Units of drug-effect parameters depend on the concentration unit and are not
    checked (``None``). Raises ``ValueError`` for unknown structure names.
    """
    from tpopk.pd import PD_MODELS
    from tpopk.pd.drug_effect import DRUG_EFFECTS
    from tpopk.pk import PK_MODELS

    def lookup[T](registry: Mapping[str, T], key: str, what: str) -> T:
        if key not in registry:
            raise ValueError(f"'{key}' is not a known {what}; expected one of {sorted(registry)}")
        return registry[key]

    found: list[tuple[str, str | None, float | None]] = []
    if structure.pk is not None:
        pk = lookup(PK_MODELS, structure.pk, "PK model")
        found += [(p.name, p.unit, p.default) for p in pk.parameters]
    if structure.pd is not None:
        pd = lookup(PD_MODELS, structure.pd, "PD model")
        # "response unit" means the unit of whatever response the card models: unchecked.
        found += [
            (p.name, None if p.unit == "response unit" else p.unit, p.default)
            for p in pd.parameters
        ]
    if structure.drug_effect is not None:
        effect = lookup(DRUG_EFFECTS, structure.drug_effect, "drug effect")
        found += [(name, None, None) for name in drug_effect_parameters(effect)]
    names = [name for name, _, _ in found]
    if clash := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"the PK, PD and drug-effect structures share parameter names {clash}")
    return found


def structural_units(
    structure: Structure, units: CardUnits
) -> list[tuple[str, str | None, float | None]]:
    """:func:`structural_parameters`, response-unit parameters in ``units.response``.

    Without a declared response unit those parameters stay unchecked (``None``).
    """
    found = structural_parameters(structure)
    if structure.pd is None or units.response is None:
        return found
    from tpopk.pd import PD_MODELS

    in_response = {p.name for p in PD_MODELS[structure.pd].parameters if p.unit == "response unit"}
    return [(n, units.response if n in in_response else u, d) for n, u, d in found]


def drug_effect_parameters(effect: object) -> tuple[str, ...]:
    """Parameters of a drug-effect function: its arguments after ``conc``, before options."""
    names = list(inspect.signature(cast(Callable[..., Any], effect)).parameters)
    return tuple(n for n in names[1:] if n not in ("direction", "xp"))


def _to_prior(value: Any) -> Prior:
    """Turn the card's ``{dist = ..., **parameters}`` table into a ``Prior``."""
    if isinstance(value, Prior):
        return value
    if not isinstance(value, Mapping) or "dist" not in value:
        raise ValueError("a prior is a table with 'dist' (a PyMC distribution) and its parameters")
    parameters = {k: v for k, v in value.items() if k != "dist"}
    try:
        return Prior(str(value["dist"]), **parameters)
    except (ValueError, TypeError, UnsupportedDistributionError) as err:
        # unknown distribution, or parameters the distribution lacks
        raise ValueError(str(err)) from None


def _from_prior(prior: Prior) -> dict[str, Any]:
    # Prior stores list parameters (a categorical effect's mu per level) as NumPy arrays,
    # which JSON cannot hold: without tolist() the thrombopoiesis card could not be saved.
    parameters = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in prior.parameters.items()}
    return {"dist": prior.distribution, **parameters}


def prior_support(prior: Prior) -> tuple[float, float]:
    """Lowest and highest value ``prior`` can take; ValueError if it is not a proper prior.

    Every parameter must be a finite number inside the distribution's parameter space
    (a positive sigma, ``lower < upper``): PyMC would otherwise fail only while sampling,
    deep inside the sampler or with a crash. Vector parameters (one per category level)
    are checked element by element; the support returned spans them all.
    """
    import numpy as np
    import preliz as pz

    label = f"{prior.distribution}({', '.join(f'{k}={v}' for k, v in prior.parameters.items())})"
    factory = getattr(pz, prior.distribution, None)
    if factory is None:
        raise ValueError(f"{label}: a proper univariate distribution is expected")
    try:
        arrays = {k: np.asarray(v, dtype=float) for k, v in prior.parameters.items()}
        shaped = dict(zip(arrays, np.broadcast_arrays(*arrays.values()), strict=True))
    except (TypeError, ValueError):
        raise ValueError(
            f"{label}: its parameters must be numbers (or equal-length lists)"
        ) from None
    lowest, highest = np.inf, -np.inf
    for index in np.ndindex(next(iter(shaped.values())).shape if shaped else ()):
        values = {k: float(a[index]) for k, a in shaped.items()}
        for key, value in values.items():
            if not np.isfinite(value):
                raise ValueError(f"{label}: '{key}' is {value}; a finite number is expected")
        try:
            dist = factory(**values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{label}: {err}") from None
        for key, (low, high) in zip(dist.param_names, dist.params_support, strict=True):
            if key in values and not low <= values[key] <= high:  # absent: its default
                expected = "> 0" if 0 < low < 1e-10 else f"in [{low}, {high}]"
                raise ValueError(f"{label}: '{key}' = {values[key]}; expected {expected}")
        low, high = (float(b) for b in dist.support)
        if not low < high:
            raise ValueError(f"{label}: its support [{low}, {high}] is empty")
        lowest, highest = min(lowest, low), max(highest, high)
    return lowest, highest


def _checked_support(prior: Prior, what: str) -> tuple[float, float]:
    """:func:`prior_support`, its error naming the card entry (``what``)."""
    try:
        return prior_support(prior)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None


def _check_scale(prior: Prior | None, what: str) -> None:
    """Refuse an SD prior (omega, tau, sigma) that is improper or reaches below zero."""
    if prior is not None and (low := _checked_support(prior, what)[0]) < 0:
        raise ValueError(
            f"{what} is a standard deviation: its prior must not go below 0, but "
            f"{prior.distribution} reaches {low} (use e.g. HalfNormal or LogNormal)"
        )


PriorField = Annotated[
    Prior,
    BeforeValidator(_to_prior),
    PlainSerializer(_from_prior, return_type=dict),
]


class _CardModel(FrozenModel):
    # allow_inf_nan=False: a fixed value, reference or coefficient of nan is refused
    model_config = ConfigDict(arbitrary_types_allowed=True, allow_inf_nan=False)


class CovariateEffect(_CardModel):
    """Effect of one subject covariate on a parameter's individual value.

    ``power``: ``(x / reference) ** coefficient`` (allometric weight);
    ``linear``: ``1 + coefficient * (x - reference)``;
    ``exponential``: ``exp(coefficient * (x - reference))``;
    ``categorical``: ``exp(coefficient[level])`` for each non-reference ``level``;
    ``threshold``: ``1 + coefficient`` where ``x < reference`` (``side = "below"``, the
    default) or ``x > reference`` (``side = "above"``), else 1: NONMEM's
    ``IF(APGR.LT.5) TVV = TVV*(1+THETA(3))``, the coefficient a fractional change > -1.
    ``coefficient`` is either a fixed number (e.g. allometric 0.75) or a prior.
    """

    covariate: str
    effect: Literal["power", "linear", "exponential", "categorical", "threshold"]
    reference: float | str = 0.0
    coefficient: float | PriorField
    levels: tuple[str, ...] = ()
    # left out of the dumped card at its default, so older cards and fit hashes read back
    side: Literal["below", "above"] = Field(default="below", exclude_if=lambda v: v == "below")
    source: str = ""

    @model_validator(mode="after")
    def _levels_match_effect(self) -> CovariateEffect:
        if self.side != "below" and self.effect != "threshold":
            raise ValueError("'side' only applies to threshold effects")
        if self.effect == "threshold":
            if isinstance(self.reference, str):
                raise ValueError("a threshold effect needs a numeric 'reference' (the cut-off)")
            low = (
                self.coefficient
                if not isinstance(self.coefficient, Prior)
                else _checked_support(self.coefficient, "'coefficient'")[0]
            )
            if low <= -1:
                raise ValueError(
                    "a threshold effect multiplies by 1 + coefficient, which must stay above "
                    f"-1; the coefficient reaches {low} (use e.g. TruncatedNormal, lower = -0.99)"
                )
        if self.effect == "categorical" and not self.levels:
            raise ValueError("a categorical effect lists its non-reference 'levels'")
        if self.effect != "categorical" and self.levels:
            raise ValueError("'levels' only apply to categorical effects")
        if self.effect == "power" and not isinstance(self.reference, str) and self.reference <= 0:
            raise ValueError("a power effect needs a positive 'reference'")
        if isinstance(self.coefficient, Prior):
            _checked_support(self.coefficient, "'coefficient'")
        return self


class LevelSD(_CardModel):
    """An SD that differs between levels of a categorical covariate.

    Subjects at one of ``levels`` get that level's prior; the others get the default SD
    (the parameter's ``iiv``, or the residual's one sigma). NONMEM's one ETA with an
    OMEGA per population (``ETA(1)*(1 - ITP) + ETA(2)*ITP``) or one EPS scaled per
    population: e.g. platelet survival varies little between healthy volunteers and
    widely between ITP patients (``iiv_by``), and an ITP patient's count moves far more
    from week to week than a volunteer's (``sigma_by``).
    """

    covariate: str
    levels: dict[str, PriorField]
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _some_levels(self) -> LevelSD:
        if not self.levels:
            raise ValueError("list at least one level with its own SD prior")
        for level, prior in self.levels.items():
            _check_scale(prior, f"the SD of level '{level}'")
        return self


class ParameterSpec(_CardModel):
    """One structural parameter: estimated, fixed, or read per subject from the data.

    Exactly one of ``prior`` (estimated), ``value`` (fixed) or ``from_covariate`` (a data
    column, e.g. post hoc PK parameters in a sequential PK/PD analysis). ``per`` names a
    covariate the typical value is per unit of: ``unit = "L/h/kg"``, ``per = "WT"`` gives
    each subject ``pop_cl × WT`` (NONMEM's ``TVCL = THETA(1)*WGT``), the unit being the
    structure's unit over the covariate's (kg for WT; the data's declared unit otherwise).
    ``iiv_scale = "logit"`` makes the IIV of a fraction (Emax ≤ 1, bioavailability)
    logit-normal, ``P = expit(logit(pop_P) + eta_P)``, in place of log-normal.
    """

    unit: str
    prior: PriorField | None = None
    value: float | None = None
    from_covariate: str | None = None
    iiv: PriorField | None = None
    # left out of the dumped card when False, so cards (and fit-file hashes) written
    # before the option existed read back unchanged
    centered: bool = Field(default=False, exclude_if=lambda v: not v)
    # IIV SD per covariate level; left out of the dumped card when absent (as 'centered')
    iiv_by: LevelSD | None = Field(default=None, exclude_if=lambda v: v is None)
    covariates: tuple[CovariateEffect, ...] = ()
    # the typical value is per unit of this covariate (CL in L/h/kg times WT); left out
    # of the dumped card when absent
    per: str | None = Field(default=None, exclude_if=lambda v: v is None)
    # the scale the IIV is normal on; left out of the dumped card at its default
    iiv_scale: Literal["log", "logit"] = Field(default="log", exclude_if=lambda v: v == "log")
    source: str = Field(min_length=1)
    pooling: Literal["shared", "partial"] = "shared"
    tau: PriorField | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> ParameterSpec:
        origins = [k for k in ("prior", "value", "from_covariate") if getattr(self, k) is not None]
        if len(origins) != 1:
            raise ValueError(
                "give exactly one of 'prior' (estimated), 'value' (fixed) or "
                f"'from_covariate' (a data column); got {origins or 'none'}"
            )
        if self.prior is None and (self.iiv is not None or self.covariates or self.per):
            raise ValueError(
                "only an estimated parameter ('prior') can carry IIV, covariates or 'per'"
            )
        if self.centered and self.iiv is None:
            raise ValueError("'centered' chooses how the IIV is sampled; it needs an 'iiv' prior")
        if self.iiv_by is not None and self.iiv is None:
            raise ValueError(
                "'iiv_by' gives some covariate levels their own omega; the other subjects "
                "need the parameter's 'iiv' prior"
            )
        if self.iiv_by is not None:
            for effect in self.covariates:
                if effect.covariate != self.iiv_by.covariate or effect.effect != "categorical":
                    continue
                known = {str(effect.reference), *effect.levels}
                if unknown := sorted(set(self.iiv_by.levels) - known):
                    raise ValueError(
                        f"'iiv_by' levels {unknown} are not levels of covariate "
                        f"'{effect.covariate}' (expected some of {sorted(known)})"
                    )
        if (self.pooling == "partial") != (self.tau is not None and self.prior is not None):
            raise ValueError(
                "partial pooling across agonists needs an estimated 'prior' and a 'tau' prior "
                "(SD of the log typical value between agonists); 'tau' needs pooling = 'partial'"
            )
        _check_scale(self.iiv, "'iiv' (omega)")
        if self.iiv_scale == "logit":
            self._check_logit_normal()
        _check_scale(self.tau, "'tau'")
        if self.prior is not None:
            self._check_typical_value(self.prior)
        return self

    def _check_logit_normal(self) -> None:
        """Logit-normal IIV: a fraction's typical value, varied by its IIV alone."""
        if self.iiv is None or self.prior is None:
            raise ValueError("'iiv_scale' = 'logit' needs an estimated 'prior' and an 'iiv' prior")
        extra = [
            name
            for name, present in (
                ("'covariates'", bool(self.covariates)),
                ("'per'", self.per is not None),
                ("partial pooling", self.pooling == "partial"),
            )
            if present
        ]
        if extra:
            raise ValueError(
                f"logit-normal IIV keeps a fraction in (0, 1); {' and '.join(extra)} would "
                "multiply it out of that range"
            )
        low, high = _checked_support(self.prior, "'prior'")
        if low < 0 or high > 1:
            raise ValueError(
                f"logit-normal IIV is for a fraction: its typical value's prior must lie in "
                f"[0, 1], but the {self.prior.distribution} prior spans [{low}, {high}] "
                "(use e.g. Beta)"
            )

    def _check_typical_value(self, prior: Prior) -> None:
        """Refuse a typical-value prior that is not positive or that IIV takes out of support.

        The model works with the log of the typical value and multiplies it by log-normal
        IIV, covariate effects and agonist deviations, all unbounded above: a parameter
        bounded above (a Beta fraction) with any of them would leave its support.
        """
        low, high = _checked_support(prior, "'prior'")
        if low < 0:
            raise ValueError(
                f"a typical value is positive (the model takes its log), but the "
                f"{prior.distribution} prior reaches {low} (use e.g. LogNormal)"
            )
        varies = [
            name
            for name, present in (
                ("'iiv'", self.iiv is not None),
                ("'covariates'", bool(self.covariates)),
                ("'per'", self.per is not None),
                ("partial pooling", self.pooling == "partial"),
            )
            if present
        ]
        if high < float("inf") and varies and self.iiv_scale == "log":
            raise ValueError(
                f"the {prior.distribution} prior bounds the parameter to [{low}, {high}], but "
                f"its {' and '.join(varies)} multiply it by factors unbounded above, so "
                f"individual values leave that range: use a prior on (0, inf) or drop them"
            )


class Fluctuation(_CardModel):
    """Within-subject fluctuation of a log-normal response: an autocorrelated deviation.

    The log observation is the log prediction plus a stationary Ornstein-Uhlenbeck
    deviation (correlation ``exp(-|dt| ln 2 / half_life)`` between two times) plus white
    assay error. ``share`` is the deviation's part of the single-observation log-scale
    variance, whose total stays the residual's ``sigma_log`` (and ``sigma_by`` levels):
    the deviation's stationary SD is ``sqrt(share) * sigma_log`` and the white error's
    ``sqrt(1 - share) * sigma_log``. Fit names: ``share_fluct_<dvid>`` and
    ``half_life_fluct_<dvid>`` (h).
    """

    share: PriorField
    half_life: PriorField
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check_supports(self) -> Fluctuation:
        low, high = _checked_support(self.share, "fluctuation 'share'")
        if low < 0 or high > 1:
            raise ValueError(
                f"fluctuation 'share' is a fraction of a variance: its prior must lie in "
                f"[0, 1], but {self.share.distribution} reaches [{low}, {high}] (use Beta)"
            )
        if _checked_support(self.half_life, "fluctuation 'half_life'")[0] < 0:
            raise ValueError(
                f"fluctuation 'half_life' is a time: its prior must not go below 0, but "
                f"{self.half_life.distribution} does (use e.g. LogNormal)"
            )
        return self


class ResidualSpec(_CardModel):
    """Residual error model for one observation type (DVID).

    ``sigma_by`` gives subjects at some levels of a categorical covariate their own
    sigma (``sigma_<kind>_<dvid>_<LEVEL>``) in place of the error model's one sigma.
    ``fluctuation`` (log-normal error only) splits the log-scale error into an
    autocorrelated within-subject deviation and white assay error (:class:`Fluctuation`).
    """

    error: Literal["additive", "proportional", "combined", "lognormal"]
    sigma_add: PriorField | None = None
    sigma_prop: PriorField | None = None
    sigma_log: PriorField | None = None
    # left out of the dumped card when absent, so older cards and fit hashes read back
    sigma_by: LevelSD | None = Field(default=None, exclude_if=lambda v: v is None)
    fluctuation: Fluctuation | None = Field(default=None, exclude_if=lambda v: v is None)
    source: str = ""

    @model_validator(mode="after")
    def _sigmas_match_error(self) -> ResidualSpec:
        needed = {
            "additive": {"sigma_add"},
            "proportional": {"sigma_prop"},
            "combined": {"sigma_add", "sigma_prop"},
            "lognormal": {"sigma_log"},
        }[self.error]
        given = {k for k in ("sigma_add", "sigma_prop", "sigma_log") if getattr(self, k)}
        if given != needed:
            raise ValueError(
                f"'{self.error}' error needs exactly {sorted(needed)}, got {sorted(given)}"
            )
        if self.sigma_by is not None and len(needed) != 1:
            raise ValueError(
                f"'sigma_by' replaces the one sigma of an error model; '{self.error}' has "
                f"{sorted(needed)}"
            )
        for key in sorted(needed):
            _check_scale(getattr(self, key), f"'{key}'")
        if self.fluctuation is not None and self.error != "lognormal":
            raise ValueError(
                f"'fluctuation' is a deviation of the log observation: it needs 'lognormal' "
                f"error, got '{self.error}'"
            )
        return self

    @property
    def sigma(self) -> tuple[str, Prior]:
        """``(kind, prior)`` of a one-sigma error model (``sigma_log`` for log-normal)."""
        kind = {"additive": "sigma_add", "proportional": "sigma_prop", "lognormal": "sigma_log"}
        if self.error not in kind:
            raise CardError(f"'{self.error}' error has two sigmas")
        name = kind[self.error]
        return name, cast(Prior, getattr(self, name))

    def sigmas(self, name: str) -> dict[str | None, tuple[str, Prior]]:
        """Fit variable name and prior of the one sigma and of each ``sigma_by`` level's.

        ``name`` is the observation's fit name (``plt``, ``conc_eltrombopag``); key None
        is the sigma of subjects at no listed level: ``sigma_log_plt``,
        ``sigma_log_plt_ITP``, ...
        """
        kind, prior = self.sigma
        named: dict[str | None, tuple[str, Prior]] = {None: (f"{kind}_{name}", prior)}
        if self.sigma_by is not None:
            for level, level_prior in self.sigma_by.levels.items():
                named[level] = (f"{kind}_{name}_{level}", level_prior)
        return named


class Structure(_CardModel):
    """Which structural models the card selects.

    ``pk`` names a :data:`tpopk.pk.PK_MODELS` entry, ``pd`` a :data:`tpopk.pd.PD_MODELS`
    entry and ``drug_effect`` a :data:`tpopk.pd.drug_effect.DRUG_EFFECTS` entry, which
    turns the concentration into the multiplier of the rate the drug acts on
    (``stimulate`` for agonists: ``1 + E(C)``; ``inhibit``: ``1 - E(C)``). ``response``
    is the DVID the PD structure predicts: a known type (``plt``, ``wbc``...) or any
    lower-case name the data declare a unit for (``pca``), with its unit in
    ``units.response``.
    """

    pk: str | None = None
    pd: str | None = None
    drug_effect: str | None = None
    direction: Literal["stimulate", "inhibit"] = "stimulate"
    response: str = Field(default="plt", pattern=r"^[a-z][a-z0-9_]*$")


class CardUnits(_CardModel):
    """Units the card's parameters are expressed in.

    ``response`` is the unit of the PD structure's response (``structure.response``, e.g.
    ``%`` for warfarin's ``pca``): the data must declare that unit for it, and parameters
    the structure gives in the response's unit (a baseline) carry it.
    """

    time: Literal["h"] = "h"
    dose: str = "mg"
    concentration: str = "mg/L"
    # left out of the dumped card when absent, so older cards and fit hashes read back
    response: str | None = Field(default=None, exclude_if=lambda v: v is None)


class IIVBlock(_CardModel):
    """Correlated IIV (``$OMEGA BLOCK``): LKJ prior on the correlation, ``sd`` on each omega."""

    parameters: tuple[str, ...] = Field(min_length=2)
    sd: PriorField
    eta: float = Field(default=2.0, gt=0)
    source: str = ""

    @model_validator(mode="after")
    def _proper_sd(self) -> IIVBlock:
        _check_scale(self.sd, "the block's 'sd' (omega)")
        return self


class ModelCard(_CardModel):
    """A validated model card.

    Build one with :func:`load_card`; ``to_toml_dict`` gives the table it came from
    (with priors normalised), so a card round-trips through a fit file.
    """

    name: str
    description: str = ""
    agonist: str | None = None
    structure: Structure
    units: CardUnits = CardUnits()
    parameters: dict[str, ParameterSpec]
    residual: dict[str, ResidualSpec] = Field(min_length=1)
    iiv_block: IIVBlock | None = None

    @property
    def kind(self) -> CardKind:
        """``pk`` or ``pkpd`` (a whole model), ``system`` or ``agonist`` (parts of a study)."""
        if self.agonist is not None:
            return "agonist"
        if self.structure.pk is None:
            return "system"
        return "pk" if self.structure.pd is None else "pkpd"

    @model_validator(mode="after")
    def _structure_matches_parameters(self) -> ModelCard:
        s = self.structure
        needs_effect = {"pk": False, "pkpd": True, "system": False, "agonist": True}[self.kind]
        if s.pk is None and s.pd is None:
            raise ValueError("structure names no model: give 'pk', 'pd' or both")
        if self.kind == "agonist" and (s.pk is None or s.pd is not None):
            raise ValueError(
                "an agonist card gives 'pk' and 'drug_effect'; "
                "the PD structure belongs to the system card"
            )
        if (s.drug_effect is not None) != needs_effect:
            raise ValueError(
                f"a {self.kind} card {'needs' if needs_effect else 'takes no'} 'drug_effect'"
            )
        if self.kind != "system" and any(p.pooling == "partial" for p in self.parameters.values()):
            raise ValueError("pooling across agonists applies to system cards only")
        components = structural_parameters(s)
        declared = set(self.parameters)
        expected = {name for name, _, _ in components}
        required = {name for name, _, default in components if default is None}
        if missing := required - declared:
            raise ValueError(f"the structure needs parameters {sorted(missing)}")
        if unknown := declared - expected:
            raise ValueError(
                f"parameters {sorted(unknown)} are not parameters of the structure "
                f"(which has {sorted(expected)})"
            )
        for name, unit, _ in structural_units(s, self.units):
            card_spec = self.parameters.get(name)
            if card_spec is None or unit is None:
                continue
            if card_spec.per is not None:
                if not card_spec.unit.startswith(f"{unit}/"):
                    raise ValueError(
                        f"parameter '{name}' is per {card_spec.per}: its unit is the "
                        f"structure's '{unit}' per the covariate's unit ('{unit}/kg' for WT), "
                        f"not '{card_spec.unit}'"
                    )
            elif card_spec.unit != unit:
                raise ValueError(
                    f"parameter '{name}' has unit '{card_spec.unit}'; "
                    f"the structure expects '{unit}'"
                )
        if self.iiv_block is not None:
            for name in self.iiv_block.parameters:
                if name not in self.parameters or self.parameters[name].iiv is not None:
                    raise ValueError(
                        f"iiv_block names '{name}': block parameters must be card parameters "
                        "without their own 'iiv' (the block's 'sd' prior gives their omega)"
                    )
                prior = self.parameters[name].prior
                if prior is not None and prior_support(prior)[1] < float("inf"):
                    raise ValueError(
                        f"iiv_block names '{name}', whose {prior.distribution} prior is bounded "
                        "above: log-normal IIV takes its individual values out of that range"
                    )
        return self

    def to_toml_dict(self) -> dict[str, Any]:
        """Plain nested dict of the card (priors as ``{dist = ..., ...}`` tables)."""
        return self.model_dump(mode="json", exclude_none=True)


def load_card(source: str | Path | Mapping[str, Any]) -> ModelCard:
    """Read and validate a model card.

    Parameters
    ----------
    source
        Path to a TOML card, the TOML text itself, or an already-parsed mapping.

    Raises
    ------
    CardError
        If the file is missing, is not TOML, or does not describe a valid model; the
        message lists every problem with its location in the card.
    """
    return load_document(source, ModelCard, CardError, "model card")
