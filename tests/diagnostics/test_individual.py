import numpy as np
import pytest

from tpopk.diagnostics import DiagnosticsError, individual_fits, plot_individual_fits

from .synthetic import TIMES


def test_one_row_per_subject_in_time_order(synthetic):
    fits = individual_fits(synthetic.tree, "conc", ci_prob=0.8)
    assert fits.sizes == {"subject": 40, "point": 9}
    np.testing.assert_array_equal(fits["time"].sel(subject=3).values, TIMES)
    tree = synthetic.tree
    rows = slice(18, 27)  # subject 3's concentrations
    np.testing.assert_array_equal(fits["dv"].sel(subject=3), tree.observed_data.y_conc.values[rows])
    ipred = tree.posterior.ipred_conc.values.reshape(500, -1)[:, rows]
    np.testing.assert_allclose(fits["ipred_median"].sel(subject=3), np.median(ipred, axis=0))
    np.testing.assert_allclose(fits["ipred_lower"].sel(subject=3), np.quantile(ipred, 0.1, axis=0))
    np.testing.assert_allclose(fits["ipred_upper"].sel(subject=3), np.quantile(ipred, 0.9, axis=0))


def test_subjects_are_selected_and_padded(synthetic):
    fits = individual_fits(synthetic.tree, "plt", subjects=[5, 2])
    assert list(fits["subject"].values) == [5, 2]
    assert fits.sizes["point"] == 2
    with pytest.raises(DiagnosticsError, match=r"subjects \[99\]"):
        individual_fits(synthetic.tree, "plt", subjects=[99])


def test_plot_draws_one_panel_per_subject_with_blq_hollow(censored):
    fits = individual_fits(censored.tree, "conc", subjects=[1, 2, 3, 4, 5, 6])
    figure = plot_individual_fits(fits, col_wrap=3, log_y=True).viz["figure"].item()
    assert [axes.get_title() for axes in figure.axes] == [f"ID {i}" for i in range(1, 7)]
    blq = fits["blq"].values
    for axes, censored_points in zip(figure.axes, blq, strict=True):
        # band + observed points (+ hollow BLQ points), and the median line
        assert len(axes.collections) == 2 + int(censored_points.any())
        assert len(axes.lines) == 1
        assert axes.get_yscale() == "log"
    assert blq.any()


@pytest.fixture
def observed_prior_fit(prior_fit):
    """The prior fit of the generic PK/turnover card, with its observed data."""
    import xarray as xr

    from tpopk.diagnostics import describe_observations
    from tpopk.inference import Fit

    arrays = prior_fit.events.subject_arrays()
    observed = {}
    for dvid in ("conc", "plt"):
        where = np.flatnonzero(arrays.obs_dvid == dvid)
        dim = f"obs_{dvid}"
        observed[f"y_{dvid}"] = xr.DataArray(arrays.obs_dv[where], {dim: where}, dim)
    tree = prior_fit.tree.copy()
    tree["observed_data"] = xr.DataTree(xr.Dataset(observed))
    tree = describe_observations(tree, prior_fit.events)  # as tpopk.fit does
    return Fit(tree=tree, cards=prior_fit.cards, events=prior_fit.events)


@pytest.mark.xdist_group("fits")
def test_dense_grid_is_ipred_between_the_observations(observed_prior_fit):
    from tpopk.simulate.predict import predict

    prior_fit = observed_prior_fit
    dense = predict(prior_fit.events, fit=prior_fit, grid_points=25, draws=40, ci_prob=0.9)
    fits = individual_fits(prior_fit.tree, "plt", subjects=[2, 1], ci_prob=0.9, predictions=dense)
    assert fits.sizes == {"subject": 2, "point": 1, "grid": 25}
    np.testing.assert_allclose(fits["grid_time"].sel(subject=2), np.linspace(0.0, 48.0, 25))
    # the grid's last point is the observation at 48 h: the same draws, the same band
    # (to the platelet solver's accuracy, 1e-3: the grid's times move its steps, and some
    # prior draws turn over fast)
    table = predict(prior_fit.events, fit=prior_fit, draws=40, ci_prob=0.9)
    at_48 = (table["EVID"] == 0) & (table["DVID"] == "plt") & (table["ID"] == 2)
    last = fits.sel(subject=2).isel(grid=-1)
    expected = {"grid_median": "IPRED", "grid_upper": "IPRED_Q95", "grid_lower": "IPRED_Q5"}
    for name, column in expected.items():
        np.testing.assert_allclose(last[name], table[column].values[at_48.values], rtol=3e-3)
    # the grid curve passes through the posterior median of ipred at the observation
    np.testing.assert_allclose(
        last["grid_median"], fits["ipred_median"].sel(subject=2).isel(point=0), rtol=2e-3
    )
    figure = plot_individual_fits(fits, log_y=True).viz["figure"].item()
    assert [len(axes.lines[0].get_xdata()) for axes in figure.axes] == [25, 25]


def test_dense_grid_needs_the_same_grid_for_every_subject_shown(observed_prior_fit):
    from tpopk.simulate.predict import predict

    prior_fit = observed_prior_fit
    dense = predict(prior_fit.events, fit=prior_fit, grid_points=5, draws=4)
    one_subject = dense.where(dense["ID"] == 1, drop=True)
    with pytest.raises(DiagnosticsError, match="same number of 'plt' grid times"):
        individual_fits(prior_fit.tree, "plt", subjects=[1, 2], predictions=one_subject)
