import numpy as np
import pytest
import xarray as xr

from tpopk.diagnostics import DiagnosticsError, goodness_of_fit, plot_goodness_of_fit

from .synthetic import replaced

SAMPLE = ("chain", "draw")


def test_iwres_of_the_right_model_is_standard_normal(synthetic):
    for dvid in ("conc", "plt"):  # proportional and log-normal error
        iwres = goodness_of_fit(synthetic.tree, dvid)["iwres"].values
        assert abs(np.mean(iwres)) < 3 / np.sqrt(len(iwres))  # three standard errors
        assert abs(np.std(iwres) - 1) < 3 / np.sqrt(2 * len(iwres))


def test_iwres_of_a_biased_model_is_shifted(biased):
    # observations 1.5 x IPRED with a 15% proportional error: IWRES near (1.5 - 1) / 0.15
    assert np.mean(goodness_of_fit(biased.tree, "conc")["iwres"].values) > 2.5


def test_error_model_is_read_from_the_sigmas(synthetic):
    tree = synthetic.tree
    dv = tree.observed_data.y_conc.values
    ipred = tree.posterior.ipred_conc.median(SAMPLE).values
    fixed = xr.DataArray(np.full((2, 250), 0.5), dims=SAMPLE)
    additive = replaced(
        synthetic.tree, "posterior", drop=("sigma_prop_conc",), sigma_add_conc=fixed
    )
    np.testing.assert_allclose(goodness_of_fit(additive, "conc")["iwres"], (dv - ipred) / 0.5)
    combined = replaced(synthetic.tree, "posterior", sigma_add_conc=fixed)
    sigma_prop = float(tree.posterior.sigma_prop_conc.median())
    np.testing.assert_allclose(
        goodness_of_fit(combined, "conc")["iwres"],
        (dv - ipred) / np.sqrt(0.25 + (sigma_prop * ipred) ** 2),
    )
    missing = replaced(synthetic.tree, "posterior", drop=("sigma_prop_conc",))
    with pytest.raises(DiagnosticsError, match="no residual-error SD"):
        goodness_of_fit(missing, "conc")


def test_blq_observations_have_no_residual(censored):
    gof = goodness_of_fit(censored.tree, "conc")
    blq = censored.tree.observed_data.y_conc.values == 0.3
    np.testing.assert_array_equal(np.isnan(gof["iwres"].values), blq)
    np.testing.assert_array_equal(gof["blq"].values, blq)


def test_pred_is_the_posterior_median_of_pred(synthetic):
    gof = goodness_of_fit(synthetic.tree, "conc")
    np.testing.assert_array_equal(gof["pred"].values, synthetic.pred["conc"])
    without = replaced(synthetic.tree, "posterior", drop=("pred_conc",))
    assert "pred" not in goodness_of_fit(without, "conc")


def test_plot_has_the_four_panels(censored):
    gof = goodness_of_fit(censored.tree, "conc")
    figure = plot_goodness_of_fit(gof).viz["figure"].item()
    assert [axes.get_title() for axes in figure.axes] == [
        "conc (mg/L) vs PRED (mg/L)",
        "conc (mg/L) vs IPRED (mg/L)",
        "IWRES vs time (h)",
        "IWRES vs IPRED (mg/L)",
    ]
    # BLQ observations are left out of every panel
    n_quantified = int((~gof["blq"]).sum())
    for axes in figure.axes:
        assert len(axes.collections[0].get_offsets()) == n_quantified


def test_plot_without_pred_has_three_panels(synthetic):
    without = replaced(synthetic.tree, "posterior", drop=("pred_plt",))
    figure = plot_goodness_of_fit(goodness_of_fit(without, "plt")).viz["figure"].item()
    assert len(figure.axes) == 3
    assert figure.axes[0].get_title() == "plt (10^9/L) vs IPRED (10^9/L)"


def test_each_agonist_s_own_concentration_error_applies_to_its_rows():
    """Cross-agonist fits name the error sigma_<kind>_conc_<agonist> (build.py)."""
    from tpopk.diagnostics.goodness_of_fit import _residual_sds

    posterior = xr.Dataset(
        {
            "sigma_prop_conc_rom": (("chain", "draw"), np.full((1, 3), 0.3)),
            "sigma_add_conc_lus": (("chain", "draw"), np.full((1, 3), 2.0)),
        }
    )
    tree = xr.DataTree.from_dict({"posterior": posterior})
    data = xr.Dataset({"AGONIST": ("obs_conc", np.array(["ROM", "LUS", "ROM"]))})
    sds = _residual_sds(tree, data, "conc")
    np.testing.assert_array_equal(sds["prop"], [0.3, np.nan, 0.3])
    np.testing.assert_array_equal(sds["add"], [np.nan, 2.0, np.nan])
    assert "log" not in sds


def test_sigma_by_level_scales_its_subjects_residuals():
    """IWRES of a patient divides by their sigma_by level's sigma (ResidualSpec.sigmas).

    The fit labels each level sigma with its covariate and level; IWRES reads the labels.
    """
    from pathlib import Path

    from tpopk.diagnostics.goodness_of_fit import _residual_sds
    from tpopk.inference.fitting import _label_level_sigmas
    from tpopk.model import load_card

    system = load_card(Path(__file__).parents[2] / "models" / "thrombopoiesis.toml")
    posterior = xr.Dataset(
        {
            "sigma_log_plt": (("chain", "draw"), np.full((1, 3), 0.1)),
            "sigma_log_plt_ITP": (("chain", "draw"), np.full((1, 3), 0.6)),
            "sigma_log_plt_CLD": (("chain", "draw"), np.full((1, 3), 0.4)),
        }
    )
    labelled = _label_level_sigmas(posterior, (system,))
    assert labelled["sigma_log_plt_ITP"].attrs == {"sigma_by": "DISEASE", "level": "ITP"}
    assert labelled["sigma_log_plt"].attrs == {}
    tree = xr.DataTree.from_dict({"posterior": labelled})
    data = xr.Dataset({"DISEASE": ("obs_plt", np.array(["ITP", "HV", "CLD", "ITP"]))})
    sds = _residual_sds(tree, data, "plt")
    np.testing.assert_array_equal(sds["log"], [0.6, 0.1, 0.4, 0.6])
    with pytest.raises(DiagnosticsError, match="no DISEASE covariate"):
        _residual_sds(tree, data.rename(DISEASE="SEX"), "plt")
