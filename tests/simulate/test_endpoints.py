import numpy as np
import pytest
import xarray as xr
from pydantic import TypeAdapter

from tpopk.simulate import (
    Endpoint,
    Response,
    change_from_baseline_at,
    count_at,
    days_above,
    durable_responders,
    evaluate_endpoints,
    fold_change_at,
    overshoot,
    peak_fold_change,
    rescue_free,
    responders_at,
    responders_ever,
    responders_in_assessments,
    time_in_response,
    time_to_peak,
    time_to_response,
)

WEEK = 168.0
WEEKS_1_8 = (1 * WEEK, 8 * WEEK)

# Four patients, weekly counts weeks 0-8; patient 3 is rescued from week 5 on.
PLATELETS = [
    [10, 20, 60, 70, 80, 90, 100, 55, 60],
    [20, 25, 30, 45, 40, 35, 30, 45, 49],
    [15, 210, 450, 220, 60, 50, 50, 50, 50],
    [5, 60, 40, 60, 40, 60, 40, 60, 40],
]
RESCUED = np.zeros((4, 9), dtype=bool)
RESCUED[3, 5:] = True


def trial_of(platelets, rescued, weeks):
    platelets = np.asarray(platelets, dtype=float)[None]
    return xr.Dataset(
        {
            "platelets": (("arm", "patient", "visit"), platelets),
            "rescued": (("arm", "patient", "visit"), np.asarray(rescued)[None]),
            "baseline_platelets": (("arm", "patient"), platelets[:, :, 0]),
        },
        coords={"arm": ["a"], "time": ("visit", np.asarray(weeks, dtype=float) * WEEK)},
    )


@pytest.fixture
def trial():
    return trial_of(PLATELETS, RESCUED, np.arange(9))


def value(result):
    return float(result.sel(arm="a"))


def test_responders_at_a_visit(trial):
    assert value(responders_at(trial, Response(at_least=50), at=8 * WEEK)) == 0.5
    assert value(responders_at(trial, Response(at_least=50), at=7 * WEEK)) == 0.75
    rescue_free = Response(at_least=50, without_rescue=True)
    assert value(responders_at(trial, rescue_free, at=7 * WEEK)) == 0.5
    with pytest.raises(ValueError, match="no visit at"):
        responders_at(trial, Response(at_least=50), at=7.5 * WEEK)


def test_responders_at_least_once_with_baseline_criteria(trial):
    assert value(responders_ever(trial, Response(at_least=50), WEEKS_1_8)) == 0.75
    # IWG-style: >= 30 and doubling of baseline, at least once
    assert value(responders_ever(trial, Response(at_least=30, fold_baseline=2), WEEKS_1_8)) == 1.0
    assert value(responders_ever(trial, Response(at_least=30, fold_baseline=3), WEEKS_1_8)) == 0.75
    rise = Response(at_least=0, rise_from_baseline=40)
    assert value(responders_ever(trial, rise, WEEKS_1_8)) == 0.75
    with pytest.raises(ValueError, match="no visit lies"):
        responders_ever(trial, Response(at_least=50), (9 * WEEK, 10 * WEEK))


def test_responders_at_a_fraction_of_assessments(trial):
    assert value(responders_in_assessments(trial, Response(at_least=50), 0.75, WEEKS_1_8)) == 0.5
    in_range = Response(at_least=50, at_most=200)
    assert value(responders_in_assessments(trial, in_range, 0.75, WEEKS_1_8)) == 0.25
    assert value(responders_in_assessments(trial, in_range, 0.625, WEEKS_1_8)) == 0.5


def test_durable_response(trial):
    assert value(durable_responders(trial, Response(at_least=50), 6, WEEKS_1_8)) == 0.5
    assert value(durable_responders(trial, Response(at_least=50), 4, WEEKS_1_8)) == 0.75
    rescue_free = Response(at_least=50, without_rescue=True)
    assert value(durable_responders(trial, rescue_free, 4, WEEKS_1_8)) == 0.5


