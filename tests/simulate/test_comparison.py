"""Pairwise contrasts of trial endpoints between arms."""

from __future__ import annotations

import numpy as np
import xarray as xr

from tpopk.simulate.comparison import contrasts


def _pair(result: xr.Dataset, arm: str, versus: str) -> xr.Dataset:
    pick = (result["arm"] == arm) & (result["versus"] == versus)
    return result.where(pick, drop=True).squeeze("pair")


def test_p_better_follows_the_endpoint_direction() -> None:
    values = xr.Dataset(
        {
            "responder": (("arm", "draw"), [[0.6, 0.7, 0.2, 0.9], [0.1, 0.2, 0.3, 0.4]]),
            "overshoot": (("arm", "draw"), [[0.1, 0.3, 0.0, 0.5], [0.2, 0.2, 0.2, 0.2]]),
        },
        coords={"arm": ["drug", "placebo"]},
    )
    kinds = {"responder": "responder", "overshoot": "overshoot"}
    result = _pair(contrasts(values, kinds, ci_prob=0.9), "drug", "placebo")
    assert result["p_better_responder"].item() == 0.75  # higher is better: 3 of 4 draws
    assert result["p_better_overshoot"].item() == 0.5  # lower is better: 2 of 4 draws
    np.testing.assert_allclose(result["difference_responder"].sel(stat="median"), 0.5)


def test_p_better_counts_only_draws_where_both_arms_are_defined() -> None:
    # time to response is NaN in a draw without responders
    nan = np.nan
    values = xr.Dataset(
        {"time_to_response": (("arm", "draw"), [[20.0, 30.0, 25.0, nan], [nan, 40.0, 20.0, nan]])},
        coords={"arm": ["drug", "placebo"]},
    )
    result = contrasts(values, {"time_to_response": "time_to_response"}, ci_prob=0.9)
    both = _pair(result, "drug", "placebo")
    # defined in draws 2 and 3 only; drug is faster in draw 2 and slower in draw 3
    assert both["p_better_time_to_response"].item() == 0.5

    never = xr.Dataset(
        {"time_to_response": (("arm", "draw"), [[20.0, 30.0], [nan, nan]])},
        coords={"arm": ["drug", "placebo"]},
    )
    undefined = contrasts(never, {"time_to_response": "time_to_response"}, ci_prob=0.9)
    # a placebo arm without responders gives no contrast at all, not P(better) = 0
    assert np.isnan(_pair(undefined, "drug", "placebo")["p_better_time_to_response"].item())


def test_a_one_arm_trial_has_no_contrasts() -> None:
    values = xr.Dataset(
        {"responder": (("arm", "draw"), [[0.6, 0.7, 0.2]])}, coords={"arm": ["placebo"]}
    )
    result = contrasts(values, {"responder": "responder"}, ci_prob=0.9)
    assert result.sizes["pair"] == 0
    assert result["difference_responder"].dims == ("stat", "pair")
    assert result["p_better_responder"].sizes["pair"] == 0


def test_contrasts_carry_units() -> None:
    values = xr.Dataset(
        {
            "time_to_response": (("arm", "draw"), [[20.0, 30.0], [25.0, 40.0]], {"units": "d"}),
            "responder": (("arm", "draw"), [[0.6, 0.7], [0.1, 0.2]]),
        },
        coords={"arm": ["drug", "placebo"]},
    )
    result = contrasts(values, {"time_to_response": "time_to_response"}, ci_prob=0.9)
    assert result["difference_time_to_response"].attrs["units"] == "d"
    assert result["difference_responder"].attrs["units"] == ""
    assert result["p_better_responder"].attrs["units"] == "probability"


def test_prior_compare_chunks_are_independent_seeded_runs() -> None:
    """Chunk i of the prior draws is the run of its draws alone with seed + i."""
    from pathlib import Path

    from tpopk.simulate.comparison import prior_compare
    from tpopk.simulate.synthetic import library_cards

    root = Path(__file__).parents[2]
    cards = library_cards(["hetrombopag"], root / "models")
    trial = root / "models" / "trials" / "hetrombopag_phase3_itp.toml"
    chunked = prior_compare(cards, trial, n_patients=3, draws=3, seed=7, chunk=2)["draws"]
    first = prior_compare(cards, trial, n_patients=3, draws=2, seed=7)["draws"]
    second = prior_compare(cards, trial, n_patients=3, draws=1, seed=8)["draws"]
    for name in ("weeks_in_response", "overshoot_200"):
        got = chunked[name].transpose("arm", "draw").to_numpy()
        np.testing.assert_array_equal(got[:, :2], first[name].transpose("arm", "draw"))
        np.testing.assert_array_equal(got[:, 2:], second[name].transpose("arm", "draw"))
    assert chunked["weeks_in_response"].std() > 0  # the draws differ: seeds matter
    assert list(chunked["draw"].to_numpy()) == [0, 1, 2]
    # a one-draw last chunk joins the dose grids' curves too
    pair = [("HETROM-5", "HETROM-2.5")]
    tree = prior_compare(cards, trial, n_patients=2, draws=3, chunk=2, equivalence=pair)
    assert tree["equivalence"].to_dataset().sizes["pair"] == 1
