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
import os
import time
from collections.abc import Callable

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from benchmarks.pd_problem import (
    DOSE,
    DOSE_TIME,
    OBS_TIME,
    OMEGA,
    OMEGA_PRIOR,
    PRIOR_SD,
    SIGMA,
    SIGMA_PRIOR,
    TRUE,
    first,
    oral_conc,
    population,
    reference,
    write_problem,
)
from tpopk.pd import PD_MODELS, SolverGrid, drug_effect, observe, simulate, solve
from tpopk.pk import PK_MODELS, concentration


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


def ode_rhs(y, t, p):
    """Friberg driven by the closed-form PK, for ``pymc.ode``.

    ``p`` = circ0, mtt, gamma, emax, ec50, ka, k, v.
    """
    circ0, mtt, gamma, emax, ec50, ka, k, v = (p[i] for i in range(8))
    since = t - DOSE_TIME
    lag = pt.switch(since >= 0, since, 0.0)
    one = DOSE * ka / (v * (ka - k))
    conc = pt.sum(pt.switch(since >= 0, one * (pt.exp(-k * lag) - pt.exp(-ka * lag)), 0.0))
    m = 1 + emax * conc / (ec50 + conc)
    ktr = 4.0 / mtt
    return [
        ktr * y[0] * (m * (circ0 / y[4]) ** gamma - 1),
        ktr * (y[0] - y[1]),
        ktr * (y[1] - y[2]),
        ktr * (y[2] - y[3]),
        ktr * (y[3] - y[4]),
    ]


def ode_platelets(pop, ind):
    """``pymc.ode.DifferentialEquation`` per subject (one Op, odeint + forward sensitivities).

    Output times include every dose time: with the observation times alone odeint gives up
    ("excess work done", its default 500 steps per output interval) and returns garbage.
    """
    times = np.union1d(DOSE_TIME[1:], OBS_TIME[1:])
    ode = pm.ode.DifferentialEquation(func=ode_rhs, times=times, n_states=5, n_theta=8, t0=0.0)
    at_obs = np.searchsorted(times, OBS_TIME[1:])
    n = pop["ka"].size
    rows = []
    for s in range(n):
        theta = pt.stack(
            [ind[q][s] for q in TRUE]
            + [pt.constant(pop["ka"][s]), pt.constant(pop["cl"][s] / pop["v"][s])]
            + [pt.constant(pop["v"][s])]
        )
        y = ode(pt.repeat(ind["circ0"][s], 5), theta)
        rows.append(pt.concatenate([ind["circ0"][s][None], y[at_obs, 4]]))
    return pt.concatenate(rows)


def pk_in_graph(pop, n, grid):
    """Concentrations at the stage times from ``tpopk.pk`` with ka, CL, V estimated.

    What a study model (``tpopk.model.structural.drive_at``) does: the closed form summed
    over all doses at every RK4 stage time, ``[S, 2K + 1, doses]``. The PK parameters get
    tight priors at each subject's value; only the cost of this path is of interest.
    """
    values = {
        p: pt.exp(pm.Normal(f"log_{p}_i", np.log(pop[p][:n]), 0.05))[:, None]
        for p in ("ka", "cl", "v")
    }
    dose_time = np.broadcast_to(DOSE_TIME, (n, 1, DOSE_TIME.size))
    zeros = np.zeros_like(dose_time)
    return concentration(
        PK_MODELS["oral_1cmt"], values, dose_time, zeros + DOSE, zeros, zeros, zeros,
        grid.stage_times, xp=pt,
    )  # fmt: skip


