"""Independent references for the PD solver: scipy solve_ivp on plainly written ODEs.

Nothing here calls tpopk's kernels: the right-hand sides are written again from the
published equations, and the concentration is a closed-form first-order-absorption
superposition, so the accuracy tests compare two separate implementations.
"""

import itertools
from collections.abc import Callable

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

Array = np.ndarray


def oral_1cmt(t: Array, dose_time: Array, amt: float, ka: float, cl: float, v: float) -> Array:
    """Concentration (mg/L) after repeated oral doses, one compartment, at times ``t`` (h)."""
    k = cl / v
    dt = np.asarray(t, float)[..., None] - dose_time
    lag = np.where(dt >= 0, dt, 0.0)
    each = amt * ka / (v * (ka - k)) * (np.exp(-k * lag) - np.exp(-ka * lag))
    return np.where(dt >= 0, each, 0.0).sum(axis=-1)


def friberg_rhs(n: int, circ0: float, mtt: float, gamma: float, kel: float) -> Callable:
    ktr = (n + 1) / mtt

    def f(y: Array, m: float) -> Array:
        prol, transit, circ = y[0], y[1 : n + 1], y[n + 1]
        upstream = np.r_[prol, transit[:-1]]
        return np.r_[
            ktr * prol * m * (circ0 / circ) ** gamma - ktr * prol,
            ktr * upstream - ktr * transit,
            ktr * transit[-1] - kel * ktr * circ,
        ]

    return f


def friberg_y0(n: int, circ0: float, kel: float) -> Array:
    return np.r_[np.full(n + 1, kel * circ0), circ0]


def indirect_rhs(kind: int, r0: float, kout: float) -> Callable:
    kin = kout * r0

    def f(y: Array, m: float) -> Array:
        if kind in (1, 3):
            return np.array([kin * m - kout * y[0]])
        return np.array([kin - kout * m * y[0]])

    return f


def lifespan_rhs(
    n_p: int, n_l: int, plt0: float, tp: float, tplt: float, gamma: float = 0.0
) -> Callable:
    kin, kp, kl = plt0 / tplt, n_p / tp, n_l / tplt

    def f(y: Array, m: float) -> Array:
        prec, plt = y[:n_p], y[n_p:]
        return np.r_[
            # solve_ivp's trial stages can take the sum below zero at 0.02 h lifespans
            kin * m * (plt0 / max(plt.sum(), 1e-9 * plt0)) ** gamma - kp * prec[0],
            kp * (prec[:-1] - prec[1:]),
            kp * prec[-1] - kl * plt[0],
            kl * (plt[:-1] - plt[1:]),
        ]

    return f


def lifespan_y0(
    n_p: int, n_l: int, plt0: float, tp: float, tplt: float, gamma: float = 0.0
) -> Array:
    kin = plt0 / tplt
    return np.r_[np.full(n_p, kin * tp / n_p), np.full(n_l, kin * tplt / n_l)]


def solve_reference(
    rhs: Callable,
    y0: Array,
    drive: Callable[[float], float],
    t_obs: Array,
    breakpoints: Array,
    bolus: Array | None = None,
) -> Array:
    """States at ``t_obs`` [N, n_states]; integrates piecewise between breakpoints.

    ``bolus`` (a state vector) is added at every breakpoint, after any observation there.
    """
    knots = np.unique(np.r_[0.0, breakpoints[breakpoints < t_obs.max()], t_obs.max()])
    found: dict[float, Array] = {0.0: np.asarray(y0, float)}
    y = np.asarray(y0, float)
    for a, b in itertools.pairwise(knots):
        if bolus is not None and np.isin(a, breakpoints):
            y = y + bolus
        t_eval = np.unique(np.r_[t_obs[(t_obs > a) & (t_obs <= b)], b])
        sol = solve_ivp(
            lambda t, yy: rhs(yy, drive(t)),
            (a, b),
            y,
            method="DOP853",
            rtol=1e-10,
            atol=1e-12 * np.abs(y).max(),
            t_eval=t_eval,
        )
        assert sol.success, sol.message
        found.update({float(t): sol.y[:, i] for i, t in enumerate(sol.t)})
        y = sol.y[:, -1]
    return np.array([found[float(t)] for t in t_obs])


