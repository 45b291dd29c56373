import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from tpopk.data import read_events
from tpopk.simulate import (
    TrialDesignError,
    load_trial,
    run_trial,
    sample_population,
    trial_events,
)

from .reference_response import (
    DriftResponse,
    EmaxDelayResponse,
    LastDoseResponse,
    NoisyLevelResponse,
)

WEEKLY = """
name = "weekly_titration"
[population]
disease = "ITP"
baseline_platelets = { median = 15, sd_log = 0.5, upper = 30 }
weight = { median = 70, sd_log = 0.2 }
east_asian_fraction = 0.0
splenectomy_fraction = 0.0
[visits]
unit = "week"
every = 1
until = 15
[titrations.label]
dose_unit = "µg/kg"
interval = "1 week"
levels = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
rules = [
  { action = "stop", platelets_below = 50, at_level = "highest", min_time_at_level = "4 weeks" },
  { action = "hold", platelets_above = 400, resume_below = 200 },
  { action = "decrease", platelets_above = 200, consecutive_visits = 2 },
  { action = "increase", platelets_below = 50 },
]
[[arms]]
name = "drug"
agonist = "romiplostim"
route = "sc"
titration = "label"
start = [{ baseline_at_least = 50, level = 4 }, { level = 1 }]
duration = "16 weeks"
"""


def population_of(design, **covariates):
    """A population Dataset with the given per-arm, per-patient covariates."""
    n = len(next(iter(covariates.values()))[0])
    base = {
        "WT": 70.0,
        "EAST_ASIAN": 0,
        "SPLENECTOMY": 0,
        "DISEASE": design.population.disease,
        "baseline_platelets": 10.0,
    }
    dims = ("arm", "patient")
    data = {
        key: (dims, np.asarray(covariates.get(key, np.full((len(design.arms), n), value))))
        for key, value in base.items()
    }
    return xr.Dataset(data, coords={"arm": [a.name for a in design.arms], "patient": np.arange(n)})


def test_romiplostim_like_rules_match_hand_computation():
    design = load_trial(WEEKLY)
    # A climbs to 8; B stays at 1; C alternates hold/resume one lower; D decreases after
    # 2 weeks > 200; E reaches 10 and stops after 4 weeks there without response; F
    # needs 2 more weeks > 200 after its first decrease (the streak restarts at a change).
    responder = LastDoseResponse(baseline=[10, 20, 100, 60, 5, 60], gain=[5, 150, 350, 40, 0, 60])
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=np.full((1, 6), 70.0)))
    level = trial["dose_level"].sel(arm="drug").to_numpy()
    plt = trial["platelets"].sel(arm="drug").to_numpy()

    np.testing.assert_array_equal(level[0], [1, 2, 3, 4, 5, 6, 7, 8] + [8] * 8)
    np.testing.assert_allclose(plt[0], [10, 15, 20, 25, 30, 35, 40, 45] + [50] * 8)

    np.testing.assert_array_equal(level[1], [1] * 16)
    np.testing.assert_allclose(plt[1], [20] + [170] * 15)

    np.testing.assert_array_equal(level[2], [4, 0, 3, 0, 2, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(trial["held"].to_numpy()[0, 2], np.arange(16) % 2 == 1)
    np.testing.assert_allclose(plt[2][:8], [100, 1500, 100, 1150, 100, 800, 100, 450])

    np.testing.assert_array_equal(level[3], [4, 4, 3] + [3] * 13)
    np.testing.assert_allclose(plt[3][:5], [60, 220, 220, 180, 180])

    np.testing.assert_array_equal(level[4], [*range(1, 11), 10, 10, 10, 0, 0, 0])
    np.testing.assert_array_equal(level[5], [4, 4, 3, 3] + [2] * 12)
    np.testing.assert_allclose(plt[5][:6], [60, 300, 300, 240, 240, 180])
    np.testing.assert_array_equal(trial["stopped"].to_numpy()[0, 4], np.arange(16) >= 13)
    # dose given per visit is the weekly amount of the level; nothing after stopping
    np.testing.assert_allclose(trial["dose_given"].to_numpy()[0, 4], level[4])
    # the dose history handed back equals the dose table
    amounts = trial["dose_amount"].to_numpy()[0]
    np.testing.assert_allclose(amounts[2, :4], [4, 0, 3, 0])
    assert np.isnan(trial["dose_time"].to_numpy()[0, 2, 1])  # held week: no dose


def test_each_visit_count_follows_from_the_doses_given_before_it():
    design = load_trial(WEEKLY)
    responder = LastDoseResponse(baseline=[10, 20], gain=[5, 150])
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=np.full((1, 2), 70.0)))
    calls = len(responder.calls)
    # counts are read off planned courses; each must equal a simulation of only the doses
    # actually given before that visit
    dose_time = np.nan_to_num(trial["dose_time"].to_numpy()[0], nan=np.inf)
    dose_amount = trial["dose_amount"].to_numpy()[0]
    for j, visit in enumerate(trial["time"].to_numpy()):
        before = np.where(dose_time < visit, dose_amount, 0.0)
        again = responder.platelets(dose_time, before, np.full((2, 1), visit))[:, 0]
        np.testing.assert_allclose(trial["platelets"].to_numpy()[0, :, j], again)
    # a re-simulation per change of course, not per visit (16 visits)
    assert calls < 16


