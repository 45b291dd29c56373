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


def _conc_prediction_and_logp(model, point):  # type: ignore[no-untyped-def]
    """``ipred_conc`` and each ``y_conc`` log density at ``point`` (not at a random draw)."""
    (ipred,) = model.replace_rvs_by_values([model["ipred_conc"]])
    return model.compile_fn(
        [ipred, model.logp(vars=[model["y_conc"]], sum=False)[0]],
        inputs=model.value_vars,
        on_unused_input="ignore",
    )(point)


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
    prediction, logp = _conc_prediction_and_logp(model, point)
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


# --- within-subject fluctuation: an OU deviation of the log observation ----------------

FLUCTUATION = (
    '\nfluctuation = { share = { dist = "Beta", alpha = 8.0, beta = 2.0 }, half_life = '
    '{ dist = "LogNormal", mu = 1.5, sigma = 0.5 }, source = "test" }'
)


def _ou_covariance(time, sd, share, half_life):  # type: ignore[no-untyped-def]
    """Covariance of one subject's log observations, written out from the definition."""
    persistent = np.sqrt(share) * np.asarray(sd)
    lag = np.abs(np.subtract.outer(time, time))
    correlated = np.outer(persistent, persistent) * 2.0 ** (-lag / half_life)
    return correlated + np.diag((1 - share) * np.asarray(sd) ** 2)


def test_fluctuation_log_density_sums_to_the_multivariate_normal() -> None:
    from tpopk.model.likelihood import SubjectLayout, fluctuation_log_density

    rng = np.random.default_rng(3)
    # three subjects with 4, 1 and 3 observations, interleaved and out of time order
    subject = np.array([7, 2, 7, 9, 7, 9, 9, 7])
    time = np.array([30.0, 5.0, 2.0, 48.0, 10.0, 0.5, 100.0, 0.0])
    residual = rng.normal(0.0, 0.5, subject.size)
    sd = rng.uniform(0.2, 0.8, subject.size)
    share, half_life = 0.7, 20.0
    layout = SubjectLayout.of(subject, time)
    # FAST_COMPILE: the graph is checked, not its numba compilation (the model test is)
    terms = fluctuation_log_density(residual, sd, share, half_life, layout).eval(
        mode="FAST_COMPILE"
    )
    for label in np.unique(subject):
        rows = np.flatnonzero(subject == label)
        expected = stats.multivariate_normal(
            mean=np.zeros(rows.size), cov=_ou_covariance(time[rows], sd[rows], share, half_life)
        ).logpdf(residual[rows])
        np.testing.assert_allclose(terms[rows].sum(), expected, rtol=1e-10)
        # the earliest observation's term is its marginal density
        first = rows[np.argmin(time[rows])]
        np.testing.assert_allclose(
            terms[first], stats.norm.logpdf(residual[first], 0.0, sd[first]), rtol=1e-10
        )


def test_fluctuation_log_density_gradient_matches_finite_differences() -> None:
    import pytensor
    import pytensor.tensor as pt

    from tpopk.model.likelihood import SubjectLayout, fluctuation_log_density

    rng = np.random.default_rng(4)
    subject = np.repeat([0, 1, 2], [5, 3, 4])
    time = np.concatenate([np.sort(rng.uniform(0, 200, n)) for n in (5, 3, 4)])
    layout = SubjectLayout.of(subject, time)
    residual, log_sd = pt.vector("residual"), pt.vector("log_sd")
    logit_share, log_half_life = pt.scalar("logit_share"), pt.scalar("log_half_life")
    total = fluctuation_log_density(
        residual, pt.exp(log_sd), pt.sigmoid(logit_share), pt.exp(log_half_life), layout
    ).sum()
    inputs = [residual, log_sd, logit_share, log_half_life]
    value_and_grad = pytensor.function(
        inputs, [total, *pytensor.grad(total, inputs)], mode="FAST_COMPILE"
    )
    point = [
        rng.normal(0, 0.4, subject.size),
        np.log(rng.uniform(0.2, 0.7, subject.size)),
        np.array(0.8),
        np.log(30.0),
    ]
    _, *gradient = value_and_grad(*point)
    step = 1e-6
    for which, analytic in enumerate(gradient):
        flat = np.atleast_1d(point[which]).astype(float)
        numeric = np.empty(flat.size)
        for k in range(flat.size):
            up, down = flat.copy(), flat.copy()
            up[k] += step
            down[k] -= step
            shape = np.shape(point[which])
            high = value_and_grad(*[*point[:which], up.reshape(shape), *point[which + 1 :]])[0]
            low = value_and_grad(*[*point[:which], down.reshape(shape), *point[which + 1 :]])[0]
            numeric[k] = (high - low) / (2 * step)
        np.testing.assert_allclose(np.atleast_1d(analytic), numeric, rtol=1e-6, atol=1e-8)


