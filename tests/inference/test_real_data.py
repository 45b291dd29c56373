"""Fits of the real datasets against the estimates NONMEM and nlmixr2 published for them.

The criteria are :func:`tpopk.datasets.compare_with_reference`'s (typical values and
residual SDs within 10%, IIV as %CV inside the 90% interval); the theophylline fit is
tested in test_fitting.py. Small settings: benchmarks/real_data.py runs every reference
at full settings for the README's table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import SAMPLER
from tpopk.datasets import compare_with_reference, load_phenobarbital, reference_events
from tpopk.inference import Fit, fit

MODELS = Path(__file__).parents[2] / "models" / "examples"

pytestmark = pytest.mark.xdist_group("fits")


@pytest.fixture(scope="module")
def phenobarbital_fit() -> Fit:
    return fit(MODELS / "phenobarbital_wt_apgar.toml", load_phenobarbital(), **SAMPLER)


@pytest.mark.slow
def test_phenobarbital_per_kg_and_apgar_match_nonmem(phenobarbital_fit: Fit) -> None:
    table = compare_with_reference(phenobarbital_fit.posterior, "phenobarbital_wt_apgar")
    assert table["agrees"].all(), table
    assert set(table.index) >= {"pop_cl", "pop_v", "beta_v_APGR", "omega_cl", "omega_v"}


@pytest.mark.slow
def test_phenobarbital_fit_converged(phenobarbital_fit: Fit) -> None:
    summary = phenobarbital_fit.summary()
    assert phenobarbital_fit.divergences == 0
    assert (summary["r_hat"] < 1.01).all(), summary
    assert (summary["ess_bulk"] > 200).all(), summary


@pytest.fixture(scope="module")
def warfarin_pk_fit() -> Fit:
    return fit(MODELS / "warfarin_pk.toml", reference_events("warfarin_pk"), **SAMPLER)


@pytest.mark.slow
def test_warfarin_pk_lands_in_the_band_of_the_published_fits(warfarin_pk_fit: Fit) -> None:
    table = compare_with_reference(warfarin_pk_fit.posterior, "warfarin_pk")
    assert table["agrees"].all(), table
    summary = warfarin_pk_fit.summary()
    assert warfarin_pk_fit.divergences == 0
    assert (summary["r_hat"] < 1.01).all(), summary