def test_trial_counts_equal_one_simulation_of_the_final_dosing():
    """Causality: re-simulating per visit gives what the final dose history gives."""
    design = load_trial(WEEKLY)
    population = sample_population(design, n_patients=40, seed=3)
    responder = EmaxDelayResponse(population["baseline_platelets"].sel(arm="drug").to_numpy())
    trial = run_trial(design, {"drug": responder}, population)
    times = np.broadcast_to(trial["time"].to_numpy(), (40, 16)).copy()
    dose_time = trial["dose_time"].to_numpy()[0]
    amount = trial["dose_amount"].to_numpy()[0]
    again = responder.platelets(np.nan_to_num(dose_time), amount, times)
    np.testing.assert_allclose(trial["platelets"].to_numpy()[0], again, rtol=1e-12)
    # the toy honours the sampled baseline, and the visit-0 count is the baseline
    np.testing.assert_allclose(
        trial["baseline_platelets"].to_numpy()[0], population["baseline_platelets"].to_numpy()[0]
    )
    # titration acted: some patients moved up, and no level is outside 1..10 while dosing
    level = trial["dose_level"].to_numpy()[0]
    assert level[:, 1:].max() > 1
    assert set(np.unique(level)) <= set(range(11))


AVATROMBOPAG_LIKE = """
name = "patterns"
[population]
disease = "ITP"
baseline_platelets = { median = 15, sd_log = 0 }
weight = { median = 70, sd_log = 0 }
east_asian_fraction = 0
splenectomy_fraction = 0
[visits]
unit = "day"
times = [0, 7, 14]
[titrations.levels]
dose_unit = "mg"
interval = "24 h"
levels = [[20, 0, 0, 0, 0, 0, 0], [20, 0, 0, 20, 0, 0, 0], 20]
rules = [{ action = "increase", platelets_below = 50, min_time_at_level = "7 d" }]
[[arms]]
name = "a"
agonist = "avatrombopag"
route = "oral"
titration = "levels"
start = [{ level = 2 }]
duration = "14 d"
"""


def test_less_than_daily_levels_give_their_pattern():
    design = load_trial(AVATROMBOPAG_LIKE)
    responder = LastDoseResponse(baseline=[10, 60], gain=[0, 0])
    trial = run_trial(design, {"a": responder}, population_of(design, WT=np.full((1, 2), 70.0)))
    np.testing.assert_array_equal(trial["dose_level"].to_numpy()[0], [[2, 3, 0], [2, 2, 0]])
    np.testing.assert_allclose(trial["dose_given"].to_numpy()[0], [[40, 140, 0], [40, 40, 0]])
    events = trial_events(trial)
    doses = events[(events["EVID"] == 1) & (events["ID"] == 2)]
    np.testing.assert_allclose(doses["TIME"] / 24, [0, 3, 7, 10])


LUSUTROMBOPAG_LIKE = """
name = "course"
[population]
disease = "CLD"
baseline_platelets = { median = 40, sd_log = 0.3, upper = 50 }
weight = { median = 66, sd_log = 0.2 }
east_asian_fraction = 0
splenectomy_fraction = 0
[visits]
unit = "day"
times = [0, 4, 5, 6, 7]
[titrations.course]
dose_unit = "mg"
interval = "1 d"
levels = [3]
rules = [{ action = "stop", platelets_at_least = 50, rise_from_baseline_at_least = 20 }]
[[arms]]
name = "luso"
agonist = "lusutrombopag"
route = "oral"
titration = "course"
start = [{ level = 1 }]
duration = "7 d"
[[rescue]]
platelets_below = 50
window = ["7 d", "7 d"]
"""


