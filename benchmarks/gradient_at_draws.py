"""Cost of a log density + gradient at posterior draws of a fit, and the RK4 substeps behind it.

A fit's gradient is cheap at the initial point and dearer where NUTS goes: short ITP
platelet lifespans make the lifespan chain's explicit RK4 split each grid step into
``ceil(k·h / STABLE_RATE_STEP)`` substeps (``tpopk.pd.kernels``, "Stability"). This times
the gradient (numba backend, the one nutpie uses) at random posterior draws of FIT and
prints, per draw, the shortest individual platelet lifespan and the substeps the
integrator takes (``kernels.n_substeps``) on a full step of the lifespan structure's grid
(12 h), at the compiled bound. Since 35df4bb a step needing more than
``kernels.MAX_SUBSTEPS`` (8) RK4 substeps takes 8 SDIRK2 substeps, so the count stops at 8.

Run: ``python -m benchmarks.gradient_at_draws FIT.nc [N_DRAWS]`` (default 12), e.g. on the
demo's ``out/demo/study_fit.nc``. To compare two bounds, run it at both commits.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tpopk.inference import Fit
from tpopk.pd import PD_MODELS, kernels


def main(path: str, n_draws: int) -> None:
    fit = Fit.load(path)
    model = fit.model
    dlogp = model.compile_dlogp(jacobian=True, mode="NUMBA")

    def cost_ms(point: dict[str, np.ndarray], reps: int = 20) -> float:
        dlogp(point)
        start = time.process_time()
        for _ in range(reps):
            dlogp(point)
        return (time.process_time() - start) / reps * 1e3

    lifespan = PD_MODELS["lifespan"]
    n_platelet, step = lifespan.config[1], lifespan.max_step
    print(f"STABLE_RATE_STEP {kernels.STABLE_RATE_STEP}")
    print(f"initial point: {cost_ms(model.initial_point()):.2f} ms CPU")
    posterior = fit.posterior.stack(sample=("chain", "draw"))
    rng = np.random.default_rng(1)
    picks = rng.choice(posterior.sizes["sample"], n_draws, replace=False)
    rows = []
    for i in picks:
        point = {}
        for rv in model.free_RVs:
            value = posterior[rv.name].isel(sample=i).values
            transform = model.rvs_to_transforms.get(rv)
            if transform is not None:
                value = transform.forward(value, *rv.owner.inputs).eval()
            point[model.rvs_to_values[rv].name] = np.asarray(value, dtype=np.float64)
        tplt = posterior["tplt"].isel(sample=i).values
        substeps = np.array([kernels.n_substeps(n_platelet / t, step) for t in tplt])
        rows.append((cost_ms(point), tplt.min(), substeps.mean(), substeps.max()))
    for ms, shortest, mean, most in sorted(rows):
        print(
            f"draw: {ms:6.2f} ms CPU   shortest tplt {shortest:6.2f} h   "
            f"substeps per {step:g} h step: mean {mean:5.1f}, max {most:3.0f}"
        )
    print(f"sum over the {n_draws} draws: {sum(r[0] for r in rows):.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 12)
