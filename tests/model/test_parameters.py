"""Sampling coordinates of typical values (``individual_parameters(reparameterise=True)``).

The reparameterised model must be the card's model: the same prior of the population
parameters, and a log density that differs from the card's form only by the log
Jacobian of the change of coordinates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from pymc.logprob.transforms import LogTransform

from tpopk.model import load_card
from tpopk.model.card import ModelCard
from tpopk.model.parameters import LOG_SD, individual_parameters, population_unit

MODELS = Path(__file__).parents[2] / "models"
AGONISTS = ["romiplostim", "eltrombopag", "avatrombopag"]
N_SUBJECTS = 6


def system_card() -> ModelCard:
    return load_card(MODELS / "thrombopoiesis.toml")


def build(
    disease: list[str],
    *,
    reparameterise: bool,
    observed: bool = False,
    agonists: list[str] = AGONISTS,
) -> pm.Model:
    """The thrombopoiesis parameters of six subjects over ``agonists`` (three).

    With ``observed`` each subject's log baseline and log maturation time are observed
    (SD 0.05): a posterior in which the data inform each disease's and each agonist's
    typical value, not the reference or the pooled one.
    """
    frame = pd.DataFrame({"DISEASE": disease, "SPLENECTOMY": [0, 1] * (N_SUBJECTS // 2)})
    agonist = np.arange(N_SUBJECTS) % len(agonists)
    coords = {"subject": np.arange(N_SUBJECTS), "agonist": agonists}
    with pm.Model(coords=coords) as model:
        values = individual_parameters(
            system_card().parameters, frame, agonist_index=agonist, reparameterise=reparameterise
        )
        if observed:
            rng = np.random.default_rng(0)
            for name, centre in (("plt0", np.log(15.0)), ("tp", np.log(150.0))):
                data = centre + 0.3 * rng.standard_normal(N_SUBJECTS)
                pm.Normal(f"y_{name}", pm.math.log(values[name]), 0.05, observed=data)
    return model


ITP_ONLY = ["ITP"] * N_SUBJECTS
#: population parameters of the card's form, by the scale their prior is Normal on
LOG_SCALE = ("pop_plt0", "pop_tplt", "pop_gamma", "pop_tp", "pop_tp_agonist")
DRAWS = 20_000
LINEAR = ("beta_plt0_DISEASE", "beta_tplt_DISEASE", "beta_gamma_DISEASE", "tau_tp")


def prior_draws(model: pm.Model) -> np.ndarray:
    names = [*LOG_SCALE, *LINEAR, "z_tp_agonist"]
    draws = pm.draw([model[n] for n in names], draws=DRAWS, random_seed=3)
    columns = [np.log(d) if n in LOG_SCALE else d for n, d in zip(names, draws, strict=True)]
    return np.concatenate([c.reshape(DRAWS, -1) for c in columns], axis=1)


def test_only_the_levels_and_agonists_the_data_inform_are_rotated() -> None:
    model = build(ITP_ONLY, reparameterise=True)
    free = {v.name for v in model.free_RVs}
    assert {"log_pop_plt0_DISEASE", "z_pop_plt0", "log_pop_tp_agonist", "z_pop_tp"} <= free
    assert not free & {"pop_plt0", "beta_plt0_DISEASE", "pop_tp", "z_tp_agonist"}
    assert list(model.coords["disease_in_data"]) == ["ITP"]
    assert list(model.coords["disease_not_in_data"]) == ["CLD"]
    # the card's names stay, as deterministics with the card's dims
    assert model.named_vars_to_dims["beta_plt0_DISEASE"] == ("disease_level",)
    assert model.named_vars_to_dims["z_tp_agonist"] == ("agonist",)
    # healthy volunteers in the data inform the reference itself: the card's form
    mixed = build(["HV", "ITP"] * (N_SUBJECTS // 2), reparameterise=True)
    free = {v.name for v in mixed.free_RVs}
    assert {"pop_plt0", "beta_plt0_DISEASE"} <= free
    assert "log_pop_plt0_DISEASE" not in free
    # without reparameterise the free variables are the card's population parameters
    card_form = {v.name for v in build(ITP_ONLY, reparameterise=False).free_RVs}
    assert {"pop_plt0", "beta_plt0_DISEASE", "pop_tp", "z_tp_agonist"} <= card_form


def test_two_agonists_keep_the_pooled_deviates_non_centred() -> None:
    # two agonists barely inform tau_tp: their centred typical values would be a funnel
    model = build(ITP_ONLY, reparameterise=True, agonists=AGONISTS[:2])
    free = {v.name for v in model.free_RVs}
    assert {"log_pop_plt0_DISEASE", "pop_tp", "z_tp_agonist"} <= free
    assert not free & {"log_pop_tp_agonist", "z_pop_tp"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "disease", [ITP_ONLY, ["ITP", "CLD"] * (N_SUBJECTS // 2)], ids=["ITP", "ITP+CLD"]
)
def test_prior_of_the_population_parameters_is_unchanged(disease: list[str]) -> None:
    card_form = prior_draws(build(disease, reparameterise=False))
    rotated = prior_draws(build(disease, reparameterise=True))
    n = len(card_form)
    sd = card_form.std(axis=0)
    # means within 4.5 Monte Carlo SEs of the difference, SDs within 4%
    assert np.all(np.abs(rotated.mean(axis=0) - card_form.mean(axis=0)) < 4.5 * sd * np.sqrt(2 / n))
    np.testing.assert_allclose(rotated.std(axis=0), sd, rtol=0.04)
    # and the parameters stay independent a priori (reference vs effect, pooled vs z)
    off_diagonal = ~np.eye(card_form.shape[1], dtype=bool)
    correlation = np.corrcoef(rotated, rowvar=False)[off_diagonal]
    expected = np.corrcoef(card_form, rowvar=False)[off_diagonal]
    assert np.max(np.abs(correlation - expected)) < 0.05


def test_log_density_differs_from_the_card_form_by_the_log_jacobian() -> None:
    """Same posterior: log p_rotated(r) = log p_card(x(r)) + log |dx/dr| at any point r.

    ``x(r)`` reads the card-form values off the rotated model's deterministics. The log
    Jacobian of the change of coordinates, from closed forms: the reference baseline is
    ``mean(theta) + sd * z`` with ``sd = (1/s0^2 + sum 1/s_k^2)^-1/2`` (constant) and the
    effects ``theta - m``, so the baseline part is constant; the pooled value is
    ``mean(a) + sd(tau) * z``, ``sd(tau) = (1/s0^2 + K/tau^2)^-1/2``, and
    ``z_agonist = (a - m) / tau``, which adds ``log sd(tau) - K log tau``.
    """
    observed = {"disease": ITP_ONLY, "observed": True}
    rotated = build(**observed, reparameterise=True)
    card_form = build(**observed, reparameterise=False)
    rng = np.random.default_rng(7)
    rotated_logp = rotated.compile_logp(jacobian=True)
    card_logp = card_form.compile_logp(jacobian=True)
    # the card-form point (unconstrained values) from the rotated model's variables
    expressions = rotated.replace_rvs_by_values([rotated[rv.name] for rv in card_form.free_RVs])
    to_card = rotated.compile_fn(expressions, inputs=rotated.value_vars, on_unused_input="ignore")
    start = rotated.initial_point()
    differences = []
    for _ in range(8):
        point = {k: v + rng.normal(0.0, 0.5, np.shape(v)) for k, v in start.items()}
        card_point = {}
        for rv, natural in zip(card_form.free_RVs, to_card(point), strict=True):
            # positive parameters (LogNormal, HalfNormal) are sampled on the log scale
            transform = card_form.rvs_to_transforms[rv]
            assert transform is None or isinstance(transform, LogTransform)
            forward = natural if transform is None else np.log(natural)
            card_point[card_form.rvs_to_values[rv].name] = forward
        tau = float(np.exp(point["tau_tp_log__"]))
        s0 = float(system_card().parameters["tp"].prior.parameters["sigma"])  # type: ignore[union-attr]
        sd = (1 / s0**2 + len(AGONISTS) / tau**2) ** -0.5
        log_jacobian = np.log(sd) - len(AGONISTS) * np.log(tau)
        differences.append(rotated_logp(point) - card_logp(card_point) - log_jacobian)
    assert np.ptp(differences) < 1e-8


@pytest.mark.parametrize(
    ("name", "unit"),
    [
        ("pop_cl", "L/h"),
        ("pop_tp_agonist[romiplostim]", "h"),
        ("omega_cl", LOG_SD),
        ("omega_cl_ITP", LOG_SD),
        ("tau_tp", LOG_SD),
        ("beta_cl_WT", "exponent of WT/70"),
        ("beta_cl_DISEASE[ITP]", "log ratio to DISEASE HV"),
        ("beta_cl_EAST_ASIAN", "per unit of EAST_ASIAN"),
        ("sigma_add_conc", "µg/mL"),
        ("sigma_prop_conc_eltrombopag", "fraction"),
        ("sigma_log_plt_ITP", LOG_SD),
        ("unknown_x", ""),
    ],
)
def test_population_unit(name: str, unit: str) -> None:
    cards = [load_card(MODELS / "eltrombopag.toml"), system_card()]
    assert population_unit(name, cards, {"conc": "µg/mL", "plt": "10^9/L"}) == unit