def test_fixed_course_stops_on_the_stopping_rule():
    design = load_trial(LUSUTROMBOPAG_LIKE)
    # 40 + 10*3 = 70: >= 50 and +30 -> stop on day 5 before the 5th dose;
    # 20 + 5*3 = 35: never; 45 + 2*3 = 51 but only +6 above baseline: never.
    responder = LastDoseResponse(baseline=[40, 20, 45], gain=[10, 5, 2])
    trial = run_trial(design, {"luso": responder}, population_of(design, WT=np.full((1, 3), 66.0)))
    given = (trial["dose_amount"].to_numpy()[0] > 0).sum(axis=1)
    np.testing.assert_array_equal(given, [4, 7, 7])
    np.testing.assert_array_equal(trial["stopped"].to_numpy()[0, 0], [0, 1, 1, 1, 1])
    assert not trial["stopped"].to_numpy()[0, 1:].any()
    # day-8 count (t = 7 d): 40 (no dose since day 4) and 35 are < 50 -> transfused;
    # 51 is not; nobody is rescued before the window.
    np.testing.assert_array_equal(trial["rescued"].to_numpy()[0, :, -1], [True, True, False])
    assert not trial["rescued"].to_numpy()[0, :, :-1].any()


def test_start_rules_by_baseline_and_ancestry():
    course = LUSUTROMBOPAG_LIKE.split("[titrations.course]")[0]
    design = load_trial(
        course
        + '[titrations.course]\ndose_unit = "mg"\ninterval = "1 d"\nlevels = [40, 60]\n'
        + '[[arms]]\nname = "cld"\nagonist = "avatrombopag"\nroute = "oral"\n'
        + 'titration = "course"\nduration = "5 d"\n'
        + "start = [{ east_asian = true, baseline_at_least = 45, level = 1 },"
        + " { baseline_below = 40, level = 2 }, { level = 1 }]\n"
    )
    responder = LastDoseResponse(baseline=[30, 45, 48, 39.9], gain=[0, 0, 0, 0])
    population = population_of(design, EAST_ASIAN=np.array([[1, 0, 1, 0]]))
    trial = run_trial(design, {"cld": responder}, population)
    np.testing.assert_array_equal(trial["dose_level"].to_numpy()[0, :, 0], [2, 1, 1, 2])
    np.testing.assert_allclose(trial["dose_amount"].to_numpy()[0].sum(axis=1), [300, 200, 200, 300])


def test_placebo_arm_is_titrated_blind_but_gets_no_drug():
    design = load_trial(
        WEEKLY.replace('duration = "16 weeks"', 'duration = "16 weeks"\nplacebo = true')
    )
    responder = LastDoseResponse(baseline=[10], gain=[100])
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=np.full((1, 1), 70.0)))
    assert all(np.all(amount == 0) for _, amount, _ in responder.calls)
    np.testing.assert_array_equal(trial["dose_level"].to_numpy()[0, 0, :10], np.arange(1, 11))
    assert np.all(trial["dose_given"].to_numpy() == 0)
    assert not (trial_events(trial)["EVID"] == 1).any()


def test_event_table_validates_and_carries_the_doses_given():
    design = load_trial(WEEKLY)
    population = sample_population(design, n_patients=6, seed=0)
    responder = EmaxDelayResponse(population["baseline_platelets"].to_numpy()[0])
    trial = run_trial(design, {"drug": responder}, population)
    frame = trial_events(trial)
    events = read_events(frame, units=frame.attrs["units"])
    assert events.units["AMT"] == "µg/kg"
    doses = events.doses
    np.testing.assert_allclose(doses["AMT"].sum(), trial["dose_amount"].sum())
    assert len(doses) == int((trial["dose_amount"] > 0).sum())
    obs = events.observations
    np.testing.assert_allclose(obs["DV"].to_numpy(), trial["platelets"].to_numpy().ravel())
    assert set(events.covariates.columns) >= {"WT", "EAST_ASIAN", "SPLENECTOMY", "DISEASE", "ARM"}
    assert set(events.covariates["DISEASE"]) == {"ITP"}


