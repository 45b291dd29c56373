"""Virtual patients from model cards: individual parameters and their platelet response.

Individual parameters come from the same PyMC graph the fit uses
(:func:`tpopk.model.parameters.individual_parameters`): population values from the prior
or from posterior draws, new inter-individual deviates for every virtual patient, and
the patients' covariates. Their platelet counts come from
:func:`tpopk.model.structural.response_at` with NumPy, so titration can re-simulate the
whole dosing history at every visit without compiling anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from numpy.typing import NDArray

from tpopk.model.card import CardError, ModelCard
from tpopk.model.levels import population_variables
from tpopk.model.parameters import individual_parameters
from tpopk.model.structural import Dosing, Drug, response_at
from tpopk.progress import quiet_pymc
from tpopk.simulate.design import TrialDesign
from tpopk.simulate.trial import ResponseModel, run_trial, sample_population, split_draws
from tpopk.simulate.visit_noise import VisitNoise

FloatArray = NDArray[np.float64]

# The parameter graph is small and evaluated once: compiling it with numba would cost more
# than every evaluation together.
_QUICK = {"mode": "FAST_COMPILE"}


@dataclass(frozen=True)
class Agonist:
    """The cards that simulate one agonist: its PK/potency card and the system card.

    For a single ``pkpd`` card both are that card. ``suffix`` is how the fit named the
    agonist's variables (``_eltrombopag`` in a study, empty for one card).
    """

    drug: ModelCard
    system: ModelCard
    suffix: str = ""

    @classmethod
    def from_cards(cls, cards: Sequence[ModelCard], agonist: str) -> Agonist:
        """Pick ``agonist``'s card (and the system card) from a fit's cards."""
        if len(cards) == 1 and cards[0].kind == "pkpd":
            return cls(cards[0], cards[0])
        systems = [c for c in cards if c.kind == "system"]
        drugs = [c for c in cards if c.kind == "agonist" and str(c.agonist).lower() == agonist]
        if len(systems) != 1 or len(drugs) != 1:
            raise CardError(
                f"an arm of '{agonist}' needs one system card (e.g. thrombopoiesis.toml) and one "
                f"'{agonist}' agonist card; got {len(systems)} and {len(drugs)} among "
                f"{[c.name for c in cards]}"
            )
        return cls(drugs[0], systems[0], f"_{agonist}")


def _covariate_frame(cards: Sequence[ModelCard], covariates: pd.DataFrame) -> pd.DataFrame:
    """Covariates the cards use; those the population lacks sit at the card's reference."""
    frame = covariates.copy()
    for card in cards:
        for spec in card.parameters.values():
            for effect in spec.covariates:
                if effect.covariate not in frame.columns:
                    frame[effect.covariate] = effect.reference
    return frame


def individual_values(
    agonist: Agonist,
    covariates: pd.DataFrame,
    *,
    posterior: xr.Dataset | None = None,
    agonists: Sequence[str] = (),
    draws: int = 1,
    seed: int = 0,
) -> dict[str, FloatArray]:
    """Individual parameter values of virtual patients, ``[draw, patient]`` each.

    Parameters
    ----------
    agonist
        The cards to simulate.
    covariates
        One row per patient (``WT``, ``EAST_ASIAN``, ``DISEASE``, ...).
    posterior
        Posterior draws (dims ``chain, draw``) of a fit of the same cards: population
        values are taken from it, flattened over chains; without it they come from the
        priors (prior predictive).
    agonists
        The fit's ``agonist`` coordinate (for partially pooled system parameters).
    draws
        Prior draws, or how many posterior draws to use (evenly thinned).
    seed
        Seed for the new inter-individual deviates (and prior draws).
    """
    model, values = _individual_model(agonist, covariates, agonists)
    n_patients = len(covariates)
    # Estimated parameters are named Deterministics; fixed and data-given ones are constants.
    random = {k: v.name for k, v in values.items() if v.name in model.named_vars}
    out = {
        k: np.broadcast_to(np.asarray(v.eval(), dtype=float), (draws, n_patients)).copy()
        for k, v in values.items()
        if k not in random
    }
    if not random:
        return out
    if posterior is None:
        cards = [agonist.drug] if agonist.drug is agonist.system else [agonist.system, agonist.drug]
        name = agonist.suffix[1:] or str(agonist.drug.agonist)
        posterior = prior_population(
            cards, {name: covariates}, agonists=agonists, draws=draws, seed=seed
        )
    with quiet_pymc():
        sampled = pm.sample_posterior_predictive(
            _population_draws(posterior, model, draws),
            model=model,
            var_names=list(random.values()),
            random_seed=seed,
            progressbar=False,
            compile_kwargs=_QUICK,
        )["posterior_predictive"]
    for key, name in random.items():
        stacked = sampled[name].stack(sample=("chain", "draw")).transpose("sample", ...)
        out[key] = np.asarray(stacked.to_numpy(), dtype=float)
    return out


