"""Cost of PK concentrations and their gradients: tpopk (PyTensor/numba) vs a naive NumPy loop.

Problem (issue 3): 200 subjects x 42 once-daily oral doses x 10 observations per
subject, ``oral_2cmt`` with lag and F, log-normal between-subject variability on all 7
parameters. The gradient is that of a scalar (a weighted sum of all 2000
concentrations, as in one log-density evaluation) with respect to all 1400 individual
parameters.

* ``naive loop``: Python loops over subjects and doses with the textbook 2-cmt oral
  formula in NumPy (``sum_i A_i ka (exp(-l_i s) - exp(-ka s)) / (ka - l_i)``); its
  gradient by central finite differences, perturbing one parameter of all subjects at a
  time (subjects are independent), i.e. 1 + 2 x 7 value evaluations.
* ``tpopk numpy``: ``tpopk.pk.concentration`` evaluated eagerly with NumPy.
* ``tpopk numba``: the same function built as a PyTensor graph and compiled with
  ``pytensor.function(..., mode="NUMBA")`` (the backend nutpie uses); value, and value
  plus the exact reverse-mode gradient.

Run from the repository root (timings are never asserted in tests)::

    PYTENSOR_FLAGS=base_compiledir=.cache/pytensor NUMBA_CACHE_DIR=.cache/numba \\
        .venv/bin/python benchmarks/pk_speed.py
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable

import numpy as np
import pytensor
import pytensor.tensor as pt

from tpopk.pk import PK_MODELS, concentration

N_SUBJECTS, N_DOSES, N_OBS = 200, 42, 10
MODEL = PK_MODELS["oral_2cmt"]
NAMES = ("ka", "cl", "v", "q", "v2", "f", "tlag")
TYPICAL = {"ka": 0.8, "cl": 0.95, "v": 9.75, "q": 0.63, "v2": 9.41, "f": 0.8, "tlag": 0.45}


def problem(seed: int = 20261122) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    individual = {
        name: value * np.exp(0.3 * rng.standard_normal(N_SUBJECTS))
        for name, value in TYPICAL.items()
    }
    individual["f"] = np.minimum(individual["f"], 1.0)
    dose_times = 24.0 * np.arange(N_DOSES, dtype=float)
    obs = np.sort(rng.uniform(0.0, 24.0 * N_DOSES, (N_SUBJECTS, N_OBS)), axis=1)
    return {
        **individual,
        "dose_time": dose_times,
        "dose_amt": np.full(N_DOSES, 50.0),
        "obs_time": obs,
        "weights": rng.standard_normal((N_SUBJECTS, N_OBS)),
    }


def naive_concentration(data: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> np.ndarray:
    out = np.zeros((N_SUBJECTS, N_OBS))
    for i in range(N_SUBJECTS):
        ka, cl, v, q, v2, f, tlag = (params[name][i] for name in NAMES)
        k10, k12, k21 = cl / v, q / v, q / v2
        total = k10 + k12 + k21
        alpha = (total + np.sqrt(total**2 - 4 * k10 * k21)) / 2
        beta = k10 * k21 / alpha
        coefficients = ((alpha - k21) / (alpha - beta), (k21 - beta) / (alpha - beta))
        for t_dose, amount in zip(data["dose_time"], data["dose_amt"], strict=True):
            s = data["obs_time"][i] - t_dose - tlag
            s_pos = np.maximum(s, 0.0)
            c = sum(
                a * ka * (np.exp(-lam * s_pos) - np.exp(-ka * s_pos)) / (ka - lam)
                for a, lam in zip(coefficients, (alpha, beta), strict=True)
            )
            out[i] += np.where(s > 0, f * amount * c / v, 0.0)
    return out


def naive_value_and_gradient(data, params):
    value = naive_concentration(data, params)
    gradient = {}
    for name in NAMES:
        step = 1e-6 * params[name]
        up = naive_concentration(data, {**params, name: params[name] + step})
        down = naive_concentration(data, {**params, name: params[name] - step})
        gradient[name] = ((up - down) * data["weights"]).sum(axis=1) / (2 * step)
    return (value * data["weights"]).sum(), gradient


def per_observation(data):
    """Arrays in the shapes the model layer passes: obs [N], doses [N, D]."""
    n = N_SUBJECTS * N_OBS
    return {
        "subject": np.repeat(np.arange(N_SUBJECTS), N_OBS),
        "t": data["obs_time"].ravel(),
        "dose": [
            np.broadcast_to(data["dose_time"], (n, N_DOSES)),
            np.broadcast_to(data["dose_amt"], (n, N_DOSES)),
            np.zeros((n, N_DOSES)),
            np.zeros((n, N_DOSES)),
            np.zeros((n, N_DOSES)),
        ],
    }


def tpopk_numpy(data, params):
    flat = per_observation(data)
    gathered = {name: params[name][flat["subject"]] for name in NAMES}
    return concentration(MODEL, gathered, *flat["dose"], flat["t"]).reshape(N_SUBJECTS, N_OBS)


def tpopk_compiled(data):
    flat = per_observation(data)
    symbols = [pt.dvector(name) for name in NAMES]
    subject = pt.as_tensor(flat["subject"])
    gathered = {name: s[subject] for name, s in zip(NAMES, symbols, strict=True)}
    doses = [pt.as_tensor(np.ascontiguousarray(d)) for d in flat["dose"]]
    c = concentration(MODEL, gathered, *doses, pt.as_tensor(flat["t"]), xp=pt)
    loss = (c * pt.as_tensor(data["weights"].ravel())).sum()
    start = time.perf_counter()
    value = pytensor.function(symbols, c, mode="NUMBA")
    value_time = time.perf_counter() - start
    start = time.perf_counter()
    value_and_gradient = pytensor.function(
        symbols, [loss, *pytensor.grad(loss, symbols)], mode="NUMBA"
    )
    return value, value_and_gradient, value_time, time.perf_counter() - start


def best_of(function: Callable[[], object], repeat: int = 5) -> float:
    number = max(1, int(0.2 / max(timeit.timeit(function, number=1), 1e-6)))
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number


def main() -> None:
    data = problem()
    params = {name: data[name] for name in NAMES}
    args = [params[name] for name in NAMES]
    value, value_and_gradient, compile_value, compile_gradient = tpopk_compiled(data)

    reference = naive_concentration(data, params)
    np.testing.assert_allclose(tpopk_numpy(data, params), reference, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(value(*args).reshape(N_SUBJECTS, N_OBS), reference, rtol=1e-9)
    _, *gradient = value_and_gradient(*args)
    _, fd_gradient = naive_value_and_gradient(data, params)
    for name, g in zip(NAMES, gradient, strict=True):
        np.testing.assert_allclose(g, fd_gradient[name], rtol=1e-4, atol=1e-8)

    timings = {
        "naive loop, value": best_of(lambda: naive_concentration(data, params), repeat=3),
        "naive loop, value + FD gradient": best_of(
            lambda: naive_value_and_gradient(data, params), repeat=1
        ),
        "tpopk numpy, value": best_of(lambda: tpopk_numpy(data, params)),
        "tpopk numba, value": best_of(lambda: value(*args)),
        "tpopk numba, value + gradient": best_of(lambda: value_and_gradient(*args)),
    }
    print(
        f"oral_2cmt, {N_SUBJECTS} subjects x {N_DOSES} doses x {N_OBS} observations "
        f"(gradient w.r.t. {len(NAMES) * N_SUBJECTS} individual parameters)"
    )
    print(
        f"one-time numba compile: value {compile_value:.1f} s, value+grad {compile_gradient:.1f} s"
    )
    print(f"| {'evaluation':<32} | {'time':>10} |")
    print(f"|{'-' * 34}|{'-' * 12}|")
    for label, seconds in timings.items():
        print(f"| {label:<32} | {seconds * 1e3:8.2f} ms |")
    ratios = {
        "naive value / tpopk numba value": ("naive loop, value", "tpopk numba, value"),
        "naive value+FD grad / tpopk numba value+grad": (
            "naive loop, value + FD gradient",
            "tpopk numba, value + gradient",
        ),
        "naive value / tpopk numpy value": ("naive loop, value", "tpopk numpy, value"),
    }
    print()
    for label, (slow, fast) in ratios.items():
        print(f"ratio {label:<46} {timings[slow] / timings[fast]:7.1f}x")


if __name__ == "__main__":
    main()
