import numpy as np
import pytest
import xarray as xr

from tpopk.diagnostics import (
    DiagnosticsError,
    epsilon_shrinkage,
    eta_shrinkage,
    plot_eta_shrinkage,
)

from .synthetic import SIGMA_PROP, replaced

SAMPLE = ("chain", "draw")


def standardised(values):
    return (values - values.mean()) / values.std(ddof=1)


def test_eta_shrinkage_of_a_posterior_built_to_shrink_by_40_percent(synthetic):
    rng = np.random.default_rng(2)
    n = 40
    omega = 0.3
    # posterior means of eta with SD exactly 0.6 * omega, plus draws centred on them
    means = 0.6 * omega * standardised(rng.standard_normal(n))
    noise = rng.standard_normal((2, 250, n))
    noise -= noise.mean(axis=(0, 1), keepdims=True)
    fit = replaced(
        synthetic.tree,
        "posterior",
        eta_cl=((*SAMPLE, "subject"), means + 0.2 * noise),
        omega_cl=(SAMPLE, np.full((2, 250), omega)),
    )
    result = eta_shrinkage(fit)
    assert list(result["parameter"].values) == ["ka", "cl", "v"]
    assert float(result["shrinkage"].sel(parameter="cl")) == pytest.approx(0.4, abs=1e-12)
    np.testing.assert_allclose(result["eta_mean"].sel(parameter="cl"), means)
    # the fabricated fit's other parameters: eta means near the truth, so little shrinkage
    truth = synthetic.eta_true["ka"]
    expected = 1 - np.std(truth, ddof=1) / float(synthetic.tree.posterior.omega_ka.mean())
    assert float(result["shrinkage"].sel(parameter="ka")) == pytest.approx(expected, abs=0.02)


def test_eta_shrinkage_accepts_parameter_or_eta_names(synthetic):
    by_name = eta_shrinkage(synthetic.tree, var_names=["cl", "eta_v"])
    assert list(by_name["parameter"].values) == ["cl", "v"]
    with pytest.raises(DiagnosticsError, match=r"no IIV .* for \['tlag'\]"):
        eta_shrinkage(synthetic.tree, var_names=["tlag"])


def test_epsilon_shrinkage_of_residuals_built_to_shrink_by_30_percent(synthetic):
    rng = np.random.default_rng(4)
    dv = synthetic.tree.observed_data.y_conc.values
    residual = 0.7 * standardised(rng.standard_normal(dv.size))
    # proportional error: IWRES = (DV - IPRED) / (sigma * IPRED) = residual exactly
    ipred = dv / (1 + SIGMA_PROP * residual)
    fit = replaced(
        synthetic.tree,
        "posterior",
        ipred_conc=xr.DataArray(
            np.broadcast_to(ipred, (2, 250, dv.size)), dims=(*SAMPLE, "obs_conc")
        ),
        sigma_prop_conc=(SAMPLE, np.full((2, 250), SIGMA_PROP)),
    )
    result = epsilon_shrinkage(fit, ["conc"])
    assert float(result.sel(dvid="conc")) == pytest.approx(0.3, abs=1e-12)
    assert list(epsilon_shrinkage(synthetic.tree)["dvid"].values) == ["conc", "plt"]


def test_plot_eta_shrinkage(synthetic):
    result = eta_shrinkage(synthetic.tree)
    figure = plot_eta_shrinkage(result).viz["figure"].item()
    titles = [axes.get_title() for axes in figure.axes]
    shrinkage = result["shrinkage"].values
    assert titles == [
        f"η {p}\nshrinkage {100 * s:.0f}%"
        for p, s in zip(["ka", "cl", "v"], shrinkage, strict=True)
    ]
    assert len(figure.axes[0].lines) == 1  # the N(0, omega) density over the histogram


def test_eta_shrinkage_of_agonist_specific_parameters_is_over_their_subjects():
    """A study fit indexes an agonist's own IIV by its subjects (``subject_<agonist>``)."""
    rng = np.random.default_rng(5)
    shared = rng.standard_normal((2, 50, 6))
    own = rng.standard_normal((2, 50, 3)) * 0.1 + np.array([1.0, -1.0, 0.5])
    posterior = xr.Dataset(
        {
            "eta_tplt": (("chain", "draw", "subject"), shared),
            "omega_tplt": (("chain", "draw"), np.ones((2, 50))),
            "eta_cl_rom": (("chain", "draw", "subject_rom"), own),
            "omega_cl_rom": (("chain", "draw"), np.ones((2, 50))),
        },
        coords={"subject": np.arange(1, 7), "subject_rom": [4, 5, 6]},
    )
    table = eta_shrinkage(xr.DataTree.from_dict({"posterior": posterior}))
    expected = 1 - own.mean((0, 1)).std(ddof=1)
    assert float(table["shrinkage"].sel(parameter="cl_rom")) == pytest.approx(expected)
    assert np.isnan(table["eta_mean"].sel(parameter="cl_rom", subject=[1, 2, 3])).all()
    sd = shared.mean((0, 1)).std(ddof=1)
    assert float(table["shrinkage"].sel(parameter="tplt")) == pytest.approx(1 - sd)


def test_eta_shrinkage_divides_each_eta_by_its_subjects_own_omega():
    """With ``iiv_by`` (``iiv_<P>``, an SD per subject) each level is judged by its own SD."""
    sd = np.array([0.1, 0.1, 0.1, 0.5, 0.5, 0.5])  # healthy, then ITP subjects
    # posterior-mean etas at 0.6 of their own SD: 40% shrinkage on the standardised scale
    eta = 0.6 * sd * standardised(np.array([1.0, -1.0, 0.0, 1.0, -1.0, 0.0]))
    posterior = xr.Dataset(
        {
            "eta_tplt": (("chain", "draw", "subject"), np.broadcast_to(eta, (2, 50, 6))),
            "omega_tplt": (("chain", "draw"), np.full((2, 50), 0.1)),
            "iiv_tplt": (("chain", "draw", "subject"), np.broadcast_to(sd, (2, 50, 6))),
        },
        coords={"subject": np.arange(1, 7)},
    )
    table = eta_shrinkage(xr.DataTree.from_dict({"posterior": posterior}))
    assert float(table["shrinkage"].sel(parameter="tplt")) == pytest.approx(0.4)
    assert float(table["omega"].sel(parameter="tplt")) == pytest.approx(sd.mean())
    # against the healthy omega alone the ITP etas would look like negative shrinkage
    assert 1 - eta.std(ddof=1) / 0.1 < 0
