import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import special, stats

from tpopk.diagnostics import (
    loo,
    loo_compare,
    loo_pit,
    loo_summary,
    loo_warnings,
    plot_khat,
    plot_loo_compare,
    plot_loo_pit,
)

pytestmark = pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")


def importance_sampling_elpd(log_lik):
    """Plain (unsmoothed) importance-sampling LOO: -log mean(1 / p(y_i | theta_s))."""
    flat = log_lik.reshape(-1, log_lik.shape[-1])
    return -(special.logsumexp(-flat, axis=0) - np.log(len(flat)))


def test_per_type_loo_is_arviz_loo_of_that_variable(synthetic, results):
    ours = results["conc"]
    reference = az.loo(synthetic.tree, var_name="y_conc", pointwise=True)
    assert ours.elpd == pytest.approx(reference.elpd, rel=1e-12)
    np.testing.assert_allclose(ours.pareto_k, reference.pareto_k)


def test_loo_agrees_with_plain_importance_sampling(synthetic, results):
    log_lik = synthetic.tree.log_likelihood.y_plt.values
    result = results["plt"]
    # the posterior barely moves per point here, so smoothing changes little
    assert result.elpd == pytest.approx(importance_sampling_elpd(log_lik).sum(), rel=1e-3)


@pytest.fixture(scope="module")
def results(synthetic):
    tree = synthetic.tree
    return {dvid: loo(tree, dvid) for dvid in ("conc", "plt", None)}


def test_combined_loo_pools_all_observations(synthetic, results):
    tree = synthetic.tree
    combined = results[None]
    parts = {dvid: results[dvid] for dvid in ("conc", "plt")}
    assert combined.n_data_points == 440
    assert combined.elpd == pytest.approx(sum(p.elpd for p in parts.values()), rel=1e-12)
    # pointwise values keep their event-table positions
    np.testing.assert_allclose(
        combined.elpd_i.sel(observation=tree.observed_data.obs_plt.values).values,
        parts["plt"].elpd_i.values,
    )
    assert set(combined.elpd_i["dvid"].values) == {"conc", "plt"}


def test_summary_table(synthetic):
    table = loo_summary(synthetic.tree)
    assert list(table.index) == ["conc", "plt", "all"]
    assert list(table["n"]) == [360, 80, 440]
    assert table.loc["all", "elpd"] == pytest.approx(table.loc[["conc", "plt"], "elpd"].sum())


def test_loo_warnings_name_each_type_with_high_pareto_k():
    table = pd.DataFrame(
        {"n": [360, 80, 440], "good_k": [0.7, 0.7, 0.7], "n_bad_k": [3, 0, 3]},
        index=["conc", "plt", "all"],
    )
    (message,) = loo_warnings(table)
    assert message.startswith("Pareto k is above 0.7 for 3 of 360 conc observations")
    assert loo_warnings(table.assign(n_bad_k=0)) == []


def test_constant_log_likelihood_of_deep_blq_points(censored):
    # log P(y <= LLOQ) is 0 in every draw for a point far below its LLOQ: ArviZ alone fails
    tree = censored.tree
    log_lik = tree.log_likelihood.y_conc.values.reshape(500, -1)
    constant = np.ptp(log_lik, axis=0) == 0
    assert constant.any()
    result = loo(tree, "conc")
    assert np.all(result.pareto_k.values[constant] == 0)
    np.testing.assert_allclose(result.elpd_i.values[constant], 0.0, atol=1e-12)
    # every other point exactly as ArviZ computes it without the constant one
    varying = tree.log_likelihood.y_conc.isel(obs_conc=~constant)
    reference = az.loo(
        xr.DataTree.from_dict(
            {"posterior": tree.posterior.to_dataset(), "log_likelihood": varying.to_dataset()}
        ),
        pointwise=True,
    )
    np.testing.assert_allclose(result.elpd_i.values[~constant], reference.elpd_i.values, rtol=1e-12)
    assert np.isfinite(loo_pit(tree, "conc")["y_conc"].values).all()


def test_flat_ratio_tails_get_plain_importance_weights():
    # the quick demo's study fit failed in ArviZ's tail fit ("All tail values are the same")
    rng = np.random.default_rng(7)
    chains, draws = 4, 100
    theta = rng.normal(size=(chains, draws))
    smooth = stats.norm.logpdf(0.3, loc=theta)
    # varies only in subnormal digits: max > min, yet the tail spans less than float tiny
    subnormal = -np.where(rng.random((chains, draws)) < 0.5, 5e-324, 0.0)
    # one chain stuck for 100 draws at this point's lowest likelihood: 100 tied tail draws
    stuck = stats.norm.logpdf(0.3, loc=theta + 0.5)
    stuck[0] = stuck.min() - 1.0
    log_lik = np.stack([smooth, subnormal, stuck], axis=-1)
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"theta": (("chain", "draw"), theta)}),
            "log_likelihood": xr.Dataset({"y_conc": (("chain", "draw", "obs_conc"), log_lik)}),
        }
    )
    result = loo(tree, "conc")
    np.testing.assert_array_equal(result.pareto_k.values[1:], 0.0)
    np.testing.assert_allclose(
        result.elpd_i.values[1:], importance_sampling_elpd(log_lik)[1:], rtol=1e-12
    )
    reference = az.loo(
        xr.DataTree.from_dict(
            {
                "posterior": tree.posterior.to_dataset(),
                "log_likelihood": tree.log_likelihood.isel(obs_conc=[0]).to_dataset(),
            }
        ),
        pointwise=True,
    )
    np.testing.assert_allclose(result.elpd_i.values[0], reference.elpd_i.values[0], rtol=1e-12)
    assert result.pareto_k.values[0] == pytest.approx(reference.pareto_k.values[0])


def test_loo_pit_is_uniform_for_the_right_model_and_not_for_a_biased_one(synthetic, biased):
    pit = loo_pit(synthetic.tree)
    for name in ("y_conc", "y_plt"):
        assert stats.kstest(pit[name].values, "uniform").pvalue > 0.01
    biased_pit = loo_pit(biased.tree, "conc")["y_conc"].values
    assert np.mean(biased_pit > 0.9) > 0.8  # observations sit above their predictions


@pytest.fixture(scope="module")
def comparison(synthetic, biased):
    return loo_compare({"right": synthetic.tree, "biased": biased.tree}, dvid="conc")


def test_compare_prefers_the_right_model(comparison):
    table = comparison
    assert list(table.index) == ["right", "biased"]
    assert table.loc["right", "weight"] > 0.9


def test_plots(synthetic, results, comparison):
    tree = synthetic.tree
    assert len(plot_khat(results[None]).viz["figure"].item().axes) == 1
    assert len(plot_loo_pit(tree).viz["figure"].item().axes) == 2  # one per DVID
    assert len(plot_loo_compare(comparison).viz["figure"].item().axes) == 1
