"""The main job on the bundled data (``tpopk demo``, ``make demo``).

1. validate and summarise the bundled datasets, among them the synthetic multi-agonist
   ITP study (:func:`tpopk.datasets.load_itp_study`);
2. fit the generic one-compartment card to the theophylline data (the real-data check
   against nlmixr2), save ``fit.nc`` and write its report ``report.html``;
3. compare the agonists of the ITP label-dose design by simulating it from the model
   library's **priors** (``comparison.json``);
4. fit the cross-agonist model (``models/thrombopoiesis.toml`` with the agonist cards,
   thrombopoiesis parameters partially pooled across agonists) to the study's arms of
   :data:`STUDY_AGONISTS` (``study_fit.nc``);
5. simulate the trial design :data:`STUDY_TRIAL` from its posterior (``tpopk.compare``)
   and write its endpoint table and contrasts (``study_comparison.json``);
6. write the study's report (``study_report.html``).

Sizes are in :data:`FULL` and :data:`QUICK` (``--quick``). The full study fit is the slow
step (minutes to compile on a cold cache, seconds warm; its timings are in the README,
"make demo").
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from tpopk import datasets
from tpopk.data import EventTable, read_events
from tpopk.files import atomic_write
from tpopk.model import load_card
from tpopk.simulate.comparison_json import Comparison, format_value

if TYPE_CHECKING:
    import xarray as xr

#: The model library: the package's ``models/`` (a link to the repository's ``models/`` in a
#: checkout, a copy in an installed wheel).
MODELS = Path(__file__).resolve().parent / "models"
#: Agonists of the ITP label-dose design (``models/trials/itp_label_comparison.toml``).
LABEL_AGONISTS = ("eltrombopag", "romiplostim", "avatrombopag", "hetrombopag")
#: Agonist arms of the bundled study fitted by the full demo.
STUDY_AGONISTS = ("romiplostim", "lusutrombopag")
#: Trial design simulated from the study fit's posterior (its arms use fitted agonists).
STUDY_TRIAL = MODELS / "trials" / "romiplostim_kuter2008_itp.toml"


def _say(text: str, start: float) -> None:
    print(f"{text} [{time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)


def study_arms(study: EventTable, agonists: tuple[str, ...]) -> EventTable:
    """Keep the records of the subjects given one of ``agonists``."""
    frame = study.frame
    return read_events(frame[frame["AGONIST"].isin(agonists)], units=study.units.as_dict())


def _write_comparison(comparison: xr.DataTree, path: Path, label: str) -> Comparison:
    """Write ``tpopk compare --json``'s table atomically and print it."""
    table = Comparison.from_tree(comparison)
    atomic_write(path, table.to_json())
    print(f"{table.trial}: {label} median [{round(100 * table.ci_prob)}% interval]")
    for name, endpoint in table.endpoints.items():
        print(name)
        for arm, interval in endpoint.arms.items():
            print(f"  {arm:<14} {interval.text()}")
        shown: set[frozenset[str]] = set()
        for pair in endpoint.contrasts:
            if (key := frozenset((pair.arm, pair.versus))) in shown:
                continue  # A - B only; B - A is its mirror
            shown.add(key)
            print(
                f"  {pair.arm} - {pair.versus}: {pair.difference.text()}, "
                f"P(better) {format_value(pair.p_better)}"
            )
    return table


class Sampling(TypedDict):
    """NUTS settings of one fit (keywords of :func:`tpopk.fit`)."""

    draws: int
    tune: int
    chains: int
    max_treedepth: int


class TrialSize(TypedDict):
    """Virtual patients per arm and posterior (or prior) draws of one simulated trial."""

    n_patients: int
    draws: int


@dataclass(frozen=True)
class DemoSize:
    """Sampler settings and virtual-trial sizes of one demo run."""

    theophylline: Sampling
    label_comparison: TrialSize
    study_fit: Sampling
    study_comparison: TrialSize


