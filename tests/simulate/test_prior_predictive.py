"""Prior predictive checks of the TPO-RA library against published trial summaries.

The library cards (``models/thrombopoiesis.toml`` plus one card per agonist) carry only
literature priors; these tests simulate trial designs from those priors in closed loop
(:func:`tpopk.simulate.virtual.simulate_trial`, :func:`tpopk.simulate.comparison.prior_compare`)
and compare the prior predictive distribution of a summary with what the trials reported
(``models/REFERENCES.md``). Each prior draw is one virtual trial: new
population values from the priors, new patients, measurement error. Seeded, so
deterministic.

Where the priors do not reproduce a published summary the check is a strict ``xfail``
whose reason states the discrepancy: it fails as soon as the model starts to agree, so
the known gap cannot go stale unnoticed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tpopk.model import ModelCard, load_card
from tpopk.simulate import load_trial
from tpopk.simulate.comparison import prior_compare
from tpopk.simulate.virtual import simulate_trial

ROOT = Path(__file__).parents[2]
MODELS = ROOT / "models"
TRIALS = MODELS / "trials"
AGONISTS = ("hetrombopag", "eltrombopag", "avatrombopag", "lusutrombopag", "romiplostim")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("prior_predictive")]


def library(*agonists: str) -> list[ModelCard]:
    return [load_card(MODELS / "thrombopoiesis.toml")] + [
        load_card(MODELS / f"{a}.toml") for a in agonists
    ]


def prior_interval(values: xr.DataArray, prob: float = 0.9) -> tuple[float, float, float]:
    """Median and equal-tailed interval over prior draws."""
    tail = (1 - prob) / 2
    low, median, high = np.quantile(values.to_numpy(), [tail, 0.5, 1 - tail])
    return float(median), float(low), float(high)


# --- healthy-volunteer courses --------------------------------------------------------

HV_PATIENTS, HV_DRAWS, HV_SEED = 12, 100, 20261201

#: Day-28 mean count within this factor of the mean baseline counts as "back to
#: baseline": the eltrombopag placebo group's mean rose 234 -> 255 x10^3/uL (+9%) over
#: the same 10-day study (ASH 2004, literature s.3), so a smaller rise is not
#: distinguishable from no drug in such data.
BACK_TO_BASELINE = 1.10


@pytest.fixture(scope="module")
def hv_courses() -> xr.DataArray:
    """Per arm and prior draw: the mean count of each day over the mean baseline count.

    ``HV_PATIENTS`` healthy volunteers per arm and ``HV_DRAWS`` prior draws of
    ``healthy_volunteer_courses.toml`` (daily counts to day 42, coordinate ``day``). The
    statistics the literature reports are taken on this group-mean course (eltrombopag:
    "mean platelets, baseline -> maximum on day 14/16"; hetrombopag: mean rise on day 6).
    """
    design = load_trial(TRIALS / "healthy_volunteer_courses.toml")
    trial = simulate_trial(
        library(*AGONISTS), design, n_patients=HV_PATIENTS, seed=HV_SEED, draws=HV_DRAWS
    )
    fold = trial["platelets"].mean("patient") / trial["baseline_platelets"].mean("patient")
    days = (trial["time"] / 24.0).to_numpy()
    return fold.assign_coords(day=("visit", days)).swap_dims(visit="day")


@pytest.mark.parametrize("agonist", AGONISTS)
def test_healthy_volunteer_course_peaks_between_day_10_and_16(hv_courses, agonist):
    """Prior predictive median, over prior draws, of the peak day of the mean count.

    Literature s.0: romiplostim single dose days 12-16, avatrombopag by day 11,
    eltrombopag 10 days QD day 14 or 16, PEG-rHuMGDF day 12, TPO peptide day 12 +/- 1.
    """
    course = hv_courses.sel(arm=agonist)
    peak_day = course["day"].isel(day=course.argmax("day"))
    median, low, high = prior_interval(peak_day)
    assert 10.0 <= median <= 16.0, f"{agonist}: peak day {median} (90% {low}-{high})"


@pytest.mark.parametrize("agonist", AGONISTS)
def test_healthy_volunteer_course_is_back_to_baseline_by_day_28(hv_courses, agonist):
    """Prior predictive median of the day-28 mean count over the mean baseline, ≤ 1.10.

    Literature s.0: romiplostim near baseline by day 28, avatrombopag by day 27,
    PEG-rHuMGDF normal by day 28, TPO peptide day 28 +/- 1.
    """
    median, low, high = prior_interval(hv_courses.sel(arm=agonist, day=28.0))
    assert median <= BACK_TO_BASELINE, f"{agonist}: day-28 fold {median:.3f} ({low:.3f}-{high:.3f})"


def test_hetrombopag_single_dose_day_6_rise_inside_prior_90pct(hv_courses):
    """Mean count on day 6 after 7.5 mg fasting, +15.8% over baseline (Yang 2020, lit s.2).

    The one published hetrombopag volunteer platelet response; the card's potency prior
    was not derived from it (it is centred on eltrombopag's ITP drive), so this is a
    check, not a fit.
    """
    median, low, high = prior_interval(hv_courses.sel(arm="hetrombopag", day=6.0))
    assert low <= 1.158 <= high, f"day-6 fold {median:.3f} ({low:.3f}-{high:.3f})"


@pytest.mark.xfail(
    strict=True,
    reason="eltrombopag's slope is Farrell 2014's CLD estimate: its prior-median volunteer "
    "peak is 2.4x baseline, the 50 mg group's was 1.40x",
)
def test_eltrombopag_50_mg_volunteer_peak_inside_prior_90pct(hv_courses):
    """Highest mean count over mean baseline, 50 mg QD x 10 days: 356 / 254 = 1.40.

    ASH 2004 (lit s.3, [H]): group means, baseline -> maximum on day 14 or 16.
    """
    peak = hv_courses.sel(arm="eltrombopag").max("day")
    median, low, high = prior_interval(peak)
    assert low <= 356 / 254 <= high, f"peak fold {median:.2f} ({low:.2f}-{high:.2f})"


# --- hetrombopag phase III --------------------------------------------------------------

P3_PATIENTS, P3_DRAWS, P3_SEED = 40, 40, 20261201

#: Mei 2021 Table 2 (literature s.2), responders within 8 weeks of 168 / 171 / 85
#: patients: at week 8 (primary), at least once, at >= 75% of the assessments, and
#: >= 30 x10^9/L with at least twice the baseline at least once (IWG).
PUBLISHED = {
    "responder_week_8": {"HETROM-2.5": 99 / 168, "HETROM-5": 110 / 171, "placebo": 5 / 85},
    "responder_at_least_once": {"HETROM-2.5": 142 / 168, "HETROM-5": 148 / 171, "placebo": 19 / 85},
    "responder_75pct_assessments": {
        "HETROM-2.5": 55 / 168,
        "HETROM-5": 98 / 171,
        "placebo": 2 / 85,
    },
    "iwg_response_at_least_once": {
        "HETROM-2.5": 147 / 168,
        "HETROM-5": 155 / 171,
        "placebo": 24 / 85,
    },
}

#: The one Table 2 entry the model does not reproduce (why: module end).
PERSISTENT_PLACEBO = pytest.mark.xfail(
    strict=True,
    reason="2 of 85 placebo patients responded at >= 75% of assessments: a lasting "
    "spontaneous rise, where a virtual ITP count varies around a fixed level",
)


@pytest.fixture(scope="module")
def phase3_summary() -> xr.Dataset:
    """Prior predictive median and 90% interval of each arm's Table 2 endpoints.

    ``P3_DRAWS`` prior draws, each a closed-loop trial of ``P3_PATIENTS`` patients per
    arm (titrated 2.5-7.5 mg to 50-250 x10^9/L). The fraction per draw is over those
    patients, so the interval also holds the binomial spread of a 40-patient arm (wider
    than that of the published 85-171).
    """
    tree = prior_compare(
        library("hetrombopag"),
        TRIALS / "hetrombopag_phase3_itp.toml",
        n_patients=P3_PATIENTS,
        draws=P3_DRAWS,
        seed=P3_SEED,
        ci_prob=0.9,
    )
    return tree["summary"].to_dataset()


@pytest.mark.parametrize(
    ("endpoint", "arm"),
    [
        pytest.param(
            endpoint,
            arm,
            marks=[PERSISTENT_PLACEBO]
            if (endpoint, arm) == ("responder_75pct_assessments", "placebo")
            else [],
            id=f"{endpoint}-{arm}",
        )
        for endpoint, arms in PUBLISHED.items()
        for arm in arms
    ],
)
def test_hetrombopag_phase3_responders_inside_prior_90pct(phase3_summary, endpoint, arm):
    """Published Table 2 fraction inside the prior predictive 90% interval.

    The week-8 row is the issue's check; the other rows test the same prior predictive
    against the rest of the table.
    """
    summary = phase3_summary[endpoint].sel(arm=arm)
    low, median, high = (float(summary.sel(stat=s)) for s in ("lower", "median", "upper"))
    published = PUBLISHED[endpoint][arm]
    assert low <= published <= high, (
        f"{arm}: {median:.3f} ({low:.3f}-{high:.3f}), published {published:.3f}"
    )


# --- romiplostim pivotal placebo: the source of the ITP count variation ----------------

KUTER_PATIENTS, KUTER_DRAWS, KUTER_SEED = 40, 40, 20261201


def test_itp_count_variation_gives_the_kuter_placebo_weeks_with_response():
    """The card's ITP count variation reproduces the numbers it was derived from.

    ``sigma_log_plt_ITP`` is centred where the Kuter 2008 placebo patients spend a mean
    of 1 week in 24 with a count >= 50 (Nplate SmPC, lit s.6; published as the rounded
    "1", so 0.5-1.5 weeks); the same variation gives the published 3/42 "overall
    responders" (>= 4 weekly responses) inside its prior predictive 90% interval.
    """
    document = tomllib.loads((TRIALS / "romiplostim_kuter2008_itp.toml").read_text())
    document["arms"] = [arm for arm in document["arms"] if arm.get("placebo")]
    tree = prior_compare(
        library("romiplostim"),
        load_trial(document),
        n_patients=KUTER_PATIENTS,
        draws=KUTER_DRAWS,
        seed=KUTER_SEED,
        ci_prob=0.9,
    )
    summary = tree["summary"].to_dataset().sel(arm="placebo")
    weeks = float(summary["weeks_with_response"].sel(stat="median"))
    assert 0.5 <= weeks < 1.5, f"prior-median weeks with response {weeks:.2f}"
    low, high = (float(summary["overall_response"].sel(stat=s)) for s in ("lower", "upper"))
    assert low <= 3 / 42 <= high, f"overall response 90% interval {low:.3f}-{high:.3f}"


# Why the model stands where it does (measured with these tests' settings; issue 6 notes):
# - Healthy-volunteer timing holds for all five agonists since the thrombopoiesis card gives
#   volunteers their own, narrow IIV of maturation (tp, CV 11%) and platelet survival
#   (tplt, CV 8.8%, the 111In 205 +/- 18 h of Harker 2000) through `iiv_by`; patients
#   keep 44-50%. With the patients' IIV for volunteers too the mean course of 12 volunteers
#   was smeared by slow maturers and long-lived platelets (prior-median day-28 folds up to
#   1.51).
# - Hetrombopag's volunteer course is the single 7.5 mg fasting dose whose platelet response
#   is published (Yang 2020, +15.8% on day 6). The 7.5 mg x 10 day course of Zheng 2017 has
#   no published platelet course in the literature folder; there the model peaks at a
#   prior-median 3.4x baseline on day 16 and is still 1.05-1.24x on day 28 (seed to seed):
#   a course that ends on day 10 returns about 10 days after a single dose would.
# - Placebo ITP counts vary from visit to visit: the thrombopoiesis card gives ITP counts a
#   log-scale SD of 0.625 (sigma_log_plt_ITP), derived from the Kuter 2008 placebo arms
#   (a mean of 1 week in 24 with a count >= 50). Checked here out of sample on another
#   drug's trial: with it the hetrombopag placebo arm's week-8, at-least-once and IWG rows
#   are reproduced; with Petrov 2024's 0.093 they were 0% (intervals up to 0.1-10%), and
#   the active arms' at-least-once rows fell below the published 84.5-86.5%.
# - Persistent placebo responders (2 of 85 at >= 75% of assessments): the model has no
#   spontaneous remission; week-to-week variation alone does not keep a count >= 50.
# - Eltrombopag's volunteer peak: the slope prior is Farrell 2014's CLD estimate, carried
#   to every population; the 50 mg volunteers of ASH 2004 rose 1.40x, the prior median is
#   2.4x (90% 1.5-5.1). One slope serves patients and volunteers, so lowering it to the
#   volunteers' response would be a different model (a population effect on potency),
#   not a different prior.
