"""Known-truth synthetic studies: designs, prior quantiles, and simulation by the fitted model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from tpopk.data import AGONISTS, read_events
from tpopk.model import build_model, load_card, population_variables
from tpopk.simulate.synthetic import (
    ITP_STUDY_ARMS,
    PLATELET_DAYS,
    UNITS,
    design_itp_study,
    known_fit,
    prior_quantile,
    simulate_study,
)

ROOT = Path(__file__).parents[2]
ORAL = load_card(ROOT / "models" / "generic" / "oral_1cmt.toml")


def single_dose_design(n: int) -> pd.DataFrame:
    """``n`` subjects, 100 mg at time 0, concentrations at 0.5-24 h (placeholder DV)."""
    times = (0.5, 1.0, 2.0, 4.0, 8.0, 24.0)
    rows = []
    for subject in range(1, n + 1):
        rows.append(
            {
                "ID": subject,
                "TIME": 0.0,
                "EVID": 1,
                "AMT": 100.0,
                "DV": np.nan,
                "CMT": 1,
                "DVID": "",
            }
        )
        rows += [
            {"ID": subject, "TIME": t, "EVID": 0, "AMT": 0.0, "DV": 1.0, "CMT": 2, "DVID": "conc"}
            for t in times
        ]
    return pd.DataFrame(rows)


def test_prior_quantile_is_each_priors_quantile() -> None:
    model = build_model(ORAL, read_events(single_dose_design(2), units={"conc": "mg/L"}))
    median = prior_quantile(model)
    assert median["pop_ka"] == pytest.approx(1.0)  # LogNormal(0, 1)
    assert median["pop_cl"] == pytest.approx(np.exp(1.6))
    assert median["omega_ka"] == pytest.approx(norm.ppf(0.75))  # HalfNormal(1)
    assert median["sigma_add_conc"] == pytest.approx(2 * norm.ppf(0.75))
    lower = prior_quantile(model, 0.25)
    assert lower["pop_v"] == pytest.approx(np.exp(3.9 + 1.2 * norm.ppf(0.25)))
    assert (
        set(median)
        == set(population_variables(model))
        == {"pop_ka", "omega_ka", "pop_cl", "omega_cl", "pop_v", "omega_v", "sigma_add_conc"}
    )


def test_known_fit_needs_exactly_the_population_variables() -> None:
    events = read_events(single_dose_design(2), units={"conc": "mg/L"})
    values = prior_quantile(build_model(ORAL, events))
    fit = known_fit([ORAL], events, values)
    assert fit.posterior.sizes == {"chain": 1, "draw": 1}
    assert fit.posterior["pop_cl"].item() == pytest.approx(float(values["pop_cl"]))
    with pytest.raises(ValueError, match="lack population variables"):
        known_fit([ORAL], events, {k: v for k, v in values.items() if k != "pop_ka"})
    with pytest.raises(ValueError, match="not population variables"):
        known_fit([ORAL], events, {**values, "z_cl": np.zeros(2)})


def test_simulated_concentrations_follow_the_closed_form_at_the_known_values() -> None:
    values = {
        "pop_ka": 1.5,
        "pop_cl": 3.0,
        "pop_v": 30.0,
        "omega_ka": 0.3,
        "omega_cl": 0.3,
        "omega_v": 0.3,
        "sigma_add_conc": 1e-4,
    }
    design = single_dose_design(40)
    design.attrs["units"] = {"conc": "mg/L"}
    study = simulate_study([ORAL], design, values=values, seed=4)
    ka, cl, v = (study.individual[p] for p in ("ka", "cl", "v"))
    # new subjects: log-normal IIV around the known typical values with SD omega
    for p, typical in (("ka", 1.5), ("cl", 3.0), ("v", 30.0)):
        logs = np.log(study.individual[p])
        assert abs(np.median(logs) - np.log(typical)) < 0.15
        assert 0.2 < logs.std() < 0.4
    obs = study.events.observations
    row = obs["ID"].to_numpy() - 1
    k, t = cl[row] / v[row], obs["TIME"].to_numpy()
    expected = 100.0 * ka[row] / (v[row] * (ka[row] - k)) * (np.exp(-k * t) - np.exp(-ka[row] * t))
    np.testing.assert_allclose(obs["DV"].to_numpy(), expected, rtol=1e-5, atol=1e-3)
    assert study.values["pop_cl"] == pytest.approx(3.0)
    assert study.generating_values()["synthetic"] is True


def test_itp_design_doses_every_agonist_by_its_regimen() -> None:
    frame = design_itp_study(ITP_STUDY_ARMS, 4, seed=3)
    events = read_events(frame, units=UNITS)
    assert len(events.subjects) == 20
    covariates = events.covariates
    assert set(covariates["AGONIST"]) == set(AGONISTS)
    assert set(covariates["DISEASE"]) == {"ITP"}
    doses = frame[frame["EVID"] == 1].set_index("ID")
    eltrombopag = doses[doses["AGONIST"] == "eltrombopag"]
    np.testing.assert_array_equal(
        eltrombopag["AMT"], np.where(eltrombopag["EAST_ASIAN"] == 1, 25.0, 50.0)
    )
    romiplostim = doses[doses["AGONIST"] == "romiplostim"]
    np.testing.assert_allclose(romiplostim["AMT"], 3.0 * romiplostim["WT"] / 1000, rtol=1e-9)
    assert set(romiplostim["II"]) == {168.0}
    counts = events.observations.groupby(["ID", "DVID"]).size().unstack()
    assert (counts["conc"] == 6).all()
    assert (counts["plt"] == len(PLATELET_DAYS)).all()
    # the day-0 count is the pre-dose baseline: its record comes before the first dose
    first = frame.groupby("ID").head(1)
    assert (first["DVID"] == "plt").all()
    assert (first["TIME"] == 0).all()


def test_negative_simulated_values_are_reported_blq_at_zero() -> None:
    # additive error SD 0.5 mg/L against concentrations falling towards 0 by 48 h
    values = {
        "pop_ka": 1.5,
        "pop_cl": 3.0,
        "pop_v": 30.0,
        "omega_ka": 0.3,
        "omega_cl": 0.3,
        "omega_v": 0.3,
        "sigma_add_conc": 0.5,
    }
    design = single_dose_design(10)
    design.attrs["units"] = {"conc": "mg/L"}
    observations = simulate_study([ORAL], design, values=values, seed=1).events.observations
    blq = observations[observations["BLQ"] == 1]
    assert 0 < len(blq) < len(observations)
    assert (blq["LLOQ"] == 0).all()
    assert blq["DV"].isna().all()
    assert (observations.loc[observations["BLQ"] == 0, "DV"] >= 0).all()