def test_event_table_writes_mixed_dose_units_in_mg():
    design = load_trial(
        WEEKLY
        + '\n[titrations.oral]\ndose_unit = "mg"\ninterval = "24 h"\nlevels = [20]\n'
        + '[[arms]]\nname = "oral"\nagonist = "avatrombopag"\nroute = "oral"\n'
        + 'titration = "oral"\nstart = [{ level = 1 }]\nduration = "2 weeks"\n'
    )
    population = population_of(design, WT=[[70.0, 50.0], [80.0, 60.0]])
    responders = {name: LastDoseResponse([10, 10], [1, 1]) for name in ("drug", "oral")}
    trial = run_trial(design, responders, population)
    frame = trial_events(trial)
    assert frame.attrs["units"]["AMT"] == "mg"
    doses = frame[frame["EVID"] == 1].groupby("ID")["AMT"].first()
    # 1 µg/kg weekly x 70 and 50 kg; 20 mg daily
    np.testing.assert_allclose(doses.to_numpy(), [0.07, 0.05, 20, 20])
    events = read_events(frame, units=frame.attrs["units"])
    assert len(events.subjects) == 4


def test_run_trial_checks_the_response_models():
    design = load_trial(WEEKLY)
    population = population_of(design, WT=np.full((1, 3), 70.0))
    with pytest.raises(TrialDesignError, match="no response model"):
        run_trial(design, {}, population)
    with pytest.raises(TrialDesignError, match="patients"):
        run_trial(design, {"drug": LastDoseResponse([10], [1])}, population)


def test_sample_population_is_seeded_and_respects_bounds():
    design = load_trial(WEEKLY)
    first = sample_population(design, n_patients=20000, seed=11)
    again = sample_population(design, n_patients=20000, seed=11)
    xr.testing.assert_identical(first, again)
    baseline = first["baseline_platelets"].to_numpy()
    assert baseline.max() < 30
    # median of a log-normal(median 15, sd_log 0.5) truncated above 30:
    # F(30) = Phi(ln 2 / 0.5) = 0.91717; the truncated median is the 0.45858 quantile.
    from scipy.stats import norm

    expected = 15 * np.exp(0.5 * norm.ppf(norm.cdf(np.log(2) / 0.5) / 2))
    assert np.median(baseline) == pytest.approx(expected, rel=0.02)
    assert first["EAST_ASIAN"].sum() == 0
    table = first.sel(arm="drug").to_dataframe()
    assert {"WT", "EAST_ASIAN", "SPLENECTOMY", "DISEASE", "baseline_platelets"} <= set(table)
    assert len(table) == 20000


def test_splenectomised_patients_draw_their_own_baseline():
    text = WEEKLY.replace(
        "splenectomy_fraction = 0.0",
        "splenectomy_fraction = 0.5\n"
        "baseline_platelets_splenectomised = { median = 5, sd_log = 0 }",
    )
    population = sample_population(load_trial(text), n_patients=4000, seed=2)
    spleen = population["SPLENECTOMY"].to_numpy() == 1
    assert 0.45 < spleen.mean() < 0.55
    np.testing.assert_allclose(population["baseline_platelets"].to_numpy()[spleen], 5.0)
    assert np.all(population["baseline_platelets"].to_numpy()[~spleen] != 5.0)


def test_split_draws_gives_endpoints_per_draw():
    from tpopk.simulate import Response, responders_at, split_draws

    design = load_trial(WEEKLY)
    population = sample_population(design, n_patients=30, seed=4)  # 3 draws x 10 patients
    responder = EmaxDelayResponse(population["baseline_platelets"].to_numpy()[0])
    trial = run_trial(design, {"drug": responder}, population)
    split = split_draws(trial, draws=3)
    assert dict(split["platelets"].sizes) == {"arm": 1, "draw": 3, "patient": 10, "visit": 16}
    per_draw = responders_at(split, Response(at_least=50), at=4 * 168.0).sel(arm="drug")
    flat = trial["platelets"].sel(arm="drug").to_numpy()[:, 4]
    np.testing.assert_allclose(per_draw, (flat.reshape(3, 10) >= 50).mean(axis=1))
    with pytest.raises(ValueError, match="do not split"):
        split_draws(trial, draws=7)


def test_designs_round_trip_through_plain_data():
    design = load_trial(WEEKLY)
    again = load_trial(design.model_dump(mode="json"))
    assert again == design