def test_time_to_first_response(trial):
    # first responses at weeks 2, 1, 1 (patient 1 never): median 7 days
    result = time_to_response(trial, Response(at_least=50), WEEKS_1_8)
    assert value(result) == 7.0
    assert result.attrs["units"] == "d"
    assert np.isnan(value(time_to_response(trial, Response(at_least=500), WEEKS_1_8)))


def test_cumulative_time_in_response(trial):
    # responding weeks 7, 0, 8, 4 -> mean 4.75; without rescue patient 3 keeps 2 -> 4.25
    assert value(time_in_response(trial, Response(at_least=50), WEEKS_1_8)) == 4.75
    rescue_free = Response(at_least=50, without_rescue=True)
    assert value(time_in_response(trial, rescue_free, WEEKS_1_8)) == 4.25


def test_time_in_response_weights_irregular_visits():
    # visits at weeks 0, 1, 2, 4: responding at 1 (1 week), 2 (2 weeks), 4 (last: 2 weeks)
    sparse = trial_of([[10, 60, 60, 60]], np.zeros((1, 4), bool), [0, 1, 2, 4])
    assert value(time_in_response(sparse, Response(at_least=50), (WEEK, 4 * WEEK))) == 5.0


def test_overshoot(trial):
    assert value(overshoot(trial, 200)) == 0.25
    assert value(overshoot(trial, 449)) == 0.25
    assert value(overshoot(trial, 450)) == 0.0  # strictly above


def test_peak_timing_and_fold_changes(trial):
    # peaks at weeks 6, 8, 2, 1 (first of equal maxima) -> days 42, 56, 14, 7: median 28
    assert value(time_to_peak(trial)) == 28.0
    # peak / baseline: 10, 2.45, 30, 12 -> median 11
    assert value(peak_fold_change(trial)) == pytest.approx(11.0)
    # week 8 / baseline: 6, 2.45, 3.333, 8 -> median 4.6667
    assert value(fold_change_at(trial, 8 * WEEK)) == pytest.approx((6 + 50 / 15) / 2)
    # restricted to weeks 0-2: peaks at weeks 2, 2, 2, 1 -> days 14, 14, 14, 7
    assert value(time_to_peak(trial, (0.0, 2 * WEEK))) == 14.0


def test_extra_dimensions_pass_through(trial):
    doubled = trial.assign(platelets=trial["platelets"] * 2)
    draws = xr.concat([trial, doubled], dim="draw")
    result = responders_at(draws, Response(at_least=50), at=8 * WEEK)
    assert set(result.dims) == {"draw", "arm"}
    np.testing.assert_allclose(result.sel(arm="a"), [0.5, 1.0])
    peak = time_to_peak(draws)
    assert set(peak.dims) == {"draw", "arm"}
    np.testing.assert_allclose(peak.sel(arm="a"), [28.0, 28.0])


def test_endpoints_from_specifications(trial):
    specs = TypeAdapter(list[Endpoint]).validate_python(
        [
            {
                "name": "week8",
                "kind": "responder_at",
                "at": "8 weeks",
                "response": {"at_least": 50},
            },
            {
                "name": "durable",
                "kind": "durable",
                "window": ["1 week", "8 weeks"],
                "min_visits": 6,
                "response": {"at_least": 50, "without_rescue": True},
            },
            {"name": "above400", "kind": "overshoot", "above": 400},
            {
                "name": "weeks",
                "kind": "time_in_response",
                "window": ["7 d", "56 d"],
                "response": {"at_least": 50},
            },
        ]
    )
    result = evaluate_endpoints(trial, specs)
    assert list(result.data_vars) == ["week8", "durable", "above400", "weeks"]
    np.testing.assert_allclose(
        [value(result[name]) for name in result.data_vars], [0.5, 0.5, 0.25, 4.75]
    )
    assert result["weeks"].attrs["units"] == "week"


