"""The published estimates of the real datasets and the comparison a fit is judged by."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tpopk.datasets import CATALOGUE, compare_with_reference, omega_cv, reference_estimates
from tpopk.errors import TpopkError
from tpopk.model import load_card

MODELS = Path(__file__).parents[2] / "models"


def test_every_reference_names_a_bundled_dataset_and_a_card_with_its_variables() -> None:
    for name, entry in reference_estimates().items():
        assert entry["dataset"] in CATALOGUE, name
        card = load_card(MODELS / f"{entry['card']}.toml")
        parameters = {f"pop_{p}" for p in card.parameters}
        typical = set(entry.get("typical", {})) | set(entry.get("range", {}))
        assert {v for v in typical if v.startswith("pop_")} <= parameters, name
        iiv = set(entry.get("omega_cv", {})) | set(entry.get("range_omega_cv", {}))
        assert iiv <= {p for p, spec in card.parameters.items() if spec.iiv is not None}, name


def test_omega_cv_is_the_log_normal_cv() -> None:
    # NONMEM's pheno_real omega^2 0.0293508 is printed as 17.26 %CV
    assert omega_cv(math.sqrt(0.0293508)) == pytest.approx(17.2586, abs=1e-4)
    assert omega_cv(0.0) == 0.0


def _posterior(**values: tuple[float, float]) -> xr.Dataset:
    """Normal draws (mean, sd) of each variable, 2 chains x 2000 draws."""
    rng = np.random.default_rng(7)
    return xr.Dataset(
        {name: (("chain", "draw"), rng.normal(m, s, (2, 2000))) for name, (m, s) in values.items()}
    )


def test_comparison_passes_at_the_reference_and_fails_away_from_it() -> None:
    at = {
        "pop_cl": (0.00469555, 1e-5),
        "pop_v": (0.984258, 1e-3),
        "beta_v_APGR": (0.158920, 1e-3),
        "sigma_prop_conc": (0.115070, 1e-3),
        "omega_cl": (math.sqrt(0.0293508), 0.03),
        "omega_v": (math.sqrt(0.027906), 0.03),
    }
    table = compare_with_reference(_posterior(**at), "phenobarbital_wt_apgar")
    assert table["agrees"].all(), table
    assert table.loc["omega_cl", "median"] == pytest.approx(17.26, rel=0.02)
    assert table.loc["omega_cl", "scale"] == "%CV"
    off = compare_with_reference(
        _posterior(**{**at, "pop_v": (1.09, 1e-3), "omega_v": (0.5, 0.03)}),
        "phenobarbital_wt_apgar",
    )
    assert not off.loc["pop_v", "agrees"]  # 10.7% above 0.984
    assert off.loc["pop_v", "difference"] == pytest.approx(1.09 / 0.984258 - 1, abs=1e-3)
    assert not off.loc["omega_v", "agrees"]  # the interval (about 49-59 %CV) misses 16.8
    assert off.drop(index=["pop_v", "omega_v"])["agrees"].all()


def test_a_band_agrees_anywhere_inside_and_measures_from_its_nearest_edge() -> None:
    entry = reference_estimates()["warfarin_pca"]
    inside = {v: ((lo + hi) / 2, 1e-6) for v, (lo, hi) in entry["range"].items()}
    omegas = {
        f"omega_{p}": (math.sqrt(math.log1p((hi / 100) ** 2)), 0.01)
        for p, (_, hi) in entry["range_omega_cv"].items()
    }
    table = compare_with_reference(_posterior(**inside, **omegas), "warfarin_pca")
    assert table["agrees"].all(), table
    assert (table.loc[list(inside), "difference"] == 0).all()
    high = entry["range"]["pop_cl"][1]
    above = compare_with_reference(
        _posterior(**{**inside, "pop_cl": (high * 1.2, 1e-6)}, **omegas), "warfarin_pca"
    )
    assert above.loc["pop_cl", "difference"] == pytest.approx(0.2, abs=1e-4)
    assert not above.loc["pop_cl", "agrees"]


def test_unknown_reference_or_a_posterior_of_another_card_is_refused() -> None:
    with pytest.raises(TpopkError, match="no reference fit 'pheno'"):
        compare_with_reference(_posterior(pop_cl=(1.0, 0.1)), "pheno")
    with pytest.raises(TpopkError, match="examples/phenobarbital"):
        compare_with_reference(_posterior(pop_cl=(1.0, 0.1)), "phenobarbital")
