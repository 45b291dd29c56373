"""Compiled numerics: each structure's equations and the integrators over them.

One module on purpose: numba's on-disk cache is invalidated by changes to the file that
defines a function, not to the files it calls, so the equations and the integrator that
inlines them live together (and :mod:`tpopk.pd.solve` salts PyTensor's cache key with
this file's hash).

**Equations.** Each structure (declared in :mod:`tpopk.pd.structures`) provides four
kernels, dispatched on an integer id inside the integrator so that everything caches on
disk (numba does not cache functions that receive other jitted functions as arguments):
``rhs`` (d(state)/dt given the state, the subject's parameter row and the drive ``m``, the
drug-effect multiplier at that instant); ``rhs_vjp`` (its vector-Jacobian product with a
cotangent ``w``: returns ``w.df/dm``, overwrites ``gy`` with ``w.df/dy``, adds ``w.df/dp``
to ``gp``); ``init`` (the pre-treatment steady state in closed form, never integrated
to); ``init_vjp`` (adds ``g.dy0/dp`` to ``gp``).

**Integrator.** Fixed-step RK4 over each subject's grid (:class:`tpopk.pd.grid.SolverGrid`),
all subjects in one call. The drive is given at every node (``drive[s, 2k]``) and step
midpoint (``drive[s, 2k + 1]``), exactly the instants RK4 evaluates, so a drive computed in
a PyMC graph from closed-form PK needs no interpolation. The adjoint differentiates the
discrete map itself, not the ODE, so NUTS sees a log density and gradient that agree to
rounding at any step. Zero-length (padding) steps are identities.

**Stability.** Explicit RK4 needs ``k·h < 2.79``, and rates are parameters (an ITP platelet
lifespan of hours on a 12 h step), so a step is split into ``ceil(k·h /
STABLE_RATE_STEP)`` RK4 substeps (drive within the step: the quadratic through its three
samples), and beyond :data:`MAX_SUBSTEPS` into as many L-stable SDIRK2 substeps, each
stage one sweep of the bidiagonal chain (:func:`implicit_solve`), the feedback
extrapolated from known states (:func:`implicit_drive`).

**Lifespan chain: exponential steps.** The ``lifespan`` structure's chain is linear, so
:func:`lifespan_expo_forward` steps it exactly, ``y' = E y + sum_r phi_r u_r``: ``E = exp(J
h)`` in closed form (no stiffness limit), ``u_r`` the production at the step's start,
midpoint and end, integrated exactly as the quadratic through them. The feedback at the
midpoint and end sees the start's platelets propagated with the start's production held
constant (exact at steady state). Propagators and their rate derivatives are built once
per distinct step length and subject; :func:`lifespan_expo_adjoint` is the exact transpose
of this map. Measurements behind these choices: ``benchmarks/README.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numba
import numpy as np


def njit[F: Callable[..., Any]](func: F) -> F:
    """Compile ``func`` with numba in nopython mode, cached on disk (``NUMBA_CACHE_DIR``)."""
    return cast(F, numba.njit(cache=True, fastmath=False)(func))


def inline[F: Callable[..., Any]](func: F) -> F:
    """Compile ``func`` for inlining into its caller at numba IR level.

    A plain call between jitted functions increments and decrements the reference count of
    every array argument, which in the RK4 inner loop cost more than the equations. Split
    steps (substeps, SDIRK2) are plain :func:`njit` calls all the same: each inlined copy
    of a step multiplies the IR numba compiles (benchmarks/README.md, "Split steps as
    plain calls").
    """
    return cast(F, numba.njit(cache=True, fastmath=False, inline="always")(func))


#: Largest ``k·h`` of one RK4 (sub)step for the fastest parameter-dependent rate ``k``:
#: RK4 is stable for ``k·h < 2.79``; at ``k·h = 1`` one step damps the fast mode by 0.375
#: (exact e^-1 = 0.368). A flat ITP placebo course (platelet lifespan ~1 day) on 12 h steps
#: amplified rounding errors ~10-fold per step to ±1e300 within weeks.
STABLE_RATE_STEP = 1.0
#: Most RK4 substeps per step. A step that needs more (``k·h > 8``: a 10-compartment
#: platelet lifespan under 15 h on 12 h steps, as in many ITP patients and in the IIV tails
#: early warm-up visits) takes this many substeps of the L-stable SDIRK2 instead
#: (:func:`_sdirk_tape`), stable at any rate and as accurate here as RK4 against
#: ``solve_ivp`` (tests/pd/test_pd_accuracy.py), at bounded cost per step.
MAX_SUBSTEPS = 8
#: SDIRK2 (Alexander 1977): both stages implicit with coefficient ``gamma``, stiffly
#: accurate, L-stable (its stability function vanishes as ``k·h -> inf``).
SDIRK_GAMMA = 1.0 - np.sqrt(0.5)

# Integer ids used by the integrator to pick a structure's kernels.
FRIBERG = 0
INDIRECT_PRODUCTION = 1
INDIRECT_LOSS = 2
LIFESPAN = 3
ENDOGENOUS_TPO = 4
TMDD_FRIBERG = 5
PDMDD_LIFESPAN = 6
QSS_TMDD_LIFESPAN = 7


# Kernel arguments: cfg (structural ints), p (parameter row), y (state), m (drive).


@inline
def _feedback_circ(circ: float, circ0: float) -> float:
    # A trial RK stage may overshoot below zero on a coarse step; the power needs circ > 0.
    return max(circ, 1e-9 * circ0)


# Friberg: state 0 is log(Prol). d log(Prol)/dt = ktr*(m*fb - 1) does not depend on Prol,
# so a strongly inhibiting drive (1 - slope*C far below zero during an infusion) is a
# quadrature, not a stiff decay: with Prol itself, RK4 at 24 h steps blew up (1e183) at
# slope 150 L/µmol, mtt 40 h on the wbcSim infusions; the system and solution are the same.
@inline
def _friberg_rhs(cfg: Any, p: Any, y: Any, m: float, dy: Any) -> None:
    n = cfg[0]
    circ0, mtt, gamma, kel = p[0], p[1], p[2], p[3]
    ktr = (n + 1) / mtt
    # exp(gamma*log(.)) rather than ** : one transcendental less per call, and the log
    # is reused by the vector-Jacobian product.
    fb = np.exp(gamma * np.log(circ0 / _feedback_circ(y[n + 1], circ0)))
    dy[0] = ktr * (m * fb - 1.0)
    dy[1] = ktr * (np.exp(y[0]) - y[1])
    for i in range(2, n + 1):
        dy[i] = ktr * (y[i - 1] - y[i])
    dy[n + 1] = ktr * (y[n] - kel * y[n + 1])


@inline
def _friberg_rhs_vjp(cfg: Any, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any) -> float:
    n = cfg[0]
    circ0, mtt, gamma, kel = p[0], p[1], p[2], p[3]
    ktr = (n + 1) / mtt
    c = _feedback_circ(y[n + 1], circ0)
    log_ratio = np.log(circ0 / c)
    fb = np.exp(gamma * log_ratio)
    prol = np.exp(y[0])
    g_ktr = w[0] * (m * fb - 1.0)
    g_fb = w[0] * ktr * m  # d(dy[0])/d(fb), chained into circ, circ0 and gamma below
    for i in range(n + 2):
        gy[i] = 0.0
    gy[0] = w[1] * ktr * prol
    gy[1] = -w[1] * ktr
    g_ktr += w[1] * (prol - y[1])
    for i in range(2, n + 1):
        gy[i - 1] += w[i] * ktr
        gy[i] -= w[i] * ktr
        g_ktr += w[i] * (y[i - 1] - y[i])
    gy[n] += w[n + 1] * ktr
    gy[n + 1] = -w[n + 1] * ktr * kel
    if y[n + 1] > 1e-9 * circ0:
        gy[n + 1] += -g_fb * gamma * fb / c
    g_ktr += w[n + 1] * (y[n] - kel * y[n + 1])
    gp[0] += g_fb * gamma * fb / circ0
    gp[1] += -g_ktr * ktr / mtt
    gp[2] += g_fb * fb * log_ratio
    gp[3] += -w[n + 1] * ktr * y[n + 1]
    return w[0] * ktr * fb  # type: ignore[no-any-return]


@inline
def _friberg_init(cfg: Any, p: Any, y0: Any) -> None:
    n = cfg[0]
    y0[0] = np.log(p[3] * p[0])
    for i in range(1, n + 1):
        y0[i] = p[3] * p[0]
    y0[n + 1] = p[0]


@inline
def _friberg_init_vjp(cfg: Any, p: Any, g: Any, gp: Any) -> None:
    n = cfg[0]
    total = 0.0
    for i in range(1, n + 1):
        total += g[i]
    gp[0] += p[3] * total + g[n + 1] + g[0] / p[0]
    gp[3] += p[0] * total + g[0] / p[3]


@inline
def _indirect_rhs(on_production: bool, p: Any, y: Any, m: float, dy: Any) -> None:
    r0, kout = p[0], p[1]
    if on_production:
        dy[0] = kout * (r0 * m - y[0])
    else:
        dy[0] = kout * (r0 - m * y[0])


@inline
def _indirect_rhs_vjp(
    on_production: bool, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any
) -> float:
    r0, kout = p[0], p[1]
    if on_production:
        gy[0] = -kout * w[0]
        gp[0] += kout * m * w[0]
        gp[1] += (r0 * m - y[0]) * w[0]
        return kout * r0 * w[0]  # type: ignore[no-any-return]
    gy[0] = -kout * m * w[0]
    gp[0] += kout * w[0]
    gp[1] += (r0 - m * y[0]) * w[0]
    return -kout * y[0] * w[0]  # type: ignore[no-any-return]


@inline
def _lifespan_log_ratio(cfg: Any, p: Any, y: Any) -> Any:
    """``log(plt0/P)`` with ``P`` the circulating count, and whether ``P`` was floored."""
    n_p, n_l = cfg[0], cfg[1]
    plt = 0.0
    for j in range(n_p, n_p + n_l):
        plt += y[j]
    floored = plt < 1e-9 * p[0]
    return np.log(p[0] / _feedback_circ(plt, p[0])), plt, floored


@inline
def _lifespan_production(cfg: Any, p: Any, y: Any, m: float) -> float:
    """Precursor production ``kin·m·(plt0/P)^gamma``, ``kin = plt0/tplt``."""
    kin = p[0] / p[2]
    if p[3] == 0.0:  # no feedback: skip the sum and the transcendentals
        return kin * m  # type: ignore[no-any-return]
    log_ratio, _, _ = _lifespan_log_ratio(cfg, p, y)
    return kin * m * np.exp(p[3] * log_ratio)  # type: ignore[no-any-return]


@inline
def _lifespan_log_ratio_vjp(cfg: Any, p: Any, y: Any, g: float, gy: Any, gp: Any) -> None:
    """Cotangent ``g`` of ``log(plt0/P)`` at ``y``: add to ``gy`` (platelets) and ``gp``."""
    _, plt, floored = _lifespan_log_ratio(cfg, p, y)
    if floored:  # below the floor the ratio is a constant
        return
    gp[0] += g / p[0]
    for j in range(cfg[0], cfg[0] + cfg[1]):
        gy[j] -= g / plt


@inline
def _lifespan_production_vjp(
    cfg: Any, p: Any, y: Any, m: float, w0: float, gy: Any, gp: Any
) -> float:
    """Cotangent ``w0`` of the production: add to ``gy`` (platelets) and ``gp``; return dL/dm."""
    log_ratio, _, _ = _lifespan_log_ratio(cfg, p, y)
    return _lifespan_production_at_vjp(cfg, p, log_ratio, m, w0, gp, y, y, 0.0, gy, gy)


@inline
def _lifespan_production_at_vjp(
    cfg: Any,
    p: Any,
    log_ratio: float,
    m: float,
    w0: float,
    gp: Any,
    ya: Any,
    yb: Any,
    e: float,
    gya: Any,
    gyb: Any,
) -> float:
    """Production ``kin·m·exp(gamma·L)`` with ``L = (1 - e)·L(ya) + e·L(yb)``: its VJP.

    Adds the cotangent ``w0``'s share to ``gya``, ``gyb`` and ``gp``; returns dL/dm.
    """
    plt0, tplt, gamma = p[0], p[2], p[3]
    kin = plt0 / tplt
    fb = np.exp(gamma * log_ratio)
    g = w0 * kin * m * fb  # dL/d(log production)
    gp[0] += g / plt0
    gp[2] -= g / tplt
    gp[3] += g * log_ratio
    if gamma != 0.0:
        _lifespan_log_ratio_vjp(cfg, p, ya, g * gamma * (1.0 - e), gya, gp)
        if e != 0.0:
            _lifespan_log_ratio_vjp(cfg, p, yb, g * gamma * e, gyb, gp)
    return w0 * kin * fb  # type: ignore[no-any-return]


@inline
def _lifespan_chain(cfg: Any, p: Any, y: Any, dy: Any) -> None:
    """Write the ageing chain's part of d(state)/dt, ``J·y`` (all but the production)."""
    n_p, n_l = cfg[0], cfg[1]
    kp = n_p / p[1]
    kl = n_l / p[2]
    dy[0] = -kp * y[0]
    for i in range(1, n_p):
        dy[i] = kp * (y[i - 1] - y[i])
    dy[n_p] = kp * y[n_p - 1] - kl * y[n_p]
    for j in range(n_p + 1, n_p + n_l):
        dy[j] = kl * (y[j - 1] - y[j])


@inline
def _lifespan_chain_vjp(cfg: Any, p: Any, y: Any, w: Any, gy: Any, gp: Any) -> None:
    """Overwrite ``gy`` with ``w·J`` and add ``w·(dJ/dp)·y`` to ``gp``."""
    n_p, n_l = cfg[0], cfg[1]
    tp, tplt = p[1], p[2]
    kp = n_p / tp
    kl = n_l / tplt
    g_kp = -w[0] * y[0]
    g_kl = 0.0
    for k in range(n_p + n_l):
        gy[k] = 0.0
    gy[0] -= w[0] * kp
    for i in range(1, n_p):
        gy[i - 1] += w[i] * kp
        gy[i] -= w[i] * kp
        g_kp += w[i] * (y[i - 1] - y[i])
    gy[n_p - 1] += w[n_p] * kp
    gy[n_p] -= w[n_p] * kl
    g_kp += w[n_p] * y[n_p - 1]
    g_kl -= w[n_p] * y[n_p]
    for j in range(n_p + 1, n_p + n_l):
        gy[j - 1] += w[j] * kl
        gy[j] -= w[j] * kl
        g_kl += w[j] * (y[j - 1] - y[j])
    gp[1] += -g_kp * kp / tp
    gp[2] += -g_kl * kl / tplt


@inline
def _lifespan_rhs(cfg: Any, p: Any, y: Any, m: float, dy: Any) -> None:
    _lifespan_chain(cfg, p, y, dy)
    dy[0] += _lifespan_production(cfg, p, y, m)


@inline
def _lifespan_rhs_vjp(cfg: Any, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any) -> float:
    _lifespan_chain_vjp(cfg, p, y, w, gy, gp)
    return _lifespan_production_vjp(cfg, p, y, m, w[0], gy, gp)


@inline
def _lifespan_init(cfg: Any, p: Any, y0: Any) -> None:
    n_p, n_l = cfg[0], cfg[1]
    plt0, tp, tplt = p[0], p[1], p[2]
    for i in range(n_p):
        y0[i] = plt0 * tp / (tplt * n_p)
    for j in range(n_p, n_p + n_l):
        y0[j] = plt0 / n_l


@inline
def _lifespan_init_vjp(cfg: Any, p: Any, g: Any, gp: Any) -> None:
    n_p, n_l = cfg[0], cfg[1]
    plt0, tp, tplt = p[0], p[1], p[2]
    g_prec = 0.0
    for i in range(n_p):
        g_prec += g[i]
    g_plt = 0.0
    for j in range(n_p, n_p + n_l):
        g_plt += g[j]
    gp[0] += g_prec * tp / (tplt * n_p) + g_plt / n_l
    gp[1] += g_prec * plt0 / (tplt * n_p)
    gp[2] += -g_prec * plt0 * tp / (tplt * tplt * n_p)


@inline
def _lifespan_rate(cfg: Any, p: Any, i: int) -> float:
    """Outflow rate of compartment ``i`` of the lifespan chain."""
    return cfg[0] / p[1] if i < cfg[0] else cfg[1] / p[2]  # type: ignore[no-any-return]


@inline
def _lifespan_solve(cfg: Any, p: Any, c: float, r: Any, x: Any) -> None:
    """Solve ``(I - c·J) x = r``, ``J`` the chain's Jacobian (lower bidiagonal): forward sweep.

    Every coefficient is non-negative at any ``c·k``, so a non-negative ``r`` gives a
    non-negative ``x``.
    """
    previous = 0.0  # c·k_{i-1}·x_{i-1}, the inflow from the compartment before
    for i in range(cfg[0] + cfg[1]):
        ck = c * _lifespan_rate(cfg, p, i)
        x[i] = (r[i] + previous) / (1.0 + ck)
        previous = ck * x[i]


@inline
def _lifespan_solve_t(cfg: Any, p: Any, c: float, r: Any, x: Any) -> None:
    """Solve ``(I - c·J)^T x = r``: the adjoint of :func:`_lifespan_solve`, backward sweep."""
    following = 0.0  # x_{i+1}, weighted below by compartment i's own outflow
    for i in range(cfg[0] + cfg[1] - 1, -1, -1):
        ck = c * _lifespan_rate(cfg, p, i)
        x[i] = (r[i] + ck * following) / (1.0 + ck)
        following = x[i]


@inline
def _tpo_derived(n: int, p: Any) -> Any:
    # ktr, kplt, q = 1 - pool, baseline transit content, baseline mass, baseline occupancy.
    circ0, mtt, tplt, tpo0, ec50 = p[0], p[1], p[2], p[3], p[4]
    ktr = (n + 1) / mtt
    kplt = 1.0 / tplt
    q = 1.0 - p[7]
    base = kplt * circ0 / (q * ktr)
    mass0 = circ0 / q + (n + 1) * base
    s0 = tpo0 / ec50
    return ktr, kplt, q, base, mass0, s0 / (1.0 + s0)


@inline
def _tpo_rhs(cfg: Any, p: Any, y: Any, m: float, dy: Any) -> None:
    n = cfg[0]
    ec50, ktpo, frac, tpo0 = p[4], p[5], p[6], p[3]
    ktr, kplt, q, _, mass0, occ0 = _tpo_derived(n, p)
    mass = y[n + 2] / q
    for i in range(1, n + 2):
        mass += y[i]
    dy[0] = ktpo * tpo0 - ktpo * y[0] * ((1.0 - frac) + frac * mass / mass0)
    sig = y[0] / ec50 + m - 1.0
    dy[1] = ktr * y[1] * (sig / (1.0 + sig) / occ0 - 1.0)
    for i in range(2, n + 2):
        dy[i] = ktr * (y[i - 1] - y[i])
    dy[n + 2] = q * ktr * y[n + 1] - kplt * y[n + 2]


@inline
def _tpo_rhs_vjp(cfg: Any, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any) -> float:
    n = cfg[0]
    circ0, mtt, tplt, tpo0, ec50, ktpo, frac = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    ktr, kplt, q, _, mass0, occ0 = _tpo_derived(n, p)
    tpo, prol, circ = y[0], y[1], y[n + 2]
    mass = circ / q
    for i in range(1, n + 2):
        mass += y[i]
    a = (1.0 - frac) + frac * mass / mass0
    sig = tpo / ec50 + m - 1.0
    occ = sig / (1.0 + sig)
    r = occ / occ0
    # TPO equation.
    g_mass = -w[0] * ktpo * tpo * frac / mass0
    g_mass0 = w[0] * ktpo * tpo * frac * mass / (mass0 * mass0)
    gy[0] = -w[0] * ktpo * a
    gp[3] += w[0] * ktpo
    gp[5] += w[0] * (tpo0 - tpo * a)
    gp[6] += -w[0] * ktpo * tpo * (mass / mass0 - 1.0)
    g_q = -g_mass * circ / (q * q)
    # Proliferation: through occupancy of TPO + agonist, relative to baseline occupancy.
    g_r = w[1] * ktr * prol
    g_sig = g_r / ((1.0 + sig) * (1.0 + sig) * occ0)
    g_occ0 = -g_r * occ / (occ0 * occ0)
    s0 = tpo0 / ec50
    g_s0 = g_occ0 / ((1.0 + s0) * (1.0 + s0))
    gy[0] += g_sig / ec50
    gp[3] += g_s0 / ec50
    gp[4] += -g_sig * tpo / (ec50 * ec50) - g_s0 * tpo0 / (ec50 * ec50)
    g_ktr = w[1] * prol * (r - 1.0)
    gy[1] = w[1] * ktr * (r - 1.0) + g_mass
    for i in range(2, n + 2):
        gy[i] = g_mass
    for i in range(2, n + 2):
        gy[i - 1] += w[i] * ktr
        gy[i] -= w[i] * ktr
        g_ktr += w[i] * (y[i - 1] - y[i])
    # Circulation.
    gy[n + 1] += w[n + 2] * q * ktr
    gy[n + 2] = -w[n + 2] * kplt + g_mass / q
    g_q += w[n + 2] * ktr * y[n + 1]
    g_ktr += w[n + 2] * q * y[n + 1]
    g_kplt = -w[n + 2] * circ
    # Baseline mass, mass0 = circ0/q + (n + 1)*kplt*circ0/(q*ktr).
    gp[0] += g_mass0 * (1.0 / q + (n + 1) * kplt / (q * ktr))
    g_q += -g_mass0 * mass0 / q
    g_kplt += g_mass0 * (n + 1) * circ0 / (q * ktr)
    g_ktr += -g_mass0 * (n + 1) * kplt * circ0 / (q * ktr * ktr)
    gp[1] += -g_ktr * ktr / mtt
    gp[2] += -g_kplt * kplt / tplt
    gp[7] += -g_q
    return g_sig  # type: ignore[no-any-return]


@inline
def _tpo_init(cfg: Any, p: Any, y0: Any) -> None:
    n = cfg[0]
    base = _tpo_derived(n, p)[3]
    y0[0] = p[3]
    for i in range(1, n + 2):
        y0[i] = base
    y0[n + 2] = p[0]


@inline
def _tpo_init_vjp(cfg: Any, p: Any, g: Any, gp: Any) -> None:
    n = cfg[0]
    q, base = 1.0 - p[7], _tpo_derived(n, p)[3]
    g_base = 0.0
    for i in range(1, n + 2):
        g_base += g[i]
    gp[3] += g[0]
    gp[0] += g[n + 2] + g_base * base / p[0]
    gp[1] += g_base * base / p[1]  # base is proportional to mtt through 1/ktr
    gp[2] += -g_base * base / p[2]
    gp[7] += g_base * base / q


@inline
def free_concentration(total: float, target: float, kd: float) -> Any:
    """Free drug under quasi-equilibrium binding, and its partial derivatives.

    Solves ``total = free + target*free/(kd + free)`` for ``free`` (all in one
    concentration unit). Returns ``(free, d/dtotal, d/dtarget, d/dkd)``; written with
    ``b = total - target - kd`` and ``d = sqrt(b^2 + 4 kd total)`` in the form free of
    cancellation for either sign of ``b``.
    """
    b = total - target - kd
    d = np.sqrt(b * b + 4.0 * kd * total)
    if b >= 0.0:
        free = 0.5 * (b + d)
        half_slope = 0.5 * (d + b) / d if d > 0.0 else 0.5
    else:
        free = 2.0 * kd * total / (d - b)
        half_slope = 2.0 * kd * total / ((d - b) * d)
    # half_slope = (1 + b/d)/2 = dfree/db.
    if d > 0.0:
        return free, half_slope + kd / d, -half_slope, -half_slope + total / d
    return free, 1.0, 0.0, 0.0


@inline
def _tmdd_rhs(cfg: Any, p: Any, y: Any, m: float, dy: Any) -> None:
    n = cfg[0]
    ka, v, kel, kint, kd, rdens, emax, ec50, circ0, mtt, gamma = (
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]
    )  # fmt: skip
    ktr = (n + 1) / mtt
    circ = y[n + 3]
    free = free_concentration(y[1] / v, rdens * circ, kd)[0]
    fb = (circ0 / _feedback_circ(circ, circ0)) ** gamma
    stim = 1.0 + emax * free / (ec50 + free)
    dy[0] = -ka * y[0]
    dy[1] = ka * y[0] - kint * y[1] - v * (kel - kint) * free
    dy[2] = ktr * y[2] * (m * stim * fb - 1.0)
    for i in range(3, n + 3):
        dy[i] = ktr * (y[i - 1] - y[i])
    dy[n + 3] = ktr * (y[n + 2] - circ)


