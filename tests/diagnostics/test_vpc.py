import itertools

import numpy as np
import pytest
import xarray as xr

from tpopk.diagnostics import DiagnosticsError, plot_vpc, vpc

from .synthetic import replaced

CONC_STRATA = ["conc, AGONIST=avatrombopag", "conc, AGONIST=eltrombopag"]


def test_strata_are_observation_type_by_agonist(synthetic):
    check = vpc(synthetic.tree)
    assert list(check["stratum"].values) == [
        *CONC_STRATA,
        "plt, AGONIST=avatrombopag",
        "plt, AGONIST=eltrombopag",
    ]
    assert list(check["AGONIST"].values) == ["avatrombopag", "eltrombopag"] * 2
    # 20 subjects per agonist, 9 concentrations and 2 platelet counts each
    np.testing.assert_array_equal(check["n_obs"].sum("bin").values, [180, 180, 40, 40])
    assert check.sizes == {"stratum": 4, "bin": 8, "percentile": 3}


def test_one_bin_against_a_direct_computation(synthetic):
    check = vpc(synthetic.tree, ["conc"], bins=[0.0, 1.5, 5.0, 30.0], stratify_by=[])
    tree = synthetic.tree
    early = np.isin(np.arange(360) % 9, [0, 1])  # the 0.5 h and 1 h samples
    observed = tree.observed_data.y_conc.values[early]
    np.testing.assert_allclose(
        check["observed"].isel(stratum=0, bin=0).values,
        np.quantile(observed, [0.05, 0.5, 0.95]),
    )
    replicates = tree.posterior_predictive.y_conc.values.reshape(500, -1)[:, early]
    medians = np.median(replicates, axis=1)
    np.testing.assert_allclose(
        check["simulated_median"].sel(percentile=0.5).isel(stratum=0, bin=0).item(),
        np.median(medians),
    )
    np.testing.assert_allclose(
        check["simulated_upper"].sel(percentile=0.5).isel(stratum=0, bin=0).item(),
        np.quantile(medians, 0.95),
    )
    np.testing.assert_array_equal(check["n_obs"].values[0], [80, 120, 160])
    assert check["bin_time"].values[0, 0] == 0.75


def test_the_right_model_covers_the_observed_percentiles(synthetic):
    check = vpc(synthetic.tree, ci_prob=0.9)
    defined = np.isfinite(check["observed"])
    # pointwise 90% intervals: about 10% of cells outside by chance (here 6 of 60)
    assert float(check["outside"].sum() / defined.sum()) <= 0.15


def test_a_biased_model_is_flagged(biased):
    check = vpc(biased.tree, ["conc"])
    median = check.sel(percentile=0.5)
    # observations are 1.5 times what the model predicts: above the interval in every bin
    assert bool((median["observed"] > median["simulated_upper"]).all())
    assert bool(check["outside"].sel(percentile=0.5).all())


def test_prediction_correction_scales_by_pred_over_its_bin_median(synthetic):
    pred = synthetic.pred["conc"]
    # observations exactly twice PRED: corrected, every value in a bin is 2 * median(PRED)
    fit = replaced(synthetic.tree, "observed_data", y_conc=("obs_conc", 2 * pred))
    bins = [0.0, 1.5, 5.0, 30.0]
    check = vpc(fit, ["conc"], bins=bins, stratify_by=[], prediction_corrected=True)
    time = np.tile([0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0], 40)
    for b, (low, high) in enumerate(itertools.pairwise(bins)):
        members = (time >= low) & (time <= high) if b == 2 else (time >= low) & (time < high)
        expected = 2 * np.median(pred[members])
        np.testing.assert_allclose(check["observed"].isel(stratum=0, bin=b).values, expected)
    assert check.attrs["prediction_corrected"] == 1


def test_prediction_correction_leaves_out_pre_dose_observations(synthetic):
    pred = np.array(synthetic.pred["conc"], dtype=float)
    time = np.tile([0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0], 40)
    pred[time == 0.5] = 0.0  # as PRED is before the first dose

    def with_pred(values):
        stored = synthetic.tree["posterior"]["pred_conc"]
        return ("chain", "draw", "obs_conc"), np.broadcast_to(values, stored.shape).copy()

    fit = replaced(synthetic.tree, "observed_data", y_conc=("obs_conc", 2 * pred))
    fit = replaced(fit, "posterior", pred_conc=with_pred(pred))
    bins = [0.0, 1.5, 5.0, 30.0]
    check = vpc(fit, ["conc"], bins=bins, stratify_by=[], prediction_corrected=True)
    assert check.attrs["n_left_out"] == 40
    np.testing.assert_array_equal(check["n_obs"].values[0], [40, 120, 160])
    # the rest are corrected as before: every value in the first bin is 2 * median(PRED)
    expected = 2 * np.median(pred[time == 1.0])
    np.testing.assert_allclose(check["observed"].isel(stratum=0, bin=0).values, expected)
    assert vpc(fit, ["conc"], bins=bins, stratify_by=[]).attrs["n_left_out"] == 0
    nowhere = replaced(fit, "posterior", pred_conc=with_pred(np.zeros_like(pred)))
    with pytest.raises(DiagnosticsError, match="nowhere positive"):
        vpc(nowhere, ["conc"], bins=bins, prediction_corrected=True)


