"""Prior predictive checks of the TPO-RA library against published trial summaries.

The library cards (``models/thrombopoiesis.toml`` plus one card per agonist) carry only
literature priors; these tests simulate trial designs from those priors in closed loop
(:func:`tpopk.simulate.virtual.simulate_trial`, :func:`tpopk.simulate.comparison.prior_compare`)
and compare the prior predictive distribution of a summary with what the trials reported
(``shared/literature/tpo_ra_literature.md``). Each prior draw is one virtual trial: new
population values from the priors, new patients, measurement error. Seeded, so
deterministic.

Where the priors do not reproduce a published summary the check is a strict ``xfail``
whose reason states the discrepancy: it fails as soon as the model starts to agree, so
the known gap cannot go stale unnoticed.
"""

from __future__ import annotations

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

#: Agonists whose prior predictive median misses the literature window (why: module end).
SLOW_RETURN = {"hetrombopag"}


@pytest.fixture(scope="module")
def hv_courses() -> dict[str, tuple[xr.DataArray, xr.DataArray]]:
    """Per agonist and prior draw: peak day and day-28 fold change of the mean course.

    ``HV_PATIENTS`` healthy volunteers per arm and ``HV_DRAWS`` prior draws of
    ``healthy_volunteer_courses.toml`` (daily counts to day 42). The statistics are those
    the literature reports, taken on the group mean count (eltrombopag: "mean platelets,
    baseline -> maximum on day 14/16"): the day of the highest mean count, and the mean
    count on day 28 over the mean baseline count.
    """
    design = load_trial(TRIALS / "healthy_volunteer_courses.toml")
    trial = simulate_trial(
        library(*AGONISTS), design, n_patients=HV_PATIENTS, seed=HV_SEED, draws=HV_DRAWS
    )
    days = trial["time"] / 24.0
    mean = trial["platelets"].mean("patient")
    peak_day = days.isel(visit=mean.argmax("visit"))
    day_28 = int(np.flatnonzero(np.isclose(days.to_numpy(), 28.0))[0])
    fold_28 = mean.isel(visit=day_28) / trial["baseline_platelets"].mean("patient")
    return {a: (peak_day.sel(arm=a), fold_28.sel(arm=a)) for a in AGONISTS}


def _known(agonist: str, gaps: set[str], reason: str) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if agonist in gaps else []
    return pytest.param(agonist, marks=marks, id=agonist)


@pytest.mark.parametrize("agonist", AGONISTS)
def test_healthy_volunteer_course_peaks_between_day_10_and_16(hv_courses, agonist):
    """Prior predictive median, over prior draws, of the peak day of the mean count.

    Literature s.0: romiplostim single dose days 12-16, avatrombopag by day 11,
    eltrombopag 10 days QD day 14 or 16, PEG-rHuMGDF day 12, TPO peptide day 12 +/- 1.
    """
    median, low, high = prior_interval(hv_courses[agonist][0])
    assert 10.0 <= median <= 16.0, f"{agonist}: peak day {median} (90% {low}-{high})"


@pytest.mark.parametrize(
    "agonist",
    [
        _known(
            a,
            SLOW_RETURN,
            "day-28 mean count 1.24x baseline after a 3.5x peak: potency prior not found",
        )
        for a in AGONISTS
    ],
)
def test_healthy_volunteer_course_is_back_to_baseline_by_day_28(hv_courses, agonist):
    """Prior predictive median of the day-28 mean count over the mean baseline, ≤ 1.10.

    Literature s.0: romiplostim near baseline by day 28, avatrombopag by day 27,
    PEG-rHuMGDF normal by day 28, TPO peptide day 28 +/- 1.
    """
    median, low, high = prior_interval(hv_courses[agonist][1])
    assert median <= BACK_TO_BASELINE, f"{agonist}: day-28 fold {median:.3f} ({low:.3f}-{high:.3f})"


# --- hetrombopag phase III --------------------------------------------------------------

P3_PATIENTS, P3_DRAWS, P3_SEED = 40, 40, 20261201

#: Week-8 responders (platelets >= 50 x10^9/L), Mei 2021 Table 2 (literature s.2).
PUBLISHED = {"HETROM-2.5": 99 / 168, "HETROM-5": 110 / 171, "placebo": 5 / 85}


@pytest.fixture(scope="module")
def phase3_summary() -> xr.DataArray:
    """Prior predictive median and 90% interval of each arm's week-8 responder fraction.

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
    return tree["summary"].to_dataset()["responder_week_8"]


@pytest.mark.parametrize(
    "arm",
    [
        "HETROM-2.5",
        "HETROM-5",
        pytest.param(
            "placebo",
            marks=pytest.mark.xfail(
                strict=True,
                reason="a placebo ITP count is flat in the model (only 9% measurement "
                "error); day-to-day ITP fluctuation and rescue are not modelled",
            ),
        ),
    ],
)
def test_hetrombopag_phase3_week8_responders_inside_prior_90pct(phase3_summary, arm):
    """Published week-8 responder fraction inside the prior predictive 90% interval."""
    low, high = (float(phase3_summary.sel(arm=arm, stat=s)) for s in ("lower", "upper"))
    median = float(phase3_summary.sel(arm=arm, stat="median"))
    assert low <= PUBLISHED[arm] <= high, f"{arm}: {median:.3f} ({low:.3f}-{high:.3f})"


# Why the known gaps (measured with these tests' settings; see the issue 6 notes):
# - Healthy-volunteer timing holds for four agonists since the thrombopoiesis card gives
#   volunteers their own, narrow IIV of maturation (tp, CV 11%) and platelet survival
#   (tplt, CV 8.8%, the 111In 205 +/- 18 h of Harker 2000) through `iiv_by`; patients
#   keep 44-50%. With the patients' IIV for volunteers too the mean course of 12 volunteers
#   was smeared by slow maturers and long-lived platelets: prior-median day-28 folds 1.51
#   (hetrombopag), 1.21 (eltrombopag), 1.13 (lusutrombopag), 1.11 (romiplostim), and the
#   small avatrombopag rise peaked on median day 9.5; now 1.24, 1.02, 1.03, 1.01 and day 11.
# - Hetrombopag's 7.5 mg x 10 day course still peaks at a prior-median 3.5x baseline
#   (peak day 16, the window's edge) and is 1.24x on day 28. Its slope prior is not from
#   hetrombopag data (the Wang Z 2022 PD parameters are not found, lit s.9): it is centred
#   on eltrombopag's ITP drive at equal starting doses, and eltrombopag's own volunteer peak
#   (prior median 2.5x at 50 mg) is already above the 1.40x its 50 mg group reached (ASH
#   2004, 254 -> 356), so the volunteers' response to both is likely overstated. No
#   hetrombopag volunteer platelet course is in the literature folder to check against.
# - Placebo: the only within-patient variability in ITP is the proportional measurement
#   error (centred on 0.093, Petrov 2024), so a baseline < 30 x10^9/L almost never reads
#   >= 50; the trial's placebo arm had 5.9% responders at week 8 and 22.4% at least
#   once, and 37.6% had rescue therapy, whose trigger is not in the literature file.
