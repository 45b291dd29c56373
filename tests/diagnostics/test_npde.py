import numpy as np
import pytest
from scipy import stats

from tpopk.diagnostics import (
    DiagnosticsError,
    npde,
    plot_npde,
    population_prediction,
    prediction_discrepancies,
)


def test_decorrelated_discrepancies_match_the_gaussian_answer():
    # replicates from a known bivariate normal with strong within-subject correlation
    rng = np.random.default_rng(5)
    mean = np.array([10.0, 12.0])
    covariance = np.array([[4.0, 3.6], [3.6, 4.0]])
    replicates = rng.multivariate_normal(mean, covariance, size=40_000)
    observed = np.array([11.0, 11.0])
    pde, plain = prediction_discrepancies(observed, replicates)
    factor = np.linalg.cholesky(covariance)
    np.testing.assert_allclose(
        pde, stats.norm.cdf(np.linalg.solve(factor, observed - mean)), atol=0.01
    )
    np.testing.assert_allclose(plain, stats.norm.cdf((observed - mean) / 2.0), atol=0.01)
    # decorrelation matters: the second error given the first is far lower than its marginal
    assert pde[1] < 0.1 < plain[1]


def test_discrepancies_outside_all_replicates_are_clipped():
    replicates = np.random.default_rng(1).standard_normal((100, 1))
    pde, _ = prediction_discrepancies(np.array([50.0]), replicates)
    assert pde[0] == 1 - 1 / 200


def test_npde_of_the_right_model_is_standard_normal(synthetic):
    result = npde(synthetic.tree, "conc")
    assert result.attrs["n_replicates"] == 500
    assert abs(result.attrs["mean"]) < 0.15
    assert 0.8 < result.attrs["variance"] < 1.2
    assert result.attrs["p_global"] > 0.05
    np.testing.assert_allclose(result.attrs["mean"], np.mean(result["npde"].values))


def test_npde_flags_a_biased_model(biased):
    result = npde(biased.tree, "conc")
    assert result.attrs["mean"] > 1.5
    assert result.attrs["p_global"] < 1e-6


def test_blq_observations_are_left_out(censored):
    result = npde(censored.tree, "conc")
    blq = censored.tree.observed_data.y_conc.values == 0.3
    np.testing.assert_array_equal(np.isnan(result["npde"].values), blq)


def test_plot_npde(synthetic):
    pc = plot_npde(npde(synthetic.tree, "plt", num_draws=200))
    figure = pc.viz["figure"].item()
    assert [axes.get_title() for axes in figure.axes] == [
        "QQ plot against N(0, 1)",
        "distribution",
        "NPDE vs time",
    ]
    assert len(figure.axes[0].collections[0].get_offsets()) == 80
    assert figure.get_suptitle() == "NPDE of plt" or pytest.fail("no title")


def test_plot_npde_against_pred(synthetic):
    result = npde(synthetic.tree, "conc", num_draws=200)
    pred = population_prediction(synthetic.tree, "conc")
    figure = plot_npde(result, pred=pred).viz["figure"].item()
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[2:] == ["NPDE vs time", "NPDE vs PRED"]
    against_pred = figure.axes[3]
    assert against_pred.get_xlabel() == "PRED (mg/L)"
    points = against_pred.collections[0].get_offsets()
    keep = np.isfinite(result["npde"].values)
    np.testing.assert_allclose(points[:, 0], pred[keep])
    np.testing.assert_allclose(points[:, 1], result["npde"].values[keep])
    with pytest.raises(DiagnosticsError, match="has 2 values"):
        plot_npde(result, pred=[1.0, 2.0])
