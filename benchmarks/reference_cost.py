"""Where the reference fit's gradient goes: cost per agonist, with and without the platelets.

The reference problem of ``reference_fit.py`` (issue #5 item 6: 40 subjects per agonist,
8 concentrations and 10 platelet counts each, 7 weeks), split by agonist. For each agonist
alone and for all five together, two models of the same simulated data:

- **PK+PD**: the study model as fitted (PK closed forms at the observations and at the
  platelet solver's stage times, the platelet ODE and its adjoint);
- **PK only**: the platelet rows dropped, so no solver grid and no ODE.

Each is compiled as ``tpopk.fit`` compiles it (:func:`tpopk.inference.nutpie_bridge.compile_nutpie`)
and its log density + gradient, the very function nutpie calls, is timed on one thread at
the support point and at the first four chains' starting points (``--calls`` calls each).

    python -m benchmarks.reference_cost [--subjects 40] [--calls 20] [--agonist NAME ...]
        [--joint]

``--joint`` times only the PK+PD model of the chosen agonists together (one compile
instead of eleven): the figure the 20 ms target of issue #24 is about.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={Path.home() / '.cache/tpopk/pytensor'}")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache/tpopk/numba"))


def _ms_per_call(log_density: Callable[[np.ndarray], object], x: np.ndarray, calls: int) -> float:
    log_density(x)
    start = time.perf_counter()
    for _ in range(calls):
        log_density(x)
    return 1e3 * (time.perf_counter() - start) / calls


def main() -> None:
    """Print one line per agonist set and model: dims, ms per log density + gradient."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=40, help="per agonist")
    parser.add_argument("--agonist", action="append", help="repeat; default each of the five")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per point")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--joint", action="store_true", help="only all agonists together, PK+PD")
    args = parser.parse_args()

    from benchmarks.reference_fit import reference_study
    from tpopk.data import read_events
    from tpopk.demo import study_arms
    from tpopk.inference.nutpie_bridge import compile_nutpie, support_vector
    from tpopk.model import build_model
    from tpopk.simulate.synthetic import ITP_STUDY_ARMS

    chosen = args.agonist or list(ITP_STUDY_ARMS)
    # one simulated study: each agonist's row holds the same subjects as the joint row
    cards, study = reference_study(chosen, args.subjects, args.seed)
    system, drugs = cards[0], dict(zip(chosen, cards[1:], strict=True))
    print(f"{'agonists':<62} {'model':<8} {'dims':>5}  ms per log density + gradient")
    sets = [chosen] if args.joint else [[a] for a in chosen] + ([chosen] if len(chosen) > 1 else [])
    for agonists in sets:
        events = study_arms(study.events, tuple(agonists))
        frame = events.frame
        platelets = (frame["EVID"] == 0) & (frame["DVID"] == system.structure.response)
        variants = {
            "PK+PD": events,
            "PK only": read_events(frame[~platelets], units=events.units.as_dict()),
        }
        if args.joint:
            del variants["PK only"]
        for label, data in variants.items():
            model = build_model([system, *(drugs[a] for a in agonists)], data)
            start = time.perf_counter()
            compiled = compile_nutpie(model)
            compile_s = time.perf_counter() - start
            log_density = compiled._make_logp_func()  # what nutpie's chains call
            points = [support_vector(model)]
            points += [compiled._make_initial_points(args.seed + chain) for chain in range(4)]
            ms = [_ms_per_call(log_density, x, args.calls) for x in points]
            print(
                f"{'+'.join(agonists):<62} {label:<8} {compiled.n_dim:>5}  support "
                f"{ms[0]:6.1f}, starts {min(ms[1:]):6.1f}-{max(ms[1:]):6.1f} "
                f"(compile {compile_s:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
