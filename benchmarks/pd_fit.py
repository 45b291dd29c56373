"""Full NUTS fit of the PD benchmark problem: compile time, ESS_bulk/s, divergences.

tpopk and the naive ``scan`` RK4 baselines are sampled with nutpie (4 chains on 2 cores
by default), on the problem and data of ``benchmarks/pd_speed.py`` (which this script
writes to the shared ``.npz``). NumPyro + diffrax is sampled by ``benchmarks/pd_diffrax.py
--fit`` in its own environment; when its draws file exists for the same number of
subjects, it is summarised here with the same ArviZ ESS. ESS_bulk/s is the smallest bulk
ESS over the population parameters (``log_*``, ``omega_*``, ``sigma``) divided by the
sampling wall time (warm-up included, compile excluded).

Run: ``python -m benchmarks.pd_fit [--subjects 20] [--tune 150] [--draws 150]``.
"""

from __future__ import annotations

import argparse
import time

import arviz as az
import numpy as np
import nutpie
import xarray as xr

from benchmarks.pd_problem import data_path
from benchmarks.pd_speed import build, load, problem

POPULATION = ("log_", "omega_", "sigma")


def summarise(label, posterior, diverging, compile_s, wall_s):
    names = [k for k in posterior.data_vars if str(k).startswith(POPULATION)]
    ess = az.ess(posterior[names], method="bulk")
    worst = min(float(ess[k]) for k in names)
    print(
        f"{label:32s} compile {compile_s:6.1f} s  sampling {wall_s:7.1f} s  "
        f"min ESS_bulk {worst:7.1f}  ESS_bulk/s {worst / wall_s:7.3f}  "
        f"divergences {int(diverging)}  {load()}",
        flush=True,
    )
    return worst / wall_s


def fit_nutpie(label, model, args):
    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tree = nutpie.sample(
        compiled,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        cores=args.cores,
        seed=args.seed,
        progress_bar=False,
        target_accept=args.target_accept,
    )
    wall_s = time.perf_counter() - t0
    diverging = tree["sample_stats"]["diverging"].values.sum()
    return summarise(label, tree["posterior"].to_dataset(), diverging, compile_s, wall_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--tune", type=int, default=150)
    parser.add_argument("--draws", type=int, default=150)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--target-accept", type=float, default=0.8)
    parser.add_argument("--scan-steps", type=float, nargs="*", default=[24.0, 2.0])
    args = parser.parse_args()
    n = args.subjects
    pop, data, _ = problem(n)
    print(
        f"{n} subjects, {args.chains} chains x ({args.tune} tune + {args.draws} draws), "
        f"{args.cores} cores, target_accept {args.target_accept}",
        flush=True,
    )
    rates = {"tpopk": fit_nutpie("tpopk", build(pop, n, "tpopk", observed=data)[0], args)}
    for h in args.scan_steps:
        label = f"scan RK4, h = {h} h"
        rates[label] = fit_nutpie(label, build(pop, n, "scan", h, observed=data)[0], args)
    jax_fit = data_path(n).with_name(f"diffrax_fit_{n}.npz")
    if jax_fit.exists():
        with np.load(jax_fit) as f:
            arrays = {k: f[k] for k in f.files}
        posterior = xr.Dataset(
            {k: (("chain", "draw"), v) for k, v in arrays.items() if k.startswith(POPULATION)}
        )
        label = (
            f"NumPyro+diffrax (rtol {float(arrays['rtol']):g}, {int(arrays['chains'])} ch x "
            f"{int(arrays['tune'])}+{int(arrays['draws'])})"
        )
        rates[label] = summarise(
            label,
            posterior,
            arrays["diverging"].sum(),
            float(arrays["compile_s"]),
            # NumPyro compiles inside run(); its compile is timed on a 1 + 1 draw run first.
            float(arrays["wall_s"]) - float(arrays["compile_s"]),
        )
    for label, rate in rates.items():
        if label != "tpopk":
            print(f"ESS_bulk/s ratio tpopk / {label}: {rates['tpopk'] / rate:.1f}x")


if __name__ == "__main__":
    main()