#: The full demo. The study fit is sized by its cost: ~160 leapfrog steps per draw at
#: ~7 ms each, ~1.2 s per draw, so 2 x 250 iterations take ~5 min on 2 cores (README,
#: "make demo").
FULL = DemoSize(
    theophylline={"draws": 500, "tune": 1000, "chains": 4, "max_treedepth": 10},
    label_comparison={"n_patients": 10, "draws": 6},
    study_fit={"draws": 100, "tune": 150, "chains": 2, "max_treedepth": 10},
    study_comparison={"n_patients": 20, "draws": 20},
)
#: ``--quick``: every step runs, on settings that only show the pipeline works (the study
#: fit's tree depth is capped, so its numbers are a smoke run, not a posterior).
QUICK = DemoSize(
    theophylline={"draws": 200, "tune": 300, "chains": 2, "max_treedepth": 10},
    label_comparison={"n_patients": 5, "draws": 3},
    study_fit={"draws": 20, "tune": 40, "chains": 2, "max_treedepth": 5},
    study_comparison={"n_patients": 10, "draws": 5},
)


def run_demo(out: Path, *, quick: bool = False) -> dict[str, Path]:
    """Run the demo, writing into ``out``; returns the files written."""
    from tpopk.inference import fit
    from tpopk.report import write_report
    from tpopk.simulate.comparison import compare, prior_compare

    size = QUICK if quick else FULL
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    _say("[1/6] validating the bundled datasets", start)
    for name, load in datasets.CATALOGUE.items():
        print(f"== {name}\n{load().describe()}\n")

    _say("[2/6] fitting models/generic/oral_1cmt.toml to theophylline (nutpie)", start)
    result = fit(
        MODELS / "generic" / "oral_1cmt.toml", datasets.load_theophylline(), **size.theophylline
    )
    written = {"fit": result.save(out / "fit.nc")}
    print(result.summary().round(3).to_string())
    print(f"divergent transitions: {result.divergences}\n")
    written["report"] = write_report(result, out / "report.html", progress=True)

    _say("[3/6] prior predictive comparison of the ITP label-dose design", start)
    cards = [load_card(MODELS / "thrombopoiesis.toml")]
    cards += [load_card(MODELS / f"{name}.toml") for name in LABEL_AGONISTS]
    trial = MODELS / "trials" / "itp_label_comparison.toml"
    comparison = prior_compare(cards, trial, **size.label_comparison)
    _write_comparison(comparison, out / "comparison.json", "prior predictive")
    written["comparison"] = out / "comparison.json"

    events = study_arms(datasets.load_itp_study(), STUDY_AGONISTS)
    cards = [load_card(MODELS / "thrombopoiesis.toml")]
    cards += [load_card(MODELS / f"{name}.toml") for name in STUDY_AGONISTS]
    settings = size.study_fit
    _say(
        f"[4/6] fitting {' + '.join(c.name for c in cards)} to the study's "
        f"{', '.join(STUDY_AGONISTS)} arms (SYNTHETIC data; {settings['chains']} chains x "
        f"{settings['draws']} draws, {settings['tune']} tuning)",
        start,
    )
    study_fit = fit(cards, events, seed=20261201, **settings)
    written["study_fit"] = study_fit.save(out / "study_fit.nc")
    print(study_fit.summary().round(3).to_string())
    print(f"divergent transitions: {study_fit.divergences}\n")
    n_patients, draws = size.study_comparison["n_patients"], size.study_comparison["draws"]
    _say(
        f"[5/6] posterior predictive trial {STUDY_TRIAL.stem} "
        f"({n_patients} patients x {draws} draws)",
        start,
    )
    posterior = compare(study_fit, STUDY_TRIAL, seed=1, **size.study_comparison)
    written["study_comparison"] = out / "study_comparison.json"
    _write_comparison(posterior, written["study_comparison"], "posterior predictive")
    _say("[6/6] writing the study report", start)
    written["study_report"] = write_report(
        study_fit, out / "study_report.html", trial=STUDY_TRIAL, comparison=posterior
    )
    for kind, path in written.items():
        print(f"{kind}: {path}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return written
