"""Prior-posterior overlap against the closed form of two normal densities."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import xarray as xr
from scipy import stats

from tpopk.diagnostics import DiagnosticsError
from tpopk.diagnostics.prior_posterior import (
    density_overlap,
    prior_draws,
    prior_posterior_overlap,
)


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.0, 2.0, 4.0])
def test_overlap_of_two_unit_normals(shift: float) -> None:
    rng = np.random.default_rng(1)
    found = density_overlap(rng.normal(0, 1, 4000), rng.normal(shift, 1, 4000))
    # ∫ min(φ(x), φ(x - d)) dx = 2 Φ(-d/2); kernel smoothing costs ~0.02 at d = 0
    assert found == pytest.approx(2 * stats.norm.cdf(-shift / 2), abs=0.025)


def test_a_wide_prior_and_a_narrow_posterior() -> None:
    rng = np.random.default_rng(2)
    # N(0, 10²) and N(0, 1) cross where their densities are equal, at ±c
    c = np.sqrt(2 * np.log(10) / (1 - 1 / 100))
    expected = 2 * (stats.norm.cdf(-c) + stats.norm.cdf(c / 10) - 0.5)
    found = density_overlap(rng.normal(0, 10, 4000), rng.normal(0, 1, 4000))
    assert found == pytest.approx(expected, abs=0.02)


def test_positive_parameters_overlap_as_their_logs() -> None:
    rng = np.random.default_rng(3)
    prior, posterior = rng.normal(0, 1, 4000), rng.normal(1, 0.5, 4000)
    on_log = density_overlap(prior, posterior)
    assert density_overlap(np.exp(prior), np.exp(posterior)) == pytest.approx(on_log)


def test_degenerate_samples() -> None:
    assert density_overlap([2.0, 2.0], [2.0, 2.0]) == 1.0
    assert density_overlap([2.0, 2.0], [1.0, 3.0]) == 0.0
    with pytest.raises(DiagnosticsError, match="at least two finite draws"):
        density_overlap([1.0], [1.0, 2.0])


def test_overlap_per_element_named_as_in_the_summary() -> None:
    with pm.Model(coords={"agonist": ["a", "b"]}) as model:
        pm.Normal("pop_x", 0.0, 1.0, dims="agonist")
        pm.HalfNormal("omega_x", 1.0)
    prior = prior_draws(model, ["pop_x", "omega_x"], draws=3000, seed=4)
    rng = np.random.default_rng(5)
    posterior = xr.Dataset(
        {
            # element a is the prior again, element b far from it
            "pop_x": (
                ("chain", "draw", "agonist"),
                np.stack([rng.normal(0, 1, (1, 3000)), rng.normal(6, 0.1, (1, 3000))], axis=-1),
            ),
            "omega_x": (("chain", "draw"), np.abs(rng.normal(0, 1, (1, 3000)))),
        },
        coords={"agonist": ["a", "b"]},
    )
    overlap = prior_posterior_overlap(prior, posterior)
    assert list(overlap) == ["pop_x[a]", "pop_x[b]", "omega_x"]
    assert overlap["pop_x[a]"] > 0.9
    assert overlap["pop_x[b]"] < 0.01
    assert overlap["omega_x"] > 0.9
    with pytest.raises(DiagnosticsError, match=r"no prior draws of \['sigma'\]"):
        prior_posterior_overlap(prior, posterior.assign(sigma=posterior["omega_x"]))