@inline
def _tmdd_rhs_vjp(cfg: Any, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any) -> float:
    n = cfg[0]
    ka, v, kel, kint, kd, rdens, emax, ec50, circ0, mtt, gamma = (
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]
    )  # fmt: skip
    ktr = (n + 1) / mtt
    circ = y[n + 3]
    total = y[1] / v
    free, d_total, d_target, d_kd = free_concentration(total, rdens * circ, kd)
    c = _feedback_circ(circ, circ0)
    fb = (circ0 / c) ** gamma
    stim = 1.0 + emax * free / (ec50 + free)
    prol = y[2]
    for i in range(n + 4):
        gy[i] = 0.0
    # Depot and amount in the body.
    gy[0] = -w[0] * ka + w[1] * ka
    gp[0] += (w[1] - w[0]) * y[0]
    gy[1] = -w[1] * kint
    g_free = -w[1] * v * (kel - kint)
    gp[1] += -w[1] * (kel - kint) * free
    gp[2] += -w[1] * v * free
    gp[3] += w[1] * (v * free - y[1])
    # Proliferation: drug stimulation times feedback.
    g_stim = w[2] * ktr * prol * m * fb
    g_fb = w[2] * ktr * prol * m * stim
    g_ktr = w[2] * prol * (m * stim * fb - 1.0)
    gy[2] = w[2] * ktr * (m * stim * fb - 1.0)
    g_free += g_stim * emax * ec50 / ((ec50 + free) * (ec50 + free))
    gp[6] += g_stim * free / (ec50 + free)
    gp[7] += -g_stim * emax * free / ((ec50 + free) * (ec50 + free))
    if circ > 1e-9 * circ0:
        gy[n + 3] += -g_fb * gamma * fb / c
    gp[8] += g_fb * gamma * fb / circ0
    gp[10] += g_fb * fb * np.log(circ0 / c)
    # Free drug depends on total concentration, target (on platelets) and kd.
    gy[1] += g_free * d_total / v
    gp[1] += -g_free * d_total * total / v
    gy[n + 3] += g_free * d_target * rdens
    gp[5] += g_free * d_target * circ
    gp[4] += g_free * d_kd
    # Transit chain and circulation.
    for i in range(3, n + 3):
        gy[i - 1] += w[i] * ktr
        gy[i] -= w[i] * ktr
        g_ktr += w[i] * (y[i - 1] - y[i])
    gy[n + 2] += w[n + 3] * ktr
    gy[n + 3] -= w[n + 3] * ktr
    g_ktr += w[n + 3] * (y[n + 2] - circ)
    gp[9] += -g_ktr * ktr / mtt
    return w[2] * ktr * prol * stim * fb  # type: ignore[no-any-return]


