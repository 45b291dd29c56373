"""Calibration on arm-level results: likelihood pieces, grid posterior, card rewriting."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import special

from tpopk.model import load_card
from tpopk.simulate import calibration as cal
from tpopk.simulate import load_trial

ROOT = Path(__file__).parents[2]
MODELS = ROOT / "models"

HEADER = (
    "agonist,trial,population,arm,dose_regimen,n,endpoint,timepoint,value,unit,"
    "baseline_inclusion,source,confidence\n"
)
ROWS = (
    'eltrombopag,TRA100773A (NCT00102739),ITP,50 mg,50 mg QD,30,plt >= 50,day 43,70,%,<30,"B",H\n'
    "eltrombopag,TRA100773A (NCT00102739),ITP,placebo,placebo,29,median,day 43,16,10^9/L,"
    '<30,"B",H\n'
    "avatrombopag,ADAPT-1 (NCT01972529),CLD,40 mg (high cohort),40 mg,see above,no tx,day 10,"
    '88,%,40-50,"T",M\n'
)


@pytest.fixture(scope="module")
def designs():
    return {name: load_trial(MODELS / "trials" / name) for name in cal.DESIGNS.values()}


def test_binomial_loglik_by_hand():
    expected = math.log(special.comb(10, 3)) + 3 * math.log(0.2) + 7 * math.log(0.8)
    assert cal.binomial_loglik(3, 10, 0.2) == pytest.approx(expected)
    # a simulated probability of 0 is floored: 0 of 5 responders stays finite
    assert cal.binomial_loglik(0, 5, 0.0) == pytest.approx(5 * math.log(1 - cal.P_FLOOR))
    assert cal.binomial_loglik(1, 5, 0.0) == pytest.approx(
        math.log(5) + math.log(cal.P_FLOOR) + 4 * math.log(1 - cal.P_FLOOR)
    )


def test_synthetic_loglik_by_hand():
    # simulated log medians 0 and 2: mean 1, SD sqrt(2) (ddof 1); published median e
    expected = -0.5 * math.log(2 * math.pi * 2.0)
    assert cal.synthetic_loglik(math.e, np.array([0.0, 2.0])) == pytest.approx(expected)
    with pytest.raises(cal.CalibrationError, match="do not vary"):
        cal.synthetic_loglik(1.0, np.array([1.0, 1.0]))


def test_resampled_medians_of_constant_counts():
    counts = [np.full(7, 40.0), np.array([]), np.full(3, 40.0)]
    medians = cal.resampled_log_medians(counts, n=5, reps=4, seed=1)
    np.testing.assert_allclose(medians, math.log(40.0))
    assert medians.size == 8  # the empty draw (no one enrolled) adds none


def test_laplace_recovers_a_normal_and_refuses_an_edge():
    grid = np.linspace(-2.0, 4.0, 9)
    mean, sd = cal.laplace(grid, -0.5 * ((grid - 1.3) / 0.7) ** 2 + 5.0)
    assert (mean, sd) == pytest.approx((1.3, 0.7))
    with pytest.raises(cal.CalibrationError, match="edge"):
        cal.laplace(grid, -grid)


def test_grid_posterior_recovers_a_known_potency():
    """A logistic dose-response stands in for the simulator: binomial data from a known log
    potency, three doses of 400 patients; the posterior must cover it and be narrower than
    the prior."""
    doses = np.array([10.0, 30.0, 100.0])
    n = 400
    truth = math.log(0.05)

    def probability(log_potency: float) -> np.ndarray:
        return special.expit(np.log(doses) + log_potency)

    k = np.random.default_rng(7).binomial(n, probability(truth))

    def loglik(log_potency: float) -> float:
        p = probability(log_potency)
        return sum(cal.binomial_loglik(int(ki), n, float(pi)) for ki, pi in zip(k, p, strict=True))

    grid, values, mean, sd = cal.grid_posterior(math.log(0.02), 1.0, loglik, grid_size=15, span=3.0)
    assert grid.size == values.size == 15
    assert sd < 0.3
    assert abs(mean - truth) < 2.5 * sd


def test_read_training_maps_rows_to_design_arms(tmp_path, designs):
    path = tmp_path / "training.csv"
    path.write_text(HEADER + ROWS, encoding="utf-8")
    outcomes = cal.read_training(path, designs)
    assert [(o.row, o.design, o.design_arm, o.n) for o in outcomes] == [
        (1, "eltrombopag_tra100773a_itp.toml", "50 mg", 30),
        (2, "eltrombopag_tra100773a_itp.toml", "placebo", 29),
        (3, "avatrombopag_adapt1_high_cohort.toml", "avatrombopag", cal.ADAPT1_N["avatrombopag"]),
    ]
    assert outcomes[0].responders == 21
    assert not outcomes[0].is_median
    assert outcomes[1].is_median


def test_read_training_names_an_unknown_trial(tmp_path, designs):
    path = tmp_path / "training.csv"
    path.write_text(HEADER + ROWS.replace("TRA100773A (NCT00102739)", "RAISE"), encoding="utf-8")
    with pytest.raises(cal.CalibrationError, match="row 1: no design for trial 'RAISE'"):
        cal.read_training(path, designs)


def test_calibrated_card_replaces_the_potency_prior_and_cites_the_run(tmp_path):
    text = (MODELS / "eltrombopag.toml").read_text(encoding="utf-8")
    card = load_card(MODELS / "eltrombopag.toml")
    name, mu, sigma = cal.potency_prior(card)
    assert name == "slope"
    calibration = cal.Calibration(
        "eltrombopag", "slope", mu, sigma, np.zeros(3), np.zeros(3), 0.25, 0.125, (1, 2)
    )
    path = tmp_path / "eltrombopag.toml"
    path.write_text(cal.calibrated_card_text(text, calibration, "RUN"), encoding="utf-8")
    new = load_card(path)
    prior = new.parameters["slope"].prior
    assert prior.parameters == {"mu": 0.25, "sigma": 0.125}
    assert new.parameters["slope"].source.startswith("calibrated: RUN on trial_outcomes")
    assert "rows 1, 2" in new.parameters["slope"].source
    # nothing else changed
    assert new.parameters["cl"] == card.parameters["cl"]
    assert new.parameters["slope"].iiv == card.parameters["slope"].iiv


@pytest.mark.slow
def test_calibration_recovers_a_simulated_eltrombopag_slope(designs):
    """Published results simulated with a known slope (other seed, other prior draws) are
    calibrated back: the truth lies within 2.5 posterior SDs, narrower than the prior."""
    system = load_card(MODELS / "thrombopoiesis.toml")
    card = load_card(MODELS / "eltrombopag.toml")
    cards = [system, card]
    design = "eltrombopag_tra100773a_itp.toml"
    template = [
        cal.Outcome(i + 1, "eltrombopag", "T", arm, "r", 0.0, "%", 300, design, arm)
        for i, arm in enumerate(("30 mg", "75 mg", "placebo"))
    ]
    truth = 1.2  # mL/µg, e^0.64 SD above the literature prior's median 0.648
    population = cal.with_potency(
        cal.prior_draws(cards, "eltrombopag", 4, seed=11), "pop_slope_eltrombopag", truth
    )
    arms = cal.simulate_arms(cards, designs, template, population, n_virtual=100, seed=11)
    outcomes = [
        cal.Outcome(
            o.row,
            o.agonist,
            o.trial,
            o.arm,
            o.endpoint,
            100 * float(np.mean(arms[o.row].probability)),
            o.unit,
            o.n,
            o.design,
            o.design_arm,
        )
        for o in template
    ]
    result = cal.calibrate_agonist(
        cards,
        card,
        designs,
        outcomes,
        draws=3,
        n_virtual=50,
        grid_size=7,
        span=2.5,
        seed=3,
    )
    assert result.sigma < result.prior_sigma
    assert abs(result.mu - math.log(truth)) < 2.5 * result.sigma, (
        math.exp(result.mu),
        result.sigma,
    )


def test_write_library_refuses_a_folder_that_is_not_a_calibration(tmp_path):
    (tmp_path / "thrombopoiesis.toml").write_text("", encoding="utf-8")
    result = cal.Result(cal.Settings(), {}, {}, [])
    with pytest.raises(cal.CalibrationError, match="not a calibrated library"):
        cal.write_library(MODELS, tmp_path, result, 1.0)
    out = cal.write_library(MODELS, tmp_path / "new", result, 1.0)
    assert (out / "README.md").read_text(encoding="utf-8").startswith(cal.TITLE)
    assert (out / "eltrombopag.toml").read_text(encoding="utf-8") == (
        MODELS / "eltrombopag.toml"
    ).read_text(encoding="utf-8")
    cal.write_library(MODELS, out, result, 1.0)  # an earlier calibration is replaced


def test_cli_refuses_to_replace_a_library_before_any_work(tmp_path, capsys):
    from tpopk.cli import EXIT_INVALID, main

    (tmp_path / "eltrombopag.toml").write_text("", encoding="utf-8")
    code = main(["calibrate", "--training", "missing.csv", "--out", str(tmp_path)])
    assert code == EXIT_INVALID
    assert "not a calibrated library" in capsys.readouterr().err