def _individual_model(
    agonist: Agonist, covariates: pd.DataFrame, agonists: Sequence[str]
) -> tuple[pm.Model, dict[str, Any]]:
    """Build the population and individual variables of ``agonist``'s cards for these patients."""
    cards = [agonist.drug] if agonist.drug is agonist.system else [agonist.system, agonist.drug]
    frame = _covariate_frame(cards, covariates).reset_index(drop=True)
    n_patients = len(frame)
    subject_dim = f"subject{agonist.suffix}" if agonist.suffix else "subject"
    coords: dict[str, object] = {
        "subject": np.arange(n_patients),
        subject_dim: np.arange(n_patients),
    }
    index = None
    if agonist.suffix:
        names = list(agonists) or [agonist.suffix[1:]]
        coords["agonist"] = names
        index = np.full(n_patients, names.index(agonist.suffix[1:]))
    with pm.Model(coords=coords) as model:
        values = individual_parameters(
            agonist.drug.parameters,
            frame,
            agonist.drug.iiv_block,
            suffix=agonist.suffix,
            subject_dim=subject_dim,
        )
        if agonist.system is not agonist.drug:
            values |= individual_parameters(
                agonist.system.parameters, frame, agonist.system.iiv_block, agonist_index=index
            )
    return model, values


def prior_population(
    cards: Sequence[ModelCard],
    covariates: Mapping[str, pd.DataFrame],
    *,
    agonists: Sequence[str],
    draws: int,
    seed: int,
) -> xr.Dataset:
    """Draw the population values of every arm's cards from their priors, ``(chain, draw)``.

    One draw is one world: the system parameters (and each agonist's own) take one value
    per draw that every arm shares, as a posterior draw would. Drawing per arm instead
    would compare agonists across different thrombopoiesis systems.

    ``covariates`` holds, per agonist, patients whose covariate columns its cards read
    (their values do not matter: only population variables are drawn).
    """
    parts: dict[str, xr.DataArray] = {}
    system: ModelCard | None = None
    for i, (name, patients) in enumerate(covariates.items()):
        agonist = Agonist.from_cards(cards, name)
        system = agonist.system
        model, _ = _individual_model(agonist, patients, agonists)
        wanted = [n for n in population_variables(model) if n not in parts]
        if wanted:
            with quiet_pymc():
                sampled = pm.sample_prior_predictive(
                    draws=draws,
                    model=model,
                    var_names=wanted,
                    random_seed=np.random.default_rng([seed, i]),
                    compile_kwargs=_QUICK,
                )["prior"]
            parts |= {n: sampled[n] for n in wanted}
    population = xr.Dataset(parts)
    if system is not None:
        for variable, values in _measurement_prior_draws(system, draws, seed).items():
            population[variable] = (("chain", "draw"), values[None])
    return population


def _population_draws(posterior: xr.Dataset, model: pm.Model, draws: int) -> xr.DataTree:
    """Select the population-level posterior draws ``model`` needs, thinned to ``draws``.

    Subject-level variables are left out, so PyMC draws new deviates for new patients.
    """
    needed = population_variables(model)
    if missing := [n for n in needed if n not in posterior.data_vars]:
        raise CardError(f"the posterior lacks population variables {missing} of these cards")
    flat = posterior[needed].stack(sample=("chain", "draw"))
    chosen = np.linspace(0, flat.sizes["sample"] - 1, draws).round().astype(int)
    thinned = flat.isel(sample=chosen).drop_vars(["sample", "chain", "draw"])
    thinned = thinned.rename(sample="draw").expand_dims(chain=1).transpose("chain", "draw", ...)
    return xr.DataTree.from_dict({"posterior": thinned})


#: Patients simulated together, bounding the memory of one batch's solver grid and
#: superposition terms.
CHUNK = 64


