"""Shared fixtures: the few real MCMC fits, made once per test session.

Tests that use a fit are marked ``xdist_group("fits")`` so that, under pytest-xdist,
one worker compiles and samples each model once instead of every worker doing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
MODELS = ROOT / "models"

# Small but converged sampler settings, read from one place (notebooks use them too).
SAMPLER = {"draws": 500, "tune": 1000, "chains": 4, "seed": 11, "progressbar": False}


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={ROOT / '.cache' / 'pytensor'}")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))


@pytest.fixture(scope="session")
def theophylline_fit():  # type: ignore[no-untyped-def]
    from tpopk.datasets import load_theophylline
    from tpopk.inference import fit

    return fit(MODELS / "generic" / "oral_1cmt.toml", load_theophylline(), **SAMPLER)
