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

# Small but converged sampler settings, read from one place. 1000 draws per chain, not 500:
# at 4 x 500 the split R-hat of a mixed chain is noisy enough to cross 1.01 (theophylline,
# seeds 11-14 on one machine: max R-hat 1.014, 1.007, 1.014, 1.015); at 4 x 1000, 1.003-1.004.
SAMPLER = {"draws": 1000, "tune": 1000, "chains": 4, "seed": 11, "progressbar": False}
# Tiny settings the notebooks run with in the tests (tests/test_notebooks.py passes them as
# TPOPK_SAMPLER): they exercise every cell, not convergence. The tree depth is bounded
# because the ITP study posteriors take up to 2^8 leapfrog steps per draw (655 s for
# 2 x 150 iterations of notebook 02's fit without the bound).
NOTEBOOK_SAMPLER = {"draws": 50, "tune": 100, "chains": 2, "seed": 11, "max_treedepth": 5}

#: Units of the theophylline fit's population parameters, as the summary and report give them.
THEOPHYLLINE_UNITS = {
    "pop_ka": "1/h",
    "omega_ka": "SD of log",
    "pop_cl": "L/h",
    "omega_cl": "SD of log",
    "pop_v": "L",
    "omega_v": "SD of log",
    "sigma_add_conc": "mg/L",
}


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={ROOT / '.cache' / 'pytensor'}")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))


@pytest.fixture(scope="session")
def theophylline_fit():  # type: ignore[no-untyped-def]
    from tpopk.datasets import load_theophylline
    from tpopk.inference import fit

    return fit(MODELS / "generic" / "oral_1cmt.toml", load_theophylline(), **SAMPLER)


@pytest.fixture(scope="session")
def prior_fit():  # type: ignore[no-untyped-def]
    """A Fit whose 'posterior' is 40 prior draws of the generic PK/turnover card.

    compare() only needs population draws and the cards, so prior draws exercise it
    without MCMC; the data are a 2-subject skeleton.
    """
    import numpy as np
    import pandas as pd
    import pymc as pm
    import xarray as xr

    from tpopk.data import read_events
    from tpopk.inference import Fit
    from tpopk.model import build_model, load_card

    card = load_card(MODELS / "generic" / "oral_1cmt_idr.toml")
    frame = pd.DataFrame(
        {
            "ID": [1, 1, 1, 2, 2, 2],
            "TIME": [0.0, 2.0, 48.0, 0.0, 2.0, 48.0],
            "EVID": [1, 0, 0, 1, 0, 0],
            "AMT": [5.0, 0, 0, 5.0, 0, 0],
            "DV": [0, 0.1, 100.0, 0, 0.1, 100.0],
            "DVID": ["conc", "conc", "plt", "conc", "conc", "plt"],
            "CMT": [1, 2, 3, 1, 2, 3],
        }
    )
    events = read_events(frame, units={"conc": "mg/L"})
    model = build_model(card, events)
    prior = pm.sample_prior_predictive(draws=40, model=model, random_seed=3)
    posterior = prior["prior"].to_dataset()
    shape = (posterior.sizes["chain"], posterior.sizes["draw"])
    stats = xr.Dataset(
        {"diverging": (("chain", "draw"), np.zeros(shape, bool))},
        coords={"chain": posterior["chain"], "draw": posterior["draw"]},
    )
    tree = xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})
    return Fit(tree=tree, cards=(card,), events=events)


@pytest.fixture(autouse=True)
def _close_figures():  # type: ignore[no-untyped-def]
    """Close matplotlib figures a test leaves open, so no test sees another's."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
