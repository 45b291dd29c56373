"""nutpie on PyTensor's numba functions: compiled once per machine, run without the GIL.

``nutpie.compile_pymc_model`` wraps the model's numba code in ``numba.cfunc``s that numba
cannot cache ("uses dynamic globals"), so every fit would pay that compile again
(benchmarks/README.md, "Study model compile time"). PyTensor's own numba backend caches
whole compiled graphs on disk. :func:`compile_nutpie` builds nutpie's model from those
functions through ``nutpie.from_pyfunc``; nutpie then calls them from its chain threads,
so the top-level function is compiled with ``nogil=True`` (under its own cache key) to let
the chains run in parallel.

The graphs are the ones nutpie itself builds for its JAX path (``_make_functions``), so
the log density, its gradient and the stored variables are nutpie's, numerically.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from pytensor.compile.mode import Mode, get_mode
from pytensor.link.numba.linker import NumbaLinker

from tpopk.progress import step


class _NogilNumbaLinker(NumbaLinker):  # type: ignore[misc]  # pytensor is untyped
    """PyTensor's numba linker with the outermost function releasing the GIL."""

    def jit_compile(self, fn_and_cache: tuple[Any, str | None]) -> Callable[..., Any]:
        from pytensor.link.numba.cache import compile_numba_function_src
        from pytensor.link.numba.dispatch.basic import numba_njit

        fn, cache_key = fn_and_cache
        if cache_key is None:
            return numba_njit(fn.py_func, final_function=True, nogil=True)  # type: ignore[no-any-return]
        # A new entry point with its own key: numba's cache does not key on nogil, so
        # reusing PyTensor's key could load a GIL-holding build of the same graph. The entry
        # runs in this module's globals, which numba's cache records by module name: the
        # name is in the key so that moving this module cannot load a stale entry.
        entry = compile_numba_function_src(
            src="def nogil_entry(*args): return inner(*args)",
            function_name="nogil_entry",
            global_env=globals() | {"inner": fn},
            cache_key=f"{cache_key}_{__name__}_nogil",
        )
        return numba_njit(entry, final_function=True, cache=True, nogil=True)  # type: ignore[no-any-return]


class RejectedPointError(ArithmeticError):
    """The log density failed at a point: nutpie rejects the point (a divergence).

    nuts-rs reads ``is_recoverable`` on an exception raised by a Python log density;
    without it, one division by zero at a wild early warm-up point ends the whole fit.
    """

    is_recoverable = True


#: PyTensor's NUMBA mode (same rewrites) with the GIL-free linker.
NOGIL_NUMBA = Mode(_NogilNumbaLinker(), get_mode("NUMBA").provided_optimizer)


def compile_nutpie(model: pm.Model, starts: np.ndarray | None = None) -> Any:
    """Compile ``model`` for ``nutpie.sample`` from cached, GIL-free numba functions.

    Without ``starts``, initial points are PyMC's: each free variable's support point,
    jittered by U(-1, 1) on the unconstrained scale, except that a jitter the data rule
    out is shrunk towards the support point (:func:`_plausible_start`). ``starts``
    (one row per chain, nutpie's flat unconstrained vector, e.g. from
    :func:`unconstrained_starts`) are used as given, chain i from row i.
    """
    from nutpie.compile_pymc import _make_functions, _prepare_dims_and_coords, _wrap_with_lock
    from nutpie.compiled_pyfunc import from_pyfunc
    from pymc.initial_point import make_initial_point_fn

    from tpopk.pd.solve import keep_freed_memory

    keep_freed_memory()  # large studies: no page faults per gradient

    initial_point = make_initial_point_fn(
        model=model, jitter_rvs=set(model.free_RVs), return_transformed=True
    )
    n_dim, _, logp_fn, expand_fn, initial_point_fn, shape_info, transformed = _make_functions(
        model,
        mode=NOGIL_NUMBA,
        compute_grad=True,
        join_expanded=False,
        pymc_initial_point_fn=_wrap_with_lock(initial_point),
    )
    names, _, shapes = shape_info
    # nutpie calls these from one thread per chain. A PyTensor Function keeps its inputs and
    # outputs in shared storage and is not thread-safe, so call the jitted numba function
    # itself (pure, and thread-safe) with the shared variables' values, as nutpie's JAX path
    # does; the data are fixed while sampling.
    logp_jit = logp_fn.vm.jit_fn
    logp_shared = [var.get_value() for var in logp_fn.get_shared()]
    expand_jit = expand_fn.vm.jit_fn
    expand_shared = [var.get_value() for var in expand_fn.get_shared()]

    def make_logp_fn() -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
        def logp(x: np.ndarray) -> tuple[float, np.ndarray]:
            try:
                value, gradient = logp_jit(x, *logp_shared)
            except ArithmeticError as error:  # numba's ZeroDivisionError, far out in the tails
                raise RejectedPointError(str(error)) from error
            return float(value), np.array(gradient, dtype="float64", order="C")

        return logp

    def make_expand_fn(seed1: int, seed2: int, chain: int) -> Callable[..., dict[str, Any]]:
        def expand(x: np.ndarray) -> dict[str, np.ndarray]:
            values = expand_jit(x, *expand_shared)
            return {
                name: np.array(value, dtype="float64", order="C").reshape(shape)
                for name, value, shape in zip(names, values, shapes, strict=True)
            }

        return expand

    # nutpie's flat vector holds the free variables' values in model.free_RVs order.
    support_flat = support_vector(model)
    n_data = sum(int(np.size(model.rvs_to_values[rv].eval())) for rv in model.observed_RVs)
    log_density = make_logp_fn()
    # Once per model, not per chain: the least log density a start may have.
    floor = _start_value(log_density, support_flat) - START_TOLERANCE * (n_data + n_dim)

    given = itertools.count()

    def start(seed: Any) -> np.ndarray:
        if starts is not None:
            return np.array(starts[next(given) % len(starts)], dtype="float64")
        return _plausible_start(initial_point_fn(seed), support_flat, log_density, floor)

    dims, coords = _prepare_dims_and_coords(model, shape_info, transformed)
    return from_pyfunc(
        ndim=n_dim,
        make_logp_fn=make_logp_fn,
        make_expand_fn=make_expand_fn,
        make_initial_point_fn=start,
        expanded_dtypes=[np.dtype("float64")] * len(names),
        expanded_shapes=shapes,
        expanded_names=names,
        dims=dims,
        coords=coords,
        reparameterized_names=transformed,
    )