@dataclass
class CardResponse:
    """Platelet response of virtual patients (a :class:`tpopk.simulate.ResponseModel`).

    Parameters
    ----------
    agonist
        The cards.
    parameters
        Individual values ``[P]`` per parameter (system and drug), natural units.
    weight
        ``[P]`` body weight (kg), for weight-based doses.
    dose_per_kg
        Whether dose amounts are per kg (µg/kg) and must be multiplied by ``weight``.
    residual_sd
        SD of a log-normal measurement error on each count (0: the model prediction).
    fluctuation_share, fluctuation_half_life
        Share of the count's log variance that persists from visit to visit, and its
        half-life (h) (:mod:`tpopk.simulate.visit_noise`; share 0: white error).
    seed
        Seed of the measurement errors.
    """

    agonist: Agonist
    parameters: Mapping[str, FloatArray]
    weight: FloatArray
    dose_per_kg: bool = False
    residual_sd: float | FloatArray = 0.0
    fluctuation_share: float | FloatArray = 0.0
    fluctuation_half_life: float | FloatArray = 1.0
    seed: int = 0
    _noise: VisitNoise = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Start the measurement-error generator from ``seed``."""
        self._noise = VisitNoise(
            np.broadcast_to(np.asarray(self.residual_sd, dtype=float), (self.n_patients,)),
            self.fluctuation_share,
            self.fluctuation_half_life,
            np.random.default_rng(self.seed),
        )

    @property
    def n_patients(self) -> int:
        """Number of patients ``P``."""
        return int(self.weight.shape[0])

    def subset(self, patients: NDArray[np.int64]) -> CardResponse:
        """Restrict to ``patients``; measurement errors come from the same stream."""
        part = CardResponse(
            self.agonist,
            {k: _take(v, patients) for k, v in self.parameters.items()},
            self.weight[patients],
            self.dose_per_kg,
            _take(np.asarray(self.residual_sd, dtype=float), patients),
            _take(np.asarray(self.fluctuation_share, dtype=float), patients),
            _take(np.asarray(self.fluctuation_half_life, dtype=float), patients),
            self.seed,
        )
        part._noise = self._noise.subset(patients)
        return part

    def platelets(
        self, dose_time: FloatArray, dose_amount: FloatArray, times: FloatArray
    ) -> FloatArray:
        """Platelet counts (10^9/L) ``[P, T]`` at ``times`` for the doses given so far."""
        n, n_times = times.shape
        pd_name = str(self.agonist.system.structure.pd)
        amount = dose_amount * (self.weight[:, None] if self.dose_per_kg else 1.0)
        counts = np.empty((n, n_times))
        for start in range(0, n, CHUNK):
            rows = np.arange(start, min(start + CHUNK, n))
            # Dose slots nobody in the chunk receives cost a full superposition term each
            # (a placebo arm is nothing else): keep one column at least.
            slot = np.any(amount[rows] > 0, axis=0)
            slot[0] = slot[0] or not slot.any()
            given = amount[rows][:, slot] > 0
            zeros = np.zeros(given.shape)
            dosing = Dosing(
                time=np.where(given, dose_time[rows][:, slot], 0.0),
                amount=np.where(given, amount[rows][:, slot], 0.0),
                rate=zeros,
                ss=np.zeros(given.shape, dtype=np.int64),
                ii=zeros,
                duration=zeros,
                mask=given,
            )
            values = {k: _take(v, rows) for k, v in self.parameters.items()}
            drug = Drug(self.agonist.drug, np.arange(rows.size), dosing)
            counts[rows] = response_at(
                pd_name,
                [(drug, values)],
                values,
                np.repeat(np.arange(rows.size), n_times),
                times[rows].ravel(),
                rows.size,
                np,
            ).reshape(rows.size, n_times)
        return np.asarray(counts * np.exp(self._noise.draw(times)), dtype=float)


def _take(value: FloatArray | float, rows: NDArray[np.int64]) -> FloatArray:
    """Rows of a per-patient array; a scalar (fixed parameter) passes through."""
    array = np.asarray(value, dtype=float)
    return array[rows] if array.ndim == 1 else array


#: PD parameters that hold the pre-treatment count; a virtual patient's is set to the
#: baseline the trial design draws, as a measured baseline would condition it.
BASELINE_PARAMETERS = ("circ0", "plt0", "r0")


def _measurement_priors(system: ModelCard) -> tuple[str | None, dict[str | None, tuple[str, Any]]]:
    """Fit names and priors of the count's log-scale error SD.

    Returns the ``sigma_by`` covariate (None without one) and, per level of it (None: the
    subjects at no listed level), ``(variable name, prior)`` as the fit names them
    (:meth:`tpopk.model.card.ResidualSpec.sigmas`); empty where the count has no
    multiplicative error. Log-normal error uses ``sigma_log``; proportional error is
    log-normal to first order; an additive part is ignored (it matters only near zero
    counts).
    """
    response = system.structure.response
    spec = system.residual.get(response)
    if spec is None or spec.error == "additive":
        return None, {}
    if spec.error == "combined":  # one sigma per part, so no sigma_by (card validation)
        return None, {None: (f"sigma_prop_{response}", spec.sigma_prop)}
    column = None if spec.sigma_by is None else spec.sigma_by.covariate
    return column, spec.sigmas(response)


def _fluctuation_priors(system: ModelCard) -> dict[str, Any]:
    """Fit names and priors of the count's fluctuation share and half-life (or empty)."""
    response = system.structure.response
    spec = system.residual.get(response)
    if spec is None or spec.fluctuation is None:
        return {}
    return {
        f"share_fluct_{response}": spec.fluctuation.share,
        f"half_life_fluct_{response}": spec.fluctuation.half_life,
    }


