"""SBC on a conjugate normal model, where the exact posterior is known.

θ ~ N(0, 1), y | θ ~ N(θ, 1) ⇒ θ | y ~ N(y / 2, 1 / 2). Exact posterior draws give
uniform ranks; draws from a posterior three times too narrow (overconfident) pile the
ranks at both ends, and a shifted one tilts them, so both must be rejected.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import xarray as xr
from arviz_plots import PlotCollection

from tpopk.diagnostics import (
    DiagnosticsError,
    plot_sbc,
    sbc_ranks,
    sbc_uniformity,
    simulate_sbc,
)

REPLICATES, CHAINS, DRAWS = 300, 2, 50


def conjugate(scale: float = 1.0, shift: float = 0.0, seed: int = 0) -> tuple[xr.Dataset, ...]:
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(REPLICATES, 2))
    y = theta + rng.normal(size=theta.shape)
    noise = rng.normal(size=(REPLICATES, CHAINS, DRAWS, 2))
    draws = (y / 2 + shift)[:, None, None, :] + scale * np.sqrt(0.5) * noise
    coords = {"k": ["a", "b"]}
    prior = xr.Dataset({"theta": (("replicate", "k"), theta)}, coords=coords)
    posterior = xr.Dataset({"theta": (("replicate", "chain", "draw", "k"), draws)}, coords=coords)
    return prior, posterior


def test_ranks_count_posterior_draws_below_the_prior_draw() -> None:
    prior = xr.Dataset({"x": ("replicate", [0.5, 10.0, -10.0])})
    draws = np.array([[0.0, 1.0, 0.2, 0.7], [0.0, 1.0, 0.2, 0.7], [0.0, 1.0, 0.2, 0.7]])
    posterior = xr.Dataset({"x": (("replicate", "chain", "draw"), draws.reshape(3, 2, 2))})
    ranks = sbc_ranks(prior, posterior)
    assert ranks["x"].values.tolist() == [2, 4, 0]
    assert ranks.attrs["n_draws"] == 4


def test_exact_posterior_is_accepted() -> None:
    ranks = sbc_ranks(*conjugate())
    table = sbc_uniformity(ranks)
    assert list(table.index) == ["theta[a]", "theta[b]"]
    assert (table["replications"] == REPLICATES).all()
    assert (table["bins"] == 20).all()
    assert (table["p_value"] > 0.01).all(), table


@pytest.mark.parametrize(("scale", "shift"), [(1 / 3, 0.0), (1.0, 0.5), (3.0, 0.0)])
def test_miscalibrated_posterior_is_rejected(scale: float, shift: float) -> None:
    table = sbc_uniformity(sbc_ranks(*conjugate(scale=scale, shift=shift)))
    assert (table["p_value"] < 1e-4).all(), table


def test_bins_expect_each_possible_rank_equally() -> None:
    # L = 100 draws: 101 possible ranks in 20 bins of unequal width (5 or 6 ranks); an
    # exactly uniform spread of ranks must then give chi2 ~ 0, not a spurious rejection.
    ranks = xr.Dataset({"x": ("replicate", np.tile(np.arange(101), 3))}, attrs={"n_draws": 100})
    table = sbc_uniformity(ranks, bins=20)
    assert table.loc["x", "chi2"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["x", "p_value"] == pytest.approx(1.0)


def test_missing_dimension_is_a_clear_error() -> None:
    prior = xr.Dataset({"x": ("rep", [0.0])})
    posterior = xr.Dataset({"x": (("replicate", "draw"), [[0.0]])})
    with pytest.raises(DiagnosticsError, match="no 'replicate' dimension"):
        sbc_ranks(prior, posterior)


@pytest.mark.parametrize("kind", ["ecdf", "hist"])
def test_plots_draw_one_panel_per_parameter(kind: str) -> None:
    pc = plot_sbc(sbc_ranks(*conjugate()), kind=kind)  # type: ignore[arg-type]
    assert isinstance(pc, PlotCollection)
    figure = pc.viz["figure"].item()
    assert len([ax for ax in figure.axes if ax.has_data()]) == 2


N_OBS = 4
#: Small fits: 2 chains x 40 draws, thinned to 19 ranked draws.
FIT = {"draws": 40, "tune": 40, "chains": 2, "keep": 19, "seed": 11}


def conjugate_model() -> pm.Model:
    """θ ~ N(0, 1) per arm, y ~ N(θ, 1): θ | y ~ N(Σy / (n + 1), 1 / (n + 1)) per arm."""
    with pm.Model(coords={"k": ["a", "b"], "obs": range(2 * N_OBS)}) as model:
        theta = pm.Normal("theta", 0.0, 1.0, dims="k")
        arm = np.repeat([0, 1], N_OBS)
        pm.Normal("y", theta[arm], 1.0, observed=np.zeros(2 * N_OBS), dims="obs")
    return model


@pytest.mark.slow
def test_simulate_sbc_fits_each_replicate_to_its_own_simulated_data() -> None:
    tree = simulate_sbc(conjugate_model(), ["theta"], replications=3, chunk=2, **FIT)
    prior = tree["prior"]["theta"]
    y = tree["observed_data"]["y"].to_numpy().reshape(3, 2, N_OBS)
    assert prior.dims == ("replicate", "k")
    assert tree["posterior"]["theta"].dims == ("replicate", "draw", "k")
    assert tree["posterior"].sizes["draw"] == FIT["keep"]
    assert len({tuple(row) for row in prior.to_numpy()}) == 3  # a new prior draw each
    # the fit saw the simulated data: posterior means near the exact ones (sd 0.45,
    # ~80 draws), far from the data placeholder's (zeros)
    exact = y.sum(axis=-1) / (N_OBS + 1)
    means = tree["posterior"]["theta"].mean("draw").to_numpy()
    np.testing.assert_allclose(means, exact, atol=0.3)
    below = (tree["posterior"]["theta"] < prior).sum("draw")
    xr.testing.assert_equal(tree["ranks"]["theta"], below)
    assert tree["ranks"].attrs["n_draws"] == FIT["keep"]
    assert tree["sample_stats"]["divergences"].dims == ("replicate",)


@pytest.mark.slow
def test_simulate_sbc_on_dask_matches_local_exactly() -> None:
    from distributed import LocalCluster

    model = conjugate_model()
    local = simulate_sbc(model, ["theta"], replications=4, chunk=4, **FIT)
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        remote = simulate_sbc(
            model, ["theta"], replications=4, chunk=1, scheduler=cluster.scheduler_address, **FIT
        )
    for group in ("ranks", "prior", "observed_data", "sample_stats"):
        xr.testing.assert_identical(local[group].to_dataset(), remote[group].to_dataset())
    # Not bit for bit: with a cold PyTensor cache this process compiles the model afresh and
    # the workers load it from the cache, and the two builds' draws differ by ~1e-9.
    xr.testing.assert_allclose(
        local["posterior"].to_dataset(), remote["posterior"].to_dataset(), rtol=1e-7
    )


def test_simulate_sbc_rejects_bad_input() -> None:
    with pm.Model() as unobserved:
        pm.Normal("theta")
    with pytest.raises(DiagnosticsError, match="no observed variable"):
        simulate_sbc(unobserved, ["theta"])
    model = conjugate_model()
    with pytest.raises(DiagnosticsError, match=r"\['mu'\] are not variables"):
        simulate_sbc(model, ["mu"])
    with pytest.raises(DiagnosticsError, match="var_names is empty"):
        simulate_sbc(model, [])
    with pytest.raises(DiagnosticsError, match=r"keep must be in 1..chains\*draws = 20"):
        simulate_sbc(model, ["theta"], chains=2, draws=10, keep=99)