def build(pop, n, approach, h_scan=12.0, observed=None):
    """PyMC model of the benchmark problem; returns (model, platelet prediction)."""
    with pm.Model() as model:
        log_pop = {
            p: pm.Normal(f"log_{p}", np.log(v), PRIOR_SD)  # priors centred on the truth
            for p, v in TRUE.items()
        }
        omega = {p: pm.HalfNormal(f"omega_{p}", OMEGA_PRIOR) for p in OMEGA}
        z = {p: pm.Normal(f"z_{p}", 0.0, 1.0, shape=n) for p in OMEGA}
        ind = {
            p: pt.exp(log_pop[p] + (omega[p] * z[p] if p in OMEGA else 0.0)) * pt.ones(n)
            for p in TRUE
        }
        sigma = pm.HalfNormal("sigma", SIGMA_PRIOR)
        if approach in ("tpopk", "tpopk_pk"):
            pd_model, grid, conc = tpopk_platelets(pop, n)
            if approach == "tpopk_pk":
                conc = pk_in_graph(pop, n, grid)
            drive = drug_effect.emax(pt.as_tensor(conc), ind["emax"][:, None], ind["ec50"][:, None])
            params = pt.stack([ind["circ0"], ind["mtt"], ind["gamma"], pt.ones(n)], axis=1)
            plt = observe(pd_model, solve(pd_model, params, drive, grid), grid)
        elif approach == "pymc_ode":
            plt = ode_platelets(pop, ind)
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


def generating_point(model, pop, n):
    """The generating values on the model's value variables (log-transformed omegas/sigma)."""
    values = {f"log_{p}": np.log(v) for p, v in TRUE.items()}
    values |= {f"omega_{p}_log__": np.log(w) for p, w in OMEGA.items()}
    values |= {f"z_{p}": np.log(pop[f"ind_{p}"][:n] / TRUE[p]) / OMEGA[p] for p in OMEGA}
    values["sigma_log__"] = np.log(SIGMA)
    values |= {f"log_{p}_i": np.log(pop[p][:n]) for p in ("ka", "cl", "v")}
    return [np.asarray(values[v.name], dtype=float) for v in model.value_vars]


def logp_grad_fn(model, pop, n) -> tuple[Callable, list[np.ndarray], float]:
    """Compiled log density + gradient, its compile time, and the generating point."""
    logp = model.logp()
    t0 = time.perf_counter()
    fn = pytensor.function(model.value_vars, [logp, *pt.grad(logp, model.value_vars)])
    compile_s = time.perf_counter() - t0
    return fn, generating_point(model, pop, n), compile_s


def per_eval(fn, args, repeats: int) -> tuple[float, float]:
    """Median wall and process CPU time of one call (after one warm-up call).

    CPU time is the steadier figure on a shared machine: wall time grows with the load.
    """
    fn(*args)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(*args)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def truth_prediction(pop, n, approach, h_scan=12.0):
    """Platelets at OBS_TIME for the first ``n`` subjects at the generating values."""
    pop = first(pop, n)
    if approach in ("tpopk", "tpopk_pk"):
        model, grid, conc = tpopk_platelets(pop, n)
        drive = drug_effect.emax(conc, pop["ind_emax"][:, None], pop["ind_ec50"][:, None])
        params = np.stack([pop["ind_circ0"], pop["ind_mtt"], pop["ind_gamma"], np.ones(n)], axis=1)
        return observe(model, simulate(model, params, drive, grid), grid).reshape(n, -1)
    if approach == "pymc_ode":
        ind = {p: pt.constant(pop[f"ind_{p}"]) for p in TRUE}
        return ode_platelets(pop, ind).eval().reshape(n, -1)
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


def load() -> str:
    """The 1-minute load average, printed with every figure (the machine is shared)."""
    return f"load {os.getloadavg()[0]:.1f}"


def measure(pop, ref, n, approach, h, data, repeats, n_ref):
    """Accuracy, compile time and ms per logp+grad of one approach."""
    pred = truth_prediction(pop, n_ref, approach, h or 12.0)
    err = float(np.nanmax(np.abs(pred / ref[:n_ref] - 1)))
    model, _ = build(first(pop, n), n, approach, h or 12.0, observed=data[: n * OBS_TIME.size])
    fn, fargs, compile_s = logp_grad_fn(model, pop, n)
    return *per_eval(fn, fargs, repeats), compile_s, err


