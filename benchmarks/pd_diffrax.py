"""NumPyro + diffrax on the PD benchmark problem (issue 4, item 4), in its own environment.

Same problem, priors and data as ``benchmarks/pd_speed.py`` (``benchmarks/pd_problem.py``;
run pd_speed first, it writes the shared ``.npz``). The ODE is the textbook one a NumPyro
user writes: Friberg with ``Prol`` as a state, the drive from the closed-form PK summed
over the doses inside the right-hand side, solved per subject under ``jax.vmap`` by
``diffrax.diffeqsolve`` (Tsit5, PID step control, forced steps at every dose, where the
drive has a kink), gradients by diffrax's default recursive-checkpoint adjoint.

Per-gradient mode (default): for each rtol, the largest relative error at the generating
values against the solve_ivp reference, the compile time and the cost of one
``value_and_grad`` of NumPyro's potential (the negative log density). Fit mode
(``--fit``): NUTS, 4 chains; draws, divergences and timings go to an ``.npz`` that
``benchmarks/pd_fit.py`` summarises with the same ArviZ ESS as the other approaches.
Under NUTS the recursive-checkpoint adjoint fails to trace inside NumPyro's loops
(diffrax 0.7.2, JAX 0.12), so the fit uses ``diffrax.DirectAdjoint``, and failed solves
(``max_steps`` reached at a wild proposal) return NaN, which NUTS counts as divergent.

Setup (never inside ``.venv``, never a tpopk dependency)::

    python3.12 -m venv .cache/bench-venv
    .cache/bench-venv/bin/pip install jax numpyro diffrax numpy scipy

Run: ``.cache/bench-venv/bin/python -m benchmarks.pd_diffrax [--subjects 200]
[--rtol 1e-4 1e-5 1e-6]`` or ``... --fit --subjects 10 --tune 100 --draws 100 --rtol 1e-6``.
"""

from __future__ import annotations

import argparse
import os
import time

# NUTS chains run in parallel on XLA host devices; this must precede importing jax.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, init_to_value
from numpyro.infer.util import initialize_model

from benchmarks.pd_problem import (
    DATA_DIR,
    DOSE,
    DOSE_TIME,
    OBS_TIME,
    OMEGA,
    OMEGA_PRIOR,
    PRIOR_SD,
    SIGMA,
    SIGMA_PRIOR,
    TRUE,
    read_problem,
)

jax.config.update("jax_enable_x64", True)
PD = tuple(TRUE)


def _rhs(t, y, args):
    circ0, ktr, gamma, emax, ec50, ka, k, v = args
    since = t - DOSE_TIME
    lag = jnp.where(since >= 0.0, since, 0.0)
    one = DOSE * ka / (v * (ka - k))
    conc = jnp.sum(jnp.where(since >= 0.0, one * (jnp.exp(-k * lag) - jnp.exp(-ka * lag)), 0.0))
    m = 1.0 + emax * conc / (ec50 + conc)
    prol, t1, t2, t3, circ = y
    return jnp.stack(
        [
            ktr * prol * (m * (circ0 / circ) ** gamma - 1.0),
            ktr * (prol - t1),
            ktr * (t1 - t2),
            ktr * (t2 - t3),
            ktr * (t3 - circ),
        ]
    )


def platelets(rtol: float, max_steps: int = 8192, adjoint=None):
    """``f(ind [S, 5 PD], ka, k, v [S]) -> [S, 10]`` platelets at OBS_TIME."""
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=rtol, atol=rtol * 1e-2), step_ts=jnp.asarray(DOSE_TIME)
    )

    def one(circ0, mtt, gamma, emax, ec50, ka, k, v):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(_rhs),
            diffrax.Tsit5(),
            t0=0.0,
            t1=float(OBS_TIME[-1]),
            dt0=0.5,
            y0=jnp.full(5, circ0),
            args=(circ0, 4.0 / mtt, gamma, emax, ec50, ka, k, v),
            saveat=diffrax.SaveAt(ts=jnp.asarray(OBS_TIME)),
            stepsize_controller=controller,
            max_steps=max_steps,
            adjoint=adjoint or diffrax.RecursiveCheckpointAdjoint(),
            throw=False,  # a failed solve (a wild NUTS proposal) gives NaN: a divergence
        )
        return jnp.where(sol.result == diffrax.RESULTS.successful, sol.ys[:, 4], jnp.nan)

    return jax.vmap(one)


def model(pk, data, solve):
    n = pk["ka"].shape[0]
    log_pop = {
        p: numpyro.sample(f"log_{p}", dist.Normal(np.log(v), PRIOR_SD)) for p, v in TRUE.items()
    }
    omega = {p: numpyro.sample(f"omega_{p}", dist.HalfNormal(OMEGA_PRIOR)) for p in OMEGA}
    z = {p: numpyro.sample(f"z_{p}", dist.Normal(0.0, 1.0).expand([n])) for p in OMEGA}
    ind = [jnp.exp(log_pop[p] + (omega[p] * z[p] if p in OMEGA else 0.0)) * jnp.ones(n) for p in PD]
    sigma = numpyro.sample("sigma", dist.HalfNormal(SIGMA_PRIOR))
    plt = solve(*ind, pk["ka"], pk["cl"] / pk["v"], pk["v"]).ravel()
    numpyro.sample("plt", dist.Normal(plt, sigma * plt), obs=data)