@inline
def _tmdd_init(cfg: Any, p: Any, y0: Any) -> None:
    n = cfg[0]
    y0[0] = 0.0
    y0[1] = 0.0
    for i in range(2, n + 4):
        y0[i] = p[8]


@inline
def _tmdd_init_vjp(cfg: Any, p: Any, g: Any, gp: Any) -> None:
    n = cfg[0]
    for i in range(2, n + 4):
        gp[8] += g[i]


# PDMDD on the lifespan chain (Wang 2010): states are the chain's, then depot, central and
# peripheral drug amounts; parameters are the lifespan's (0-3), then the drug's (4-13), so
# the chain's helpers read the same rows. Free drug stimulates production through the
# chain's drive (m times the stimulation), so the chain code is shared unchanged.


@inline
def _pdmdd_point(cfg: Any, ya: Any, yb: Any, e: float) -> Any:
    """Depot, central, peripheral amounts and platelet sum at ``(1 - e)·ya + e·yb``."""
    d0 = cfg[0] + cfg[1]
    plt_a = 0.0
    plt_b = 0.0
    for j in range(cfg[0], d0):
        plt_a += ya[j]
        plt_b += yb[j]
    return (
        (1.0 - e) * ya[d0] + e * yb[d0],
        (1.0 - e) * ya[d0 + 1] + e * yb[d0 + 1],
        (1.0 - e) * ya[d0 + 2] + e * yb[d0 + 2],
        (1.0 - e) * plt_a + e * plt_b,
    )


@inline
def _pdmdd_free(p: Any, amount: float, plt: float) -> Any:
    """Free concentration and its partials in (amount, plt, v, kd, rdens).

    Amount and platelets are floored at 0: an extrapolated SDIRK2 stage can dip below.
    """
    v, kd, rdens = p[5], p[8], p[9]
    total = max(amount, 0.0) / v
    circ = max(plt, 0.0)
    free, d_total, d_target, d_kd = free_concentration(total, rdens * circ, kd)
    d_amount = d_total / v if amount > 0.0 else 0.0
    d_plt = d_target * rdens if plt > 0.0 else 0.0
    return free, d_amount, d_plt, -d_total * total / v, d_kd, d_target * circ


@inline
def _pdmdd_central_slope(p: Any, depot: float, amount: float, peri: float, free: float) -> float:
    ka, v, kel, kint, kcp, kpc = p[4], p[5], p[6], p[7], p[12], p[13]
    return ka * depot - kint * amount - v * (kel - kint + kcp) * free + kpc * peri  # type: ignore[no-any-return]


@inline
def _pdmdd_drug(
    p: Any, depot: float, amount: float, peri: float, plt: float, dy: Any, d0: int
) -> float:
    """Write the drug states' derivatives into ``dy[d0:d0 + 3]``; return the stimulation."""
    ka, v, emax, ec50, kcp, kpc = p[4], p[5], p[10], p[11], p[12], p[13]
    free = _pdmdd_free(p, amount, plt)[0]
    dy[d0] = -ka * depot
    dy[d0 + 1] = _pdmdd_central_slope(p, depot, amount, peri, free)
    dy[d0 + 2] = kcp * v * free - kpc * peri
    return 1.0 + emax * free / (ec50 + free)  # type: ignore[no-any-return]


@inline
def _pdmdd_stimulation(p: Any, amount: float, plt: float) -> float:
    free = _pdmdd_free(p, amount, plt)[0]
    return 1.0 + p[10] * free / (p[11] + free)  # type: ignore[no-any-return]


@inline
def _pdmdd_drug_vjp(
    p: Any,
    depot: float,
    amount: float,
    peri: float,
    plt: float,
    w_depot: float,
    w_amount: float,
    w_peri: float,
    g_stim: float,
    gp: Any,
) -> Any:
    """Cotangents of the drug derivatives and of the stimulation at one point.

    Adds the parameters' share to ``gp``; returns dL/d(depot, amount, peri, plt).
    """
    ka, v, kel, kint, emax, ec50, kcp, kpc = p[4], p[5], p[6], p[7], p[10], p[11], p[12], p[13]
    free, f_amount, f_plt, f_v, f_kd, f_rdens = _pdmdd_free(p, amount, plt)
    k_free = kel - kint + kcp
    g_depot = (w_amount - w_depot) * ka
    gp[4] += (w_amount - w_depot) * depot
    g_amount = -kint * w_amount
    g_peri = kpc * (w_amount - w_peri)
    g_free = -v * k_free * w_amount + kcp * v * w_peri
    gp[5] += -k_free * free * w_amount + kcp * free * w_peri
    gp[6] += -v * free * w_amount
    gp[7] += (v * free - amount) * w_amount
    gp[12] += v * free * (w_peri - w_amount)
    gp[13] += peri * (w_amount - w_peri)
    denom = (ec50 + free) * (ec50 + free)
    g_free += g_stim * emax * ec50 / denom
    gp[10] += g_stim * free / (ec50 + free)
    gp[11] += -g_stim * emax * free / denom
    gp[5] += g_free * f_v
    gp[8] += g_free * f_kd
    gp[9] += g_free * f_rdens
    return g_depot, g_amount + g_free * f_amount, g_peri, g_free * f_plt


@inline
def _pdmdd_add(cfg: Any, g: Any, share: float, gy: Any) -> None:
    d0 = cfg[0] + cfg[1]
    gy[d0] += share * g[0]
    gy[d0 + 1] += share * g[1]
    gy[d0 + 2] += share * g[2]
    for j in range(cfg[0], d0):
        gy[j] += share * g[3]


@inline
def _pdmdd_scatter(cfg: Any, g: Any, e: float, gya: Any, gyb: Any) -> None:
    """Add the cotangents ``g`` of :func:`_pdmdd_point`'s outputs to ``gya`` and ``gyb``."""
    _pdmdd_add(cfg, g, 1.0 - e, gya)
    if e != 0.0:
        _pdmdd_add(cfg, g, e, gyb)


@inline
def _pdmdd_rhs(cfg: Any, p: Any, y: Any, m: float, dy: Any) -> None:
    d0 = cfg[0] + cfg[1]
    depot, amount, peri, plt = _pdmdd_point(cfg, y, y, 0.0)
    stim = _pdmdd_drug(p, depot, amount, peri, plt, dy, d0)
    _lifespan_chain(cfg, p, y, dy)
    dy[0] += _lifespan_production(cfg, p, y, m * stim)


@inline
def _pdmdd_rhs_vjp(cfg: Any, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any) -> float:
    d0 = cfg[0] + cfg[1]
    depot, amount, peri, plt = _pdmdd_point(cfg, y, y, 0.0)
    stim = _pdmdd_stimulation(p, amount, plt)
    _lifespan_chain_vjp(cfg, p, y, w, gy, gp)
    for i in range(d0, d0 + 3):
        gy[i] = 0.0
    g_drive = _lifespan_production_vjp(cfg, p, y, m * stim, w[0], gy, gp)
    g = _pdmdd_drug_vjp(p, depot, amount, peri, plt, w[d0], w[d0 + 1], w[d0 + 2], g_drive * m, gp)
    _pdmdd_scatter(cfg, g, 0.0, gy, gy)
    return g_drive * stim


@inline
def _pdmdd_init(cfg: Any, p: Any, y0: Any) -> None:
    _lifespan_init(cfg, p, y0)
    d0 = cfg[0] + cfg[1]
    for i in range(d0, d0 + 3):
        y0[i] = 0.0


@inline
def _pdmdd_rate(cfg: Any, p: Any) -> float:
    """Fastest rate of the chain and the drug (``kel + kcp`` bounds free-drug loss)."""
    chain = max(cfg[0] / p[1], cfg[1] / p[2])
    return max(chain, p[4], p[6] + p[12], p[7], p[13])  # type: ignore[no-any-return]


#: Extrapolation of the drug states' SDIRK2 stage 2, relative to the chain's ``1/gamma``:
#: the drug rows have no implicit part, so their substep is ``y + h((1 - gamma) b1 +
#: gamma b2)``, second order only if ``b2`` is taken half a step ahead,
#: ``y + (Y1 - y)/(2 gamma^2)`` (``Y1 - y = gamma h f``).
PDMDD_DRUG_LEAD = 0.5 / SDIRK_GAMMA


@inline
def _platelet_slope(cfg: Any, p: Any, y: Any) -> float:
    """d(platelet sum)/dt of the lifespan chain: inflow from precursors minus ageing out."""
    d0 = cfg[0] + cfg[1]
    return cfg[0] / p[1] * y[cfg[0] - 1] - cfg[1] / p[2] * y[d0 - 1]  # type: ignore[no-any-return]


@inline
def _pdmdd_stimulation_point(cfg: Any, p: Any, ya: Any, yb: Any, e: float, c: float) -> Any:
    """Central amount and platelets at which a stage's production takes the stimulation.

    Stage 2 (``e > 0``): extrapolated with ``e``, to the substep's end. Stage 1 (``e = 0``)
    sits at ``t + c``: one Euler step of ``c`` from ``ya``. Taking the start's values there
    made the scheme first order (errors 1.6e-3 at 4 h steps, 1.2e-3 at 3 h).
    """
    _, amount, _, plt = _pdmdd_point(cfg, ya, yb, e)
    if e != 0.0:
        return amount, plt
    depot, _, peri, _ = _pdmdd_point(cfg, ya, ya, 0.0)
    slope = _pdmdd_central_slope(p, depot, amount, peri, _pdmdd_free(p, amount, plt)[0])
    return amount + c * slope, plt + c * _platelet_slope(cfg, p, ya)


@inline
def _pdmdd_implicit_drive(
    cfg: Any, p: Any, ya: Any, yb: Any, e: float, m: float, c: float, b: Any
) -> None:
    d0 = cfg[0] + cfg[1]
    for i in range(b.shape[0]):
        b[i] = 0.0
    amount, plt = _pdmdd_stimulation_point(cfg, p, ya, yb, e, c)
    stim = _pdmdd_stimulation(p, amount, plt)
    la, _, _ = _lifespan_log_ratio(cfg, p, ya)
    lb, _, _ = _lifespan_log_ratio(cfg, p, yb)
    b[0] = p[0] / p[2] * m * stim * np.exp(p[3] * ((1.0 - e) * la + e * lb))
    depot, amount, peri, plt = _pdmdd_point(cfg, ya, yb, e * PDMDD_DRUG_LEAD)
    _pdmdd_drug(p, depot, amount, peri, plt, b, d0)


@inline
def _pdmdd_implicit_drive_vjp(
    cfg: Any,
    p: Any,
    ya: Any,
    yb: Any,
    e: float,
    m: float,
    c: float,
    w: Any,
    gya: Any,
    gyb: Any,
    gp: Any,
) -> float:
    n_p, d0 = cfg[0], cfg[0] + cfg[1]
    amount_s, plt_s = _pdmdd_stimulation_point(cfg, p, ya, yb, e, c)
    stim = _pdmdd_stimulation(p, amount_s, plt_s)
    la, _, _ = _lifespan_log_ratio(cfg, p, ya)
    lb, _, _ = _lifespan_log_ratio(cfg, p, yb)
    log_ratio = (1.0 - e) * la + e * lb
    g_drive = _lifespan_production_at_vjp(
        cfg, p, log_ratio, m * stim, w[0], gp, ya, yb, e, gya, gyb
    )
    g_s = _pdmdd_drug_vjp(p, 0.0, amount_s, 0.0, plt_s, 0.0, 0.0, 0.0, g_drive * m, gp)
    lead = e * PDMDD_DRUG_LEAD
    depot, amount, peri, plt = _pdmdd_point(cfg, ya, yb, lead)
    if e != 0.0:
        _pdmdd_scatter(cfg, g_s, e, gya, gyb)
        g = _pdmdd_drug_vjp(p, depot, amount, peri, plt, w[d0], w[d0 + 1], w[d0 + 2], 0.0, gp)
        _pdmdd_scatter(cfg, g, lead, gya, gyb)
        return g_drive * stim
    # Stage 1: the stimulation point is ya plus c times the central and platelet slopes.
    g = _pdmdd_drug_vjp(
        p, depot, amount, peri, plt, w[d0], w[d0 + 1] + c * g_s[1], w[d0 + 2], 0.0, gp
    )
    _pdmdd_scatter(cfg, (g[0], g[1] + g_s[1], g[2], g[3] + g_s[3]), 0.0, gya, gya)
    g_slope = c * g_s[3]
    kp, kl = n_p / p[1], cfg[1] / p[2]
    gya[n_p - 1] += g_slope * kp
    gya[d0 - 1] -= g_slope * kl
    gp[1] -= g_slope * ya[n_p - 1] * kp / p[1]
    gp[2] += g_slope * ya[d0 - 1] * kl / p[2]
    return g_drive * stim