def test_run_trial_needs_a_population_for_every_arm():
    design = load_trial(WEEKLY)
    population = population_of(design, WT=np.full((1, 2), 70.0)).assign_coords(arm=["other"])
    with pytest.raises(TrialDesignError, match="no patients for arm"):
        run_trial(design, {"drug": LastDoseResponse([10, 10], [1, 1])}, population)


def romiplostim_rules_by_hand(baseline, gain, weeks=16):
    """The WEEKLY design's label rules for one patient, written out as a plain loop."""
    level = 4 if baseline >= 50 else 1
    status, since, streak, last_dose = "dosing", 0, 0, 0.0
    levels = []
    for week in range(weeks):
        count = baseline + gain * last_dose
        if week > 0 and status == "held":
            if count < 200:
                level, status, since, streak = max(level - 1, 1), "dosing", week, 0
        elif week > 0 and status == "dosing":
            streak = streak + 1 if count > 200 else 0
            if count < 50 and level == 10 and week - since >= 4:
                status = "stopped"
            elif count > 400:
                status, streak = "held", 0
            elif streak >= 2:
                if level > 1:
                    level, since, streak = level - 1, week, 0
            elif count < 50 and level < 10:
                level, since, streak = level + 1, week, 0
        dose = level if status == "dosing" else 0
        levels.append(dose)
        last_dose = float(dose)
    return levels


@settings(max_examples=60, deadline=None)
@given(
    baseline=st.lists(st.floats(1, 120), min_size=1, max_size=6),
    gains=st.lists(st.floats(0, 300), min_size=6, max_size=6),
)
def test_vectorised_rules_match_a_per_patient_loop(baseline, gains):
    gain = gains[: len(baseline)]
    design = load_trial(WEEKLY)
    n = len(baseline)
    responder = LastDoseResponse(baseline=baseline, gain=gain)
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=np.full((1, n), 70.0)))
    expected = [romiplostim_rules_by_hand(b, g) for b, g in zip(baseline, gain, strict=True)]
    np.testing.assert_array_equal(trial["dose_level"].to_numpy()[0], expected)


def test_a_restart_after_a_hold_waits_its_time_at_level():
    text = WEEKLY.replace("levels = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]", "levels = [1, 100]")
    rules_start = text.index("rules = [")
    rules_end = text.index("]\n[[arms]]") + 2
    text = (
        text[:rules_start]
        + "rules = [\n"
        + '  { action = "hold", platelets_above = 400, resume_below = 150 },\n'
        + '  { action = "increase", platelets_below = 50, min_time_at_level = "14 d" },\n'
        + "]\n"
        + text[rules_end:]
    ).replace(
        "start = [{ baseline_at_least = 50, level = 4 }, { level = 1 }]", "start = [{ level = 2 }]"
    )
    design = load_trial(text)
    # 10 + 10 x 100 = 1010 -> hold; 10 -> restart at level 1 (week 2); 20 < 50 but only
    # 1 week at the level (week 3); 2 weeks at week 4 -> level 2; and round again.
    responder = LastDoseResponse(baseline=[10], gain=[10])
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=np.full((1, 1), 70.0)))
    np.testing.assert_array_equal(
        trial["dose_level"].to_numpy()[0, 0, :9], [2, 0, 1, 1, 2, 0, 1, 1, 2]
    )


class CountingResponse(EmaxDelayResponse):
    calls = 0

    def platelets(self, dose_time, dose_amount, times):
        self.calls += 1
        return super().platelets(dose_time, dose_amount, times)


def test_a_fixed_course_takes_two_calls_and_matches_a_rule_that_never_fires():
    fixed = load_trial(
        "\n".join(line for line in AVATROMBOPAG_LIKE.splitlines() if not line.startswith("rules"))
    )
    # a rule that never fires sends the same course through the visit-by-visit loop
    looped = load_trial(AVATROMBOPAG_LIKE.replace("platelets_below = 50", "platelets_below = 0"))
    population = sample_population(fixed, n_patients=25, seed=8)
    baseline = population["baseline_platelets"].to_numpy()[0]
    runs = []
    for design in (fixed, looped):
        responder = CountingResponse(baseline, delay=48.0)
        runs.append((run_trial(design, {"a": responder}, population), responder.calls))
    (fast, fast_calls), (slow, slow_calls) = runs
    assert (fast_calls, slow_calls) == (2, 2)  # the baseline, then the whole course
    for name in ("platelets", "dose_level", "dose_given", "dose_amount"):
        np.testing.assert_allclose(fast[name], slow[name], rtol=1e-12)


