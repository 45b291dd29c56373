"""Reference cross-agonist fit: 5 agonists x 40 subjects, 8 PK and 10 platelet observations each.

The data are simulated by :mod:`tpopk.simulate.synthetic` from the model library at the
cards' prior medians (ITP, label-based fixed regimens, 7 weeks), then the whole study
model (thrombopoiesis + the five agonist cards) is fitted with nutpie. Prints the wall
time of compiling and of sampling separately, the cost of one log-density + gradient,
ESS_bulk/s, the smallest ESS_bulk, the largest R-hat (over every population parameter)
and the divergences. Targets (issue #5): R-hat <= 1.01, ESS_bulk >= 400, no
divergences, in <= 10 minutes on 2 cores.

    python benchmarks/reference_fit.py [--subjects 40] [--draws 500] [--tune 1000]
        [--chains 4] [--cores 2] [--max-minutes 40] [--maxdepth 10]

Sampling runs in the background and reports its progress every minute; past
``--max-minutes`` it is aborted and the figures of the draws so far are printed. The
abort waits for the trajectories in flight, up to ``2**maxdepth`` gradients each (at
maxdepth 10 and ~1 s per gradient, minutes): lower ``--maxdepth`` for a run that must end
on time, knowing that draws hitting it mean the sampler did not explore freely.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

ROOT = Path(__file__).parents[1]
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={Path.home() / '.cache/tpopk/pytensor'}")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache/tpopk/numba"))

# 8 concentrations: first dose, trough and peak on days 13 and 27, last trough
_DAILY = (1.0, 4.0, 24.0, 312.0, 316.0, 648.0, 652.0, 984.0)
PK_TIMES = {
    "hetrombopag": _DAILY,
    "eltrombopag": _DAILY,
    "avatrombopag": _DAILY,
    "lusutrombopag": (1.0, 4.0, 24.0, 48.0, 96.0, 144.0, 148.0, 168.0),
    "romiplostim": (24.0, 72.0, 168.0, 216.0, 528.0, 840.0, 888.0, 1008.0),
}
PLATELET_DAYS = (0.0, 3.0, 7.0, 10.0, 14.0, 21.0, 28.0, 35.0, 42.0, 49.0)


def reference_study(agonists: list[str], subjects: int, seed: int) -> tuple[list[Any], Any]:
    """The library cards of ``agonists`` and the study simulated at their prior medians."""
    from tpopk.simulate.synthetic import design_itp_study, library_cards, simulate_study

    cards = library_cards(agonists, ROOT / "models")
    design = design_itp_study(
        agonists, subjects, seed=seed, pk_times=PK_TIMES, platelet_days=PLATELET_DAYS
    )
    return cards, simulate_study(cards, design, seed=seed + 1)


def _progress(trace: object, chains: int, tune: int, draws: int) -> tuple[str, int, int]:
    """Draws so far (warm-up included) and gradient evaluations, from a trace."""
    done, steps = 0, 0
    for group in ("warmup_sample_stats", "sample_stats"):
        if group in trace.children and "n_steps" in trace[group]:
            n_steps = trace[group]["n_steps"].to_numpy().astype(float)  # NaN: not drawn yet
            done += int(np.isfinite(n_steps).sum())
            steps += int(np.nansum(n_steps))
    return f"{done}/{chains * (tune + draws)} draws, {steps} gradient evaluations", steps, done


def _finished(sampler: object) -> bool:
    try:
        return bool(sampler.is_finished)  # type: ignore[attr-defined]
    except TimeoutError:  # nutpie 0.16 raises while the chains still hold the lock
        return False


def main() -> None:
    """Simulate the reference study, fit it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=40, help="per agonist")
    parser.add_argument("--agonist", action="append", help="repeat; default all five")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--max-minutes", type=float, default=40.0)
    parser.add_argument("--maxdepth", type=int, default=10, help="largest NUTS tree depth")
    args = parser.parse_args()

    import nutpie

    from tpopk.inference import Fit
    from tpopk.inference.nutpie_bridge import compile_nutpie
    from tpopk.model import build_model, population_variables
    from tpopk.simulate.synthetic import ITP_STUDY_ARMS

    agonists = args.agonist or list(ITP_STUDY_ARMS)
    start = time.perf_counter()
    cards, study = reference_study(agonists, args.subjects, args.seed)
    simulated = time.perf_counter() - start
    print(f"simulated: {study.events.describe().splitlines()[0]} ({simulated:.0f} s)")

    start = time.perf_counter()
    model = build_model(cards, study.events)
    built = time.perf_counter() - start
    start = time.perf_counter()
    compiled = compile_nutpie(model)
    compile_s = time.perf_counter() - start
    print(f"model built in {built:.1f} s; nutpie compile {compile_s:.0f} s; {compiled.n_dim} dims")
    start = time.perf_counter()
    sampler = nutpie.sample(
        compiled,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        cores=args.cores,
        seed=args.seed,
        maxdepth=args.maxdepth,
        progress_bar=False,
        blocking=False,
    )
    limit = 60.0 * args.max_minutes
    aborted = False
    reported, total = 0.0, args.chains * (args.tune + args.draws)
    while not _finished(sampler):
        time.sleep(5.0)
        elapsed = time.perf_counter() - start
        text, steps, done = _progress(sampler.inspect(), args.chains, args.tune, args.draws)
        if done == total:  # every draw is in (is_finished may keep timing out)
            break
        if elapsed - reported >= 60.0:
            reported = elapsed
            cost = elapsed * min(args.cores, args.chains) / max(steps, 1)
            print(f"{elapsed / 60:.0f} min: {text}; {1e3 * cost:.0f} ms per gradient", flush=True)
        if elapsed > limit and not _finished(sampler):
            aborted = True
            break
    trace = sampler.abort() if aborted else sampler.wait()
    sampling_s = time.perf_counter() - start
    text, steps, _ = _progress(trace, args.chains, args.tune, args.draws)
    cost = sampling_s * min(args.cores, args.chains) / max(steps, 1)
    print(f"{text} in {sampling_s:.0f} s: {1e3 * cost:.1f} ms per log-density + gradient")
    if aborted or "posterior" not in trace.children or trace["posterior"].sizes.get("draw", 0) < 4:
        print(f"ABORTED after {sampling_s / 60:.1f} min of sampling (limit {args.max_minutes} min)")
        return
    fit = Fit(tree=trace, cards=tuple(cards), events=study.events)
    posterior = fit.posterior[population_variables(fit.tree)]
    ess = az.ess(posterior, method="bulk").to_array()
    rhat = az.rhat(posterior).to_array()
    divergences = int(trace["sample_stats"]["diverging"].sum())
    min_ess = float(ess.min())
    print(
        f"sampling {sampling_s:.0f} s ({args.chains} chains x {args.tune}+{args.draws}, "
        f"{args.cores} cores); compile {compile_s:.0f} s; total {compile_s + sampling_s:.0f} s"
    )
    print(
        f"min ESS_bulk {min_ess:.0f}; ESS_bulk/s (min over parameters) {min_ess / sampling_s:.2f}"
    )
    print(f"max R-hat {float(rhat.max()):.4f}; divergences {divergences}")
    print(
        "targets (R-hat <= 1.01, ESS_bulk >= 400, 0 divergences, <= 600 s): "
        + (
            "met"
            if rhat.max() <= 1.01
            and min_ess >= 400
            and divergences == 0
            and compile_s + sampling_s <= 600
            else "NOT met"
        )
    )


if __name__ == "__main__":
    main()