# QSS-TMDD pharmacokinetics on the lifespan chain: states are the chain's, then the two
# absorption sites, the central amount (free plus bound drug) and the total target
# concentration; parameters are the lifespan's (0-3), then the drug's (4-13). Free drug
# stimulates production through the chain's drive, so the chain code is shared unchanged,
# and the target is not platelet-borne, so the drug rows do not read the chain.


@inline
def _qss_point(cfg: Any, ya: Any, yb: Any, e: float) -> Any:
    """Site 1, site 2, central amount and total target at ``(1 - e)·ya + e·yb``."""
    d0 = cfg[0] + cfg[1]
    return (
        (1.0 - e) * ya[d0] + e * yb[d0],
        (1.0 - e) * ya[d0 + 1] + e * yb[d0 + 1],
        (1.0 - e) * ya[d0 + 2] + e * yb[d0 + 2],
        (1.0 - e) * ya[d0 + 3] + e * yb[d0 + 3],
    )


@inline
def _qss_drug(
    p: Any, site1: float, site2: float, amount: float, target: float, dy: Any, d0: int
) -> float:
    """Write the drug states' derivatives into ``dy[d0:d0 + 4]``; return the stimulation.

    Amount and target are floored at 0: an extrapolated SDIRK2 stage can dip below.
    """
    ka1, k12, ka2, v, cl, kint, kss, kdeg, rtot0, slope = (
        p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13]
    )  # fmt: skip
    total = max(amount, 0.0) / v
    free = free_concentration(total, max(target, 0.0), kss)[0]
    complex_ = total - free
    dy[d0] = -(ka1 + k12) * site1
    dy[d0 + 1] = k12 * site1 - ka2 * site2
    dy[d0 + 2] = ka1 * site1 + ka2 * site2 - cl * free - kint * v * complex_
    dy[d0 + 3] = kdeg * (rtot0 - target) - (kint - kdeg) * complex_
    return 1.0 + slope * free  # type: ignore[no-any-return]


@inline
def _qss_drug_vjp(
    p: Any,
    site1: float,
    site2: float,
    amount: float,
    target: float,
    w1: float,
    w2: float,
    wa: float,
    wr: float,
    g_stim: float,
    gp: Any,
) -> Any:
    """Cotangents of :func:`_qss_drug`'s derivatives (``w``) and stimulation (``g_stim``).

    Adds the parameters' share to ``gp``; returns dL/d(site1, site2, amount, target).
    """
    ka1, k12, ka2, v, cl, kint, kss, kdeg, rtot0, slope = (
        p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13]
    )  # fmt: skip
    total = max(amount, 0.0) / v
    free, f_total, f_target, f_kss = free_concentration(total, max(target, 0.0), kss)
    complex_ = total - free
    g_site1 = -(ka1 + k12) * w1 + k12 * w2 + ka1 * wa
    g_site2 = ka2 * (wa - w2)
    gp[4] += (wa - w1) * site1
    gp[5] += (w2 - w1) * site1
    gp[6] += (wa - w2) * site2
    # d central = ... - cl*free - kint*v*(total - free); d target = ... - (kint - kdeg)*complex
    g_complex = -kint * v * wa - (kint - kdeg) * wr
    g_free = -cl * wa - g_complex + slope * g_stim
    g_total = g_complex
    gp[7] += -kint * complex_ * wa
    gp[8] += -free * wa
    gp[9] += -v * complex_ * wa - complex_ * wr
    gp[11] += (rtot0 - target + complex_) * wr
    gp[12] += kdeg * wr
    gp[13] += free * g_stim
    gp[10] += g_free * f_kss
    g_total += g_free * f_total
    gp[7] += -g_total * total / v
    g_amount = g_total / v if amount > 0.0 else 0.0
    g_target = -kdeg * wr + (g_free * f_target if target > 0.0 else 0.0)
    return g_site1, g_site2, g_amount, g_target


@inline
def _qss_scatter(cfg: Any, g: Any, e: float, gya: Any, gyb: Any) -> None:
    """Add the cotangents ``g`` of :func:`_qss_point`'s outputs to ``gya`` and ``gyb``."""
    d0 = cfg[0] + cfg[1]
    for i in range(4):
        gya[d0 + i] += (1.0 - e) * g[i]
    if e != 0.0:
        for i in range(4):
            gyb[d0 + i] += e * g[i]


@inline
def _qss_rhs(cfg: Any, p: Any, y: Any, m: float, dy: Any) -> None:
    d0 = cfg[0] + cfg[1]
    stim = _qss_drug(p, y[d0], y[d0 + 1], y[d0 + 2], y[d0 + 3], dy, d0)
    _lifespan_chain(cfg, p, y, dy)
    dy[0] += _lifespan_production(cfg, p, y, m * stim)


@inline
def _qss_rhs_vjp(cfg: Any, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any) -> float:
    d0 = cfg[0] + cfg[1]
    site1, site2, amount, target = _qss_point(cfg, y, y, 0.0)
    stim = 1.0 + p[13] * free_concentration(max(amount, 0.0) / p[7], max(target, 0.0), p[10])[0]
    _lifespan_chain_vjp(cfg, p, y, w, gy, gp)
    for i in range(d0, d0 + 4):
        gy[i] = 0.0
    g_drive = _lifespan_production_vjp(cfg, p, y, m * stim, w[0], gy, gp)
    g = _qss_drug_vjp(
        p, site1, site2, amount, target, w[d0], w[d0 + 1], w[d0 + 2], w[d0 + 3], g_drive * m, gp
    )
    _qss_scatter(cfg, g, 0.0, gy, gy)
    return g_drive * stim  # type: ignore[no-any-return]


@inline
def _qss_init(cfg: Any, p: Any, y0: Any) -> None:
    _lifespan_init(cfg, p, y0)
    d0 = cfg[0] + cfg[1]
    y0[d0] = 0.0
    y0[d0 + 1] = 0.0
    y0[d0 + 2] = 0.0
    y0[d0 + 3] = p[12]  # the target at its own steady state, rtot0


@inline
def _qss_init_vjp(cfg: Any, p: Any, g: Any, gp: Any) -> None:
    _lifespan_init_vjp(cfg, p, g, gp)
    gp[12] += g[cfg[0] + cfg[1] + 3]


@inline
def _qss_rate(cfg: Any, p: Any) -> float:
    """Fastest rate of the chain and the drug.

    The central amount is free plus bound drug, so its loss rate is at most the larger of
    ``cl/v`` and ``kint`` however much target there is (no stiffness from ``rtot0/kss``). The
    drug's rates count double: at ``k·h = 1`` the drug just after an oral dose erred 2e-3
    against solve_ivp, at ``k·h = 0.5`` 2e-4 (tests/pd).
    """
    chain = max(cfg[0] / p[1], cfg[1] / p[2])
    drug = max(p[4] + p[5], p[6], p[8] / p[7], p[9], p[11])
    return max(chain, 2.0 * drug)  # type: ignore[no-any-return]


@inline
def _qss_stimulation_point(cfg: Any, p: Any, ya: Any, yb: Any, e: float, c: float) -> Any:
    """Central amount and target at which an SDIRK2 stage's production takes the stimulation.

    As :func:`_pdmdd_stimulation_point`: stage 2 extrapolated with ``e``, stage 1 one Euler
    step of ``c`` from ``ya``.
    """
    site1, site2, amount, target = _qss_point(cfg, ya, yb, e)
    if e != 0.0:
        return amount, target
    slope = np.empty(4)
    _qss_drug(p, site1, site2, amount, target, slope, 0)
    return amount + c * slope[2], target + c * slope[3]


@inline
def _qss_implicit_drive(
    cfg: Any, p: Any, ya: Any, yb: Any, e: float, m: float, c: float, b: Any
) -> None:
    d0 = cfg[0] + cfg[1]
    for i in range(b.shape[0]):
        b[i] = 0.0
    amount, target = _qss_stimulation_point(cfg, p, ya, yb, e, c)
    stim = 1.0 + p[13] * free_concentration(max(amount, 0.0) / p[7], max(target, 0.0), p[10])[0]
    la, _, _ = _lifespan_log_ratio(cfg, p, ya)
    lb, _, _ = _lifespan_log_ratio(cfg, p, yb)
    b[0] = p[0] / p[2] * m * stim * np.exp(p[3] * ((1.0 - e) * la + e * lb))
    site1, site2, amount, target = _qss_point(cfg, ya, yb, e * PDMDD_DRUG_LEAD)
    _qss_drug(p, site1, site2, amount, target, b, d0)


@inline
def _qss_implicit_drive_vjp(
    cfg: Any,
    p: Any,
    ya: Any,
    yb: Any,
    e: float,
    m: float,
    c: float,
    w: Any,
    gya: Any,
    gyb: Any,
    gp: Any,
) -> float:
    d0 = cfg[0] + cfg[1]
    amount_s, target_s = _qss_stimulation_point(cfg, p, ya, yb, e, c)
    stim = 1.0 + p[13] * free_concentration(max(amount_s, 0.0) / p[7], max(target_s, 0.0), p[10])[0]
    la, _, _ = _lifespan_log_ratio(cfg, p, ya)
    lb, _, _ = _lifespan_log_ratio(cfg, p, yb)
    log_ratio = (1.0 - e) * la + e * lb
    g_drive = _lifespan_production_at_vjp(
        cfg, p, log_ratio, m * stim, w[0], gp, ya, yb, e, gya, gyb
    )
    g_s = _qss_drug_vjp(p, 0.0, 0.0, amount_s, target_s, 0.0, 0.0, 0.0, 0.0, g_drive * m, gp)
    lead = e * PDMDD_DRUG_LEAD
    site1, site2, amount, target = _qss_point(cfg, ya, yb, lead)
    wa, wr = w[d0 + 2], w[d0 + 3]
    if e != 0.0:
        _qss_scatter(cfg, g_s, e, gya, gyb)
    else:  # stage 1: the stimulation point is ya plus c times the drug slopes there
        wa += c * g_s[2]
        wr += c * g_s[3]
        _qss_scatter(cfg, g_s, 0.0, gya, gya)
    g = _qss_drug_vjp(p, site1, site2, amount, target, w[d0], w[d0 + 1], wa, wr, 0.0, gp)
    _qss_scatter(cfg, g, lead, gya, gyb)
    return g_drive * stim  # type: ignore[no-any-return]


@inline
def rhs(kernel_id: int, cfg: Any, p: Any, y: Any, m: float, dy: Any) -> None:
    """Dispatch to the right-hand side of structure ``kernel_id``."""
    if kernel_id == FRIBERG:
        _friberg_rhs(cfg, p, y, m, dy)
    elif kernel_id == LIFESPAN:
        _lifespan_rhs(cfg, p, y, m, dy)
    elif kernel_id == ENDOGENOUS_TPO:
        _tpo_rhs(cfg, p, y, m, dy)
    elif kernel_id == TMDD_FRIBERG:
        _tmdd_rhs(cfg, p, y, m, dy)
    elif kernel_id == PDMDD_LIFESPAN:
        _pdmdd_rhs(cfg, p, y, m, dy)
    elif kernel_id == QSS_TMDD_LIFESPAN:
        _qss_rhs(cfg, p, y, m, dy)
    else:
        _indirect_rhs(kernel_id == INDIRECT_PRODUCTION, p, y, m, dy)


@inline
def rhs_vjp(kernel_id: int, cfg: Any, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any) -> float:
    """Dispatch to the vector-Jacobian product of structure ``kernel_id``."""
    if kernel_id == FRIBERG:
        return _friberg_rhs_vjp(cfg, p, y, m, w, gy, gp)
    if kernel_id == LIFESPAN:
        return _lifespan_rhs_vjp(cfg, p, y, m, w, gy, gp)
    if kernel_id == ENDOGENOUS_TPO:
        return _tpo_rhs_vjp(cfg, p, y, m, w, gy, gp)
    if kernel_id == TMDD_FRIBERG:
        return _tmdd_rhs_vjp(cfg, p, y, m, w, gy, gp)
    if kernel_id == PDMDD_LIFESPAN:
        return _pdmdd_rhs_vjp(cfg, p, y, m, w, gy, gp)
    if kernel_id == QSS_TMDD_LIFESPAN:
        return _qss_rhs_vjp(cfg, p, y, m, w, gy, gp)
    return _indirect_rhs_vjp(kernel_id == INDIRECT_PRODUCTION, p, y, m, w, gy, gp)


@inline
def init(kernel_id: int, cfg: Any, p: Any, y0: Any) -> None:
    """Dispatch to the closed-form steady state of structure ``kernel_id``."""
    if kernel_id == FRIBERG:
        _friberg_init(cfg, p, y0)
    elif kernel_id == LIFESPAN:
        _lifespan_init(cfg, p, y0)
    elif kernel_id == ENDOGENOUS_TPO:
        _tpo_init(cfg, p, y0)
    elif kernel_id == TMDD_FRIBERG:
        _tmdd_init(cfg, p, y0)
    elif kernel_id == PDMDD_LIFESPAN:
        _pdmdd_init(cfg, p, y0)
    elif kernel_id == QSS_TMDD_LIFESPAN:
        _qss_init(cfg, p, y0)
    else:
        y0[0] = p[0]


