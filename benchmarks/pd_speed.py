"""PD solver speed and accuracy: tpopk vs a naive PyTensor ``scan`` RK4 (issue 4, item 4).

Problem (the same for every approach): Friberg model (prol, 3 transit, circ: 5 states),
daily oral dosing over 6 weeks, 10 platelet observations per subject, Emax stimulation of
production. PK is known per subject (one-compartment oral, closed form) so that the cost
measured is the PD solver's: the drive is ``emax(C, emax, ec50_i)`` in the graph. Estimated:
typical circ0, mtt, gamma, emax, ec50, log-normal IIV on circ0, mtt and ec50 (non-centred),
proportional residual error. One evaluation = log density + gradient of all free
parameters, compiled with PyTensor's default (numba) backend, as nutpie uses it.

Accuracy is the largest relative error of the predicted platelets at the observations,
at the generating parameters, against ``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-10)
on the first subjects.

Run: ``python -m benchmarks.pd_speed [--subjects 200] [--scale 2000] [--repeats 50]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from scipy.integrate import solve_ivp

from tpopk.pd import PD_MODELS, SolverGrid, drug_effect, observe, simulate, solve

DAYS = 42
DOSE_TIME = np.arange(DAYS) * 24.0
# Observations at troughs and twice 2 h after a dose (absorption peak). A uniform scan grid
# cannot hit the 2 h ones: its model reads the node before, and its accuracy is reported
# on the other eight.
OBS_TIME = np.array([0.0, 72.0, 168.0, 336.0, 504.0, 674.0, 840.0, 936.0, 1002.0, 1008.0])
TRUE = {"circ0": 200.0, "mtt": 150.0, "gamma": 0.2, "emax": 0.5, "ec50": 5.0}
OMEGA = {"circ0": 0.3, "mtt": 0.2, "ec50": 0.4}
SIGMA = 0.1


def oral_conc(t: np.ndarray, ka: np.ndarray, cl: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Concentration (mg/L) of 50 mg daily, one compartment, ``t`` [S, T] h."""
    k = (cl / v)[:, None, None]
    dt = t[..., None] - DOSE_TIME
    lag = np.where(dt >= 0, dt, 0.0)
    one = 50.0 * ka[:, None, None] / (v[:, None, None] * (ka[:, None, None] - k))
    return np.where(dt >= 0, one * (np.exp(-k * lag) - np.exp(-ka[:, None, None] * lag)), 0).sum(-1)


def population(n: int, seed: int = 1) -> dict[str, np.ndarray]:
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
    """Platelets at OBS_TIME for the first ``n_ref`` subjects by solve_ivp, [n_ref, 10]."""
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


def tpopk_platelets(pop, n):
    """Structure, grid and concentrations at the grid's stage times."""
    model = PD_MODELS["friberg"]
    subj = np.repeat(np.arange(n), OBS_TIME.size)
    grid = SolverGrid.build(subj, np.tile(OBS_TIME, n), n, breakpoints=np.tile(DOSE_TIME, (n, 1)))
    conc = oral_conc(grid.stage_times, pop["ka"], pop["cl"], pop["v"])
    return model, grid, conc


