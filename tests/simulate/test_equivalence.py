"""Dose equivalence: the dose of one arm matching another arm's endpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tpopk.errors import TpopkError
from tpopk.inference import Fit
from tpopk.model import load_card
from tpopk.simulate import load_trial
from tpopk.simulate.comparison import compare, prior_compare
from tpopk.simulate.equivalence import (
    OUTCOMES,
    DoseGrid,
    equivalent_doses,
    summarise_equivalence,
)

ROOT = Path(__file__).parents[2]
TRIALS = ROOT / "models" / "trials"
MATCHED, BELOW, ABOVE, UNDEFINED = (
    OUTCOMES.index(o) for o in ("matched", "below_grid", "above_grid", "undefined")
)

#: One agonist at fixed doses 50, 100 and 200 mg beside a titration whose levels put
#: 100 mg on the grid and 50 and 200 mg between levels.
FIXED_DOSES = """
name = "dose_grid"
[population]
disease = "ITP"
baseline_platelets = { median = 20, sd_log = 0.4, upper = 30 }
weight = { median = 70, sd_log = 0.2 }
east_asian_fraction = 0.0
splenectomy_fraction = 0.0
[visits]
unit = "week"
every = 1
until = 4
[titrations.grid]
dose_unit = "mg"
interval = "24 h"
levels = [10, 30, 100, 300, 1000]
rules = [{ action = "increase", platelets_below = 50 }]
%(fixed)s
[[arms]]
name = "grid"
agonist = "eltrombopag"
route = "oral"
titration = "grid"
start = [{ level = 1 }]
duration = "4 weeks"
%(arms)s
[[endpoints]]
name = "fold_week_4"
kind = "fold_change_at"
at = "4 weeks"
[[endpoints]]
name = "responder_week_4"
kind = "responder_at"
at = "4 weeks"
response = { at_least = 50 }
"""
DOSES = (50, 100, 200)


def _fixed_dose_design() -> str:
    fixed = "".join(
        f'[titrations.fixed_{d}]\ndose_unit = "mg"\ninterval = "24 h"\nlevels = [{d}]\n'
        for d in DOSES
    )
    arms = "".join(
        f'[[arms]]\nname = "at_{d}"\nagonist = "eltrombopag"\nroute = "oral"\n'
        f'titration = "fixed_{d}"\nstart = [{{ level = 1 }}]\nduration = "4 weeks"\n'
        for d in DOSES
    )
    return FIXED_DOSES % {"fixed": fixed, "arms": arms}


def test_equivalent_doses_on_known_curves() -> None:
    doses = np.array([1.0, 2.0, 4.0, 8.0])
    rising = np.tile(np.log2(doses), (7, 1))  # straight in log dose: interpolation is exact
    rising[5] = [0.0, 1.0, 1.0, 3.0]  # a tie over levels 2-3
    rising[6] = [0.0, 2.0, 1.0, 3.0]  # a chance dip: isotonic fit 0, 1.5, 1.5, 3
    reference = np.array([1.5, 0.0, -0.5, 3.5, np.nan, 1.0, 1.5])
    dose, outcome = equivalent_doses(doses, rising, reference, increasing=True)
    assert outcome.tolist() == [MATCHED, MATCHED, BELOW, ABOVE, UNDEFINED, MATCHED, MATCHED]
    np.testing.assert_allclose(dose[[0, 1, 5, 6]], [2**1.5, 1.0, np.sqrt(8), np.sqrt(8)])
    assert np.isnan(dose[[2, 3, 4]]).all()

    # a falling endpoint (time to response): the same doses from the mirrored curve
    falling, flipped = equivalent_doses(doses, -rising, -reference, increasing=False)
    np.testing.assert_array_equal(flipped, outcome)
    np.testing.assert_allclose(falling, dose)

    # a curve equal to the reference everywhere cannot tell doses apart
    flat, why = equivalent_doses(doses, np.zeros((1, 4)), np.zeros(1), increasing=True)
    assert np.isnan(flat).all()
    assert why.tolist() == [UNDEFINED]


def test_summary_counts_draws_beyond_the_grid() -> None:
    doses = np.array([1.0, 2.0, 4.0, 8.0])
    # time-to-response-like: falls with dose as 10 - log2(dose)
    curve = np.tile(10 - np.log2(doses), (10, 1))
    # 7 matched at 2^0.5 ... 2^2.5, one already beaten at the lowest dose, two never reached
    shares = np.array([0.5, 0.8, 1.1, 1.4, 1.7, 2.0, 2.5])
    reference = np.concatenate([10 - shares, [10.5, 6.5, 5.0]])
    curves = xr.Dataset(
        {
            "reference_ttr": (("pair", "draw"), reference[None]),
            "curve_ttr": (("pair", "level", "draw"), curve.T[None]),
        },
        coords={"grid_dose": (("pair", "level"), doses[None])},
    )
    grid = DoseGrid.of(load_trial(TRIALS / "hetrombopag_phase3_itp.toml"), "placebo", "HETROM-5")
    tree = summarise_equivalence(curves, [grid], ci_prob=0.9)
    fraction = tree["fraction_ttr"].sel(pair=0)
    np.testing.assert_allclose(fraction.sel(outcome=list(OUTCOMES)), [0.7, 0.1, 0.2, 0.0])
    # sorted: -inf, 2^0.5 ... 2^2.5, inf, inf -> median the 5th, interval ends infinite
    stats = tree["dose_ttr"].sel(pair=0)
    assert float(stats.sel(stat="median")) == pytest.approx(2**1.4)
    assert float(stats.sel(stat="lower")) == -np.inf
    assert float(stats.sel(stat="upper")) == np.inf
    per_draw = tree["draws"]["dose_ttr"].sel(pair=0).to_numpy()
    np.testing.assert_allclose(per_draw[:7], 2**shares)
    assert np.isnan(per_draw[7:]).all()
    assert tree["dose_unit"].values.tolist() == ["mg"]


def test_dose_grid_fixes_every_level() -> None:
    design = load_trial(TRIALS / "avatrombopag_itp.toml")
    grid = DoseGrid.of(design, "placebo", "avatrombopag")
    # pattern levels count as their mean amount per daily slot (mg)
    expected = [20 / 7, 40 / 7, 60 / 7, 20, (3 * 40 + 4 * 20) / 7, 40]
    np.testing.assert_allclose(grid.doses, expected)
    assert grid.dose_unit == "mg"
    names = [arm.name for arm in grid.design.arms]
    assert names == ["placebo", *(f"avatrombopag@{k}" for k in range(1, 7))]
    for number, arm in enumerate(grid.design.arms[1:], start=1):
        titration = grid.design.titration_of(arm)
        assert titration.rules == ()
        assert titration.levels == (design.titrations["label"].levels[number - 1],)
        assert [s.level for s in arm.start] == [1]
    with pytest.raises(TpopkError, match="placebo arm"):
        DoseGrid.of(design, "avatrombopag", "placebo")
    with pytest.raises(TpopkError, match="no arm 'eltrombopag'"):
        DoseGrid.of(design, "eltrombopag", "avatrombopag")


@pytest.fixture(scope="module")
def fixed_dose_equivalence(prior_fit: Fit) -> xr.DataTree:
    pairs = [(f"at_{d}", "grid") for d in DOSES]
    design = load_trial(_fixed_dose_design())
    return compare(
        prior_fit,
        design,
        n_patients=5,
        draws=4,
        chunk=2,
        seed=1,
        progressbar=False,
        equivalence=pairs,
    )["equivalence"]


@pytest.mark.slow
def test_a_fixed_dose_on_the_grid_is_its_own_equivalent(
    fixed_dose_equivalence: xr.DataTree,
) -> None:
    """100 mg given fixed is matched by the grid's 100 mg level, exactly, in every draw."""
    at_100 = fixed_dose_equivalence.sel(pair=1)
    assert str(at_100["reference"].item()) == "at_100"
    assert float(at_100["fraction_fold_week_4"].sel(outcome="matched")) == 1.0
    draws = fixed_dose_equivalence["draws"]["dose_fold_week_4"].sel(pair=1).to_numpy()
    np.testing.assert_allclose(draws, 100.0, rtol=1e-12)


