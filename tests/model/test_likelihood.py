"""Residual error: each error model's log-likelihood against scipy, and sigma_by levels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tpopk.data import read_events
from tpopk.datasets import load_theophylline
from tpopk.model import CardError, build_model, load_card

CARD = """
name = "t"
[structure]
pk = "oral_1cmt"
[units]
dose = "mg"
concentration = "mg/L"
[parameters.ka]
unit = "1/h"
prior = { dist = "LogNormal", mu = 0.4, sigma = 0.5 }
source = "test"
[parameters.cl]
unit = "L/h"
prior = { dist = "LogNormal", mu = 1.0, sigma = 0.5 }
iiv = { dist = "HalfNormal", sigma = 0.5 }
source = "test"
[parameters.v]
unit = "L"
prior = { dist = "LogNormal", mu = 3.4, sigma = 0.5 }
source = "test"
[residual.conc]
"""

RESIDUALS = {
    "additive": 'error = "additive"\nsigma_add = { dist = "HalfNormal", sigma = 1.0 }',
    "proportional": 'error = "proportional"\nsigma_prop = { dist = "HalfNormal", sigma = 0.3 }',
    "lognormal": 'error = "lognormal"\nsigma_log = { dist = "HalfNormal", sigma = 0.3 }',
}
BY_DISEASE = (
    '\nsigma_by = { covariate = "DISEASE", levels = { ITP = { dist = "HalfNormal", '
    'sigma = 1.0 } }, source = "test" }'
)


def theophylline_with_disease():  # type: ignore[no-untyped-def]
    """Theophylline with subjects 1-6 labelled HV and 7-12 ITP (only the label matters).

    Its concentrations of exactly 0 are dropped: log-normal error needs positive values.
    """
    events = load_theophylline()
    frame = events.frame.copy()
    frame = frame[(frame["EVID"] != 0) | (frame["DV"] > 0)]
    frame["DISEASE"] = np.where(frame["ID"] <= 6, "HV", "ITP")
    return read_events(frame, units=events.units.as_dict())


def _reference_logp(error: str, y, prediction, sigma):  # type: ignore[no-untyped-def]
    """Log-density of each observation from scipy, independent of PyMC."""
    if error == "additive":
        return stats.norm.logpdf(y, prediction, sigma)
    if error == "proportional":
        return stats.norm.logpdf(y, prediction, sigma * prediction)
    return stats.lognorm.logpdf(y, sigma, scale=prediction)


@pytest.mark.parametrize("error", sorted(RESIDUALS))
def test_sigma_by_gives_each_level_its_own_sigma(error: str) -> None:
    card = load_card(CARD + RESIDUALS[error] + BY_DISEASE)
    assert load_card(card.to_toml_dict()) == card
    events = theophylline_with_disease()
    model = build_model(card, events)
    kind = card.residual["conc"].sigma[0]
    assert {f"{kind}_conc", f"{kind}_conc_ITP"} <= {v.name for v in model.free_RVs}
    point = model.initial_point()
    point[f"{kind}_conc_log__"] = np.log(0.2)
    point[f"{kind}_conc_ITP_log__"] = np.log(0.7)
    # the prediction at the point's values, not at a random draw of the free variables
    (ipred,) = model.replace_rvs_by_values([model["ipred_conc"]])
    prediction, logp = model.compile_fn(
        [ipred, model.logp(vars=[model["y_conc"]], sum=False)[0]],
        inputs=model.value_vars,
        on_unused_input="ignore",
    )(point)
    arrays = events.subject_arrays()
    rows = np.flatnonzero(arrays.obs_dvid == "conc")
    itp = events.covariates["DISEASE"].to_numpy()[arrays.obs_subject[rows]] == "ITP"
    assert 0 < itp.sum() < itp.size
    y = np.asarray(arrays.obs_dv[rows], dtype=float)
    expected = _reference_logp(error, y, prediction, np.where(itp, 0.7, 0.2))
    np.testing.assert_allclose(logp, expected, rtol=1e-9)


def test_sigma_by_without_its_covariate_in_the_data_names_it() -> None:
    card = load_card(CARD + RESIDUALS["additive"] + BY_DISEASE)
    with pytest.raises(CardError, match=r"residual\.conc: 'sigma_by' covariate 'DISEASE'"):
        build_model(card, load_theophylline())


def test_sigma_by_needs_a_one_sigma_error_model() -> None:
    combined = (
        'error = "combined"\nsigma_add = { dist = "HalfNormal", sigma = 1.0 }\n'
        'sigma_prop = { dist = "HalfNormal", sigma = 0.3 }'
    )
    with pytest.raises(CardError, match="'sigma_by' replaces the one sigma"):
        load_card(CARD + combined + BY_DISEASE)