def scan_rk4(conc_nodes, conc_mid, h, circ0, mtt, gamma, emax, ec50):
    """Naive PyTensor scan RK4 on a common uniform grid, vectorised over subjects."""

    def rhs(y, m, circ0, ktr, gamma):
        prol, t1, t2, t3, circ = (y[:, i] for i in range(5))
        return pt.stack(
            [
                ktr * prol * (m * (circ0 / circ) ** gamma - 1),
                ktr * (prol - t1),
                ktr * (t1 - t2),
                ktr * (t2 - t3),
                ktr * (t3 - circ),
            ],
            axis=1,
        )

    # Parameters go in as non_sequences so PyMC can replace them by value variables.
    def step(ca, cb, cc, y, circ0, mtt, gamma, emax, ec50):
        ktr = 4.0 / mtt
        ma, mb, mc = (drug_effect.emax(c, emax, ec50) for c in (ca, cb, cc))
        k1 = rhs(y, ma, circ0, ktr, gamma)
        k2 = rhs(y + 0.5 * h * k1, mb, circ0, ktr, gamma)
        k3 = rhs(y + 0.5 * h * k2, mb, circ0, ktr, gamma)
        k4 = rhs(y + h * k3, mc, circ0, ktr, gamma)
        return y + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)

    y0 = pt.repeat(circ0[:, None], 5, axis=1)
    ys = pytensor.scan(
        step,
        sequences=[conc_nodes[:-1], conc_mid, conc_nodes[1:]],
        outputs_info=[y0],
        non_sequences=[circ0, mtt, gamma, emax, ec50],
        return_updates=False,
    )
    return pt.concatenate([y0[None], ys], axis=0)  # [G, S, 5]


def build(pop, n, approach, h_scan=12.0, observed=None):
    """PyMC model of the benchmark problem; returns (model, platelet prediction at truth)."""
    with pm.Model() as model:
        log_pop = {
            p: pm.Normal(f"log_{p}", np.log(v), 0.3)  # priors centred on the truth
            for p, v in TRUE.items()
        }
        omega = {p: pm.HalfNormal(f"omega_{p}", 0.5) for p in OMEGA}
        z = {p: pm.Normal(f"z_{p}", 0.0, 1.0, shape=n) for p in OMEGA}
        ind = {
            p: pt.exp(log_pop[p] + (omega[p] * z[p] if p in OMEGA else 0.0)) * pt.ones(n)
            for p in TRUE
        }
        sigma = pm.HalfNormal("sigma", 0.2)
        if approach == "tpopk":
            pd_model, grid, conc = tpopk_platelets(pop, n)
            drive = drug_effect.emax(pt.constant(conc), ind["emax"][:, None], ind["ec50"][:, None])
            params = pt.stack([ind["circ0"], ind["mtt"], ind["gamma"], pt.ones(n)], axis=1)
            plt = observe(pd_model, solve(pd_model, params, drive, grid), grid)
        else:
            nodes = np.arange(0.0, OBS_TIME.max() + h_scan / 2, h_scan)
            conc_nodes = oral_conc(np.tile(nodes, (n, 1)), pop["ka"], pop["cl"], pop["v"]).T
            mids = nodes[:-1] + h_scan / 2
            conc_mid = oral_conc(np.tile(mids, (n, 1)), pop["ka"], pop["cl"], pop["v"]).T
            ys = scan_rk4(
                pt.constant(conc_nodes), pt.constant(conc_mid), h_scan,
                ind["circ0"], ind["mtt"], ind["gamma"], ind["emax"], ind["ec50"],
            )  # fmt: skip
            node_of = np.searchsorted(nodes, OBS_TIME, side="right") - 1
            plt = ys[np.tile(node_of, n), np.repeat(np.arange(n), OBS_TIME.size), 4]
        data = observed if observed is not None else np.ones(n * OBS_TIME.size)
        pm.Normal("plt", mu=plt, sigma=sigma * plt, observed=data)
    return model, plt


def logp_grad_fn(model) -> tuple[Callable, list[np.ndarray], float]:
    logp = model.logp()
    t0 = time.perf_counter()
    fn = pytensor.function(model.value_vars, [logp, *pt.grad(logp, model.value_vars)])
    compile_s = time.perf_counter() - t0
    point = model.initial_point()
    args = [point[v.name] for v in model.value_vars]
    return fn, args, compile_s


