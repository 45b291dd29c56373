"""The main job on the bundled data (``tpopk demo``, ``make demo``).

1. validate and summarise the bundled datasets, among them the synthetic multi-agonist
   ITP study (:func:`tpopk.datasets.load_itp_study`);
2. fit the generic one-compartment card to the theophylline data (the real-data check
   against nlmixr2), save ``fit.nc`` and write its report ``report.html``;
3. compare the agonists of the ITP label-dose design by simulating it from the model
   library's **priors** (``comparison.json``);
4. with ``study=True`` (``tpopk demo --study``) also fit the cross-agonist model
   (``models/thrombopoiesis.toml`` with the agonist cards, thrombopoiesis parameters
   partially pooled across agonists) to the study's arms of :data:`STUDY_AGONISTS`
   (``study_fit.nc``), simulate the trial design :data:`STUDY_TRIAL` from its posterior
   (``tpopk.compare``), and write its endpoint table and contrasts
   (``study_comparison.json``) and the study's report (``study_report.html``).

The study fit is opt-in because it is not yet demo-sized: on the 2-core machine the
two-agonist fit takes ~6 min to compile (cold cache) and ~14 min to sample 2 x 150
iterations, at ~240 leapfrog steps per draw (benchmarks/README.md, "RK4 substeps"). ``quick``
uses fewer draws and virtual patients everywhere.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpopk import datasets
from tpopk.data import EventTable, read_events
from tpopk.model import load_card

if TYPE_CHECKING:
    import xarray as xr

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
#: Agonists of the ITP label-dose design (``models/trials/itp_label_comparison.toml``).
LABEL_AGONISTS = ("eltrombopag", "romiplostim", "avatrombopag", "hetrombopag")
#: Agonist arms of the bundled study fitted by the full demo.
STUDY_AGONISTS = ("romiplostim", "lusutrombopag")
#: Trial design simulated from the study fit's posterior (its arms use fitted agonists).
STUDY_TRIAL = MODELS / "trials" / "romiplostim_kuter2008_itp.toml"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def study_arms(study: EventTable, agonists: tuple[str, ...]) -> EventTable:
    """Keep the records of the subjects given one of ``agonists``."""
    frame = study.frame
    return read_events(frame[frame["AGONIST"].isin(agonists)], units=study.units.as_dict())


def _write_comparison(comparison: xr.DataTree, path: Path, label: str) -> dict[str, Any]:
    """Write ``tpopk compare --json``'s table atomically and print it."""
    from tpopk.cli import comparison_json, format_value

    table = comparison_json(comparison)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(table, indent=2))
    tmp.replace(path)
    level = round(100 * table["ci_prob"])
    print(f"{table['trial']}: {label} median [{level}% interval]")
    for endpoint, data in table["endpoints"].items():
        print(endpoint)
        for arm, s in data["arms"].items():
            print(
                f"  {arm:<14} {format_value(s['median']):>7}  "
                f"[{format_value(s['lower'])}, {format_value(s['upper'])}]"
            )
        shown: set[frozenset[str]] = set()
        for pair in data["contrasts"]:
            if (key := frozenset((pair["arm"], pair["versus"]))) in shown:
                continue  # A - B only; B - A is its mirror
            shown.add(key)
            d = pair["difference"]
            print(
                f"  {pair['arm']} - {pair['versus']}: {format_value(d['median'])} "
                f"[{format_value(d['lower'])}, {format_value(d['upper'])}], "
                f"P(better) {format_value(pair['p_better'])}"
            )
    return table


def run_demo(out: Path, *, quick: bool = False, study: bool = False) -> dict[str, Path]:
    """Run the demo, writing into ``out``; returns the files written."""
    from tpopk.inference import fit
    from tpopk.report import write_report
    from tpopk.simulate.comparison import compare, prior_compare

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    steps = 6 if study else 3
    _say(f"[1/{steps}] validating the bundled datasets")
    for name, load in datasets.CATALOGUE.items():
        print(f"== {name}\n{load().describe()}\n")

    _say(f"[2/{steps}] fitting models/generic/oral_1cmt.toml to theophylline (nutpie)")
    draws, tune, chains = (200, 300, 2) if quick else (500, 1000, 4)
    result = fit(
        MODELS / "generic" / "oral_1cmt.toml",
        datasets.load_theophylline(),
        draws=draws,
        tune=tune,
        chains=chains,
    )
    written = {"fit": result.save(out / "fit.nc")}
    print(result.summary().round(3).to_string())
    print(f"divergent transitions: {result.divergences}\n")
    written["report"] = write_report(result, out / "report.html", progress=True)

    _say(f"[3/{steps}] prior predictive comparison of the ITP label-dose design")
    cards = [load_card(MODELS / "thrombopoiesis.toml")]
    cards += [load_card(MODELS / f"{name}.toml") for name in LABEL_AGONISTS]
    size = {"n_patients": 5, "draws": 3} if quick else {"n_patients": 10, "draws": 6}
    comparison = prior_compare(cards, MODELS / "trials" / "itp_label_comparison.toml", **size)
    _write_comparison(comparison, out / "comparison.json", "prior predictive")
    written["comparison"] = out / "comparison.json"

    if study:
        events = study_arms(datasets.load_itp_study(), STUDY_AGONISTS)
        cards = [load_card(MODELS / "thrombopoiesis.toml")]
        cards += [load_card(MODELS / f"{name}.toml") for name in STUDY_AGONISTS]
        _say(
            f"[4/{steps}] fitting {' + '.join(c.name for c in cards)} to the study's "
            f"{', '.join(STUDY_AGONISTS)} arms (SYNTHETIC data; 2 chains x 100 draws, 150 tuning)"
        )
        study_fit = fit(cards, events, draws=100, tune=150, chains=2, seed=20261201)
        written["study_fit"] = study_fit.save(out / "study_fit.nc")
        print(study_fit.summary().round(3).to_string())
        print(f"divergent transitions: {study_fit.divergences}\n")
        _say(f"[5/{steps}] posterior predictive trial {STUDY_TRIAL.stem} (20 patients x 20 draws)")
        posterior = compare(study_fit, STUDY_TRIAL, n_patients=20, draws=20, seed=1)
        written["study_comparison"] = out / "study_comparison.json"
        _write_comparison(posterior, written["study_comparison"], "posterior predictive")
        _say(f"[6/{steps}] writing the study report")
        written["study_report"] = write_report(
            study_fit, out / "study_report.html", trial=STUDY_TRIAL, comparison=posterior
        )
    for kind, path in written.items():
        print(f"{kind}: {path}")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return written
