"""The lifespan solver's cost per subject: exponential steps against the RK4 they replace.

200 ITP subjects (issue #24's reference design: 7 weeks, daily oral dosing, 10 platelet
counts each), platelet lifespan ``tplt`` 22 h and maturation time ``tp`` 142 h with CV
50% and 44% log-normal IIV, baseline 30, feedback exponent 0.083 (the card's healthy 0.621
times its ITP ratio 0.133), sigmoid Emax drive of eltrombopag-like exposure. Times the
compiled forward pass (:func:`tpopk.pd.kernels.rk4_forward`) and forward + adjoint
(``rk4_adjoint``) on one thread, per subject, for this checkout's kernels and for an older
``kernels.py`` (the RK4 one) loaded from a file in the same process, and prints the
largest relative difference of their platelets at the observations.

    git show 225740a:src/tpopk/pd/kernels.py > /tmp/kernels_rk4.py
    python -m benchmarks.lifespan_speed --old /tmp/kernels_rk4.py [--subjects 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache/tpopk/numba"))

from tpopk.pd import PD_MODELS, SolverGrid, drug_effect, kernels

DOSE_TIME = np.arange(49) * 24.0
OBS_TIME = np.array([0.0, 2.0, 74.5, 170.0, 339.0, 500.0, 674.25, 842.0, 1001.0, 1170.0])


def load_kernels(path: str) -> ModuleType:
    """Import a ``kernels.py`` from ``path`` under its own module name."""
    spec = importlib.util.spec_from_file_location("kernels_old", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def problem(n: int, seed: int) -> tuple[Any, ...]:
    """Parameters, drive, steps and cotangent of ``n`` ITP subjects."""
    rng = np.random.default_rng(seed)
    params = np.column_stack(
        [
            np.full(n, 30.0),
            142.0 * np.exp(0.42 * rng.standard_normal(n)),
            22.0 * np.exp(0.47 * rng.standard_normal(n)),
            np.full(n, 0.083),
        ]
    )
    subj = np.repeat(np.arange(n), OBS_TIME.size)
    grid = SolverGrid.build(subj, np.tile(OBS_TIME, n), n, breakpoints=np.tile(DOSE_TIME, (n, 1)))
    # One-compartment oral exposure (mg/L): 50 mg, ka 1/h, CL 0.8 L/h, V 12 L.
    dt = grid.stage_times[..., None] - DOSE_TIME
    lag = np.where(dt >= 0, dt, 0.0)
    k, ka = 0.8 / 12.0, 1.0
    conc = np.where(dt >= 0, 50 * ka / (12 * (ka - k)) * (np.exp(-k * lag) - np.exp(-ka * lag)), 0)
    drive = drug_effect.sigmoid_emax(conc.sum(axis=-1), 3.0, 1.0, 1.2)
    g_states = rng.standard_normal((n, grid.n_nodes, 20))
    return params, np.ascontiguousarray(drive), np.ascontiguousarray(grid.steps), grid, g_states


def per_subject_us(fn: Any, n: int, repeats: int) -> float:
    """Best of ``repeats`` timings of ``fn()``, in µs per subject."""
    fn()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1e6 * best / n


def main() -> None:
    """Print µs per subject for each kernel file and the platelets' largest difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="path of the kernels.py to compare")
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=24)
    args = parser.parse_args()
    model = PD_MODELS["lifespan"]
    cfg = model.config_array()
    params, drive, steps, grid, g_states = problem(args.subjects, args.seed)
    doses = np.zeros((args.subjects, grid.n_nodes))
    steps_per_subject = np.count_nonzero(steps, axis=1).mean()
    print(f"{args.subjects} subjects, {steps_per_subject:.0f} steps each (mean)")
    platelets = {}
    for name, mod in (("new", kernels), ("old", load_kernels(args.old))):

        def forward(mod: ModuleType = mod) -> Any:
            return mod.rk4_forward(model.kernel_id, cfg, params, drive, steps, doses, -1, 20)

        states, _ = forward()

        def gradient(mod: ModuleType = mod) -> Any:
            out, tape = forward(mod)
            return mod.rk4_adjoint(model.kernel_id, cfg, params, drive, steps, out, tape, g_states)

        fwd = per_subject_us(forward, args.subjects, args.repeats)
        both = per_subject_us(gradient, args.subjects, args.repeats)
        platelets[name] = states.reshape(-1, 20)[grid.obs_index, 10:].sum(axis=1)
        print(f"{name}: forward {fwd:8.1f} µs/subject, forward + adjoint {both:8.1f} µs/subject")
    diff = np.abs(platelets["new"] / platelets["old"] - 1).max()
    print(f"largest relative difference of platelets at the observations: {diff:.2e}")


if __name__ == "__main__":
    main()
