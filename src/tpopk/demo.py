"""The main job on the bundled data (``tpopk demo``, ``make demo``).

1. validate and summarise the bundled datasets;
2. fit the generic one-compartment card to the theophylline data (the real-data
   check against nlmixr2) and save ``fit.nc``;
3. write the HTML report of that fit (``report.html``);
4. compare the agonists of the ITP label-dose design (``models/trials``) by
   simulating it from the literature model library's priors, and write the endpoint
   table (``comparison.json``).

The posterior cross-agonist comparison (``tpopk compare FIT.nc``) needs a fit of the
library's study model, which is not yet fast enough for a demo on 2 cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tpopk import datasets
from tpopk.model import load_card

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
AGONISTS = ("eltrombopag", "romiplostim", "avatrombopag", "hetrombopag")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_demo(out: Path, *, quick: bool = False) -> dict[str, Path]:
    """Run the demo, writing into ``out``; returns the files written."""
    from tpopk.cli import comparison_json
    from tpopk.inference import fit
    from tpopk.report import write_report
    from tpopk.simulate.comparison import prior_compare

    out.mkdir(parents=True, exist_ok=True)
    for name, load in datasets.CATALOGUE.items():
        print(f"== {name}\n{load().describe()}\n")

    _say("[1/3] fitting models/generic/oral_1cmt.toml to theophylline (nutpie)")
    draws, tune, chains = (200, 300, 2) if quick else (500, 1000, 4)
    result = fit(
        MODELS / "generic" / "oral_1cmt.toml",
        datasets.load_theophylline(),
        draws=draws,
        tune=tune,
        chains=chains,
    )
    fit_path = result.save(out / "fit.nc")
    print(result.summary().round(3).to_string())
    print(f"divergent transitions: {result.divergences}\n")

    _say("[2/3] writing the report")
    report_path = write_report(result, out / "report.html", progress=True)

    _say("[3/3] prior predictive comparison of the ITP label-dose design (model library)")
    cards = [load_card(MODELS / "thrombopoiesis.toml")]
    cards += [load_card(MODELS / f"{name}.toml") for name in AGONISTS]
    size = {"n_patients": 5, "draws": 3} if quick else {"n_patients": 10, "draws": 6}
    comparison = prior_compare(cards, MODELS / "trials" / "itp_label_comparison.toml", **size)
    table = comparison_json(comparison)
    comparison_path = out / "comparison.json"
    tmp = comparison_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(table, indent=2))
    tmp.replace(comparison_path)
    level = round(100 * table["ci_prob"])
    for endpoint, data in table["endpoints"].items():
        print(f"{endpoint} (prior predictive median, {level}% interval)")
        for arm, s in data["arms"].items():
            print(f"  {arm:<14} {s['median']:7.3g}  [{s['lower']:.3g}, {s['upper']:.3g}]")
    written = {"fit": fit_path, "report": report_path, "comparison": comparison_path}
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return written