def per_eval(fn, args, repeats: int) -> float:
    fn(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def truth_prediction(pop, n, approach, h_scan=12.0):
    """Platelets at OBS_TIME for the first ``n`` subjects at the generating values."""
    pop = first(pop, n)
    if approach == "tpopk":
        model, grid, conc = tpopk_platelets(pop, n)
        drive = drug_effect.emax(conc, pop["ind_emax"][:, None], pop["ind_ec50"][:, None])
        params = np.stack([pop["ind_circ0"], pop["ind_mtt"], pop["ind_gamma"], np.ones(n)], axis=1)
        return observe(model, simulate(model, params, drive, grid), grid).reshape(n, -1)
    nodes = np.arange(0.0, OBS_TIME.max() + 2 * h_scan, h_scan)
    conc_n = pt.constant(oral_conc(np.tile(nodes, (n, 1)), pop["ka"], pop["cl"], pop["v"]).T)
    conc_m = pt.constant(
        oral_conc(np.tile(nodes[:-1] + h_scan / 2, (n, 1)), pop["ka"], pop["cl"], pop["v"]).T
    )
    ys = scan_rk4(
        conc_n, conc_m, h_scan,
        *(pt.constant(pop[f"ind_{p}"]) for p in ("circ0", "mtt", "gamma", "emax")),
        pt.constant(pop["ind_ec50"]),
    ).eval()  # fmt: skip
    # Scan's uniform grid has no node at 2 h after a dose: report its error where it has one.
    on_grid = np.isin(OBS_TIME, nodes)
    out = np.full((n, OBS_TIME.size), np.nan)
    out[:, on_grid] = ys[np.searchsorted(nodes, OBS_TIME[on_grid]), :, 4].T
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--scale", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--n-ref", type=int, default=5, help="subjects checked by solve_ivp")
    parser.add_argument("--skip-scan", action="store_true")
    args = parser.parse_args()
    n = args.subjects
    pop = population(max(n, args.scale))
    small = first(pop, n)
    ref = reference(small, args.n_ref)
    # Data: tpopk's solution at the truth with proportional noise (the same for all).
    noise = np.random.default_rng(2).normal(0.0, SIGMA, n * OBS_TIME.size)
    data = truth_prediction(small, n, "tpopk").ravel() * (1 + noise)

    rows = []
    # Scan at 24 h and 12 h (the first probe) and at 2 h, where a uniform grid first
    # reaches the 1e-3 accuracy target on this problem (see tests/pd, grid.py).
    scans = [("scan", 24.0), ("scan", 12.0), ("scan", 2.0)]
    approaches = [("tpopk", None)] + ([] if args.skip_scan else scans)
    for approach, h in approaches:
        label = "tpopk (graded RK4, numba + adjoint)" if h is None else f"scan RK4, h = {h:g} h"
        pred = truth_prediction(small, args.n_ref, approach, h or 12.0)
        err = np.nanmax(np.abs(pred / ref - 1))
        model, _ = build(small, n, approach, h or 12.0, observed=data)
        fn, fargs, compile_s = logp_grad_fn(model)
        sec = per_eval(fn, fargs, args.repeats)
        rows.append((label, sec, compile_s, err))
        print(
            f"{label:40s} {sec * 1e3:9.2f} ms/eval  compile {compile_s:6.1f} s  "
            f"max rel err {err:.1e}",
            flush=True,
        )

    base = rows[0][1]
    for label, sec, _, _ in rows[1:]:
        print(f"ratio {label} / tpopk: {sec / base:.1f}x")

    big = first(pop, args.scale)
    big_data = truth_prediction(big, args.scale, "tpopk").ravel()
    model, _ = build(big, args.scale, "tpopk", observed=big_data)
    fn, fargs, compile_s = logp_grad_fn(model)
    sec_big = per_eval(fn, fargs, max(3, args.repeats // 5))
    print(
        f"tpopk {args.scale} subjects: {sec_big * 1e3:.2f} ms/eval (compile {compile_s:.1f} s); "
        f"{args.scale / n:.0f}x subjects cost {sec_big / base:.1f}x time"
    )


if __name__ == "__main__":
    main()