#: Nats per observation and per free dimension a jittered start may lose against the
#: support point: a residual beyond ~sqrt(2·100) = 14 SD on average is a start the data
#: rule out, e.g. a lag time jittered past the first sample, where a proportional error
#: of a near-zero prediction gives log densities of -1e27 to -1e32 (benchmarks/README.md,
#: "Reference cross-agonist fit"), from which warm-up does not recover.
START_TOLERANCE = 100.0
#: Halvings of the jitter before the support point itself is the start.
START_HALVINGS = 8


def unconstrained_starts(
    model: pm.Model, posterior: xr.Dataset, chains: int, seed: int
) -> np.ndarray:
    """Pick ``chains`` draws of ``posterior`` at random as nutpie's flat start vectors.

    The draws are on the constrained scale (as stored); PyMC's initial-point function
    transforms them, as it does ``initvals``.
    """
    from pymc.initial_point import make_initial_point_fn

    flat = posterior.stack(sample=("chain", "draw"))
    picked = np.random.default_rng(seed).choice(flat.sizes["sample"], chains, replace=False)
    rows = []
    for i in picked:
        point = {rv.name: flat[rv.name].isel(sample=int(i)).to_numpy() for rv in model.free_RVs}
        transformed = make_initial_point_fn(
            model=model, overrides=point, jitter_rvs=set(), return_transformed=True
        )(seed)
        rows.append(
            np.concatenate(
                [np.ravel(transformed[model.rvs_to_values[rv].name]) for rv in model.free_RVs]
            )
        )
    return np.array(rows, dtype="float64")


def support_vector(model: pm.Model) -> np.ndarray:
    """Return the free variables' support point as nutpie's flat vector (free_RVs order)."""
    support = model.initial_point()
    return np.concatenate(
        [np.ravel(support[model.rvs_to_values[rv].name]) for rv in model.free_RVs]
    ).astype("float64")


def _start_value(
    log_density: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray
) -> float:
    """Log density at ``x``; -inf where it, or its gradient, is not finite or it raises."""
    try:
        logp, grad = log_density(x)
    except ArithmeticError:
        return -np.inf
    return logp if np.isfinite(logp) and np.all(np.isfinite(grad)) else -np.inf


def _plausible_start(
    jittered: np.ndarray,
    support: np.ndarray,
    log_density: Callable[[np.ndarray], tuple[float, np.ndarray]],
    floor: float,
) -> np.ndarray:
    """``jittered``, or its jitter halved until the log density is at least ``floor``.

    ``floor`` is the support point's log density less ``START_TOLERANCE`` nats per
    observation and free dimension; after ``START_HALVINGS`` the support point is the start.
    """
    x = jittered
    for _ in range(START_HALVINGS):
        if _start_value(log_density, x) >= floor:
            return x
        x = support + 0.5 * (x - support)
    return support


def sample_nutpie(
    model: pm.Model,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    seed: int,
    progressbar: bool,
    starts: np.ndarray | None = None,
    **nuts: Any,
) -> xr.DataTree:
    """Sample ``model`` with nutpie as ``pm.sample(nuts_sampler="nutpie")`` does.

    The same chain seed, stored groups (plus ``constant_data`` and ``observed_data``)
    and posterior attributes as PyMC's nutpie path; ``nuts`` are ``nutpie.sample``'s
    keywords (``target_accept``, ``maxdepth``, ...). ``starts`` as in
    :func:`compile_nutpie`. ``sample_stats`` attrs ``warmup_gradients`` and
    ``sampling_gradients`` count the log-density gradients (leapfrog steps) spent in
    warm-up and after it, over all chains. With ``progressbar``, compiling is announced
    on stderr.
    """
    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata

    with step("fit", "compiling the model (minutes for a new model; then cached)", progressbar):
        compiled = compile_nutpie(model, starts)
    # pm.sample's seed for nutpie: the first of its per-chain seeds
    chain_seed = int(np.random.default_rng(seed).spawn(chains)[0].integers(2**30))
    start = time.time()
    tree: xr.DataTree = nutpie.sample(
        compiled,
        draws=draws,
        tune=max(tune, 1),  # nuts-rs needs one tuning step
        chains=chains,
        cores=cores if cores is not None else min(chains, os.cpu_count() or 1),
        seed=chain_seed,
        save_warmup=True,  # to count warm-up gradients; the warm-up draws are dropped
        progress_bar=progressbar,
        **nuts,
    )
    tree["sample_stats"].attrs |= {
        "warmup_gradients": int(tree["warmup_sample_stats"]["n_steps"].sum()),
        "sampling_gradients": int(tree["sample_stats"]["n_steps"].sum()),
    }
    for group in [name for name in tree.children if str(name).startswith("warmup_")]:
        del tree[group]
    patch_nutpie_idata(tree, model, sampling_time=time.time() - start)
    return tree