def test_response_range_must_be_ordered():
    with pytest.raises(ValueError, match="below at_least"):
        Response(at_least=50, at_most=40)


def test_counts_changes_and_days_above_over_patients(trial):
    # week 8 counts 60, 49, 50, 40; changes from baseline 50, 29, 35, 35
    assert value(count_at(trial, 8 * WEEK)) == 49.5
    assert value(count_at(trial, 8 * WEEK, "mean")) == 49.75
    assert value(change_from_baseline_at(trial, 8 * WEEK)) == 37.25
    assert value(change_from_baseline_at(trial, 8 * WEEK, "median")) == 35
    # weekly visits each count 7 days: weeks >= 50 are 7, 0, 8, 4 -> 49, 0, 56, 28 days
    above_50 = Response(at_least=50)
    assert value(days_above(trial, above_50)) == 38.5
    assert value(days_above(trial, above_50, statistic="mean")) == 33.25
    assert value(days_above(trial, above_50, window=(2 * WEEK, 3 * WEEK))) == 14 - 7 / 2
    assert days_above(trial, above_50).attrs["units"] == "d"


def test_endpoints_count_enrolled_patients_per_subgroup(trial):
    trial = trial.assign(
        enrolled=(("arm", "patient"), [[True, True, False, True]]),
        EAST_ASIAN=(("arm", "patient"), [[1, 0, 1, 0]]),
        SPLENECTOMY=(("arm", "patient"), [[0, 0, 0, 1]]),
        cohort=(("arm", "patient"), [["low", "low", "high", "high"]]),
    )
    # enrolled patients 0, 1, 3: week-8 counts 60, 49, 40
    assert value(responders_at(trial, Response(at_least=50), 8 * WEEK)) == pytest.approx(1 / 3)
    assert value(count_at(trial, 8 * WEEK)) == 49
    specs = TypeAdapter(list[Endpoint]).validate_python(
        [
            {"name": "all", "kind": "count_at", "at": "8 weeks"},
            {
                "name": "east_asian",
                "kind": "count_at",
                "at": "8 weeks",
                "subgroup": {"east_asian": True},
            },
            {
                "name": "low",
                "kind": "change_from_baseline_at",
                "at": "8 weeks",
                "subgroup": {"cohort": "low"},
            },
            {
                "name": "high_not_splenectomised",
                "kind": "responder_ever",
                "response": {"at_least": 100},
                "subgroup": {"cohort": "high", "splenectomy": False},
            },
            {
                "name": "low_baseline",
                "kind": "days_above",
                "response": {"at_least": 50},
                "subgroup": {"baseline_below": 15},
            },
        ]
    )
    result = evaluate_endpoints(trial, specs)
    # east-asian and enrolled: patient 0 alone; cohort low: changes 50 and 29; high and
    # not splenectomised: patient 2, not enrolled; baseline < 15: patients 0 and 3
    assert value(result["all"]) == 49
    assert value(result["east_asian"]) == 60
    assert value(result["low"]) == 39.5
    assert np.isnan(value(result["high_not_splenectomised"]))
    assert value(result["low_baseline"]) == (49 + 28) / 2


def test_rescue_free_counts_patients_without_rescue_in_the_window(trial):
    given = np.zeros((1, 4, 9), dtype=bool)
    given[0, 3, 5] = True  # patient 3, rescued from week 5 on, was given it at week 5
    given[0, 1, 1] = True
    trial = trial.assign(rescue_given=(("arm", "patient", "visit"), given))
    assert value(rescue_free(trial)) == 0.5
    assert value(rescue_free(trial, window=(2 * WEEK, 8 * WEEK))) == 0.75
    spec = TypeAdapter(Endpoint).validate_python(
        {"name": "no_transfusion", "kind": "rescue_free", "window": ["5 weeks", "5 weeks"]}
    )
    trial = trial.assign(enrolled=(("arm", "patient"), [[True, True, True, False]]))
    assert value(spec.evaluate(trial)) == 1.0