@inline
def init_vjp(kernel_id: int, cfg: Any, p: Any, g: Any, gp: Any) -> None:
    """Dispatch to the vector-Jacobian product of the steady state of ``kernel_id``."""
    if kernel_id == FRIBERG:
        _friberg_init_vjp(cfg, p, g, gp)
    elif kernel_id in (LIFESPAN, PDMDD_LIFESPAN):  # drug states start empty
        _lifespan_init_vjp(cfg, p, g, gp)
    elif kernel_id == ENDOGENOUS_TPO:
        _tpo_init_vjp(cfg, p, g, gp)
    elif kernel_id == TMDD_FRIBERG:
        _tmdd_init_vjp(cfg, p, g, gp)
    elif kernel_id == QSS_TMDD_LIFESPAN:
        _qss_init_vjp(cfg, p, g, gp)
    else:
        gp[0] += g[0]


@inline
def fastest_rate(kernel_id: int, cfg: Any, p: Any) -> float:
    """Fastest first-order rate (1/h) of structure ``kernel_id`` that is a parameter.

    Only the lifespan chain's ageing rates ``n/tp`` and ``n/tplt`` are both
    parameter-dependent and fast enough to matter (short ITP platelet lifespans); other
    structures' rates are covered by their declared ``max_step`` and return 0. PDMDD and
    QSS-TMDD on the lifespan chain add their drug rates, which SDIRK2 steps take
    explicitly: keep them below ``2/h`` of those substeps (romiplostim's are under 0.2 /h,
    hetrombopag's target turnover 0.69 /h).
    """
    if kernel_id == LIFESPAN:
        return max(cfg[0] / p[1], cfg[1] / p[2])  # type: ignore[no-any-return]
    if kernel_id == PDMDD_LIFESPAN:
        return _pdmdd_rate(cfg, p)
    if kernel_id == QSS_TMDD_LIFESPAN:
        return _qss_rate(cfg, p)
    return 0.0


@inline
def implicit_solve(kernel_id: int, cfg: Any, p: Any, c: float, r: Any, x: Any) -> None:
    """Solve ``(I - c·J) x = r``, ``J`` the linear part of a structure's ``rhs``.

    Only structures with a parameter-dependent :func:`fastest_rate` reach SDIRK2 steps:
    the lifespan chain (linear in its state but for the feedback on production, which
    :func:`implicit_drive` takes explicitly) and PDMDD on it, whose drug rows have no
    implicit part (``x = r`` there; their slopes are in :func:`implicit_drive`).
    """
    if kernel_id == LIFESPAN:
        _lifespan_solve(cfg, p, c, r, x)
    elif kernel_id in (PDMDD_LIFESPAN, QSS_TMDD_LIFESPAN):  # drug rows: implicit_drive
        _lifespan_solve(cfg, p, c, r, x)
        for i in range(cfg[0] + cfg[1], x.shape[0]):
            x[i] = r[i]
    else:
        raise ValueError("implicit steps are implemented for the lifespan structures only")


@inline
def implicit_solve_t(kernel_id: int, cfg: Any, p: Any, c: float, r: Any, x: Any) -> None:
    """Solve ``(I - c·J)^T x = r`` (the adjoint of :func:`implicit_solve`)."""
    if kernel_id == LIFESPAN:
        _lifespan_solve_t(cfg, p, c, r, x)
    elif kernel_id in (PDMDD_LIFESPAN, QSS_TMDD_LIFESPAN):
        _lifespan_solve_t(cfg, p, c, r, x)
        for i in range(cfg[0] + cfg[1], x.shape[0]):
            x[i] = r[i]
    else:
        raise ValueError("implicit steps are implemented for the lifespan structures only")


@inline
def implicit_drive(
    kernel_id: int, cfg: Any, p: Any, ya: Any, yb: Any, e: float, m: float, c: float, b: Any
) -> None:
    """Write the term ``b`` of ``rhs = J·x + b`` that an SDIRK2 stage takes from known states.

    For the lifespan chain it is the precursor production. Without feedback it does not
    depend on the state, and the stages are exactly SDIRK2's. With feedback, each stage
    takes ``log(plt0/P)`` extrapolated linearly in time from known states, ``(1 - e)`` of
    it at ``ya`` and ``e`` at ``yb`` (stage 1 from the substep's start; stage 2 through the
    start and stage 1 to the substep's end), so each stage stays one linear sweep. Taking
    stage 1's value unextrapolated for stage 2 erred 1.4e-3 against solve_ivp (weekly SC,
    3 h platelet lifespan, gamma 0.621; the design bound is 1e-3).

    For PDMDD on the chain, the production also carries the free drug's stimulation
    (stage 1 at the stage's instant, ``c`` = gamma·h after ``ya``; stage 2 extrapolated
    with ``e``), and ``b`` holds the drug rows' whole slopes, taken
    :data:`PDMDD_DRUG_LEAD` further ahead (:func:`_pdmdd_stimulation_point`).
    """
    if kernel_id == LIFESPAN:
        for i in range(b.shape[0]):
            b[i] = 0.0
        p3 = p[3]
        if p3 == 0.0:
            b[0] = p[0] / p[2] * m
        else:
            la, _, _ = _lifespan_log_ratio(cfg, p, ya)
            lb, _, _ = _lifespan_log_ratio(cfg, p, yb)
            b[0] = p[0] / p[2] * m * np.exp(p3 * ((1.0 - e) * la + e * lb))
    elif kernel_id == PDMDD_LIFESPAN:
        _pdmdd_implicit_drive(cfg, p, ya, yb, e, m, c, b)
    elif kernel_id == QSS_TMDD_LIFESPAN:
        _qss_implicit_drive(cfg, p, ya, yb, e, m, c, b)
    else:
        raise ValueError("implicit steps are implemented for the lifespan structures only")


@inline
def implicit_drive_vjp(
    kernel_id: int,
    cfg: Any,
    p: Any,
    ya: Any,
    yb: Any,
    e: float,
    m: float,
    c: float,
    w: Any,
    gya: Any,
    gyb: Any,
    gp: Any,
) -> float:
    """Cotangent ``w`` of :func:`implicit_drive`: add to ``gya``, ``gyb``, ``gp``; return dL/dm."""
    if kernel_id == LIFESPAN:
        la, _, _ = _lifespan_log_ratio(cfg, p, ya)
        lb, _, _ = _lifespan_log_ratio(cfg, p, yb)
        log_ratio = (1.0 - e) * la + e * lb
        return _lifespan_production_at_vjp(cfg, p, log_ratio, m, w[0], gp, ya, yb, e, gya, gyb)
    if kernel_id == PDMDD_LIFESPAN:
        return _pdmdd_implicit_drive_vjp(cfg, p, ya, yb, e, m, c, w, gya, gyb, gp)
    if kernel_id == QSS_TMDD_LIFESPAN:
        return _qss_implicit_drive_vjp(cfg, p, ya, yb, e, m, c, w, gya, gyb, gp)
    raise ValueError("implicit steps are implemented for the lifespan structures only")


@inline
def implicit_linear_vjp(kernel_id: int, cfg: Any, p: Any, y: Any, w: Any, gy: Any, gp: Any) -> None:
    """Add ``w·(dJ/dp)·y`` to ``gp`` (``gy`` is scratch): the parameters' part of ``J·y``."""
    if kernel_id in (LIFESPAN, PDMDD_LIFESPAN, QSS_TMDD_LIFESPAN):  # drug rows: no J
        _lifespan_chain_vjp(cfg, p, y, w, gy, gp)
    else:
        raise ValueError("implicit steps are implemented for the lifespan structures only")


@inline
def n_substeps(rate: float, hk: float) -> int:
    """Equal substeps of a step ``hk``: ``ceil(rate·h / STABLE_RATE_STEP)`` up to the cap.

    A step needing more than :data:`MAX_SUBSTEPS` takes that many SDIRK2 substeps
    (:func:`stiff_step`).
    """
    n = int(np.ceil(rate * hk / STABLE_RATE_STEP))
    return max(1, min(n, MAX_SUBSTEPS))


@inline
def stiff_step(rate: float, hk: float) -> bool:
    """Whether a step needs more RK4 substeps than :data:`MAX_SUBSTEPS` (so takes SDIRK2)."""
    return rate * hk > MAX_SUBSTEPS * STABLE_RATE_STEP


@inline
def quadratic_weights(u: float) -> Any:
    """Weights of the drive at a step's start, midpoint and end for fraction ``u`` of it."""
    return 2.0 * (u - 0.5) * (u - 1.0), -4.0 * u * (u - 1.0), 2.0 * u * (u - 0.5)


@inline
def _drive_at(u: float, ma: float, mb: float, mc: float) -> float:
    wa, wb, wc = quadratic_weights(u)
    return wa * ma + wb * mb + wc * mc  # type: ignore[no-any-return]


@inline
def _rk4_step(
    kernel_id: int,
    cfg: Any,
    p: Any,
    y: Any,
    hk: float,
    ma: float,
    mb: float,
    mc: float,
    z2: Any,
    z3: Any,
    z4: Any,
    k1: Any,
    k2: Any,
    k3: Any,
    k4: Any,
    y_next: Any,
) -> None:
    """One classical RK4 step from ``y``, drive ``ma, mb, mc`` at start, midpoint and end."""
    n_states = y.shape[0]
    rhs(kernel_id, cfg, p, y, ma, k1)
    for i in range(n_states):
        z2[i] = y[i] + 0.5 * hk * k1[i]
    rhs(kernel_id, cfg, p, z2, mb, k2)
    for i in range(n_states):
        z3[i] = y[i] + 0.5 * hk * k2[i]
    rhs(kernel_id, cfg, p, z3, mb, k3)
    for i in range(n_states):
        z4[i] = y[i] + hk * k3[i]
    rhs(kernel_id, cfg, p, z4, mc, k4)
    for i in range(n_states):
        y_next[i] = y[i] + hk / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])


@inline
def _rk4_step_vjp(
    kernel_id: int,
    cfg: Any,
    p: Any,
    y: Any,
    z2: Any,
    z3: Any,
    z4: Any,
    hk: float,
    ma: float,
    mb: float,
    mc: float,
    lam: Any,
    lam_next: Any,
    a: Any,
    gz: Any,
    gp: Any,
) -> Any:
    """Reverse one RK4 step: ``lam`` from dL/dy_next to dL/dy; return dL/d(ma, mb, mc).

    y_next = y + h/6 (k1 + 2 k2 + 2 k3 + k4) and every stage input is y plus a multiple of
    the previous slope, so sweep the stages 4 -> 1 with ``a`` the cotangent of the current
    slope, adding each stage's dL/d(input) to ``lam``.
    """
    n_states = y.shape[0]
    for i in range(n_states):
        lam_next[i] = lam[i]
        a[i] = hk / 6.0 * lam_next[i]
    g_c = rhs_vjp(kernel_id, cfg, p, z4, mc, a, gz, gp)
    for i in range(n_states):
        lam[i] += gz[i]
        a[i] = hk / 3.0 * lam_next[i] + hk * gz[i]
    g_b = rhs_vjp(kernel_id, cfg, p, z3, mb, a, gz, gp)
    for i in range(n_states):
        lam[i] += gz[i]
        a[i] = hk / 3.0 * lam_next[i] + 0.5 * hk * gz[i]
    g_b += rhs_vjp(kernel_id, cfg, p, z2, mb, a, gz, gp)
    for i in range(n_states):
        lam[i] += gz[i]
        a[i] = hk / 6.0 * lam_next[i] + 0.5 * hk * gz[i]
    g_a = rhs_vjp(kernel_id, cfg, p, y, ma, a, gz, gp)
    for i in range(n_states):
        lam[i] += gz[i]
    return g_a, g_b, g_c


@njit
def _substep_tape(
    kernel_id: int,
    cfg: Any,
    p: Any,
    y: Any,
    hk: float,
    n: int,
    ma: float,
    mb: float,
    mc: float,
    ys: Any,
    zs: Any,
    k1: Any,
    k2: Any,
    k3: Any,
    k4: Any,
) -> None:
    """Take ``n`` substeps of ``hk/n`` from ``y``: states into ``ys[0..n]``, stages into ``zs``.

    The drive at each substep instant is the step's quadratic (:func:`quadratic_weights`).
    """
    sub = hk / n
    ys[0, :] = y
    for j in range(n):
        _rk4_step(
            kernel_id,
            cfg,
            p,
            ys[j],
            sub,
            _drive_at(j / n, ma, mb, mc),
            _drive_at((j + 0.5) / n, ma, mb, mc),
            _drive_at((j + 1.0) / n, ma, mb, mc),
            zs[j, 0],
            zs[j, 1],
            zs[j, 2],
            k1,
            k2,
            k3,
            k4,
            ys[j + 1],
        )


