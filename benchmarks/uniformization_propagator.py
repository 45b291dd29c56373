"""Tried, not adopted: exact propagation of the lifespan chain by uniformization.

The lifespan structure (:func:`tpopk.pd.structures.lifespan`) has no feedback: its states
obey ``dy/dt = A y + kin·m(t)·e0`` with ``A`` lower bidiagonal (``n_p`` precursor
compartments ageing at ``kp = n_p/tp``, then ``n_l`` platelet compartments at
``kl = n_l/tplt``). Over one grid step ``h`` with the drive the quadratic through its start,
midpoint and end samples (the instants RK4 uses), the solution is exact::

    y(h) = E y(0) + kin (Ga m_start + Gb m_mid + Gc m_end),   E = exp(A h)

so no step would be too long for the chain's rates, where explicit RK4 needs substeps.
``E`` and the ``G`` vectors come from uniformization (Jensen's method): with
``L = max(kp, kl)`` and ``P = I + A/L`` (non-negative entries),
``exp(A s) = sum_k Poisson(k; L s) P^k``, and the drive integrals are the same sum with
incomplete-gamma moments of the Poisson weights. Every term is non-negative, so there is no
cancellation even where ``kp`` and ``kl`` coincide (where closed forms in the two rates
divide by their difference); the identity holds for any fixed ``L``, so d/dkp and d/dkl
differentiate ``P^k`` only.

Why it was not adopted (``benchmarks/README.md``, "RK4 substep bound"): it is accurate
(this script checks it against ``scipy.linalg.expm`` and quadrature), but one propagator
costs ~110 µs (~130 µs with derivatives) for an ITP lifespan, its series grows with
``L·h`` as RK4's substeps do, and a subject's grid has 7-14 distinct step lengths in 43-85
runs, so a gradient would cost more than the substepped RK4 it replaces.

Run: ``python -m benchmarks.uniformization_propagator``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from tpopk.pd.kernels import njit


@njit
def _tail_weights(x: float) -> Any:
    """Poisson(x) tail sums ``T[m] = P(N > m)`` for ``m = 0..K+2``, and the truncation ``K``.

    ``K`` reaches 10 standard deviations above the mean (plus 25 terms for small ``x``), where
    the remaining tail is below 1e-20.
    """
    n_terms = int(x + 10.0 * math.sqrt(x) + 25.0)
    pi = np.empty(n_terms + 3)
    log_x = math.log(x)
    for k in range(n_terms + 3):
        pi[k] = math.exp(-x + k * log_x - math.lgamma(k + 1.0))
    tail = np.empty(n_terms + 3)
    acc = 0.0
    for k in range(n_terms + 2, -1, -1):
        tail[k] = acc  # sum of pi[i] for i > k
        acc += pi[k]
    return pi, tail, n_terms


@njit
def propagator(n_p: int, n_l: int, kp: float, kl: float, h: float, derivatives: bool) -> Any:
    """``E = exp(A h)``, drive responses ``G[3, n]`` and, optionally, their d/dkp and d/dkl.

    Returns ``(E, G, dE_kp, dG_kp, dE_kl, dG_kl)``; ``G[r]`` multiplies ``kin`` times the
    drive at the step's start (r = 0), midpoint (1) and end (2). Without ``derivatives`` the
    last four are empty.
    """
    n = n_p + n_l
    lam = max(kp, kl)
    x = lam * h
    pi, tail, n_terms = _tail_weights(x)
    # P = I + A/lam: diagonal d, subdiagonal s (s[i] couples i-1 -> i).
    d = np.empty(n)
    s = np.zeros(n)
    for i in range(n):
        d[i] = 1.0 - (kp if i < n_p else kl) / lam
        if i > 0:
            s[i] = (kp if i <= n_p else kl) / lam
    q = np.eye(n)
    e = np.zeros((n, n))
    g = np.zeros((3, n))
    nd = n if derivatives else 0
    dq_p, dq_l = np.zeros((nd, nd)), np.zeros((nd, nd))
    de_p, de_l = np.zeros((nd, nd)), np.zeros((nd, nd))
    dg_p, dg_l = np.zeros((3, nd)), np.zeros((3, nd))
    q_prev = np.empty((n, n))
    for k in range(n_terms + 1):
        # Drive moments: integral over the step of Poisson(k; lam*(h - t)) times the
        # quadratic weights, written in v = (h - t)/h.
        m0 = tail[k] / lam
        m1 = (k + 1.0) / x * tail[k + 1] / lam
        m2 = (k + 1.0) * (k + 2.0) / (x * x) * tail[k + 2] / lam
        c0, c1, c2 = 2.0 * m2 - m1, 4.0 * (m1 - m2), m0 - 3.0 * m1 + 2.0 * m2
        for i in range(n):
            g[0, i] += c0 * q[i, 0]
            g[1, i] += c1 * q[i, 0]
            g[2, i] += c2 * q[i, 0]
            for j in range(i + 1):
                e[i, j] += pi[k] * q[i, j]
        if derivatives:
            for i in range(n):
                dg_p[0, i] += c0 * dq_p[i, 0]
                dg_p[1, i] += c1 * dq_p[i, 0]
                dg_p[2, i] += c2 * dq_p[i, 0]
                dg_l[0, i] += c0 * dq_l[i, 0]
                dg_l[1, i] += c1 * dq_l[i, 0]
                dg_l[2, i] += c2 * dq_l[i, 0]
                for j in range(i + 1):
                    de_p[i, j] += pi[k] * dq_p[i, j]
                    de_l[i, j] += pi[k] * dq_l[i, j]
        if k == n_terms:
            break
        # q <- P q and, by the product rule, dq <- dP q + P dq (lam held fixed).
        q_prev[:, :] = q
        for i in range(n - 1, -1, -1):
            for j in range(i + 1):
                below = q_prev[i - 1, j] if i > 0 and j < i else 0.0
                q[i, j] = d[i] * q_prev[i, j] + s[i] * below
                if derivatives:
                    dbelow_p = dq_p[i - 1, j] if i > 0 and j < i else 0.0
                    dbelow_l = dq_l[i - 1, j] if i > 0 and j < i else 0.0
                    # dP/dkp: -1/lam on the precursor diagonal, +1/lam on its subdiagonal
                    # (including the step into the first platelet compartment).
                    dd_p = -1.0 / lam if i < n_p else 0.0
                    ds_p = 1.0 / lam if 0 < i <= n_p else 0.0
                    dd_l = -1.0 / lam if i >= n_p else 0.0
                    ds_l = 1.0 / lam if i > n_p else 0.0
                    dq_p[i, j] = (
                        d[i] * dq_p[i, j] + s[i] * dbelow_p + dd_p * q_prev[i, j] + ds_p * below
                    )
                    dq_l[i, j] = (
                        d[i] * dq_l[i, j] + s[i] * dbelow_l + dd_l * q_prev[i, j] + ds_l * below
                    )
    return e, g, de_p, dg_p, de_l, dg_l


def _chain_matrix(n_p: int, n_l: int, kp: float, kl: float) -> np.ndarray:
    n = n_p + n_l
    a = np.zeros((n, n))
    for i in range(n):
        a[i, i] = -(kp if i < n_p else kl)
        if i > 0:
            a[i, i - 1] = kp if i <= n_p else kl
    return a


def main() -> None:
    """Check against expm and quadrature; time one propagator with and without derivatives."""
    from scipy.integrate import quad_vec
    from scipy.linalg import expm

    weights = [
        lambda u: 2 * (u - 0.5) * (u - 1),
        lambda u: -4 * u * (u - 1),
        lambda u: 2 * u * (u - 0.5),
    ]
    # Healthy, ITP-median (posterior of the bundled study), ITP tail, equal rates, a tiny
    # step, and a far NUTS tail (tplt 0.05 h).
    cases = [
        (10 / 142, 10 / 253, 12.0),
        (10 / 142, 10 / 22, 12.0),
        (10 / 142, 10 / 1.5, 12.0),
        (0.07, 0.07, 7.3),
        (0.1, 0.1000001, 0.001),
        (10 / 142, 10 / 0.05, 12.0),
    ]
    for kp, kl, h in cases:
        a = _chain_matrix(10, 10, kp, kl)
        e, g, de_p, _, de_l, _ = propagator(10, 10, kp, kl, h, True)
        g_ref = np.array(
            [
                quad_vec(
                    lambda t, r=r, a=a, h=h: expm(a * (h - t))[:, 0] * weights[r](t / h),
                    0,
                    h,
                    epsabs=1e-14,
                    epsrel=1e-12,
                )[0]
                for r in range(3)
            ]
        )
        eps = 1e-6
        de_p_ref = (
            expm(_chain_matrix(10, 10, kp * (1 + eps), kl) * h)
            - expm(_chain_matrix(10, 10, kp * (1 - eps), kl) * h)
        ) / (2 * eps * kp)
        de_l_ref = (
            expm(_chain_matrix(10, 10, kp, kl * (1 + eps)) * h)
            - expm(_chain_matrix(10, 10, kp, kl * (1 - eps)) * h)
        ) / (2 * eps * kl)
        print(
            f"kp {kp:.4g} kl {kl:.4g} h {h}: E err {abs(e - expm(a * h)).max():.1e}, "
            f"G err {abs(g - g_ref).max():.1e}, dE/dkp err {abs(de_p - de_p_ref).max():.1e}, "
            f"dE/dkl err {abs(de_l - de_l_ref).max():.1e} (finite differences)"
        )
    for derivatives in (False, True):
        propagator(10, 10, 10 / 142, 10 / 22, 12.0, derivatives)
        start = time.perf_counter()
        for _ in range(1000):
            propagator(10, 10, 10 / 142, 10 / 22, 12.0, derivatives)
        print(
            f"one propagator, tplt 22 h, 12 h step, derivatives={derivatives}: "
            f"{(time.perf_counter() - start) * 1e3:.0f} µs"
        )

    print(demo_grid_step_lengths())


def demo_grid_step_lengths() -> str:
    """Distinct step lengths and runs of equal steps per subject on the demo study's grid.

    A propagator is needed per distinct length (runs, if only the last one is kept).
    """
    from tpopk import datasets
    from tpopk.demo import MODELS, STUDY_AGONISTS, study_arms
    from tpopk.model import build, build_model, load_card

    grids = []
    solver_grid = build.solver_grid

    def keep(*args: Any, **kwargs: Any) -> Any:
        grids.append(solver_grid(*args, **kwargs))
        return grids[-1]

    build.solver_grid = keep  # the grid is internal to the model; record it as it is built
    try:
        events = study_arms(datasets.load_itp_study(), STUDY_AGONISTS)
        cards = [load_card(MODELS / "thrombopoiesis.toml")]
        cards += [load_card(MODELS / f"{a}.toml") for a in STUDY_AGONISTS]
        build_model(cards, events)
    finally:
        build.solver_grid = solver_grid
    lines = []
    for steps in grids[-1].steps:
        steps = steps[steps > 0]
        runs = 1 + int(np.sum(np.diff(steps) != 0))
        lines.append(f"{steps.size} steps, {np.unique(steps).size} distinct lengths, {runs} runs")
    return "demo study grid, per subject: " + "; ".join(sorted(set(lines)))


if __name__ == "__main__":
    main()
