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