@njit
def _sdirk_tape(
    kernel_id: int,
    cfg: Any,
    p: Any,
    y: Any,
    hk: float,
    n: int,
    ma: float,
    mb: float,
    mc: float,
    ys: Any,
    zs: Any,
    b: Any,
    r: Any,
) -> None:
    """Take ``n`` SDIRK2 substeps of ``hk/n``: states into ``ys[0..n]``, stage 1 into ``zs[:, 0]``.

    For ``dy/dt = J y + b`` each stage solves ``(I - gamma·h·J) Y = r``
    (:func:`implicit_solve`), ``b`` from :func:`implicit_drive`. Stage 1 sits at
    ``t + gamma·h``, stage 2 (the new state) at ``t + h``; the drive there is the step's
    quadratic, as for RK4 substeps.
    """
    sub = hk / n
    c = SDIRK_GAMMA * sub
    alpha = (1.0 - SDIRK_GAMMA) / SDIRK_GAMMA
    n_states = y.shape[0]
    ys[0, :] = y
    for j in range(n):
        y_j, stage = ys[j], zs[j, 0]
        m1 = _drive_at((j + SDIRK_GAMMA) / n, ma, mb, mc)
        implicit_drive(kernel_id, cfg, p, y_j, y_j, 0.0, m1, c, b)
        for i in range(n_states):
            r[i] = y_j[i] + c * b[i]
        implicit_solve(kernel_id, cfg, p, c, r, stage)
        m2 = _drive_at((j + 1.0) / n, ma, mb, mc)
        implicit_drive(kernel_id, cfg, p, y_j, stage, 1.0 / SDIRK_GAMMA, m2, c, b)
        for i in range(n_states):
            r[i] = (1.0 - alpha) * y_j[i] + alpha * stage[i] + c * b[i]
        implicit_solve(kernel_id, cfg, p, c, r, ys[j + 1])


@inline
def _sdirk_step_vjp(
    kernel_id: int,
    cfg: Any,
    p: Any,
    y: Any,
    stage: Any,
    y_next: Any,
    sub: float,
    m1: float,
    m2: float,
    lam: Any,
    mu1: Any,
    mu2: Any,
    a: Any,
    gz: Any,
    gy: Any,
    scratch: Any,
    gp: Any,
) -> Any:
    """Reverse one SDIRK2 substep from ``y``: ``lam`` from dL/dy_next to dL/dy; return dL/d(m1, m2).

    ``Y = M^-1 r`` with ``M = I - c·J(p)`` gives ``dL/dr = M^-T dL/dY`` and
    ``dL/dp = (dL/dr)^T c (dJ/dp Y + db/dp)``; ``b`` also depends on the state it was taken
    from (stage 2's on ``y`` and stage 1, stage 1's on ``y``), which adds to those states'
    cotangents: ``gz`` collects stage 1's, ``gy`` the substep start's.
    """
    n_states = lam.shape[0]
    c = SDIRK_GAMMA * sub
    alpha = (1.0 - SDIRK_GAMMA) / SDIRK_GAMMA
    implicit_solve_t(kernel_id, cfg, p, c, lam, mu2)
    for i in range(n_states):
        a[i] = c * mu2[i]
        gz[i] = 0.0
        gy[i] = 0.0
    implicit_linear_vjp(kernel_id, cfg, p, y_next, a, scratch, gp)
    g2 = implicit_drive_vjp(kernel_id, cfg, p, y, stage, 1.0 / SDIRK_GAMMA, m2, c, a, gy, gz, gp)
    for i in range(n_states):
        a[i] = alpha * mu2[i] + gz[i]
    implicit_solve_t(kernel_id, cfg, p, c, a, mu1)
    for i in range(n_states):
        a[i] = c * mu1[i]
    implicit_linear_vjp(kernel_id, cfg, p, stage, a, scratch, gp)
    g1 = implicit_drive_vjp(kernel_id, cfg, p, y, y, 0.0, m1, c, a, gy, gy, gp)
    for i in range(n_states):
        lam[i] = (1.0 - alpha) * mu2[i] + mu1[i] + gy[i]
    return g1, g2


@njit
def _substep_tape_vjp(
    kernel_id: int,
    cfg: Any,
    p: Any,
    hk: float,
    n: int,
    ma: float,
    mb: float,
    mc: float,
    ys: Any,
    zs: Any,
    lam: Any,
    lam_next: Any,
    a: Any,
    gz: Any,
    gp: Any,
) -> Any:
    """Reverse the ``n`` RK4 substeps :func:`_substep_tape` recorded; return dL/d(ma, mb, mc)."""
    g_a, g_b, g_c = 0.0, 0.0, 0.0
    for j in range(n - 1, -1, -1):
        g_lo, g_mid, g_hi = _rk4_step_vjp(
            kernel_id,
            cfg,
            p,
            ys[j],
            zs[j, 0],
            zs[j, 1],
            zs[j, 2],
            hk / n,
            _drive_at(j / n, ma, mb, mc),
            _drive_at((j + 0.5) / n, ma, mb, mc),
            _drive_at((j + 1.0) / n, ma, mb, mc),
            lam,
            lam_next,
            a,
            gz,
            gp,
        )
        # Each substep's drive is a fixed combination of the step's three.
        for u, g in ((j / n, g_lo), ((j + 0.5) / n, g_mid), ((j + 1.0) / n, g_hi)):
            wa, wb, wc = quadratic_weights(u)
            g_a += wa * g
            g_b += wb * g
            g_c += wc * g
    return g_a, g_b, g_c


@njit
def _sdirk_tape_vjp(
    kernel_id: int,
    cfg: Any,
    p: Any,
    hk: float,
    n: int,
    ma: float,
    mb: float,
    mc: float,
    ys: Any,
    zs: Any,
    lam: Any,
    mu1: Any,
    mu2: Any,
    a: Any,
    gz: Any,
    gy: Any,
    scratch: Any,
    gp: Any,
) -> Any:
    """Reverse the ``n`` SDIRK2 substeps :func:`_sdirk_tape` recorded; return dL/d(ma, mb, mc)."""
    g_a, g_b, g_c = 0.0, 0.0, 0.0
    for j in range(n - 1, -1, -1):
        u1, u2 = (j + SDIRK_GAMMA) / n, (j + 1.0) / n
        g_1, g_2 = _sdirk_step_vjp(
            kernel_id,
            cfg,
            p,
            ys[j],
            zs[j, 0],
            ys[j + 1],
            hk / n,
            _drive_at(u1, ma, mb, mc),
            _drive_at(u2, ma, mb, mc),
            lam,
            mu1,
            mu2,
            a,
            gz,
            gy,
            scratch,
            gp,
        )
        for u, g in ((u1, g_1), (u2, g_2)):
            wa, wb, wc = quadratic_weights(u)
            g_a += wa * g
            g_b += wb * g
            g_c += wc * g
    return g_a, g_b, g_c


# Exponential steps of the lifespan chain. Its states obey dy/dt = J y + e0·u(t), J lower
# bidiagonal (n_p precursor compartments ageing at kp, then n_l platelet compartments at
# kl), u the production. One step of length h is y' = E y + sum_r Phi_r u_r with
# E = exp(J h) in closed form (below) and u_r the production at the step's start,
# midpoint and end, where the drive is given; Phi_r integrates the quadratic through them
# exactly. The feedback (plt0/P)^gamma at the midpoint and end takes P from the step's
# start propagated with the start's production held constant, E(s) y + Phi_const(s) u_0:
# an explicit predictor, exact at steady state. No stiffness limit: E is exact at any k·h.

#: Above this ``D = |kp - kl|·h`` the cross block's integrals are taken by the forward
#: recurrence (each term subtracts at most ``(n + 1)/D`` of the larger one), below it by
#: Kummer's series, all of whose terms are positive.
CROSS_SERIES_MAX = 60.0
#: Steps whose lengths agree to this relative tolerance share one propagator: a grid's
#: equal subdivisions of a gap differ in their last bits.
SAME_STEP_RTOL = 1e-12
#: Largest ``k·h`` at which a step's production response is summed as a Taylor series
#: (:func:`_production_series`) rather than by integration by parts.
PHI_SERIES_MAX = 2.0


@njit
def _cross_integrals(a_max: int, b_max: int, d: float, k: Any) -> None:
    """``K[a, b] = int_0^1 u^a (1 - u)^b e^(-d·u) du / (a! b!)`` for ``d >= 0``.

    Below :data:`CROSS_SERIES_MAX`: the last row by the positive series
    ``e^-d/(a+b+1)! sum_j d^j/j! (b+1)_j/(a+b+2)_j`` (Kummer's transformation of
    1F1(a+1; a+b+2; -d)), then rows downwards by ``K[a-1, b] = d K[a, b] + K[a, b-1]`` and
    ``K[a-1, 0] = d K[a, 0] + e^-d/a!``, which add positive terms only. Above it: upwards by
    the same relations solved for ``K[a, b]`` (integration by parts).
    """
    e_d = np.exp(-d)
    if d < CROSS_SERIES_MAX:
        inv_fact = 1.0  # 1/(a_max + b + 1)!
        for i in range(2, a_max + 2):
            inv_fact /= i
        for b in range(b_max + 1):
            if b > 0:
                inv_fact /= a_max + b + 1
            term, total, j = 1.0, 1.0, 0
            while j < d or term > 1e-17 * total:
                term *= d * (b + 1 + j) / ((a_max + b + 2 + j) * (j + 1.0))
                total += term
                j += 1
            k[a_max, b] = e_d * total * inv_fact
        inv_a_fact = 1.0  # 1/a!
        for i in range(2, a_max + 1):
            inv_a_fact /= i
        for a in range(a_max, 0, -1):
            k[a - 1, 0] = d * k[a, 0] + e_d * inv_a_fact
            for b in range(1, b_max + 1):
                k[a - 1, b] = d * k[a, b] + k[a, b - 1]
            inv_a_fact *= a
        return
    k[0, 0] = -np.expm1(-d) / d
    inv_b_fact = 1.0
    for b in range(1, b_max + 1):
        inv_b_fact /= b
        k[0, b] = (inv_b_fact - k[0, b - 1]) / d
    inv_a_fact = 1.0
    for a in range(1, a_max + 1):
        inv_a_fact /= a
        k[a, 0] = (k[a - 1, 0] - e_d * inv_a_fact) / d
        for b in range(1, b_max + 1):
            k[a, b] = (k[a - 1, b] - k[a, b - 1]) / d


@njit
def _cross_table(n_p: int, n_l: int, kp: float, kl: float, h: float, k: Any, x: Any) -> None:
    """Cross block of exp(J h): ``x[m, b]`` for ``m <= n_p``, ``b <= n_l``.

    ``x[m, b]`` is the probability that a precursor ``m + 1`` compartments from the end of
    its block is in platelet compartment ``b`` after ``h``:
    ``x[m, b] = (kp h)^(m+1) (kl h)^b e^(-min(kp, kl) h) K`` with ``K`` from
    :func:`_cross_integrals` at ``d = |kp - kl|·h``, the faster rate's index first: free
    of the ``1/(kp - kl)`` cancellation of partial fractions.
    """
    d = abs(kp - kl) * h
    p_faster = kp >= kl
    if p_faster:
        _cross_integrals(n_p, n_l, d, k)
    else:
        _cross_integrals(n_l, n_p, d, k)
    log_xp, log_xl = np.log(kp * h), np.log(kl * h)
    half_slow = 0.5 * min(kp, kl) * h
    # e^(-slow) (kp h)^(m+1) (kl h)^b as a row factor times a column factor, each with
    # half of e^(-slow): n_p + n_l + 2 exponentials instead of one per entry. The column
    # factors go to x's spare row n_p + 1.
    for b in range(n_l + 1):
        x[n_p + 1, b] = np.exp(b * log_xl - half_slow)
    for m in range(n_p + 1):
        row = np.exp((m + 1) * log_xp - half_slow)
        for b in range(n_l + 1):
            kk = k[m, b] if p_faster else k[b, m]
            x[m, b] = row * x[n_p + 1, b] * kk


@njit
def _chain_exp(
    n_p: int, n_l: int, kp: float, kl: float, h: float, derivs: bool, k: Any, x: Any, e: Any
) -> None:
    """``e[0] = exp(J h)`` of the lifespan chain, and ``e[1], e[2]`` its d/dkp and d/dkl.

    Within each ageing block the entries are Poisson probabilities ``pi_d`` of ``kh``, with
    ``dpi_d/dk = h (pi_(d-1) - pi_d)``; across, :func:`_cross_table`'s ``I(m, b)``, with
    ``dI/dkp = (m+1)/kp (I(m, b) - I(m+1, b))`` and
    ``dI/dkl = (b I(m, b) - (b+1) I(m, b+1))/kl``. ``k`` and ``x`` are scratch,
    ``(n_p + 2) x (n_l + 2)`` or larger both ways round.
    """
    n = n_p + n_l
    for w in range(3 if derivs else 1):
        for i in range(n):
            for j in range(n):
                e[w, i, j] = 0.0
    for first, size, rate, which in ((0, n_p, kp, 1), (n_p, n_l, kl, 2)):
        kh = rate * h
        pi_prev, pi = 0.0, np.exp(-kh)
        for dd in range(size):
            if dd > 0:
                pi_prev, pi = pi, pi * kh / dd
            for i in range(first + dd, first + size):
                e[0, i, i - dd] = pi
                if derivs:
                    e[which, i, i - dd] = h * (pi_prev - pi)
    _cross_table(n_p, n_l, kp, kl, h, k, x)
    for m in range(n_p):
        for b in range(n_l):
            i, j = n_p + b, n_p - 1 - m
            e[0, i, j] = x[m, b]
            if derivs:
                e[1, i, j] = (m + 1) / kp * (x[m, b] - x[m + 1, b])
                e[2, i, j] = (b * x[m, b] - (b + 1) * x[m, b + 1]) / kl


@inline
def _chain_rate(n_p: int, kp: float, kl: float, i: int) -> float:
    return kp if i < n_p else kl