DAILY = """
name = "daily_course"
[population]
disease = "CLD"
baseline_platelets = { median = 40, sd_log = 0.3 }
weight = { median = 70, sd_log = 0.0 }
east_asian_fraction = 0.0
splenectomy_fraction = 0.0
[visits]
unit = "day"
every = 1
until = 8
[titrations.course]
dose_unit = "mg"
interval = "24 h"
levels = [40, 60]
[[arms]]
name = "drug"
agonist = "avatrombopag"
route = "oral"
titration = "course"
start = [{ level = 1 }]
duration = "5 d"
"""


def design_with(base, extra, replace=()):
    text = base
    for old, new in replace:
        assert old in text
        text = text.replace(old, new)
    return load_trial(text + extra)


def test_screening_enrols_on_each_or_the_mean_of_noisy_counts():
    # Two screening counts a week apart: the dose-free call is at 0, 168, 336 h, the last
    # being visit 0. Counts b + s t: A [20, 20] | 20; B [25, 33.4] | 41.8; C [35, 35] | 35.
    extra = '[enrolment]\nscreening_counts = 2\nscreening_interval = "7 d"\nbelow = 30\n'
    responder = DriftResponse(baseline=[20, 25, 35], slope=[0, 0.05, 0])
    for criterion, expected in (("each", [True, False, False]), ("mean", [True, True, False])):
        design = design_with(DAILY, extra + f'criterion = "{criterion}"\n')
        trial = run_trial(design, {"drug": responder}, population_of(design, WT=[[70.0] * 3]))
        enrolled = trial["enrolled"].sel(arm="drug").to_numpy()
        np.testing.assert_array_equal(enrolled, expected)
        np.testing.assert_allclose(trial["baseline_platelets"].sel(arm="drug"), [20, 41.8, 35])
        plt = trial["platelets"].sel(arm="drug").to_numpy()
        assert np.isnan(plt[~enrolled]).all()
        assert np.isfinite(plt[enrolled]).all()
        # non-enrolled candidates get no doses and no events
        assert (trial["dose_amount"].sel(arm="drug").to_numpy()[~enrolled] == 0).all()
        assert set(trial_events(trial)["ID"]) == set(1 + np.flatnonzero(enrolled))


def test_enrolment_on_the_visit_0_count_without_screening():
    design = design_with(DAILY, "[enrolment]\nat_least = 10\nbelow = 50\n")
    responder = LastDoseResponse(baseline=[5, 10, 49, 50], gain=0)
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=[[70.0] * 4]))
    np.testing.assert_array_equal(trial["enrolled"].sel(arm="drug"), [False, True, True, False])


COHORTS = """
[enrolment]
screening_counts = 1
[[cohorts]]
name = "low"
below = 40
[[cohorts]]
name = "high"
at_least = 40
below = 50
"""


def test_cohorts_split_on_the_entry_count_and_take_their_own_dose():
    # entry count = the screening count (b at 0 h); visit 0 is a week later (b + 168 s)
    design = design_with(
        DAILY,
        COHORTS,
        replace=[
            ("start = [{ level = 1 }]", 'start = [{ cohort = "low", level = 2 }, { level = 1 }]')
        ],
    )
    responder = DriftResponse(baseline=[30, 45, 39, 55], slope=[0, 0, 0.1, 0], gain=1)
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=[[70.0] * 4]))
    drug = trial.sel(arm="drug")
    np.testing.assert_array_equal(drug["cohort"], ["low", "high", "low", ""])
    np.testing.assert_array_equal(drug["enrolled"], [True, True, True, False])
    # patient 2 screened at 39 (low: 60 mg) though its visit-0 count is 55.8 (the toy's
    # drift is not a steady state: the trial's own calendar starts at 0 again)
    np.testing.assert_allclose(drug["baseline_platelets"][2], 55.8)
    np.testing.assert_array_equal(drug["dose_level"][:3, 0], [2, 1, 2])
    np.testing.assert_allclose(drug["platelets"][:3, 1], [30 + 60, 45 + 40, 39 + 60 + 0.1 * 24])


