"""SBC on a conjugate normal model, where the exact posterior is known.

θ ~ N(0, 1), y | θ ~ N(θ, 1) ⇒ θ | y ~ N(y / 2, 1 / 2). Exact posterior draws give
uniform ranks; draws from a posterior three times too narrow (overconfident) pile the
ranks at both ends, and a shifted one tilts them, so both must be rejected.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from arviz_plots import PlotCollection

from tpopk.diagnostics import DiagnosticsError, plot_sbc, sbc_ranks, sbc_uniformity

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
