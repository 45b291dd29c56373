"""The lifespan solver's cost per subject: exponential steps against the RK4 they replace.

200 ITP subjects (issue #24's reference design: 7 weeks, daily oral dosing, 10 platelet
counts each), platelet lifespan ``tplt`` 22 h and maturation time ``tp`` 142 h with CV
50% and 44% log-normal IIV, baseline 30, feedback exponent 0.083 (the card's healthy 0.621
times its ITP ratio 0.133), sigmoid Emax drive of eltrombopag-like exposure. Times the
compiled forward pass (:func:`tpopk.pd.kernels.rk4_forward`) and forward + adjoint
(``rk4_adjoint``) on one thread, per subject, best of ``--repeats``, in wall time and in the
thread's CPU time. Run it on two
checkouts back to back to compare them (``--save`` on one, ``--compare`` on the other
prints the largest relative difference of their platelets at the observations):

    PYTHONPATH=/path/to/old/src python -m benchmarks.lifespan_speed --save /tmp/old.npy
    PYTHONPATH=src python -m benchmarks.lifespan_speed --compare /tmp/old.npy
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache/tpopk/numba"))

from tpopk.pd import PD_MODELS, SolverGrid, drug_effect, kernels

DOSE_TIME = np.arange(49) * 24.0
OBS_TIME = np.array([0.0, 2.0, 74.5, 170.0, 339.0, 500.0, 674.25, 842.0, 1001.0, 1170.0])


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


def per_subject_us(fn: Any, n: int, repeats: int, clock: Any = time.perf_counter) -> float:
    """Best of ``repeats`` timings of ``fn()`` on ``clock``, in µs per subject."""
    fn()
    best = np.inf
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return 1e6 * best / n


def main() -> None:
    """Print µs per subject for forward and forward + adjoint."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--save", help="write the platelets at the observations here (.npy)")
    parser.add_argument("--compare", help="platelets (.npy) of another run to compare with")
    parser.add_argument(
        "--return-freed",
        action="store_true",
        help="leave glibc's defaults (large blocks unmapped on free) as a fit would not",
    )
    args = parser.parse_args()
    kept = False
    if not args.return_freed:
        try:
            from tpopk.pd.solve import keep_freed_memory
        except ImportError:  # a checkout from before it
            pass
        else:
            kept = keep_freed_memory()
    model = PD_MODELS["lifespan"]
    cfg = model.config_array()
    params, drive, steps, grid, g_states = problem(args.subjects, args.seed)
    doses = np.zeros((args.subjects, grid.n_nodes))
    steps_per_subject = np.count_nonzero(steps, axis=1).mean()
    print(
        f"{kernels.__file__}: {args.subjects} subjects, {steps_per_subject:.0f} steps each, "
        f"freed memory {'kept' if kept else 'returned'}"
    )

    def forward() -> Any:
        return kernels.rk4_forward(model.kernel_id, cfg, params, drive, steps, doses, -1, 20)

    def gradient() -> Any:
        out, tape = forward()
        return kernels.rk4_adjoint(model.kernel_id, cfg, params, drive, steps, out, tape, g_states)

    fwd = per_subject_us(forward, args.subjects, args.repeats)
    both = per_subject_us(gradient, args.subjects, args.repeats)
    print(f"forward {fwd:.1f} µs/subject, forward + adjoint {both:.1f} µs/subject")
    # The thread's CPU time: on a shared machine less sensitive to other processes.
    fwd = per_subject_us(forward, args.subjects, args.repeats, time.thread_time)
    both = per_subject_us(gradient, args.subjects, args.repeats, time.thread_time)
    print(f"CPU time: forward {fwd:.1f} µs/subject, forward + adjoint {both:.1f} µs/subject")
    platelets = forward()[0].reshape(-1, 20)[grid.obs_index, 10:].sum(axis=1)
    if args.save:
        np.save(args.save, platelets)
    if args.compare:
        diff = np.abs(platelets / np.load(args.compare) - 1).max()
        print(f"largest relative difference of platelets at the observations: {diff:.2e}")


if __name__ == "__main__":
    main()
