from pathlib import Path

import numpy as np
import pytest

from tpopk.data import read_events
from tpopk.simulate import (
    TrialDesignError,
    evaluate_endpoints,
    load_trial,
    run_trial,
    sample_population,
    trial_events,
)
from tpopk.simulate.duration import hours

from .reference_response import EmaxDelayResponse

TRIALS = sorted((Path(__file__).parents[2] / "models" / "trials").glob("*.toml"))


def test_the_trial_library_is_there():
    names = {path.stem for path in TRIALS}
    assert {
        "hetrombopag_phase3_itp",
        "romiplostim_kuter2008_itp",
        "eltrombopag_itp",
        "avatrombopag_itp",
        "avatrombopag_cld_adapt",
        "lusutrombopag_cld_lplus2",
        "healthy_volunteer_courses",
    } <= names


def simulate(design, n=40, seed=5, emax=8.0, potency=1.0, spread=0.0, delay=120.0):
    population = sample_population(design, n_patients=n, seed=seed)
    # patients differ in sensitivity: log-normal spread of EC50 around the mid-range dose
    sensitivity = np.exp(spread * np.random.default_rng(seed).standard_normal(n))
    responders = {}
    for arm in design.arms:
        levels = design.titration_of(arm).levels
        typical = float(np.mean(levels[len(levels) // 2]))  # effect half-maximal mid-range
        baseline = population["baseline_platelets"].sel(arm=arm.name).to_numpy()
        responders[arm.name] = EmaxDelayResponse(
            baseline, emax=emax, ec50=typical / potency / sensitivity, delay=delay
        )
    return population, run_trial(design, responders, population)


@pytest.mark.parametrize("path", TRIALS, ids=lambda p: p.stem)
def test_every_design_loads_runs_and_reports(path):
    design = load_trial(path)
    assert design.sources, "every design cites its sources"
    assert load_trial(design.model_dump(mode="json")) == design
    assert design.endpoints
    _, trial = simulate(design)
    result = evaluate_endpoints(trial, design.endpoints)
    for name, value in result.data_vars.items():
        assert value.dims == ("arm",), name
        if value.attrs["units"] == "fraction of patients":
            assert np.all((value >= 0) & (value <= 1)), name
    frame = trial_events(trial)  # arms in mg and µg/kg give one dataset in mg
    events = read_events(frame, units=frame.attrs["units"])
    assert len(events.subjects) == trial.sizes["arm"] * trial.sizes["patient"]
    placebo = trial["placebo"].to_numpy()
    assert np.all(trial["dose_amount"].to_numpy()[placebo] == 0)
    assert np.all(trial["dose_amount"].to_numpy()[~placebo].sum(axis=-1) > 0)


def test_lusutrombopag_course_is_at_most_seven_3_mg_doses():
    design = load_trial(TRIALS[0].parent / "lusutrombopag_cld_lplus2.toml")
    _, trial = simulate(design, n=200)
    amount = trial["dose_amount"].sel(arm="lusutrombopag").to_numpy()
    given = amount > 0
    assert np.all(amount[given] == 3.0)
    count = given.sum(axis=1)
    assert count.max() <= 7
    assert count.min() >= 4  # the first check is before dose 5
    stopped = trial["stopped"].sel(arm="lusutrombopag").to_numpy().any(axis=1)
    assert stopped.any()
    np.testing.assert_array_equal(stopped, count < 7)
    # who stopped met the rule at their last check: >= 50 and >= 20 above baseline
    plt = trial["platelets"].sel(arm="lusutrombopag").to_numpy()
    base = trial["baseline_platelets"].sel(arm="lusutrombopag").to_numpy()
    check = count[stopped] - 3  # visit index of the check before the missed dose
    at_check = plt[stopped, check]
    assert np.all(at_check >= 50)
    assert np.all(at_check - base[stopped] >= 20)
    # without a response nobody meets the rule: the full 7-day course
    _, flat = simulate(design, n=20, emax=0.0)
    given = flat["dose_amount"].sel(arm="lusutrombopag").to_numpy() > 0
    np.testing.assert_array_equal(given.sum(axis=1), 7)


def test_avatrombopag_cld_dose_follows_the_baseline_cohort():
    design = load_trial(TRIALS[0].parent / "avatrombopag_cld_adapt.toml")
    _, trial = simulate(design, n=200)
    base = trial["baseline_platelets"].sel(arm="avatrombopag").to_numpy()
    total = trial["dose_amount"].sel(arm="avatrombopag").to_numpy().sum(axis=1)
    np.testing.assert_allclose(total, np.where(base < 40, 300.0, 200.0))
    assert 0.2 < np.mean(base < 40) < 0.8  # both cohorts are populated


def test_eltrombopag_starts_east_asian_patients_at_25_mg():
    design = load_trial(TRIALS[0].parent / "eltrombopag_itp.toml")
    _, trial = simulate(design, n=100)
    arm = trial.sel(arm="eltrombopag")
    first = arm["dose_amount"].to_numpy()[:, 0]
    np.testing.assert_allclose(first, np.where(arm["EAST_ASIAN"].to_numpy() == 1, 25.0, 50.0))
    assert 0 < arm["EAST_ASIAN"].mean() < 1


def test_romiplostim_levels_move_one_step_and_increases_are_weekly():
    design = load_trial(TRIALS[0].parent / "romiplostim_kuter2008_itp.toml")
    _, trial = simulate(design, n=200, emax=30.0, potency=3.0, spread=1.5, delay=300.0)
    level = trial["dose_level"].sel(arm="romiplostim").to_numpy()[:, :24]
    dosing = level > 0
    steps = np.diff(level, axis=1)[dosing[:, 1:] & dosing[:, :-1]]
    assert set(np.unique(steps)) <= {-1, 0, 1}
    assert level.max() <= 10
    assert (steps == 1).any()  # the toy exercises increases, decreases and holds
    assert (steps == -1).any()
    assert trial["held"].sel(arm="romiplostim").any()


def test_hetrombopag_increases_are_at_least_two_weeks_apart():
    design = load_trial(TRIALS[0].parent / "hetrombopag_phase3_itp.toml")
    _, trial = simulate(design, n=200)
    level = trial["dose_level"].sel(arm="HETROM-2.5").to_numpy()[:, :10]
    rises = np.diff(level, axis=1) == 1
    assert rises.any()
    for row in rises:
        weeks = np.flatnonzero(row)
        assert np.all(np.diff(weeks) >= 2)


GOOD = (TRIALS[0].parent / "lusutrombopag_cld_lplus2.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('interval = "24 h"', "interval = 24", "titrations.course.interval.*has no unit"),
        ('interval = "24 h"', 'interval = "24 parsecs"', "not a duration"),
        ('agonist = "lusutrombopag"', 'agonist = "aspirin"', r"arms\.0\.agonist"),
        ('titration = "course"', 'titration = "curse"', "titration 'curse' is not one of"),
        ("start = [{ level = 1 }]", "start = [{ level = 2 }]", "start level 2 but"),
        (
            "start = [{ level = 1 }]",
            "start = [{ baseline_below = 40, level = 1 }]",
            "last start rule must have no conditions",
        ),
        (
            "rise_from_baseline_at_least = 20,",
            "resume_below = 5, rise_from_baseline_at_least = 20,",
            "resume_below belongs",
        ),
        ("times = [0, 4, 5, 6, 7, 34]", "times = [1, 4]", "first visit must be at time 0"),
        ('at = "7 d"', 'at = "8.5 d"', "no visit at 8.5 d"),
        ('disease = "CLD"', 'disease = "flu"', "population.disease"),
        ("upper = 50.0 }", "upper = 50.0, colour = 1 }", "colour"),
        ('kind = "overshoot"', 'kind = "overshot"', "endpoints"),
        ('name = "placebo"', 'name = "lusutrombopag"', "arm names repeat"),
        ("platelets_at_least = 50", "platelets_at_least = -50", r"rules\.0\.platelets_at_least"),
    ],
)
def test_bad_designs_name_the_problem(old, new, message):
    assert old in GOOD
    with pytest.raises(TrialDesignError, match=message):
        load_trial(GOOD.replace(old, new, 1))


def test_levels_out_of_dose_order_are_an_error():
    text = (TRIALS[0].parent / "hetrombopag_phase3_itp.toml").read_text(encoding="utf-8")
    old = "levels = [2.5, 3.75, 5.0, 7.5]"
    assert old in text
    with pytest.raises(
        TrialDesignError, match=r"level 3 gives 5 mg per slot on average, level 2 7\.5"
    ):
        load_trial(text.replace(old, "levels = [2.5, 7.5, 5.0, 3.75]"))
    # A pattern is ordered by its average: 20 mg twice a week (5.7 mg/day) sits below 10 mg daily.
    load_trial(text.replace(old, "levels = [2.5, [20, 0, 0, 20, 0, 0, 0], 10.0]"))


def test_hold_rules_need_a_resume_threshold():
    text = GOOD.replace(
        '{ action = "stop", platelets_at_least = 50', '{ action = "hold", platelets_at_least = 50'
    )
    with pytest.raises(TrialDesignError, match="needs resume_below"):
        load_trial(text)


def test_unreadable_sources():
    with pytest.raises(TrialDesignError, match="does not exist"):
        load_trial("no/such/trial.toml")
    with pytest.raises(TrialDesignError, match="not valid TOML"):
        load_trial("name = \n[population")


def test_durations_carry_their_unit():
    assert hours("14 d") == 336.0
    assert hours("2 weeks") == 336.0
    assert hours("1.5 h") == 1.5
    assert hours("1e1 days") == 240.0


def test_visit_schedules_merge_lists_and_intervals():
    design = load_trial(
        GOOD.replace("times = [0, 4, 5, 6, 7, 34]", "times = [0, 1.5, 34]\nevery = 7\nuntil = 21")
    )
    np.testing.assert_allclose(design.visits.hours / 24, [0, 1.5, 7, 14, 21, 34])


def test_titration_patterns_repeat_by_slot():
    design = load_trial(TRIALS[0].parent / "avatrombopag_itp.toml")
    table = design.titrations["label"].schedule(14)
    np.testing.assert_allclose(table.sum(axis=1) / 2, [20, 40, 60, 140, 200, 280])


def test_healthy_volunteer_courses_give_their_doses_and_split_by_unit():
    design = load_trial(TRIALS[0].parent / "healthy_volunteer_courses.toml")
    _, trial = simulate(design, n=10)
    doses = (trial["dose_amount"] > 0).sum("dose").to_pandas()
    expected = {"romiplostim": 1, "eltrombopag": 10, "hetrombopag": 1, "avatrombopag": 1}
    for arm, count in {**expected, "lusutrombopag": 7}.items():
        assert np.all(doses.loc[arm] == count), arm
    oral = trial.sel(arm=["eltrombopag", "hetrombopag", "avatrombopag", "lusutrombopag"])
    frame = trial_events(oral)
    events = read_events(frame, units=frame.attrs["units"])
    assert sorted(set(events.frame["AGONIST"])) == sorted(oral["agonist"].to_numpy().tolist())


def test_the_documented_example_loads():
    import tpopk.simulate.design as module

    example = module.__doc__.split("A\nminimal design::")[1]
    design = load_trial("\n".join(line[4:] for line in example.splitlines()))
    assert design.arms[0].start[0].east_asian is True


COHORTS = """
[[cohorts]]
name = "low"
below = 40
n = { lusutrombopag = 60, placebo = 50 }
[[cohorts]]
name = "high"
at_least = 40
n = { lusutrombopag = 48, placebo = 57 }
"""


def test_cohorts_and_subgroups_must_name_what_exists():
    design = load_trial(GOOD + COHORTS)
    assert design.enrolment_cap(design.arms[0]) == {"low": 60, "high": 48}
    bad = [
        (
            COHORTS.replace("placebo = 57", "placebo = 58"),
            "n = 107 but its cohorts' n add up to 108",
        ),
        (COHORTS.replace("placebo = 57", "plaecbo = 57"), r"n names no arm \['plaecbo'\]"),
        (COHORTS.replace('name = "high"', 'name = "low"'), "cohort names repeat"),
        (
            COHORTS + '[[endpoints]]\nname = "x"\nkind = "count_at"\nat = "7 d"\n'
            'subgroup = { cohort = "middle" }\n',
            "endpoint 'x': subgroup cohort 'middle' is not one of",
        ),
        (
            COHORTS + '[[endpoints]]\nname = "x"\nkind = "count_at"\nat = "9 d"\n',
            "endpoint 'x': no visit at 9 d",
        ),
        (COHORTS + "[enrolment]\ncriterion = 'median'\n", r"enrolment\.criterion"),
        (COHORTS + "[enrolment]\ncandidates = 0.5\n", r"enrolment\.candidates"),
    ]
    for extra, message in bad:
        with pytest.raises(TrialDesignError, match=message):
            load_trial(GOOD + extra)
    with pytest.raises(TrialDesignError, match="start cohort 'middle' is not one of"):
        load_trial(
            GOOD.replace(
                "start = [{ level = 1 }]",
                'start = [{ cohort = "middle", level = 1 }, { level = 1 }]',
                1,
            )
            + COHORTS
        )


def test_new_keys_survive_a_round_trip():
    extra = (
        COHORTS
        + '[enrolment]\nscreening_counts = 2\nscreening_interval = "3 d"\ncriterion = "mean"\n'
        + "below = 60\n"
        + '[[endpoints]]\nname = "low_days"\nkind = "days_above"\nresponse = { at_least = 50 }\n'
        + 'statistic = "mean"\nsubgroup = { cohort = "low", east_asian = false }\n'
    )
    text = GOOD.replace(
        "times = [0, 4, 5, 6, 7, 34]",
        'times = [0, 4, 5, 6, 7, 34]\nwindows = [{ name = "procedure", start = 8, end = 13 }]',
    ).replace(
        'window = ["7 d", "7 d"]',
        'window = ["8 d", "8 d"]\nat_most = 1\neffect = { rise = 25, lifespan = "9 d" }',
    )
    design = load_trial(text + extra)
    assert load_trial(design.model_dump(mode="json")) == design
    assert design.enrolment.screening_hours().tolist() == [-144.0, -72.0]
    assert design.rescue[0].effect is not None
    assert design.rescue[0].effect.lifespan == 9 * 24
    np.testing.assert_array_equal(design.visits.windowed[5].days(), [8, 9, 10, 11, 12, 13])
