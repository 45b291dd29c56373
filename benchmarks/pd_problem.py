"""The PD benchmark problem, in plain NumPy/SciPy so every benchmark environment shares it.

Friberg model (prol, 3 transit, circ: 5 states), 50 mg daily oral dosing over 6 weeks,
10 platelet observations per subject, Emax stimulation of production by a known
one-compartment oral PK per subject. Estimated: typical circ0, mtt, gamma, emax, ec50;
log-normal IIV on circ0, mtt and ec50 (non-centred); proportional residual error.
``benchmarks/pd_speed.py`` (tpopk, scan, ``pymc.ode``) and ``benchmarks/pd_diffrax.py``
(NumPyro + diffrax, its own virtual environment) import this module and read the same
simulated data from :func:`write_problem`'s ``.npz``, so all approaches fit one data set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

DAYS = 42
DOSE = 50.0  # mg
DOSE_TIME = np.arange(DAYS) * 24.0
# Observations at troughs and twice 2 h after a dose (absorption peak). A uniform scan grid
# cannot hit the 2 h ones: its model reads the node before, and its accuracy is reported
# on the other eight.
OBS_TIME = np.array([0.0, 72.0, 168.0, 336.0, 504.0, 674.0, 840.0, 936.0, 1002.0, 1008.0])
TRUE = {"circ0": 200.0, "mtt": 150.0, "gamma": 0.2, "emax": 0.5, "ec50": 5.0}
OMEGA = {"circ0": 0.3, "mtt": 0.2, "ec50": 0.4}
SIGMA = 0.1
# Priors of the benchmark model (all approaches): log typical value ~ Normal(log truth,
# PRIOR_SD), omega ~ HalfNormal(OMEGA_PRIOR), sigma ~ HalfNormal(SIGMA_PRIOR).
PRIOR_SD = 0.3
OMEGA_PRIOR = 0.5
SIGMA_PRIOR = 0.2
#: Where pd_speed writes the shared data set (relative to the repository root).
DATA_DIR = Path(".cache/pd_bench")


def oral_conc(t: np.ndarray, ka: np.ndarray, cl: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Concentration (mg/L) of 50 mg daily, one compartment, ``t`` [S, T] h."""
    k = (cl / v)[:, None, None]
    dt = t[..., None] - DOSE_TIME
    lag = np.where(dt >= 0, dt, 0.0)
    one = DOSE * ka[:, None, None] / (v[:, None, None] * (ka[:, None, None] - k))
    return np.where(dt >= 0, one * (np.exp(-k * lag) - np.exp(-ka[:, None, None] * lag)), 0).sum(-1)


def population(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """PK and generating PD values of ``n`` subjects (``ind_<p>``)."""
    rng = np.random.default_rng(seed)
    pk = {
        "ka": np.exp(rng.normal(np.log(1.0), 0.3, n)),
        "cl": np.exp(rng.normal(np.log(0.8), 0.3, n)),
        "v": np.exp(rng.normal(np.log(12.0), 0.2, n)),
    }
    eta = {p: rng.normal(0.0, w, n) for p, w in OMEGA.items()}
    ind = {p: TRUE[p] * np.exp(eta.get(p, 0.0)) * np.ones(n) for p in TRUE}
    return pk | {f"ind_{p}": v for p, v in ind.items()} | {"seed": np.array([seed])}


def first(pop: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first ``n`` subjects of a population."""
    return {k: v[:n] if v.size > 1 else v for k, v in pop.items()}


def reference(pop: dict[str, np.ndarray], n_ref: int) -> np.ndarray:
    """Platelets at OBS_TIME for the first ``n_ref`` subjects by solve_ivp, [n_ref, 10].

    DOP853, rtol 1e-10, restarted at every dose (where the drive has a kink).
    """
    out = np.empty((n_ref, OBS_TIME.size))
    for s in range(n_ref):
        circ0, mtt, gamma = (pop[f"ind_{p}"][s] for p in ("circ0", "mtt", "gamma"))
        emax, ec50 = pop["ind_emax"][s], pop["ind_ec50"][s]
        pk = [pop[p][s : s + 1] for p in ("ka", "cl", "v")]
        ktr = 4.0 / mtt

        def f(t, y, pk=pk, circ0=circ0, gamma=gamma, emax=emax, ec50=ec50, ktr=ktr):
            c = oral_conc(np.array([[t]]), *pk)[0, 0]
            m = 1 + emax * c / (ec50 + c)
            return np.r_[
                ktr * y[0] * (m * (circ0 / y[4]) ** gamma - 1),
                ktr * (y[:3] - y[1:4]),
                ktr * (y[3] - y[4]),
            ]

        y = np.full(5, circ0)
        found = {0.0: circ0}
        for a, b in zip(DOSE_TIME, np.r_[DOSE_TIME[1:], OBS_TIME.max()], strict=True):
            t_eval = np.unique(np.r_[OBS_TIME[(a < OBS_TIME) & (b >= OBS_TIME)], b])
            sol = solve_ivp(f, (a, b), y, method="DOP853", rtol=1e-10, atol=1e-9, t_eval=t_eval)
            found |= dict(zip(sol.t.tolist(), sol.y[4], strict=True))
            y = sol.y[:, -1]
        out[s] = [found[t] for t in OBS_TIME]
    return out


def data_path(n: int) -> Path:
    """The shared data file for ``n`` subjects."""
    return DATA_DIR / f"friberg_{n}.npz"


def write_problem(n: int, pop: dict[str, np.ndarray], data: np.ndarray, ref: np.ndarray) -> Path:
    """Save population, observations ``[n * 10]`` and the solve_ivp reference for others."""
    path = data_path(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, data=data, ref=ref, **first(pop, n))
    return path


def read_problem(n: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Population, observations and reference written by :func:`write_problem`."""
    with np.load(data_path(n)) as f:
        arrays = {k: f[k] for k in f.files}
    data, ref = arrays.pop("data"), arrays.pop("ref")
    return arrays, data, ref
