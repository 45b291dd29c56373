"""The count fluctuation (``residual.plt.fluctuation``) against white count error.

``cost``: one log density + gradient of the library model on ``itp_study``, with and
without the fluctuation, the two numba functions alternated ``--reps`` times (compile
time printed).
``endpoints``: prior predictive multi-visit endpoints of a bundled trial with the card's
fluctuation and with white error at the same prior draws of every other variable (the
share's prior moved to Beta(1, 1e6)), same seed. Results: benchmarks/README.md,
"Count fluctuation".

    python benchmarks/count_fluctuation.py cost [--reps 3]
    python benchmarks/count_fluctuation.py endpoints kuter|hetrombopag [--draws 40]
"""

from __future__ import annotations

import argparse
import time
import tomllib
from typing import Any

import pytensor

from tpopk.datasets import load_itp_study
from tpopk.demo import MODELS
from tpopk.model import ModelCard, build_model, load_card
from tpopk.simulate import TrialDesign, load_trial
from tpopk.simulate.comparison import prior_compare

AGONISTS = ("hetrombopag", "eltrombopag", "avatrombopag", "lusutrombopag", "romiplostim")
SEED = 20261201


def system(fluctuating: bool, *, drop: bool = False) -> ModelCard:
    """The thrombopoiesis card, or the same with a white count error.

    White: the share's prior at ~1e-6 (the same prior draws of the other variables), or
    with ``drop`` no fluctuation at all (the likelihood without the Cholesky).
    """
    card = load_card(MODELS / "thrombopoiesis.toml")
    if fluctuating:
        return card
    document = card.to_toml_dict()
    residual = document["residual"]["plt"]
    if drop:
        del residual["fluctuation"]
    else:
        residual["fluctuation"]["share"] = {"dist": "Beta", "alpha": 1.0, "beta": 1e6}
    return load_card(document)


def cost(reps: int) -> None:
    """Print ms per log density + gradient for both error models, alternated."""
    events = load_itp_study()
    functions: dict[bool, tuple[Any, list[Any]]] = {}
    for fluctuating in (False, True):
        cards = [system(fluctuating, drop=True)]
        cards += [load_card(MODELS / f"{a}.toml") for a in AGONISTS]
        model = build_model(cards, events)
        start = time.perf_counter()
        logp = model.logp()
        function = pytensor.function(
            model.value_vars, [logp, *pytensor.grad(logp, model.value_vars)]
        )
        point = model.initial_point()
        args = [point[v.name] for v in model.value_vars]
        function(*args)
        print(f"fluctuating={fluctuating}: compile {time.perf_counter() - start:.0f} s")
        functions[fluctuating] = (function, args)
    for rep in range(reps):
        for fluctuating, (function, args) in functions.items():
            start, n = time.perf_counter(), 200
            for _ in range(n):
                function(*args)
            ms = (time.perf_counter() - start) / n * 1e3
            print(f"rep {rep} fluctuating={fluctuating}: {ms:.2f} ms per logp+grad")


def endpoints(trial: str, draws: int) -> None:
    """Print each endpoint's prior predictive median and 90% interval, both error models."""
    design: TrialDesign
    if trial == "kuter":
        document = tomllib.loads((MODELS / "trials" / "romiplostim_kuter2008_itp.toml").read_text())
        document["arms"] = [arm for arm in document["arms"] if arm.get("placebo")]
        design, agonist = load_trial(document), "romiplostim"
    else:
        design = load_trial(MODELS / "trials" / "hetrombopag_phase3_itp.toml")
        agonist = "hetrombopag"
    for fluctuating in (False, True):
        cards = [system(fluctuating), load_card(MODELS / f"{agonist}.toml")]
        tree = prior_compare(cards, design, n_patients=40, draws=draws, seed=SEED, ci_prob=0.9)
        summary = tree["summary"].to_dataset()
        print(f"== {trial}, fluctuating={fluctuating}")
        for name in summary.data_vars:
            for arm in summary["arm"].to_numpy():
                value = summary[name].sel(arm=arm)
                low, median, high = (float(value.sel(stat=s)) for s in ("lower", "median", "upper"))
                print(f"  {name:30s} {arm:12s} {median:.3f} ({low:.3f}-{high:.3f})")


def main() -> None:
    """Run the chosen comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("cost").add_argument("--reps", type=int, default=3)
    trial = sub.add_parser("endpoints")
    trial.add_argument("trial", choices=["kuter", "hetrombopag"])
    trial.add_argument("--draws", type=int, default=40)
    args = parser.parse_args()
    if args.what == "cost":
        cost(args.reps)
    else:
        endpoints(args.trial, args.draws)


if __name__ == "__main__":
    main()
