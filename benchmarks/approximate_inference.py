"""NUTS against Pathfinder and Laplace (pymc-extras) on theophylline, or a reduced reference study.

Fits the same model with ``tpopk.fit(method=...)`` and prints, per population parameter,
each method's posterior median and 90% interval width, then each method's wall time
(compiling included, as a user meets it: nutpie loads its compiled model from the disk
cache, pymc-extras compiles its own functions) and, for NUTS, the log-density gradients
spent in warm-up and in sampling, with chains started at PyMC's support point or at
Pathfinder draws (``init="pathfinder"``, Pathfinder's own cost included in its time).

    python benchmarks/approximate_inference.py [--draws 1000] [--tune 1000] [--chains 4]
        [--methods nuts,nuts+pathfinder,pathfinder,laplace] [--study-subjects N]

``--study-subjects N`` fits the reference cross-agonist study
(:mod:`benchmarks.reference_fit`) with N subjects per agonist instead of theophylline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).parents[1]
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={Path.home() / '.cache/tpopk/pytensor'}")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache/tpopk/numba"))


def _problem(study_subjects: int | None) -> tuple[Any, Any]:
    if study_subjects is None:
        from tpopk.datasets import load_theophylline

        return ROOT / "models" / "generic" / "oral_1cmt.toml", load_theophylline()
    sys.path.insert(0, str(ROOT))
    from benchmarks.reference_fit import reference_study

    agonists = ["hetrombopag", "eltrombopag", "avatrombopag", "lusutrombopag", "romiplostim"]
    cards, study = reference_study(agonists, study_subjects, seed=5)  # reference_fit.py's default
    return cards, study.events


def main() -> None:
    """Run the comparison and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--methods", default="nuts,nuts+pathfinder,pathfinder,laplace")
    parser.add_argument("--study-subjects", type=int, default=None)
    args = parser.parse_args()

    from tpopk.inference import fit

    cards, events = _problem(args.study_subjects)
    medians, widths, costs = {}, {}, {}
    for name in args.methods.split(","):
        method, _, init = name.partition("+")
        start = time.perf_counter()
        result = fit(
            cards,
            events,
            method=method,  # type: ignore[arg-type]
            init=init or "support",  # type: ignore[arg-type]
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            seed=args.seed,
            progressbar=False,
        )
        wall = time.perf_counter() - start
        table = result.summary(ci_prob=0.9)
        medians[name] = table["median"]
        widths[name] = table["eti90_ub"] - table["eti90_lb"]
        stats = result.tree["sample_stats"].attrs if not result.approximate else {}
        costs[name] = {
            "wall_s": round(wall, 1),
            "warmup_gradients": stats.get("warmup_gradients"),
            "sampling_gradients": stats.get("sampling_gradients"),
            "divergences": result.divergences,
            "max_r_hat": None if result.approximate else round(float(table["r_hat"].max()), 3),
        }
        print(f"{name}: {costs[name]}", flush=True)
    with pd.option_context("display.width", 160, "display.max_rows", None):
        print("\nposterior medians\n" + pd.DataFrame(medians).round(3).to_string())
        print("\n90% interval widths\n" + pd.DataFrame(widths).round(3).to_string())
        print("\ncost\n" + pd.DataFrame(costs).T.to_string())


if __name__ == "__main__":
    main()
