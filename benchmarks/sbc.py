"""Simulation-based calibration of a small population PK model (issue 7, item 6).

Model: ``models/generic/oral_1cmt.toml`` (one compartment, first-order absorption,
log-normal IIV on ka, CL/F and V/F, additive error) on a few simulated subjects: one
320 mg oral dose (theophylline-like), 8 samples over 24 h. Each replicate draws the
population parameters, the subjects' η and the observations from the prior
(``pm.sample_prior_predictive`` of the model tpopk builds), fits them with nutpie and
ranks the generating value of every population parameter among its thinned posterior
draws (:func:`tpopk.diagnostics.sbc_ranks`); uniformity is tested per parameter with
:func:`tpopk.diagnostics.sbc_uniformity`.

The model is compiled once per worker: the observations are a shared variable
(``pm.observe``) swapped per replicate with nutpie's ``with_data``. Replicates run in
chunks, locally or on a Dask cluster (``--scheduler tcp://host:8786``), as
``tpopk.compare`` runs its chunks.

Run: ``python benchmarks/sbc.py [--replications 100] [--subjects 6] [--scheduler ADDRESS]
[--out out/sbc]``. Writes ``sbc.json`` (settings, per-parameter χ² p-values, divergences,
wall time), ``ranks.nc`` and ``sbc_ecdf.png`` / ``sbc_hist.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import xarray as xr

from tpopk.data import EventTable, read_events
from tpopk.diagnostics import plot_sbc, sbc_ranks, sbc_uniformity
from tpopk.model import build_model, load_card

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "models" / "generic" / "oral_1cmt.toml"
DOSE_MG = 320.0
SAMPLE_TIMES_H = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0)
#: Population-level parameters ranked (the per-subject η are nuisance here).
PARAMETERS = ("pop_ka", "pop_cl", "pop_v", "omega_ka", "omega_cl", "omega_v", "sigma_add_conc")
OBSERVED = "y_conc"


def skeleton(n_subjects: int) -> EventTable:
    """The study design: one dose and 8 samples per subject (DV placeholders)."""
    rows = []
    for subject in range(1, n_subjects + 1):
        rows.append({"ID": subject, "TIME": 0.0, "EVID": 1, "AMT": DOSE_MG, "DV": 0.0})
        rows += [
            {"ID": subject, "TIME": t, "EVID": 0, "AMT": 0.0, "DV": 1.0} for t in SAMPLE_TIMES_H
        ]
    frame = pd.DataFrame(rows).assign(DVID="conc", CMT=lambda f: np.where(f.EVID == 1, 1, 2))
    return read_events(frame, units={"AMT": "mg", "conc": "mg/L"})


def _sbc_model(n_subjects: int) -> tuple[pm.Model, pm.Model]:
    """The model as built by tpopk, and the same model with shared observations."""
    model = build_model(load_card(CARD), skeleton(n_subjects))
    n_obs = len(model.coords[f"obs_{OBSERVED.removeprefix('y_')}"])
    data = pytensor.shared(np.zeros(n_obs), name="sbc_observations")
    return model, pm.observe(model, {OBSERVED: data})


def prior_replicates(n_subjects: int, replications: int, seed: int) -> xr.Dataset:
    """Generating parameters and observations of each replicate (dim ``replicate``)."""
    model, _ = _sbc_model(n_subjects)
    prior = pm.sample_prior_predictive(draws=replications, model=model, random_seed=seed)
    values = prior["prior"].to_dataset()[list(PARAMETERS)]
    values[OBSERVED] = prior["prior_predictive"][OBSERVED]
    return (
        values.squeeze("chain", drop=True)
        .rename(draw="replicate")
        .drop_vars("replicate", errors="ignore")
    )


def fit_chunk(
    n_subjects: int,
    observations: np.ndarray,
    seeds: list[int],
    settings: dict[str, Any],
) -> xr.Dataset:
    """Fit each row of ``observations``; thinned posterior draws (replicate, draw)."""
    import nutpie

    _, model = _sbc_model(n_subjects)
    compiled = nutpie.compile_pymc_model(model, var_names=list(PARAMETERS))
    fits = []
    for y, seed in zip(observations, seeds, strict=True):
        tree = nutpie.sample(
            compiled.with_data(sbc_observations=np.asarray(y, dtype=float)),
            draws=settings["draws"],
            tune=settings["tune"],
            chains=settings["chains"],
            cores=1,
            seed=seed,
            target_accept=settings["target_accept"],
            progress_bar=False,
        )
        flat = tree["posterior"].to_dataset()[list(PARAMETERS)].stack(sample=("chain", "draw"))
        keep = np.linspace(0, flat.sizes["sample"] - 1, settings["keep"]).round().astype(int)
        thinned = flat.isel(sample=keep).drop_vars(["sample", "chain", "draw"])
        thinned = thinned.rename(sample="draw")
        thinned["divergences"] = tree["sample_stats"]["diverging"].sum()
        fits.append(thinned)
    return xr.concat(fits, dim="replicate")


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    replicates = prior_replicates(args.subjects, args.replications, args.seed)
    settings = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "target_accept": args.target_accept,
        "keep": args.keep,
    }
    y = replicates[OBSERVED].to_numpy()
    seeds = [args.seed + 1 + i for i in range(args.replications)]
    bounds = range(0, args.replications, args.chunk)
    tasks = [
        (args.subjects, y[i : i + args.chunk], seeds[i : i + args.chunk], settings) for i in bounds
    ]
    if args.scheduler is None:
        parts = []
        for i, task in enumerate(tasks):
            parts.append(fit_chunk(*task))
            done = min((i + 1) * args.chunk, args.replications)
            elapsed = time.perf_counter() - start
            print(f"{done}/{args.replications} replicates, {elapsed:.0f} s", flush=True)
    else:
        from dask.distributed import Client

        with Client(args.scheduler) as client:
            futures = [client.submit(fit_chunk, *task, pure=False) for task in tasks]
            parts = client.gather(futures)
    posterior = xr.concat(parts, dim="replicate")
    ranks = sbc_ranks(replicates[list(PARAMETERS)], posterior[list(PARAMETERS)])
    table = sbc_uniformity(ranks)
    wall = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    ranks.to_netcdf(args.out / "ranks.nc", engine="h5netcdf")
    for kind in ("ecdf", "hist"):
        plot_sbc(ranks, kind=kind).viz["figure"].item().savefig(args.out / f"sbc_{kind}.png")
    divergences = posterior["divergences"].to_numpy()
    result = {
        "model": str(CARD.relative_to(ROOT)),
        "subjects": args.subjects,
        "replications": args.replications,
        "sampler": settings,
        "scheduler": args.scheduler,
        "wall_s": round(wall, 1),
        "replicates_with_divergences": int((divergences > 0).sum()),
        "uniformity": table.round(4).reset_index().to_dict(orient="records"),
    }
    (args.out / "sbc.json").write_text(json.dumps(result, indent=2))
    print(table.round(4).to_string())
    print(f"replicates with divergences: {result['replicates_with_divergences']}")
    print(f"wall time {wall:.0f} s; written to {args.out}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=100)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--draws", type=int, default=250, help="draws per chain")
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--target-accept", type=float, default=0.95)
    parser.add_argument("--keep", type=int, default=99, help="thinned draws ranked (L)")
    parser.add_argument("--chunk", type=int, default=25, help="replicates per task")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "sbc")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
