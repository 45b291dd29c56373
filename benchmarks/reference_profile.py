"""Where the reference study's gradient goes, by component, in thread CPU time.

The joint PK+PD model of ``reference_cost.py --joint`` (5 agonists x ``--subjects``), its
log density + gradient as nutpie calls it, and three parts of it timed alone at the
model's support point, best of ``--repeats`` calls each:

- **platelets forward** and **forward + adjoint**: the platelet kernels
  (:func:`tpopk.pd.kernels.rk4_forward`, ``rk4_adjoint``) on the model's own parameters,
  drive and grid;
- **exposure**: the drug-effect multiplier at the stage times (every agonist's PK at
  the solver's stage times, the Emax), value and gradient, compiled on its own;
- **rest**: the whole gradient less the two.

    python -m benchmarks.reference_profile [--subjects 40] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={Path.home() / '.cache/tpopk/pytensor'}")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache/tpopk/numba"))


def _best_ms(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` calls of ``fn`` in thread CPU time (ms), after one warm call."""
    fn()
    best = np.inf
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return 1e3 * best


def main() -> None:
    """Print ms per call of each component."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=40, help="per agonist")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()

    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.traversal import ancestors

    from benchmarks.reference_fit import reference_study
    from tpopk.inference.nutpie_bridge import NOGIL_NUMBA, compile_nutpie, support_vector
    from tpopk.model import build_model
    from tpopk.pd import kernels
    from tpopk.pd.solve import PDSolve, _kernel_array
    from tpopk.simulate.synthetic import ITP_STUDY_ARMS

    agonists = list(ITP_STUDY_ARMS)
    cards, study = reference_study(agonists, args.subjects, args.seed)
    model = build_model(cards, study.events)
    start = time.perf_counter()
    compiled = compile_nutpie(model)
    log_density = compiled._make_logp_func()
    x = support_vector(model)
    total = _best_ms(lambda: log_density(x), args.repeats)
    print(
        f"compile {time.perf_counter() - start:.0f} s; {compiled.n_dim} dims; "
        f"log density + gradient {total:.2f} ms",
        flush=True,
    )

    (solve_node,) = {
        v.owner
        for v in ancestors([model.logp()])
        if v.owner is not None and isinstance(v.owner.op, PDSolve)
    }
    op = solve_node.op
    params_v, drive_v, steps_v, doses_v = solve_node.inputs
    cot = pt.matrix("cot")
    exposure_grad = pt.grad((drive_v * cot).sum(), model.value_vars, disconnected_inputs="ignore")
    inputs = [*model.value_vars, cot]
    point = model.initial_point()
    values = [point[v.name] for v in model.value_vars]
    pd_inputs = pytensor.function(
        model.value_vars, [params_v, drive_v, steps_v, doses_v], on_unused_input="ignore"
    )
    # writable C arrays, the kernels' one compiled signature (a read-only one compiles anew)
    params, drive, steps, doses = (_kernel_array(a) for a in pd_inputs(*values))
    start = time.perf_counter()
    exposure = pytensor.function(
        inputs, [drive_v, *exposure_grad], mode=NOGIL_NUMBA, on_unused_input="ignore"
    )
    print(f"exposure compile {time.perf_counter() - start:.0f} s", flush=True)
    rng = np.random.default_rng(args.seed)
    w = rng.standard_normal(drive.shape)
    cfg = np.asarray(op.config, dtype=np.int64)
    g_states = rng.standard_normal((steps.shape[0], steps.shape[1] + 1, op.n_states))

    def forward() -> Any:
        return kernels.rk4_forward(
            op.kernel_id, cfg, params, drive, steps, doses, op.dose_state, op.n_states
        )

    def gradient() -> Any:
        out, tape = forward()
        return kernels.rk4_adjoint(op.kernel_id, cfg, params, drive, steps, out, tape, g_states)

    fwd = _best_ms(forward, args.repeats)
    both = _best_ms(gradient, args.repeats)
    expo = _best_ms(lambda: exposure(*values, w), args.repeats)
    n_subj = steps.shape[0]
    print(
        f"{n_subj} subjects, {np.count_nonzero(steps, axis=1).mean():.0f} steps each; "
        f"ms per call, thread CPU time, best of {args.repeats}:"
    )
    print(f"  log density + gradient   {total:7.2f}")
    print(f"  platelets forward        {fwd:7.2f}")
    print(f"  platelets fwd + adjoint  {both:7.2f}")
    print(f"  exposure value + grad    {expo:7.2f}")
    print(f"  rest                     {total - both - expo:7.2f}")


if __name__ == "__main__":
    main()