def test_trial_sized_arms_enrol_their_n_per_draw_and_cohort():
    two_arms = DAILY.replace('name = "drug"', 'name = "drug"\nn = 3') + (
        '[[arms]]\nname = "placebo"\nagonist = "avatrombopag"\nroute = "oral"\n'
        'titration = "course"\nstart = [{ level = 1 }]\nduration = "5 d"\nplacebo = true\nn = 2\n'
    )
    design = load_trial(two_arms)
    population = sample_population(design, None, seed=3, draws=2)
    assert population.sizes["patient"] == 2 * 3
    responders = {arm: LastDoseResponse(np.full(6, 20.0), 0) for arm in ("drug", "placebo")}
    trial = run_trial(design, responders, population)
    enrolled = trial["enrolled"].to_numpy()
    np.testing.assert_array_equal(enrolled[0], [True] * 6)
    np.testing.assert_array_equal(enrolled[1], [True, True, False] * 2)  # 2 in each draw
    # with cohorts each arm fills each cohort; entry counts 30/45 alternate
    cohorts = COHORTS.replace("below = 40\n", "below = 40\nn = { drug = 2, placebo = 1 }\n")
    cohorts = cohorts.replace("below = 50\n", "below = 50\nn = { drug = 1, placebo = 1 }\n")
    design = load_trial(two_arms + cohorts)
    population = sample_population(design, None, seed=3)
    assert population.sizes["patient"] == int(np.ceil(3 * design.enrolment.candidates))
    baseline = np.tile([30.0, 45.0], 5)[:9]
    responders = {arm: LastDoseResponse(baseline, 0) for arm in ("drug", "placebo")}
    trial = run_trial(design, responders, population)
    np.testing.assert_array_equal(np.flatnonzero(trial["enrolled"].sel(arm="drug")), [0, 1, 2])
    np.testing.assert_array_equal(np.flatnonzero(trial["enrolled"].sel(arm="placebo")), [0, 1])
    too_few = {arm: LastDoseResponse(np.full(9, 45.0), 0) for arm in ("drug", "placebo")}
    with pytest.raises(TrialDesignError, match="0 of 9 candidates enrolled into cohort 'low'"):
        run_trial(design, too_few, population)
    with pytest.raises(TrialDesignError, match=r"arm\(s\) \['drug'\] give no n"):
        sample_population(load_trial(DAILY), None, seed=0)


#: Daily visits to day 8, a procedure on day 10, 11, 12 or 13, and a visit on day 14.
PROCEDURE_DAY = (
    "until = 8\n",
    'until = 8\ntimes = [14]\nwindows = [{ name = "procedure", start = 10, end = 13 }]\n',
)


def test_a_window_visit_falls_on_each_patient_own_day_and_decides_nothing():
    design = design_with(
        DAILY,
        '[[titrations.course.rules]]\naction = "increase"\nplatelets_below = 1000\n',
        replace=[
            PROCEDURE_DAY,
            ('duration = "5 d"', 'duration = "20 d"'),
        ],
    )
    population = sample_population(design, 400, seed=2)
    days = population["visit_time"].sel(arm="drug").to_numpy()[:, 9] / 24
    assert set(np.unique(days)) == {10.0, 11.0, 12.0, 13.0}
    assert np.abs(np.bincount(days.astype(int))[10:] / 400 - 0.25).max() < 0.06
    nominal = design.visits.hours
    np.testing.assert_allclose(nominal[8:], [8 * 24, 10 * 24, 14 * 24])
    responder = DriftResponse(np.full(400, 10.0), slope=0.01, gain=0.0)
    trial = run_trial(design, {"drug": responder}, population)
    drug = trial.sel(arm="drug")
    np.testing.assert_allclose(drug["platelets"][:, 9], 10 + 0.01 * days * 24)
    np.testing.assert_allclose(drug["visit_time"][:, 9], days * 24)
    events = trial_events(trial)
    procedure = events[(events["EVID"] == 0)].groupby("ID")["TIME"].nth(9).to_numpy()
    np.testing.assert_allclose(procedure, days * 24)
    # the level rose at every fixed visit up to the top; days 8 -> 14 keep it (no change at 10-13)
    level = drug["dose_level"].to_numpy()
    assert (level[:, 1:] == 2).all()
    slots = drug["dose_amount"].to_numpy()
    assert (slots[:, 1:20] == 60).all()