def endogenous_tpo_rhs(n: int, circ0, mtt, tplt, tpo0, ec50, ktpo, frac, pool) -> Callable:
    """TPO produced at a constant rate, cleared non-specifically and by platelet/MK mass."""
    ktr = (n + 1) / mtt
    q = 1 - pool
    base = circ0 / tplt / (q * ktr)
    mass0 = circ0 / q + (n + 1) * base
    occ0 = (tpo0 / ec50) / (1 + tpo0 / ec50)

    def f(y: Array, m: float) -> Array:
        tpo, mk, circ = y[0], y[1 : n + 2], y[n + 2]
        mass = circ / q + mk.sum()
        signal = tpo / ec50 + (m - 1)
        occupancy = signal / (1 + signal)
        return np.r_[
            ktpo * tpo0 - (1 - frac) * ktpo * tpo - frac * ktpo * tpo * mass / mass0,
            ktr * mk[0] * occupancy / occ0 - ktr * mk[0],
            ktr * (mk[:-1] - mk[1:]),
            q * ktr * mk[-1] - circ / tplt,
        ]

    return f


def endogenous_tpo_y0(n: int, circ0, mtt, tplt, tpo0, ec50, ktpo, frac, pool) -> Array:
    base = circ0 / tplt / ((1 - pool) * (n + 1) / mtt)
    return np.r_[tpo0, np.full(n + 1, base), circ0]


def free_by_root_finding(total: float, target: float, kd: float) -> float:
    """Free drug under quasi-equilibrium binding, by bracketing the mass balance."""
    if total <= 0:
        return 0.0
    return brentq(lambda f: f + target * f / (kd + f) - total, 0.0, total, xtol=1e-15, rtol=1e-14)


def tmdd_friberg_rhs(n: int, ka, v, kel, kint, kd, rdens, emax, ec50, circ0, mtt, gamma):
    ktr = (n + 1) / mtt

    def f(y: Array, m: float) -> Array:
        depot, amount, prol, transit, circ = y[0], y[1], y[2], y[3 : n + 3], y[n + 3]
        total = amount / v
        free = free_by_root_finding(total, rdens * circ, kd)
        bound = total - free
        stim = 1 + emax * free / (ec50 + free)
        upstream = np.r_[prol, transit[:-1]]
        return np.r_[
            -ka * depot,
            ka * depot - kel * v * free - kint * v * bound,
            ktr * prol * (m * stim * (circ0 / circ) ** gamma - 1),
            ktr * (upstream - transit),
            ktr * (transit[-1] - circ),
        ]

    return f


def pdmdd_lifespan_rhs(
    n_p: int, n_l: int, plt0, tp, tplt, gamma, ka, v, kel, kint, kd, rdens, emax, ec50, kcp, kpc
) -> Callable:
    """Wang 2010: QE binding to a target proportional to platelets, driving the lifespan chain."""
    chain = lifespan_rhs(n_p, n_l, plt0, tp, tplt, gamma)

    def f(y: Array, m: float) -> Array:
        cells, depot, central, peripheral = y[: n_p + n_l], y[-3], y[-2], y[-1]
        free = free_by_root_finding(central / v, rdens * cells[n_p:].sum(), kd)
        bound = central / v - free
        stim = 1 + emax * free / (ec50 + free)
        return np.r_[
            chain(cells, m * stim),
            -ka * depot,
            ka * depot - kel * v * free - kint * v * bound - kcp * v * free + kpc * peripheral,
            kcp * v * free - kpc * peripheral,
        ]

    return f


def qss_tmdd_lifespan_rhs(
    n_p: int, n_l: int, plt0, tp, tplt, gamma, ka1, k12, ka2, v, cl, kint, kss, kdeg, r0, slope
) -> Callable:
    """QSS-TMDD with target turnover (Gibiansky 2008, total drug and total target), two
    sequential absorption sites, free drug stimulating the lifespan chain's production."""
    chain = lifespan_rhs(n_p, n_l, plt0, tp, tplt, gamma)

    def f(y: Array, m: float) -> Array:
        cells, site1, site2, central, rtot = y[: n_p + n_l], y[-4], y[-3], y[-2], y[-1]
        ctot = central / v
        free = free_by_root_finding(ctot, rtot, kss)
        drug_target = rtot * free / (kss + free)  # complex concentration
        return np.r_[
            chain(cells, m * (1 + slope * free)),
            -ka1 * site1 - k12 * site1,
            k12 * site1 - ka2 * site2,
            ka1 * site1 + ka2 * site2 - cl * free - kint * drug_target * v,
            kdeg * r0 - kdeg * rtot - (kint - kdeg) * drug_target,
        ]

    return f