@pytest.mark.slow
def test_a_higher_reference_dose_needs_a_higher_equivalent_dose(
    fixed_dose_equivalence: xr.DataTree,
) -> None:
    draws = fixed_dose_equivalence["draws"]["dose_fold_week_4"].to_numpy()  # pair, draw
    assert np.isfinite(draws).all()
    low, middle, high = draws
    assert (low < middle).all()
    assert (middle < high).all()
    # 50 and 200 mg fall between the grid levels that bracket them
    assert ((low > 30) & (low < 100)).all()
    assert ((high > 100) & (high < 300)).all()
    fractions = fixed_dose_equivalence["fraction_responder_week_4"].sum("outcome")
    np.testing.assert_allclose(fractions, 1.0)


@pytest.mark.slow
def test_prior_comparison_finds_the_same_equivalent() -> None:
    """prior_compare runs dose grids as compare does: 100 mg matched by the 100 mg level."""
    card = load_card(ROOT / "models" / "generic" / "oral_1cmt_idr.toml")
    design = load_trial(_fixed_dose_design())
    tree = prior_compare(
        [card], design, n_patients=5, draws=3, seed=1, equivalence=[("at_100", "grid")]
    )
    draws = tree["equivalence"]["draws"]["dose_fold_week_4"].sel(pair=0).to_numpy()
    np.testing.assert_allclose(draws, 100.0, rtol=1e-12)
    matched = tree["equivalence"]["fraction_fold_week_4"].sel(pair=0, outcome="matched")
    assert float(matched) == 1.0
    arms = set(tree["summary"]["fold_week_4"]["arm"].values)
    assert arms == {"grid", *(f"at_{d}" for d in DOSES)}


@pytest.mark.slow
def test_equivalence_on_dask_matches_local(prior_fit: Fit) -> None:
    from distributed import LocalCluster

    design = load_trial(_fixed_dose_design())
    settings = {
        "n_patients": 3,
        "draws": 2,
        "chunk": 1,
        "seed": 4,
        "equivalence": [("at_50", "grid")],
    }
    local = compare(prior_fit, design, progressbar=False, **settings)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        remote = compare(prior_fit, design, scheduler=cluster.scheduler_address, **settings)
    xr.testing.assert_allclose(
        local["equivalence/draws"].to_dataset(), remote["equivalence/draws"].to_dataset()
    )