def test_window_visits_must_keep_their_place():
    with pytest.raises(TrialDesignError, match="contains the fixed visit at 3 day"):
        design_with(
            DAILY,
            "",
            replace=[
                ("until = 8\n", 'until = 8\nwindows = [{ name = "p", start = 3, end = 5 }]\n')
            ],
        )
    with pytest.raises(TrialDesignError, match="'a' and 'b' overlap"):
        design_with(
            DAILY,
            "",
            replace=[
                (
                    "until = 8\n",
                    'until = 8\nwindows = [{ name = "a", start = 9, end = 11 },'
                    ' { name = "b", start = 11, end = 12 }]\n',
                )
            ],
        )


def test_transfusions_raise_later_counts_and_wane_over_a_lifespan():
    # baseline 10, no drug response: transfused (+40) whenever a count is below 20; the
    # added count falls linearly to 0 over 4 days: +30, +20, +10, 0 on the following days.
    rescue = '[[rescue]]\nplatelets_below = 20\neffect = { rise = 40, lifespan = "4 d" }\n'
    design = design_with(DAILY, rescue + "at_most = 1\n")
    responder = LastDoseResponse([10.0], 0)
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=[[70.0]]))
    np.testing.assert_allclose(trial["platelets"][0, 0], [10, 40, 30, 20, 10, 10, 10, 10, 10])
    np.testing.assert_array_equal(trial["rescue_given"][0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0])
    design = design_with(DAILY, rescue)  # no limit: a new transfusion each time below 20
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=[[70.0]]))
    np.testing.assert_allclose(trial["platelets"][0, 0], [10, 40, 30, 20, 10, 40, 30, 20, 10])
    assert trial["rescued"][0, 0].all()
    # exponential: half of the rise left every 2 days
    design = design_with(
        DAILY,
        "[[rescue]]\nplatelets_below = 20\nat_most = 1\n"
        'effect = { rise = 40, half_life = "2 d" }\n',
    )
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=[[70.0]]))
    np.testing.assert_allclose(
        trial["platelets"][0, 0], 10 + 40 * 0.5 ** (np.arange(9) / 2) * (np.arange(9) > 0)
    )
    with pytest.raises(TrialDesignError, match="give one of lifespan"):
        design_with(DAILY, "[[rescue]]\nplatelets_below = 20\neffect = { rise = 40 }\n")


def test_a_transfusion_on_the_procedure_day_wanes_from_that_day():
    # L-PLUS-like: transfused before a procedure on day 10-13 if below 50; the day-14
    # count then keeps 40 x (1 - (14 - day) / 8) of the rise.
    design = design_with(
        DAILY,
        '[[rescue]]\nplatelets_below = 50\nwindow = ["10 d", "13 d"]\n'
        'effect = { rise = 40, lifespan = "8 d" }\n',
        replace=[PROCEDURE_DAY],
    )
    population = sample_population(design, 40, seed=4)
    day = population["visit_time"].sel(arm="drug").to_numpy()[:, 9] / 24
    responder = LastDoseResponse(np.full(40, 30.0), 0)
    trial = run_trial(design, {"drug": responder}, population).sel(arm="drug")
    np.testing.assert_array_equal(trial["rescue_given"].any("visit"), True)
    np.testing.assert_array_equal(trial["rescue_given"][:, 9], True)
    np.testing.assert_allclose(trial["platelets"][:, 9], 30)
    np.testing.assert_allclose(trial["platelets"][:, 10], 30 + 40 * (1 - (14 - day) / 8))


def test_screening_on_a_noisy_count_regresses_to_the_mean():
    # Everyone's true level is 40; one screening count 40 e^(0.5 z) < 30 passes with
    # probability Phi(ln(30/40) / 0.5) = 0.2826, and the enrolled patients' visit-0
    # counts, with fresh noise, have median 40 again although every screening count was < 30.
    design = design_with(DAILY, "[enrolment]\nscreening_counts = 1\nbelow = 30\n")
    n = 4000
    responder = NoisyLevelResponse(np.full(n, 40.0), sd_log=0.5, seed=11)
    trial = run_trial(design, {"drug": responder}, population_of(design, WT=[[70.0] * n]))
    drug = trial.sel(arm="drug")
    share = float(drug["enrolled"].mean())
    assert abs(share - norm.cdf(np.log(30 / 40) / 0.5)) < 3 * np.sqrt(0.2826 * 0.7174 / n)
    baseline = drug["baseline_platelets"].where(drug["enrolled"]).median()
    assert 37 < float(baseline) < 43