def problem(n: int, n_ref: int = 5) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Population, observations and solve_ivp reference of ``n`` subjects, also written
    to the shared ``.npz`` for ``benchmarks/pd_diffrax.py``.

    The data are tpopk's solution at the generating values with 10% proportional noise.
    """
    pop = first(population(n), n)
    ref = reference(pop, n_ref)
    noise = np.random.default_rng(2).normal(0.0, SIGMA, n * OBS_TIME.size)
    data = truth_prediction(pop, n, "tpopk").ravel() * (1 + noise)
    print(f"shared data: {write_problem(n, pop, data, ref)}; {load()}", flush=True)
    return pop, data, ref


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--scale", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--n-ref", type=int, default=5, help="subjects checked by solve_ivp")
    parser.add_argument("--scan-steps", type=float, nargs="*", default=[24.0, 12.0, 2.0])
    parser.add_argument(
        "--ode-subjects", type=int, default=5, help="subjects for pymc.ode (0: skip)"
    )
    args = parser.parse_args()
    n = args.subjects
    pop = population(max(n, args.scale))
    small, data, ref = problem(n, args.n_ref)

    rows = []
    # Scan at 24 h and 12 h (the first probe) and at 2 h, where a uniform grid first
    # reaches the 1e-3 accuracy target on this problem (see tests/pd, grid.py).
    approaches = [("tpopk", None, n), ("tpopk_pk", None, n)]
    approaches += [("scan", h, n) for h in args.scan_steps]
    if args.ode_subjects:
        approaches.append(("pymc_ode", None, args.ode_subjects))
    for approach, h, n_app in approaches:
        label = {
            "tpopk": "tpopk (graded RK4, numba + adjoint)",
            "tpopk_pk": "tpopk, PK estimated (study-model path)",
            "pymc_ode": f"pymc.ode (odeint), {n_app} subjects",
            "scan": f"scan RK4, h = {h} h",
        }[approach]
        reps = args.repeats if approach != "pymc_ode" else 2
        sec, cpu, compile_s, err = measure(
            small, ref, n_app, approach, h, data, reps, min(args.n_ref, n_app)
        )
        # pymc.ode runs one odeint per subject in Python: its cost is linear in subjects.
        scale = n / n_app
        rows.append((label, sec * scale, cpu * scale, compile_s, err))
        extra = f" (measured on {n_app}, x {scale:g})" if n_app != n else ""
        print(
            f"{label:40s} {sec * scale * 1e3:9.2f} ms/eval (cpu {cpu * scale * 1e3:.2f} ms)"
            f"{extra}  compile {compile_s:6.1f} s  max rel err {err:.1e}  {load()}",
            flush=True,
        )

    base, base_cpu = rows[0][1], rows[0][2]
    for label, sec, cpu, _, _ in rows[1:]:
        print(f"ratio {label} / tpopk: wall {sec / base:.1f}x, cpu {cpu / base_cpu:.1f}x")

    big = first(pop, args.scale)
    big_data = truth_prediction(big, args.scale, "tpopk").ravel()
    model, _ = build(big, args.scale, "tpopk", observed=big_data)
    fn, fargs, compile_s = logp_grad_fn(model, big, args.scale)
    sec_big, cpu_big = per_eval(fn, fargs, max(3, args.repeats // 5))
    print(
        f"tpopk {args.scale} subjects: {sec_big * 1e3:.2f} ms/eval (cpu {cpu_big * 1e3:.2f} ms, "
        f"compile {compile_s:.1f} s); {args.scale / n:.0f}x subjects cost "
        f"{sec_big / base:.1f}x wall, {cpu_big / base_cpu:.1f}x cpu  {load()}"
    )


if __name__ == "__main__":
    main()
