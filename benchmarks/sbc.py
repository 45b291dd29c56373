"""Simulation-based calibration of a small population PK model (issue 7, item 6).

Model: ``models/generic/oral_1cmt.toml`` (one compartment, first-order absorption,
log-normal IIV on ka, CL/F and V/F, additive error) on a few simulated subjects: one
320 mg oral dose (theophylline-like), 8 samples over 24 h. Each replicate draws the
population parameters, the subjects' η and the observations from the prior of the model
tpopk builds, fits them with nutpie and ranks the generating value of every population
parameter among its thinned posterior draws (:func:`tpopk.diagnostics.simulate_sbc`);
uniformity is tested per parameter with :func:`tpopk.diagnostics.sbc_uniformity`.

Replicates run in chunks (the model compiled once per chunk), in this process, on a
local Dask cluster of single-threaded workers (``--scheduler local``) or on a running
Dask scheduler (``--scheduler tcp://host:8786``); replicate ``i`` is seeded by
``(--seed, i)``, so the ranks are the same wherever it ran.

Run: ``python benchmarks/sbc.py [--replications 100] [--subjects 6] [--scheduler
local|ADDRESS] [--out out/sbc]``. Writes ``sbc.json`` (settings, per-parameter χ²
p-values, divergences, wall time), ``ranks.nc`` and ``sbc_ecdf.png`` / ``sbc_hist.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tpopk.data import EventTable, read_events
from tpopk.diagnostics import plot_sbc, sbc_uniformity, simulate_sbc
from tpopk.model import build_model, load_card

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "models" / "generic" / "oral_1cmt.toml"
DOSE_MG = 320.0
SAMPLE_TIMES_H = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0)
#: Population-level parameters ranked (the per-subject η are nuisance here).
PARAMETERS = ("pop_ka", "pop_cl", "pop_v", "omega_ka", "omega_cl", "omega_v", "sigma_add_conc")


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


def run(args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    model = build_model(load_card(CARD), skeleton(args.subjects))
    settings = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "target_accept": args.target_accept,
        "keep": args.keep,
    }
    tree = simulate_sbc(
        model,
        PARAMETERS,
        replications=args.replications,
        seed=args.seed,
        chunk=args.chunk,
        scheduler=args.scheduler,
        progressbar=True,
        **settings,
    )
    ranks = tree["ranks"].to_dataset()
    table = sbc_uniformity(ranks)
    wall = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    ranks.to_netcdf(args.out / "ranks.nc", engine="h5netcdf")
    for kind in ("ecdf", "hist"):
        plot_sbc(ranks, kind=kind).viz["figure"].item().savefig(args.out / f"sbc_{kind}.png")
    divergences = tree["sample_stats"]["divergences"].to_numpy()
    result = {
        "model": str(CARD.relative_to(ROOT)),
        "subjects": args.subjects,
        "replications": args.replications,
        "sampler": settings,
        "seed": args.seed,
        "chunk": args.chunk,
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
    parser.add_argument("--chunk", type=int, default=25, help="replicates per job")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--scheduler",
        default=None,
        help="'local' (a Dask LocalCluster, one single-threaded worker per core) or a Dask "
        "scheduler address (default: run here)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "sbc")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