def _measurement_prior_draws(system: ModelCard, draws: int, seed: int) -> dict[str, FloatArray]:
    """Prior draws of every measurement-error variable of ``system``, by fit name."""
    _, priors = _measurement_priors(system)
    named = dict(priors.values()) | _fluctuation_priors(system)
    if not named:
        return {}
    with pm.Model(), quiet_pymc():
        for variable, prior in named.items():
            prior.create_variable(variable)
        sampled = pm.sample_prior_predictive(draws=draws, random_seed=seed, compile_kwargs=_QUICK)
    return {
        variable: np.asarray(sampled["prior"][variable].to_numpy().ravel(), dtype=float)
        for variable in named
    }


def _per_patient(posterior: xr.Dataset, variable: str, draws: int, n_patients: int) -> FloatArray:
    """``variable`` of each of ``n_patients`` patients held in ``draws`` draw-major blocks."""
    flat = posterior[variable].stack(sample=("chain", "draw")).to_numpy()
    chosen = np.linspace(0, flat.size - 1, draws).round().astype(int)
    return np.repeat(np.asarray(flat[chosen], dtype=float), n_patients // draws)


def _fluctuation(
    system: ModelCard, posterior: xr.Dataset, n_patients: int, draws: int
) -> tuple[FloatArray | float, FloatArray | float]:
    """Each patient's fluctuation share and half-life (h); ``(0, 1)``: white error only."""
    names = list(_fluctuation_priors(system))
    if not names:
        return 0.0, 1.0
    if missing := [n for n in names if n not in posterior.data_vars]:
        raise CardError(f"the posterior lacks the count fluctuation's variables {missing}")
    share, half_life = (_per_patient(posterior, n, draws, n_patients) for n in names)
    return share, half_life


def _measurement_sd(
    system: ModelCard, posterior: xr.Dataset, patients: pd.DataFrame, draws: int
) -> FloatArray:
    """Log-scale SD of each patient's count error.

    ``patients`` holds ``draws`` blocks of patients, draw-major, as the trial's flattened
    patients; each takes its draw's SD for its level of the ``sigma_by`` covariate.
    """
    column, priors = _measurement_priors(system)
    if not priors:
        return np.zeros(len(patients))

    def per_patient(variable: str) -> FloatArray:
        return _per_patient(posterior, variable, draws, len(patients))

    sd = per_patient(priors[None][0])
    # patients without the column sit at the default level, as _covariate_frame puts
    # covariates a population lacks at the card's reference
    if column is not None and column in patients:
        levels = patients[column].astype(str).to_numpy()
        for level, (variable, _) in priors.items():
            if level is not None:
                sd = np.where(levels == level, per_patient(variable), sd)
    return sd


def simulate_trial(
    cards: Sequence[ModelCard],
    design: TrialDesign,
    *,
    n_patients: int | None,
    seed: int = 0,
    posterior: xr.Dataset | None = None,
    agonists: Sequence[str] = (),
    draws: int = 1,
    same_patients: bool = False,
) -> xr.Dataset:
    """Run a trial design in closed loop on virtual patients simulated from model cards.

    Parameters
    ----------
    cards
        A ``pkpd`` card, or a system card with an agonist card for every arm's agonist.
    design
        The trial (:func:`tpopk.simulate.load_trial`).
    n_patients
        Virtual patients per arm and draw (new patients for every draw); ``None``: each
        arm enrols the real trial's ``n`` (:func:`tpopk.simulate.sample_population`).
    seed
        Seed of the population, the inter-individual deviates and measurement errors.
    posterior
        Posterior draws of a fit of ``cards`` (posterior predictive); without it the
        priors are used (prior predictive).
    agonists
        The fit's ``agonist`` coordinate, for partially pooled system parameters.
    draws
        Population draws; with more than one the result has a ``draw`` dimension.
    same_patients
        Run every arm on the same virtual patients (the first arm's covariates, and for
        arms of one agonist the same individual parameters and measurement errors):
        common random numbers, so that arms differing only in dose differ by the dose's
        effect alone (the dose grids of :mod:`tpopk.simulate.equivalence`).

    Returns
    -------
    xarray.Dataset
        As :func:`tpopk.simulate.run_trial`, with ``draw`` when ``draws > 1``.
    """
    # Every draw is a trial of its own patients (draw-major blocks of n_patients): one
    # sample reused by every draw would put its chance imbalance between arms into all.
    population = sample_population(design, n_patients, seed, draws=draws)
    per_draw = population.sizes["patient"] // draws
    names = [arm.name for arm in design.arms]
    if same_patients:
        population = population.isel(arm=np.zeros(len(names), dtype=int))
        population = population.assign_coords(arm=names)
    covariates = {}
    for arm in design.arms:
        people = population.sel(arm=arm.name)
        covariates[arm.name] = pd.DataFrame(
            {
                name: people[name].to_numpy()
                for name in ("WT", "EAST_ASIAN", "SPLENECTOMY", "DISEASE")
                if name in people
            }
        )
    if posterior is None:
        # prior predictive: one world per draw, shared by the arms as a posterior draw is
        if not agonists and len(cards) > 1:
            agonists = list(dict.fromkeys(arm.agonist for arm in design.arms))
        first = {arm.agonist: covariates[arm.name] for arm in reversed(design.arms)}
        posterior = prior_population(cards, first, agonists=agonists, draws=draws, seed=seed)
    # Patients of different arms are different people: each arm draws its own deviates
    # and measurement errors, unless the arms are to share patients.
    arm_seeds = np.random.SeedSequence(seed).generate_state(len(names))
    block = (np.arange(draws), np.arange(draws))
    responders: dict[str, ResponseModel] = {}
    # Individual values depend on the agonist and the patients only: with shared patients
    # they are drawn once per agonist (each draw builds and compiles a PyMC graph).
    drawn: dict[str, dict[str, FloatArray]] = {}
    for i, arm in enumerate(design.arms):
        agonist = Agonist.from_cards(cards, arm.agonist)
        people = population.sel(arm=arm.name)
        key, arm_seed = (arm.agonist, seed) if same_patients else (arm.name, int(arm_seeds[i]))
        if key not in drawn:
            drawn[key] = individual_values(
                agonist,
                covariates[arm.name],
                posterior=posterior,
                agonists=agonists,
                draws=draws,
                seed=arm_seed,
            )
        # [draw, all patients] -> draw d's values for its own block of patients
        flat = {
            name: value.reshape(draws, draws, per_draw)[block].reshape(-1)
            for name, value in drawn[key].items()
        }
        baseline = people["baseline_platelets"].to_numpy()
        for name in BASELINE_PARAMETERS:
            if name in flat:
                flat[name] = baseline
                break
        share, half_life = _fluctuation(agonist.system, posterior, baseline.size, draws)
        responders[arm.name] = CardResponse(
            agonist,
            flat,
            people["WT"].to_numpy(),
            dose_per_kg=design.titration_of(arm).dose_unit == "µg/kg",
            residual_sd=_measurement_sd(agonist.system, posterior, covariates[arm.name], draws),
            fluctuation_share=share,
            fluctuation_half_life=half_life,
            seed=arm_seed,
        )
    trial = run_trial(design, responders, population)
    return split_draws(trial, draws) if draws > 1 else trial