def generating_point(pop):
    """The generating values as NumPyro sample sites (etas from the simulated subjects)."""
    values = {f"log_{p}": np.log(v) for p, v in TRUE.items()}
    values |= {f"omega_{p}": w for p, w in OMEGA.items()}
    values |= {f"z_{p}": np.log(pop[f"ind_{p}"] / TRUE[p]) / OMEGA[p] for p in OMEGA}
    return values | {"sigma": SIGMA}


def accuracy(pop, ref, rtol):
    n_ref = ref.shape[0]
    solve = jax.jit(platelets(rtol))
    ind = [jnp.asarray(pop[f"ind_{p}"][:n_ref]) for p in PD]
    pk = [pop[p][:n_ref] for p in ("ka", "cl", "v")]
    got = np.asarray(solve(*ind, pk[0], pk[1] / pk[2], pk[2]))
    return float(np.max(np.abs(got / ref - 1.0)))


def per_gradient(pop, data, rtol, repeats):
    pk = {p: jnp.asarray(pop[p]) for p in ("ka", "cl", "v")}
    info = initialize_model(
        jax.random.PRNGKey(0),
        model,
        model_args=(pk, jnp.asarray(data), platelets(rtol)),
        init_strategy=init_to_value(values=generating_point(pop)),
    )
    fn = jax.jit(jax.value_and_grad(info.potential_fn))
    z = info.param_info.z
    t0 = time.perf_counter()
    jax.block_until_ready(fn(z))
    compile_s = time.perf_counter() - t0
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(z))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)  # all XLA threads of this process
    return float(np.median(wall)), float(np.median(cpu)), compile_s


def fit(pop, data, rtol, n, tune, draws, chains, seed):
    pk = {p: jnp.asarray(pop[p]) for p in ("ka", "cl", "v")}
    # NUTS gets the potential directly: NumPyro's own initialisation, traced inside pmap and
    # a while loop, trips diffrax's checkpointed loop ("Closure-converted function called
    # with different dynamic arguments"). Draws are then on the unconstrained scale
    # (log omega, log sigma), which leaves the rank-based bulk ESS unchanged.
    info = initialize_model(
        jax.random.PRNGKey(0),
        model,
        model_args=(pk, jnp.asarray(data), platelets(rtol, 4096, diffrax.DirectAdjoint())),
        init_strategy=init_to_value(values=generating_point(pop)),
    )
    init = jax.tree.map(lambda x: jnp.repeat(x[None], chains, axis=0), info.param_info.z)

    def run(n_tune, n_draws):
        mcmc = MCMC(
            NUTS(potential_fn=info.potential_fn, target_accept_prob=0.8),
            num_warmup=n_tune,
            num_samples=n_draws,
            num_chains=chains,
            chain_method="parallel",
            progress_bar=False,
        )
        t0 = time.perf_counter()
        mcmc.run(jax.random.PRNGKey(seed), init_params=init, extra_fields=("diverging",))
        return mcmc, time.perf_counter() - t0

    # NumPyro compiles inside run(): time a 1 + 1 draw run for the compile.
    _, compile_s = run(1, 1)
    mcmc, wall = run(tune, draws)
    samples = mcmc.get_samples(group_by_chain=True)
    diverging = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"])
    out = DATA_DIR / f"diffrax_fit_{n}.npz"
    pop_vars = {k: np.asarray(v) for k, v in samples.items() if not k.startswith("z_")}
    np.savez(
        out,
        compile_s=compile_s,
        wall_s=wall,
        tune=tune,
        draws=draws,
        chains=chains,
        rtol=rtol,
        diverging=diverging,
        **pop_vars,
    )
    print(
        f"NumPyro+diffrax fit: {n} subjects, {chains} chains x ({tune} tune + {draws} draws), "
        f"rtol {rtol:g}: compile {compile_s:.1f} s, run {wall:.1f} s (its compile included), "
        f"divergences {int(diverging.sum())}; draws in {out}  load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--rtol", type=float, nargs="+", default=[1e-4, 1e-5, 1e-6, 1e-7, 1e-8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fit", action="store_true")
    parser.add_argument("--tune", type=int, default=150)
    parser.add_argument("--draws", type=int, default=150)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    pop, data, ref = read_problem(args.subjects)
    print(
        f"jax {jax.__version__}, numpyro {numpyro.__version__}, diffrax {diffrax.__version__}; "
        f"{args.subjects} subjects; devices {jax.device_count()}",
        flush=True,
    )
    if args.fit:
        fit(pop, data, args.rtol[0], args.subjects, args.tune, args.draws, args.chains, args.seed)
        return
    for rtol in args.rtol:
        err = accuracy(pop, ref, rtol)
        sec, cpu, compile_s = per_gradient(pop, data, rtol, args.repeats)
        print(
            f"NumPyro+diffrax Tsit5 rtol {rtol:.0e}: {sec * 1e3:9.2f} ms/eval "
            f"(cpu {cpu * 1e3:.2f} ms)  "
            f"compile {compile_s:6.1f} s  max rel err {err:.1e}  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