@inline
def _chain_solve(n_p: int, kp: float, kl: float, r: Any, x: Any) -> None:
    """Solve ``J x = r`` by forward substitution (``J`` lower bidiagonal, diagonal ``-k``)."""
    inflow = 0.0
    for i in range(r.shape[0]):
        ki = _chain_rate(n_p, kp, kl, i)
        x[i] = (inflow - r[i]) / ki
        inflow = ki * x[i]


@inline
def _chain_rate_product(n_p: int, which: int, v: Any, out: Any) -> None:
    """``out -= (dJ/dk) v`` for ``k`` = kp (``which`` 1) or kl (2)."""
    for i in range(v.shape[0]):
        if which == 1:
            if i < n_p:
                out[i] += v[i] - (v[i - 1] if i > 0 else 0.0)
            elif i == n_p:
                out[i] -= v[i - 1]
        elif i == n_p:
            out[i] += v[i]
        elif i > n_p:
            out[i] += v[i] - v[i - 1]


@njit
def _production_series(n_p: int, kp: float, kl: float, h: float, n_w: int, phi: Any) -> None:
    """:func:`_lifespan_propagator`'s ``phi`` by its Taylor series, for ``k·h <= 2``.

    ``phi_r = sum_n mu_rn J^n e0`` with ``mu_rn = int_0^h t^n/n! w_r(h - t) dt`` in closed
    form; ``d(J^n e0) = dJ J^(n-1) e0 + J d(J^(n-1) e0)``. Where every ``k·h`` is small the
    integration-by-parts form divides the step's small change by ``J`` three times
    (relative error 8e-5 at ``k·h`` 4e-4); the series has no such cancellation.
    """
    n = phi.shape[2]
    v = np.zeros((3, n))  # J^n e0 and its d/dkp, d/dkl
    jv = np.empty((3, n))
    v[0, 0] = 1.0
    for w in range(n_w):
        for r in range(3):
            for i in range(n):
                phi[w, r, i] = 0.0
    bound = 2.0 * max(kp, kl) * h  # |J^n e0| h^n <= bound^n
    scale = h  # h^(n+1)/n!
    size = 1.0  # bound^n / n!
    order = 0
    while size > 1e-18:
        a = 1.0 / (order + 1.0)
        b = 1.0 / (order + 2.0)
        c = 1.0 / (order + 3.0)
        mu0 = scale * (2.0 * c - b)
        mu1 = scale * 4.0 * (b - c)
        mu2 = scale * (a - 3.0 * b + 2.0 * c)
        for w in range(n_w):
            for i in range(n):
                phi[w, 0, i] += mu0 * v[w, i]
                phi[w, 1, i] += mu1 * v[w, i]
                phi[w, 2, i] += mu2 * v[w, i]
        # v <- J v; dv <- J dv + dJ v.
        for w in range(n_w):
            inflow = 0.0
            for i in range(n):
                ki = _chain_rate(n_p, kp, kl, i)
                jv[w, i] = inflow - ki * v[w, i]
                inflow = ki * v[w, i]
        for w in range(1, n_w):
            for i in range(n):
                r_i = -jv[w, i]
                jv[w, i] = r_i
            _chain_rate_product(n_p, w, v[0], jv[w])
            for i in range(n):
                jv[w, i] = -jv[w, i]
        v[:n_w] = jv[:n_w]
        order += 1
        scale *= h / order
        size *= bound / order


@inline
def _half_slot(lengths: Any, c: int) -> int:
    """Return the slot whose length is half of slot ``c``'s (to :data:`SAME_STEP_RTOL`), or -1."""
    target = 0.5 * lengths[c]
    for other in range(lengths.shape[0]):
        if abs(lengths[other] - target) <= SAME_STEP_RTOL * target:
            return other
    return -1


@njit
def _lifespan_propagator(
    n_p: int,
    n_l: int,
    kp: float,
    kl: float,
    h: float,
    derivs: bool,
    half_known: bool,
    k: Any,
    x: Any,
    eh: Any,
    e: Any,
    phi: Any,
    rho: Any,
    rho_half: Any,
    sigma: Any,
    v: Any,
    r: Any,
) -> None:
    """Everything one exponential step of length ``h`` needs.

    With ``derivs`` also their d/dkp and d/dkl (leading index 1 and 2 of each output).
    ``e`` = exp(J h); ``phi[., r]`` the response to production that is the quadratic
    Lagrange basis on the step's start (r = 0), midpoint, end, exactly integrated
    (:func:`_production_response`); ``rho``, ``rho_half`` the platelet sums' rows of
    exp(J h), exp(J h/2); ``sigma[., 0]``, ``sigma[., 1]`` the platelets that a unit
    constant production adds over h/2 and h. ``eh`` receives exp(J h/2) like ``e``, unless
    ``half_known`` says it already holds it (another step's ``e``: the grid's step
    lengths double after each dose). ``v`` ``[3, n]`` and ``r`` ``[n]`` are scratch.
    """
    n = n_p + n_l
    n_w = 3 if derivs else 1
    _chain_exp(n_p, n_l, kp, kl, h, derivs, k, x, e)
    if not half_known:
        _chain_exp(n_p, n_l, kp, kl, 0.5 * h, derivs, k, x, eh)
    _production_response(n_p, kp, kl, h, n_w, e, phi)
    for w in range(n_w):
        for j in range(n):
            total, half = 0.0, 0.0
            for i in range(n_p, n):
                total += e[w, i, j]
                half += eh[w, i, j]
            rho[w, j] = total
            rho_half[w, j] = half
        total = 0.0
        for q in range(3):
            for i in range(n_p, n):
                total += phi[w, q, i]
        sigma[w, 1] = total
    # Over h/2 only a constant production's platelets are needed, J^-1 (E(h/2) e0 - e0):
    # one substitution instead of the three basis responses. Its cancellation costs
    # absolute digits only (~eps·plt0), and the rate derivatives follow
    # d(J^-1 b) = J^-1 (db - dJ J^-1 b).
    for i in range(n):
        r[i] = eh[0, i, 0]
    r[0] -= 1.0
    _chain_solve(n_p, kp, kl, r, v[0])
    for w in range(1, n_w):
        for i in range(n):
            r[i] = eh[w, i, 0]
        _chain_rate_product(n_p, w, v[0], r)
        _chain_solve(n_p, kp, kl, r, v[w])
    for w in range(n_w):
        total = 0.0
        for i in range(n_p, n):
            total += v[w, i]
        sigma[w, 0] = total


@njit
def _production_response(
    n_p: int, kp: float, kl: float, h: float, n_w: int, e: Any, phi: Any
) -> None:
    """:func:`_lifespan_propagator`'s ``phi`` over a step ``h`` whose exp(J h) is ``e``.

    ``int_0^h E(t) e0 w(h - t) dt = sum_q J^-(q+1) (E e0 w^(q)(0) - e0 w^(q)(h))``
    (integration by parts), by three forward substitutions; the Taylor series
    (:func:`_production_series`) where every ``k·h`` is small.
    """
    n = phi.shape[2]
    if max(kp, kl) * h <= PHI_SERIES_MAX:
        _production_series(n_p, kp, kl, h, n_w, phi)
        return
    # Basis r: (w, w', w'') at s = 0, then at s = h.
    c1, c2 = 1.0 / h, 1.0 / (h * h)
    basis = (
        (1.0, -3.0 * c1, 4.0 * c2, 0.0, c1, 4.0 * c2),
        (0.0, 4.0 * c1, -8.0 * c2, 0.0, -4.0 * c1, -8.0 * c2),
        (0.0, -c1, 4.0 * c2, 1.0, 3.0 * c1, 4.0 * c2),
    )
    v = np.empty((3, n))
    r = np.empty(n)
    dv = np.empty(n)
    for ib in range(3):
        wb = basis[ib]
        for q in range(2, -1, -1):
            for i in range(n):
                r[i] = e[0, i, 0] * wb[q] + (v[q + 1, i] if q < 2 else 0.0)
            r[0] -= wb[3 + q]
            _chain_solve(n_p, kp, kl, r, v[q])
        phi[0, ib, :] = v[0]
        for w in range(1, n_w):
            # d(J^-1 r) = J^-1 (dr - dJ J^-1 r), level by level.
            dv[:] = 0.0
            for q in range(2, -1, -1):
                for i in range(n):
                    r[i] = e[w, i, 0] * wb[q] + dv[i]
                _chain_rate_product(n_p, w, v[q], r)
                _chain_solve(n_p, kp, kl, r, dv)
            phi[w, ib, :] = dv


@njit
def _step_lengths(h: Any) -> Any:
    """Each step's propagator slot ``[S, K]`` (-1 for padding), and each slot's length.

    Steps whose lengths agree to :data:`SAME_STEP_RTOL` share a slot (the first's length).
    """
    n_subj, n_steps = h.shape
    slot = np.full((n_subj, n_steps), -1, dtype=np.int64)
    length = np.zeros((n_subj, n_steps))
    count = np.zeros(n_subj, dtype=np.int64)
    for s in range(n_subj):
        for k in range(n_steps):
            hk = h[s, k]
            if hk == 0.0:
                continue
            for c in range(count[s]):
                if abs(hk - length[s, c]) <= SAME_STEP_RTOL * length[s, c]:
                    slot[s, k] = c
                    break
            if slot[s, k] < 0:
                slot[s, k] = count[s]
                length[s, count[s]] = hk
                count[s] += 1
    return slot, length, count


#: Values per stage on the lifespan forward's tape: production, feedback factor,
#: log(plt0/P) and the platelet sum P the feedback saw (so the adjoint computes no
#: transcendental). The tape is ``[S, K, 3, EXPO_TAPE]``: only what the adjoint reads, so
#: its memory traffic does not grow with the chain length.
EXPO_TAPE = 4


@inline
def stage_tape_width(kernel_id: int, n_states: int) -> int:
    """Last dimension of :func:`rk4_forward`'s stage tape for a structure."""
    return EXPO_TAPE if kernel_id == LIFESPAN else n_states


@inline
def _expo_production(p: Any, plt: float, m: float) -> Any:
    """Production ``kin·m·(plt0/P)^gamma``, the feedback factor and ``log(plt0/P)``, floored."""
    plt0, gamma = p[0], p[3]
    log_ratio = np.log(plt0 / max(plt, 1e-9 * plt0))
    fb = np.exp(gamma * log_ratio)
    return plt0 / p[2] * m * fb, fb, log_ratio


@inline
def _expo_stage(p: Any, plt: float, m: float, tape: Any) -> float:
    """Return the production at one stage; keep its inputs on ``tape`` (:data:`EXPO_TAPE`)."""
    u, fb, log_ratio = _expo_production(p, plt, m)
    tape[0] = u
    tape[1] = fb
    tape[2] = log_ratio
    tape[3] = plt
    return u  # type: ignore[no-any-return]


@inline
def _expo_platelets(n_p: int, y: Any, rho: Any, rho_half: Any) -> Any:
    """Platelet sums at a step's start, midpoint and end under free propagation of ``y``."""
    pa, pb, pc = 0.0, 0.0, 0.0
    for j in range(y.shape[0]):
        if j >= n_p:
            pa += y[j]
        pb += rho_half[j] * y[j]
        pc += rho[j] * y[j]
    return pa, pb, pc


@njit
def lifespan_expo_forward(cfg: Any, params: Any, drive: Any, h: Any, n_states: int) -> Any:
    """:func:`rk4_forward` for the lifespan chain by exponential steps (module docstring)."""
    n_p, n_l = cfg[0], cfg[1]
    n = n_p + n_l
    n_subj, n_steps = h.shape
    out = np.empty((n_subj, n_steps + 1, n_states))
    stages = np.empty((n_subj, n_steps, 3, stage_tape_width(LIFESPAN, n_states)))
    slot, length, count = _step_lengths(h)
    n_cache = max(1, count.max()) if n_subj > 0 else 1
    e = np.empty((n_cache, 1, n, n))
    phi = np.empty((n_cache, 1, 3, n))
    rho = np.empty((n_cache, 1, n))
    rho_half = np.empty((n_cache, 1, n))
    sigma = np.empty((n_cache, 1, 2))
    eh = np.empty((1, n, n))
    v = np.empty((1, n))
    r = np.empty(n)
    k = np.empty((n + 2, n + 2))
    x = np.empty((n + 2, n + 2))
    for s in range(n_subj):
        p = params[s]
        kp, kl = n_p / p[1], n_l / p[2]
        lengths = length[s, : count[s]]
        for c in np.argsort(lengths):  # shortest first: exp(J h/2) may be another's e
            half = _half_slot(lengths, c)
            _lifespan_propagator(
                n_p,
                n_l,
                kp,
                kl,
                length[s, c],
                False,
                half >= 0,
                k,
                x,
                e[half] if half >= 0 else eh,
                e[c],
                phi[c],
                rho[c],
                rho_half[c],
                sigma[c],
                v,
                r,
            )
        y = out[s, 0]
        _lifespan_init(cfg, p, y)
        for kk in range(n_steps):
            y_next = out[s, kk + 1]
            c = slot[s, kk]
            if c < 0:
                y_next[:] = y
                y = y_next
                continue
            ec, phic, tape = e[c, 0], phi[c, 0], stages[s, kk]
            pa, pb, pc = _expo_platelets(n_p, y, rho[c, 0], rho_half[c, 0])
            u0 = _expo_stage(p, pa, drive[s, 2 * kk], tape[0])
            pb += sigma[c, 0, 0] * u0
            pc += sigma[c, 0, 1] * u0
            u1 = _expo_stage(p, pb, drive[s, 2 * kk + 1], tape[1])
            u2 = _expo_stage(p, pc, drive[s, 2 * kk + 2], tape[2])
            for i in range(n):
                acc = phic[0, i] * u0 + phic[1, i] * u1 + phic[2, i] * u2
                for j in range(i + 1):
                    acc += ec[i, j] * y[j]
                y_next[i] = acc
            y = y_next
    return out, stages


