"""Cost of PRED (every η = 0) on the demo's study model, at fit time and formerly.

:func:`tpopk.inference.compute_pred` evaluates every draw at fit time (numba); the
report formerly recomputed it, 100 draws per observation type, one FAST_COMPILE
function each.

Both evaluate the model's ``ipred_<dvid>`` graph with the subject-level deviates set to
zero, at the prior medians of the population variables repeated ``--draws`` times (the
cost of one evaluation does not depend on the values as long as the solver takes the
same steps). Prints seconds for each, compile included.

    python benchmarks/pred_cost.py [--draws 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from pytensor.graph.replace import graph_replace

from tpopk import datasets
from tpopk.demo import MODELS, STUDY_AGONISTS, study_arms
from tpopk.inference import compute_pred
from tpopk.model import build_model, load_card, population_variables
from tpopk.simulate.synthetic import prior_quantile


def former_report_pred(model: pm.Model, posterior: xr.Dataset, dvid: str, draws: int) -> None:
    """The removed ``Fit.population_prediction``: one compile per DVID, ``draws`` draws."""
    population = [model[name] for name in population_variables(model)]
    subject_level = [rv for rv in model.free_RVs if rv not in population]
    inputs = [rv.type(name=rv.name) for rv in population]
    replacements = dict(zip(population, inputs, strict=True))
    replacements |= {
        rv: pt.zeros(tuple(len(model.coords[d]) for d in model.named_vars_to_dims[rv.name]))
        for rv in subject_level
    }
    (typical,) = graph_replace([model[f"ipred_{dvid}"]], replacements, strict=False)
    evaluate = pytensor.function(inputs, typical, mode="FAST_COMPILE", on_unused_input="ignore")
    flat = posterior[[rv.name for rv in population]].stack(sample=("chain", "draw"))
    chosen = np.linspace(0, flat.sizes["sample"] - 1, min(draws, flat.sizes["sample"]))
    values = [
        evaluate(*(flat[rv.name].isel(sample=int(i)).to_numpy() for rv in population))
        for i in chosen.round()
    ]
    np.median(values, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200, help="posterior draws (demo: 200)")
    args = parser.parse_args()
    events = study_arms(datasets.load_itp_study(), STUDY_AGONISTS)
    cards = [load_card(MODELS / "thrombopoiesis.toml")]
    cards += [load_card(MODELS / f"{name}.toml") for name in STUDY_AGONISTS]
    model = build_model(cards, events)
    medians = prior_quantile(model)
    subject_level = {rv.name for rv in model.free_RVs} - set(population_variables(model))
    posterior = xr.Dataset(
        {
            name: (
                ("chain", "draw", *model.named_vars_to_dims.get(name, ())),
                np.broadcast_to(value, (1, args.draws, *np.shape(value))),
            )
            for name, value in medians.items()
            if name not in subject_level
        }
    )
    dvids = [
        v.name.removeprefix("ipred_") for v in model.deterministics if v.name.startswith("ipred_")
    ]
    start = time.perf_counter()
    compute_pred(model, posterior)
    new = time.perf_counter() - start
    start = time.perf_counter()
    for dvid in dvids:
        former_report_pred(model, posterior, dvid, 100)
    old = time.perf_counter() - start
    print(f"{len(events.subjects)} subjects, DVIDs {dvids}")
    print(f"compute_pred, {args.draws} draws, all DVIDs: {new:.1f} s")
    print(f"former report PRED, 100 draws per DVID: {old:.1f} s")


if __name__ == "__main__":
    main()