def test_prediction_correction_removes_dose_spread(synthetic):
    plain = vpc(synthetic.tree, ["conc"])
    corrected = vpc(synthetic.tree, ["conc"], prediction_corrected=True)
    # doses of 50, 100 and 200 mg widen the plain 5-95% range; correction takes them out
    width = plain["observed"].sel(percentile=0.95) - plain["observed"].sel(percentile=0.05)
    pc_width = corrected["observed"].sel(percentile=0.95) - corrected["observed"].sel(
        percentile=0.05
    )
    assert float((pc_width / width).mean()) < 0.7
    defined = np.isfinite(corrected["observed"])
    assert float(corrected["outside"].sum() / defined.sum()) <= 0.15


def test_prediction_correction_needs_pred_of_every_type(synthetic):
    without = replaced(synthetic.tree, "posterior", drop=("pred_plt",))
    with pytest.raises(DiagnosticsError, match=r"needs PRED \(pred_plt in the posterior\)"):
        vpc(without, prediction_corrected=True)
    assert vpc(without, ["conc"], prediction_corrected=True).attrs["prediction_corrected"] == 1


def test_blq_fraction_and_censored_percentiles(censored):
    check = vpc(censored.tree, ["conc"], bins=[0.0, 10.0, 30.0], stratify_by=[])
    tree = censored.tree
    late = np.arange(360) % 9 >= 7  # 12 h and 24 h
    blq = tree.observed_data.y_conc.values == 0.3
    assert check["blq_observed"].values[0, 1] == pytest.approx(blq[late].mean())
    assert check["blq_observed"].values[0, 0] == pytest.approx(blq[~late].mean())
    # the simulated BLQ fraction comes from the replicates: at or below the LLOQ is BLQ
    replicates = tree.posterior_predictive.y_conc.values.reshape(500, -1)[:, late]
    fractions = (replicates <= 0.3).mean(axis=1)
    assert check["blq_simulated_median"].values[0, 1] == pytest.approx(np.median(fractions))
    assert check["blq_simulated_lower"].values[0, 1] <= blq[late].mean()
    assert blq[late].mean() <= check["blq_simulated_upper"].values[0, 1]
    # more than 5% of the late samples are BLQ: their 5th percentile is undefined
    assert blq[late].mean() > 0.05
    assert np.isnan(check["observed"].sel(percentile=0.05).values[0, 1])
    assert np.isnan(check["simulated_median"].sel(percentile=0.05).values[0, 1])
    assert np.isfinite(check["observed"].sel(percentile=0.5).values[0, 1])


def test_quantile_bins_hold_equal_counts(synthetic):
    check = vpc(synthetic.tree, ["conc"], bins=3, stratify_by=[])
    # 9 nominal times: the terciles (interpolated) split them 3/3/3
    np.testing.assert_array_equal(check["n_obs"].values[0], [120, 120, 120])
    np.testing.assert_allclose(check["bin_start"].values[0], [0.5, 8 / 3, 20 / 3])
    np.testing.assert_allclose(check["bin_end"].values[0], [8 / 3, 20 / 3, 24.0])


def test_plot_without_blq_has_one_row(synthetic):
    pc = plot_vpc(vpc(synthetic.tree))
    figure = pc.viz["figure"].item()
    assert len(figure.axes) == 4
    axes = figure.axes[0]
    assert axes.get_title() == "conc, AGONIST=avatrombopag"
    assert axes.get_ylabel() == "conc (mg/L)"
    # per percentile: a simulated band, a dashed simulated median and the observed line
    assert len(axes.collections) == 3
    assert len(axes.lines) == 6
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels[:2] == ["simulated 5th (90% interval)", "observed 5th"]
    assert figure.axes[1].get_legend() is None


def test_plot_with_blq_adds_a_row(censored):
    check = vpc(censored.tree, ["conc"], prediction_corrected=True)
    pc = plot_vpc(check, log_y=True)
    figure = pc.viz["figure"].item()
    assert len(figure.axes) == 4  # two strata x (percentiles, fraction BLQ)
    titles = [axes.get_title() for axes in figure.axes]
    assert titles.count("fraction BLQ") == 2
    percentile_axes = [a for a in figure.axes if a.get_title() in CONC_STRATA]
    assert percentile_axes[0].get_ylabel() == "prediction-corrected conc (mg/L)"
    assert percentile_axes[0].get_yscale() == "log"
    assert isinstance(check, xr.Dataset)