@njit
def lifespan_expo_adjoint(
    cfg: Any, params: Any, drive: Any, h: Any, states: Any, stages: Any, g_states: Any
) -> Any:
    """:func:`rk4_adjoint` for :func:`lifespan_expo_forward`: its exact discrete adjoint.

    The reverse sweep reads the stage productions from the forward's tape and collects,
    per step length, what the propagators' rate derivatives are contracted with (sums of
    ``lam' y^T``, ``u_r lam'`` and the like over the steps of that length); the
    contractions, one per step length, follow the sweep.
    """
    n_p, n_l = cfg[0], cfg[1]
    n = n_p + n_l
    n_subj, n_steps = h.shape
    g_params = np.zeros(params.shape)
    g_drive = np.zeros(drive.shape)
    slot, length, count = _step_lengths(h)
    n_cache = max(1, count.max()) if n_subj > 0 else 1
    e = np.empty((n_cache, 3, n, n))
    phi = np.empty((n_cache, 3, 3, n))
    rho = np.empty((n_cache, 3, n))
    rho_half = np.empty((n_cache, 3, n))
    sigma = np.empty((n_cache, 3, 2))
    eh = np.empty((3, n, n))
    v = np.empty((3, n))
    r = np.empty(n)
    k = np.empty((n + 2, n + 2))
    x = np.empty((n + 2, n + 2))
    # Per step length: the sums the rate derivatives of e, phi, rho, rho_half, sigma meet.
    acc_e = np.empty((n_cache, n, n))  # lam' y^T, lam' = dL/d(step's end state)
    acc_phi = np.empty((n_cache, 3, n))  # u_r lam'
    acc_rho = np.empty((n_cache, n))  # dL/d(end platelets) y
    acc_half = np.empty((n_cache, n))  # dL/d(midpoint platelets) y
    acc_sigma = np.empty((n_cache, 2))  # u_0 times dL/d(midpoint, end platelets)
    lam = np.empty(n)
    lam_prev = np.empty(n)
    g_plt = np.empty(3)  # dL/d(platelet sum) at the step's start, midpoint, end
    for s in range(n_subj):
        p = params[s]
        gp = g_params[s]
        plt0, tp, tplt, gamma = p[0], p[1], p[2], p[3]
        kin = plt0 / tplt
        kp, kl = n_p / tp, n_l / tplt
        lengths = length[s, : count[s]]
        for c in np.argsort(lengths):  # shortest first: exp(J h/2) may be another's e
            half = _half_slot(lengths, c)
            _lifespan_propagator(
                n_p,
                n_l,
                kp,
                kl,
                length[s, c],
                True,
                half >= 0,
                k,
                x,
                e[half] if half >= 0 else eh,
                e[c],
                phi[c],
                rho[c],
                rho_half[c],
                sigma[c],
                v,
                r,
            )
        acc_e[: count[s]] = 0.0
        acc_phi[: count[s]] = 0.0
        acc_rho[: count[s]] = 0.0
        acc_half[: count[s]] = 0.0
        acc_sigma[: count[s]] = 0.0
        for i in range(n):
            lam[i] = g_states[s, n_steps, i]
        for kk in range(n_steps - 1, -1, -1):
            c = slot[s, kk]
            if c >= 0:
                y, tape = states[s, kk], stages[s, kk]
                ec, phic, sig = e[c, 0], phi[c, 0], sigma[c, 0]
                ge, gphi = acc_e[c], acc_phi[c]
                # End and midpoint first: their platelet sums depend on the start's u.
                for q in range(2, -1, -1):
                    u, fb, log_ratio, plt = tape[q, 0], tape[q, 1], tape[q, 2], tape[q, 3]
                    w0 = 0.0
                    for i in range(n):
                        w0 += phic[q, i] * lam[i]
                        gphi[q, i] += u * lam[i]
                    if q == 0:
                        w0 += g_plt[1] * sig[0] + g_plt[2] * sig[1]
                        acc_sigma[c, 0] += u * g_plt[1]
                        acc_sigma[c, 1] += u * g_plt[2]
                    g_drive[s, 2 * kk + q] += w0 * kin * fb
                    g_log = w0 * u  # dL/d(log u)
                    gp[0] += g_log / plt0
                    gp[2] -= g_log / tplt
                    gp[3] += g_log * log_ratio
                    if gamma != 0.0 and plt >= 1e-9 * plt0:
                        gp[0] += g_log * gamma / plt0
                        g_plt[q] = -g_log * gamma / plt
                    else:
                        g_plt[q] = 0.0
                # lam <- E^T lam + the platelet sums' rows.
                rhoc, rhohc, grho, ghalf = rho[c, 0], rho_half[c, 0], acc_rho[c], acc_half[c]
                for j in range(n):
                    lam_prev[j] = g_plt[1] * rhohc[j] + g_plt[2] * rhoc[j]
                    ghalf[j] += g_plt[1] * y[j]
                    grho[j] += g_plt[2] * y[j]
                for j in range(n_p, n):
                    lam_prev[j] += g_plt[0]
                for i in range(n):
                    lam_i = lam[i]
                    for j in range(i + 1):
                        lam_prev[j] += ec[i, j] * lam_i
                        ge[i, j] += lam_i * y[j]
                lam[:] = lam_prev
            for i in range(n):
                lam[i] += g_states[s, kk, i]
        _lifespan_init_vjp(cfg, p, lam, gp)
        g_kp, g_kl = 0.0, 0.0
        for c in range(count[s]):
            for w in range(1, 3):
                total = acc_sigma[c, 0] * sigma[c, w, 0] + acc_sigma[c, 1] * sigma[c, w, 1]
                for i in range(n):
                    total += acc_rho[c, i] * rho[c, w, i] + acc_half[c, i] * rho_half[c, w, i]
                    for q in range(3):
                        total += acc_phi[c, q, i] * phi[c, w, q, i]
                    for j in range(i + 1):
                        total += acc_e[c, i, j] * e[c, w, i, j]
                if w == 1:
                    g_kp += total
                else:
                    g_kl += total
        gp[1] -= g_kp * kp / tp
        gp[2] -= g_kl * kl / tplt
    return g_params, g_drive


@njit
def rk4_forward(
    kernel_id: int,
    cfg: Any,
    params: Any,
    drive: Any,
    h: Any,
    doses: Any,
    dose_state: int,
    n_states: int,
) -> Any:
    """Integrate every subject; return the states at every node and the RK4 stage inputs.

    Parameters
    ----------
    kernel_id, cfg
        Structure id and structural integers (:class:`tpopk.pd.structures.PDModel`).
    params
        ``[S, P]`` parameter rows.
    drive
        ``[S, 2K + 1]`` drug-effect multiplier at nodes and step midpoints.
    h
        ``[S, K]`` step lengths in h (zero for padding).
    doses
        ``[S, K + 1]`` amounts added to state ``dose_state`` at each node (bolus into the
        depot of a structure with ODE pharmacokinetics); ignored when ``dose_state < 0``.
    dose_state
        Index of the dosed state, or -1.
    n_states
        Number of ODE states.

    Returns
    -------
    states : numpy.ndarray
        ``[S, K + 1, n_states]`` states at the nodes, after any dose given there; node 0
        is the steady state. A bolus adds a constant, so the adjoint needs no term for it.
    stages : numpy.ndarray
        ``[S, K, 3, n_states]`` inputs of RK4 stages 2-4 of every step, kept for
        :func:`rk4_adjoint` so the reverse sweep does not recompute them; for the lifespan
        chain the stage productions instead (:data:`EXPO_TAPE`, width
        :func:`stage_tape_width`).
    """
    if kernel_id == LIFESPAN:
        return lifespan_expo_forward(cfg, params, drive, h, n_states)
    n_subj, n_steps = h.shape
    out = np.empty((n_subj, n_steps + 1, n_states))
    stages = np.zeros((n_subj, n_steps, 3, n_states))
    k1 = np.empty(n_states)
    k2 = np.empty(n_states)
    k3 = np.empty(n_states)
    k4 = np.empty(n_states)
    ys = np.empty((MAX_SUBSTEPS + 1, n_states))
    zs = np.empty((MAX_SUBSTEPS, 3, n_states))
    for s in range(n_subj):
        p = params[s]
        rate = fastest_rate(kernel_id, cfg, p)
        y = out[s, 0]
        init(kernel_id, cfg, p, y)
        if dose_state >= 0:
            y[dose_state] += doses[s, 0]
        for k in range(n_steps):
            hk = h[s, k]
            y_next = out[s, k + 1]
            if hk == 0.0:
                y_next[:] = y
                y = y_next
                continue
            ma, mb, mc = drive[s, 2 * k], drive[s, 2 * k + 1], drive[s, 2 * k + 2]
            n = n_substeps(rate, hk)
            if n == 1:
                z2, z3, z4 = stages[s, k, 0], stages[s, k, 1], stages[s, k, 2]
                _rk4_step(kernel_id, cfg, p, y, hk, ma, mb, mc, z2, z3, z4, k1, k2, k3, k4, y_next)
            elif stiff_step(rate, hk):
                _sdirk_tape(kernel_id, cfg, p, y, hk, n, ma, mb, mc, ys, zs, k1, k2)
                y_next[:] = ys[n]
            else:
                # The tape holds plain steps only; the adjoint re-runs split ones.
                _substep_tape(kernel_id, cfg, p, y, hk, n, ma, mb, mc, ys, zs, k1, k2, k3, k4)
                y_next[:] = ys[n]
            if dose_state >= 0:
                y_next[dose_state] += doses[s, k + 1]
            y = y_next
    return out, stages


@njit
def rk4_adjoint(
    kernel_id: int,
    cfg: Any,
    params: Any,
    drive: Any,
    h: Any,
    states: Any,
    stages: Any,
    g_states: Any,
) -> Any:
    """Vector-Jacobian product of :func:`rk4_forward` by reverse sweep through the steps.

    Parameters
    ----------
    kernel_id, cfg, params, drive, h
        As for :func:`rk4_forward` (doses add constants and need no term here).
    states, stages
        Outputs of :func:`rk4_forward` for the same inputs.
    g_states
        ``[S, K + 1, n_states]`` cotangent of ``states``.

    Returns
    -------
    tuple of numpy.ndarray
        Cotangents of ``params`` ``[S, P]`` and of ``drive`` ``[S, 2K + 1]``.
    """
    if kernel_id == LIFESPAN:
        return lifespan_expo_adjoint(cfg, params, drive, h, states, stages, g_states)
    n_subj, n_steps = h.shape
    n_states = states.shape[2]
    g_params = np.zeros(params.shape)
    g_drive = np.zeros(drive.shape)
    lam = np.empty(n_states)
    lam_next = np.empty(n_states)
    a = np.empty(n_states)
    gz = np.empty(n_states)
    k1 = np.empty(n_states)
    k2 = np.empty(n_states)
    k3 = np.empty(n_states)
    k4 = np.empty(n_states)
    ys = np.empty((MAX_SUBSTEPS + 1, n_states))
    zs = np.empty((MAX_SUBSTEPS, 3, n_states))
    for s in range(n_subj):
        p = params[s]
        gp = g_params[s]
        rate = fastest_rate(kernel_id, cfg, p)
        for i in range(n_states):
            lam[i] = g_states[s, n_steps, i]
        for k in range(n_steps - 1, -1, -1):
            hk = h[s, k]
            if hk != 0.0:
                # On entry lam = dL/dy_next; on exit dL/dy.
                ma, mb, mc = drive[s, 2 * k], drive[s, 2 * k + 1], drive[s, 2 * k + 2]
                n = n_substeps(rate, hk)
                if n == 1:
                    y = states[s, k]
                    z2, z3, z4 = stages[s, k, 0], stages[s, k, 1], stages[s, k, 2]
                    g_a, g_b, g_c = _rk4_step_vjp(
                        kernel_id, cfg, p, y, z2, z3, z4, hk, ma, mb, mc, lam, lam_next, a, gz, gp
                    )
                elif stiff_step(rate, hk):
                    _sdirk_tape(kernel_id, cfg, p, states[s, k], hk, n, ma, mb, mc, ys, zs, k1, k2)
                    g_a, g_b, g_c = _sdirk_tape_vjp(
                        kernel_id, cfg, p, hk, n, ma, mb, mc, ys, zs, lam, k1, k2, a, gz, k3, k4, gp
                    )
                else:
                    _substep_tape(
                        kernel_id, cfg, p, states[s, k], hk, n, ma, mb, mc, ys, zs, k1, k2, k3, k4
                    )
                    g_a, g_b, g_c = _substep_tape_vjp(
                        kernel_id, cfg, p, hk, n, ma, mb, mc, ys, zs, lam, lam_next, a, gz, gp
                    )
                g_drive[s, 2 * k] += g_a
                g_drive[s, 2 * k + 1] += g_b
                g_drive[s, 2 * k + 2] += g_c
            for i in range(n_states):
                lam[i] += g_states[s, k, i]
        init_vjp(kernel_id, cfg, p, lam, gp)
    return g_params, g_drive
