"""Virtual patients from model cards, and the posterior predictive comparison of arms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tpopk.inference import Fit
from tpopk.model import load_card
from tpopk.simulate import Enrolment, load_trial
from tpopk.simulate.comparison import compare
from tpopk.simulate.virtual import Agonist, CardResponse, individual_values, simulate_trial

ROOT = Path(__file__).parents[2]
CARD = load_card(ROOT / "models" / "generic" / "oral_1cmt_idr.toml")
TRIAL = ROOT / "models" / "trials" / "hetrombopag_phase3_itp.toml"


def test_individual_values_follow_the_prior() -> None:
    covariates = pd.DataFrame({"WT": np.full(500, 70.0)})
    values = individual_values(Agonist(CARD, CARD), covariates, draws=2, seed=5)
    assert values["ka"].shape == (2, 500)
    # ka has no IIV: one value per draw; cl has IIV: the log-SD within a draw is omega
    assert np.ptp(values["ka"], axis=1).max() == 0
    assert np.log(values["cl"]).std(axis=1).min() > 0


def test_card_response_without_drug_stays_at_baseline() -> None:
    n = 3
    params = {
        "ka": np.ones(n),
        "cl": np.full(n, 5.0),
        "v": np.full(n, 50.0),
        "r0": np.array([20.0, 50.0, 90.0]),
        "kout": np.full(n, 0.02),
        "emax": np.ones(n),
        "ec50": np.ones(n),
    }
    response = CardResponse(Agonist(CARD, CARD), params, np.full(n, 70.0))
    times = np.tile([0.0, 100.0, 500.0], (n, 1))
    counts = response.platelets(np.zeros((n, 1)), np.zeros((n, 1)), times)
    np.testing.assert_allclose(counts, np.repeat(params["r0"][:, None], 3, axis=1), rtol=1e-12)
    dosed = response.platelets(np.zeros((n, 1)), np.full((n, 1), 100.0), times)
    assert (dosed[:, 1:] > counts[:, 1:]).all()


def test_simulated_trial_is_reproducible_and_placebo_stays_flat() -> None:
    design = load_trial(TRIAL)
    first = simulate_trial([CARD], design, n_patients=6, seed=2)
    again = simulate_trial([CARD], design, n_patients=6, seed=2)
    xr.testing.assert_identical(first, again)
    placebo = first["platelets"].sel(arm="placebo")
    baseline = first["baseline_platelets"].sel(arm="placebo")
    # placebo: no drug, so only the log-normal measurement error moves the counts
    ratio = np.log(placebo / baseline).isel(visit=slice(1, None))
    assert float(np.abs(ratio).max()) < 1.5
    assert float(first["dose_given"].sel(arm="placebo").sum()) == 0


def test_same_patients_run_every_arm_on_one_population() -> None:
    design = load_trial(TRIAL)
    first = design.arms[0]
    twins = design.model_copy(update={"arms": (first, first.model_copy(update={"name": "twin"}))})
    shared = simulate_trial([CARD], twins, n_patients=4, seed=3, same_patients=True)
    one, two = (shared.sel(arm=name) for name in (first.name, "twin"))
    for name in ("platelets", "dose_given", "baseline_platelets", "WT"):
        np.testing.assert_array_equal(one[name].to_numpy(), two[name].to_numpy())
    apart = simulate_trial([CARD], twins, n_patients=4, seed=3)
    baselines = apart["baseline_platelets"].to_numpy()
    assert not np.array_equal(baselines[0], baselines[1])


def test_trial_sized_arms_enrol_their_n_in_every_draw() -> None:
    design = load_trial(TRIAL)
    sizes = {"HETROM-2.5": 3, "HETROM-5": 2, "placebo": 1}
    arms = tuple(arm.model_copy(update={"n": sizes[arm.name]}) for arm in design.arms)
    screened = Enrolment(screening_counts=2, below=30.0, candidates=2.0)
    design = design.model_copy(update={"arms": arms, "enrolment": screened})
    trial = simulate_trial([CARD], design, n_patients=None, seed=4, draws=2)
    assert trial.sizes["draw"] == 2
    assert trial.sizes["patient"] == 6  # 2 candidates per patient of the largest arm
    enrolled = trial["enrolled"].sum("patient").transpose("arm", "draw").to_numpy()
    np.testing.assert_array_equal(enrolled, [[3, 3], [2, 2], [1, 1]])
    counts = trial["platelets"].where(trial["enrolled"])
    assert int(counts.count()) == 6 * 2 * trial.sizes["visit"]


@pytest.mark.slow
def test_compare_contrasts_are_consistent(prior_fit: Fit) -> None:
    result = compare(prior_fit, TRIAL, n_patients=5, draws=4, chunk=2, seed=1, progressbar=False)
    draws = result["draws"].to_dataset()
    week8 = draws["responder_week_8"]
    assert week8.sizes == {"arm": 3, "draw": 4}
    summary = result["summary"]["responder_week_8"]
    np.testing.assert_allclose(
        summary.sel(stat="median").to_numpy(), week8.median("draw").to_numpy()
    )
    contrasts = result["contrasts"].to_dataset()
    assert contrasts.sizes["pair"] == 6
    pick = (contrasts["arm"] == "HETROM-5") & (contrasts["versus"] == "placebo")
    diff = (week8.sel(arm="HETROM-5") - week8.sel(arm="placebo")).to_numpy()
    assert float(
        contrasts["p_better_responder_week_8"].where(pick, drop=True).item()
    ) == pytest.approx(float((diff > 0).mean()))
    # overshoot: lower is better
    over = draws["overshoot_400"]
    d = (over.sel(arm="HETROM-5") - over.sel(arm="placebo")).to_numpy()
    assert float(
        contrasts["p_better_overshoot_400"].where(pick, drop=True).item()
    ) == pytest.approx(float((d < 0).mean()))


@pytest.mark.slow
def test_compare_on_dask_matches_local(prior_fit: Fit) -> None:
    from distributed import LocalCluster

    local = compare(prior_fit, TRIAL, n_patients=4, draws=2, chunk=1, seed=7, progressbar=False)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        remote = compare(
            prior_fit,
            TRIAL,
            n_patients=4,
            draws=2,
            chunk=1,
            seed=7,
            scheduler=cluster.scheduler_address,
        )
    xr.testing.assert_allclose(local["draws"].to_dataset(), remote["draws"].to_dataset())


def test_short_itp_platelet_lifespans_stay_stable() -> None:
    """A 10 h lifespan (10 ageing compartments, 1 /h) would blow up on 12 h RK4 steps."""
    models = ROOT / "models"
    cards = [load_card(models / "thrombopoiesis.toml"), load_card(models / "hetrombopag.toml")]
    agonist = Agonist.from_cards(cards, "hetrombopag")
    n = 3
    params = {
        "plt0": np.full(n, 13.0),
        "tp": np.full(n, 142.0),
        "tplt": np.array([5.0, 10.0, 253.0]),
        "ka": np.full(n, 0.32),
        "cl": np.full(n, 7.66),
        "v": np.full(n, 241.0),
        "f": np.ones(n),
        "slope": np.full(n, 0.07),
    }
    response = CardResponse(agonist, params, np.full(n, 62.0))
    visits = np.tile(168.0 * np.arange(11), (n, 1))
    flat = response.platelets(np.zeros((n, 1)), np.zeros((n, 1)), visits)
    np.testing.assert_allclose(flat, 13.0, rtol=1e-9)
    daily = np.tile(24.0 * np.arange(70), (n, 1))
    dosed = response.platelets(daily, np.full((n, 70), 5.0), visits)
    # steady drive 1 + slope * Cavg (27.2 ng/mL) = 2.9: all reach it within 10 weeks
    assert np.isfinite(dosed).all()
    np.testing.assert_allclose(dosed[:, -1] / 13.0, 1 + 0.07 * 5e3 / (7.66 * 24), rtol=0.02)


@pytest.mark.slow
def test_arms_are_different_patients_in_one_world() -> None:
    """Parallel arms: independent patients (deviates, errors), shared population values.

    Two identical arms of one design: per patient, the week-8 fold change of one arm
    must be unrelated to the other's (the same deviates in every arm made them
    near-identical), while per prior draw the arms' median courses move together (the
    population values are one draw for the whole trial).
    """
    design = load_trial(TRIAL)
    first = design.arms[0]
    twins = design.model_copy(update={"arms": (first, first.model_copy(update={"name": "twin"}))})
    trial = simulate_trial([CARD], twins, n_patients=80, seed=4, draws=6)
    fold = np.log(trial["platelets"].isel(visit=-1) / trial["baseline_platelets"])
    one, two = (fold.sel(arm=name).to_numpy() for name in (first.name, "twin"))  # [draw, patient]
    within = [np.corrcoef(a, b)[0, 1] for a, b in zip(one, two, strict=True)]
    assert np.abs(within).max() < 0.4, within
    across = np.corrcoef(np.median(one, axis=1), np.median(two, axis=1))[0, 1]
    assert across > 0.8, across


def test_prior_population_draws_the_system_once_for_every_agonist() -> None:
    from tpopk.simulate.virtual import prior_population

    library = [load_card(ROOT / "models" / f"{n}.toml") for n in ("thrombopoiesis",)]
    library += [load_card(ROOT / "models" / f"{a}.toml") for a in ("eltrombopag", "romiplostim")]
    patients = pd.DataFrame({"WT": [70.0], "EAST_ASIAN": [0.0], "DISEASE": ["ITP"]})
    agonists = ["eltrombopag", "romiplostim"]
    population = prior_population(
        library, dict.fromkeys(agonists, patients), agonists=agonists, draws=5, seed=1
    )
    assert population["pop_tplt"].shape == (1, 5)
    assert population["z_tp_agonist"].shape == (1, 5, 2)  # one per agonist, drawn together
    assert {
        "pop_cl_eltrombopag",
        "pop_cl_romiplostim",
        "sigma_log_plt",
        "sigma_log_plt_ITP",
    } <= set(population)
    # and the arms' individual values are conditioned on it: per draw, the two agonists'
    # patients share one typical platelet lifespan (400 patients: the mean eta is within
    # ~0.03 of 0, while separately drawn typical values differ by ~0.3 on the log scale)
    many = pd.concat([patients] * 400, ignore_index=True)
    values = [
        individual_values(
            Agonist.from_cards(library, a),
            many,
            posterior=population,
            agonists=agonists,
            draws=5,
            seed=2 + k,
        )
        for k, a in enumerate(agonists)
    ]
    typical = [np.log(v["tplt"]).mean(axis=1) for v in values]
    np.testing.assert_allclose(typical[0], typical[1], atol=0.1)


def test_each_patient_takes_the_count_error_of_its_disease_and_draw() -> None:
    from tpopk.simulate.virtual import _measurement_sd

    system = load_card(ROOT / "models" / "thrombopoiesis.toml")
    draws = {"sigma_log_plt": [0.1, 0.2], "sigma_log_plt_ITP": [0.6, 0.7]}
    draws |= {"sigma_log_plt_CLD": [0.4, 0.5]}
    posterior = xr.Dataset({k: (("chain", "draw"), [v]) for k, v in draws.items()})
    # two draws of three patients each, draw-major as simulate_trial flattens them
    patients = pd.DataFrame({"DISEASE": ["HV", "ITP", "CLD", "ITP", "HV", "CLD"]})
    sd = _measurement_sd(system, posterior, patients, draws=2)
    np.testing.assert_array_equal(sd, [0.1, 0.6, 0.4, 0.7, 0.2, 0.5])