def test_fluctuation_in_a_model_is_the_lognormal_multivariate_density() -> None:
    card = load_card(CARD + RESIDUALS["lognormal"] + FLUCTUATION)
    assert load_card(card.to_toml_dict()) == card
    events = theophylline_with_disease()
    model = build_model(card, events)
    assert {"share_fluct_conc", "half_life_fluct_conc"} <= {v.name for v in model.free_RVs}
    point = model.initial_point()
    point["sigma_log_conc_log__"] = np.log(0.3)
    point["share_fluct_conc_logodds__"] = np.log(0.6 / 0.4)
    point["half_life_fluct_conc_log__"] = np.log(4.0)
    prediction, logp = _conc_prediction_and_logp(model, point)
    arrays = events.subject_arrays()
    rows = np.flatnonzero(arrays.obs_dvid == "conc")
    y = np.asarray(arrays.obs_dv[rows], dtype=float)
    subject, time = arrays.obs_subject[rows], arrays.obs_time[rows]
    for label in np.unique(subject):
        mine = subject == label
        expected = (
            stats.multivariate_normal(
                mean=np.log(prediction[mine]),
                cov=_ou_covariance(time[mine], np.full(mine.sum(), 0.3), 0.6, 4.0),
            ).logpdf(np.log(y[mine]))
            - np.log(y[mine]).sum()
        )
        np.testing.assert_allclose(logp[mine].sum(), expected, rtol=1e-9)


def test_fluctuation_draws_have_the_stationary_sd_and_lag_correlation() -> None:
    from tpopk.model.likelihood import SubjectLayout, draw_log_fluctuation

    n, sd, share, half_life = 20000, 0.5, 0.8, 24.0
    time = np.tile([0.0, 12.0, 24.0, 72.0], n)
    layout = SubjectLayout.of(np.repeat(np.arange(n), 4), time)
    deviation = draw_log_fluctuation(
        np.random.default_rng(5), layout, np.full(time.size, sd), share, half_life
    ).reshape(n, 4)
    np.testing.assert_allclose(deviation.std(axis=0), sd, rtol=0.03)
    corr = np.corrcoef(deviation, rowvar=False)[0]
    np.testing.assert_allclose(corr[1:], share * 2.0 ** (-time[1:4] / half_life), atol=0.03)


def test_fluctuation_refuses_blq_observations() -> None:
    card = load_card(CARD + RESIDUALS["lognormal"] + FLUCTUATION)
    events = load_theophylline()
    frame = events.frame.copy()
    frame["LLOQ"] = 0.5
    frame["BLQ"] = np.where((frame["EVID"] == 0) & (frame["DV"] < 0.5), 1, 0)
    frame.loc[frame["BLQ"] == 1, "DV"] = 0.0
    events = read_events(frame, units=events.units.as_dict())
    assert events.subject_arrays().obs_blq.any()
    with pytest.raises(CardError, match="'fluctuation' does not take BLQ observations"):
        build_model(card, events)


@pytest.mark.parametrize(
    ("fluctuation", "message"),
    [
        (FLUCTUATION, "'fluctuation' is a deviation of the log observation"),
        (
            FLUCTUATION.replace('"Beta", alpha = 8.0, beta = 2.0', '"HalfNormal", sigma = 1.0'),
            "fluctuation 'share' is a fraction of a variance",
        ),
    ],
)
def test_fluctuation_card_errors_name_what_is_expected(fluctuation: str, message: str) -> None:
    error = RESIDUALS["proportional" if "deviation" in message else "lognormal"]
    with pytest.raises(CardError, match=message):
        load_card(CARD + error + fluctuation)


@pytest.mark.slow
def test_fluctuation_parameters_are_recovered_from_simulated_counts() -> None:
    """Counts simulated with scipy's multivariate normal; the 90% intervals cover the truth."""
    import pymc as pm
    import pytensor.tensor as pt

    from tpopk.inference.nutpie_bridge import sample_nutpie
    from tpopk.model.likelihood import SubjectLayout, likelihood

    truth = {"sigma": 0.5, "share": 0.8, "half_life": 72.0}
    rng = np.random.default_rng(11)
    n_subjects, visits = 60, 12
    time = np.concatenate([np.sort(rng.uniform(0, 1000, visits)) for _ in range(n_subjects)])
    subject = np.repeat(np.arange(n_subjects), visits)
    level = np.repeat(rng.uniform(20, 200, n_subjects), visits)  # known predictions
    log_y = np.log(level)
    for s in range(n_subjects):
        rows = subject == s
        cov = _ou_covariance(
            time[rows], np.full(visits, truth["sigma"]), truth["share"], truth["half_life"]
        )
        log_y[rows] += rng.multivariate_normal(np.zeros(visits), cov)
    layout = SubjectLayout.of(subject, time)
    with pm.Model(coords={"obs": np.arange(subject.size)}) as model:
        sigma = pm.LogNormal("sigma", mu=np.log(0.3), sigma=1.0)
        share = pm.Beta("share", alpha=2.0, beta=2.0)
        half_life = pm.LogNormal("half_life", mu=np.log(48.0), sigma=1.0)
        prediction = pt.as_tensor(level)
        likelihood(
            "lognormal",
            "plt",
            prediction,
            sigma * pt.ones(subject.size),
            np.exp(log_y),
            np.zeros(subject.size, dtype=bool),
            np.zeros(subject.size),
            dims="obs",
            fluctuation=(share, half_life, layout),
        )
    tree = sample_nutpie(model, draws=500, tune=500, chains=2, cores=1, seed=12, progressbar=False)
    assert int(tree["sample_stats"]["diverging"].sum()) == 0
    for name, value in truth.items():
        low, high = np.quantile(tree["posterior"][name].to_numpy(), [0.05, 0.95])
        assert low <= value <= high, f"{name}: 90% {low:.3g}-{high:.3g}, truth {value}"
