"""PyTensor graph: same values as NumPy, gradients equal to central finite differences.

All cases share one function, compiled once per module without graph rewrites on the
Python linker: it checks the graph as written and compiles in about a second. One
small case is also compiled for the numba backend nutpie uses, to check that its
rewrites and kernels give the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

from tpopk.pk import PK_MODELS, concentration

TIMES = np.array([0.3, 0.5, 1.2, 2.0, 5.0, 12.1, 13.0, 24.5, 30.0])
BASE = {"cl": 2.0, "v": 10.0, "q": 1.5, "v2": 20.0, "q3": 0.4, "v3": 30.0, "tlag": 0.25}
# (id, model, extra parameters, doses as (time, amt, rate, ss, ii[, cmt]) rows)
CASES = [
    ("oral_1cmt ka = k", "oral_1cmt", {"ka": 0.2}, [(0.0, 100.0, 0.0, 0, 0.0)]),
    ("oral_1cmt ka = k(1+1e-9)", "oral_1cmt", {"ka": 0.2 * (1 + 1e-9)}, [(0, 100, 0, 0, 0)]),
    (
        "oral_1cmt ka = k, SS=1 + dose",
        "oral_1cmt",
        {"ka": 0.2, "f": 0.7},
        [(0.0, 100.0, 0.0, 1, 12.0), (12.0, 50.0, 0.0, 0, 0.0)],
    ),
    (
        "oral_2cmt SS=1 infusion, lag, F",
        "oral_2cmt",
        {"ka": 0.9, "f": 0.6},
        [(0.0, 100.0, 40.0, 1, 12.0), (12.0, 80.0, 40.0, 0, 0.0)],
    ),
    (
        "iv_3cmt infusion + SS=2",
        "iv_3cmt",
        {},
        [(0.0, 100.0, 50.0, 0, 0.0), (12.0, 80.0, 0.0, 2, 12.0)],
    ),
    (
        "oral_dual_2cmt SS=1",
        "oral_dual_2cmt",
        {"ka1": 0.333, "ka2": 5.26, "mtime": 1.46, "f": 0.8},
        [(0.0, 75.0, 0.0, 1, 24.0), (24.0, 75.0, 0.0, 0, 0.0)],
    ),
    (
        "transit_1cmt ka = ktr",
        "transit_1cmt",
        {"ka": 3 / 1.33, "mtt": 1.33, "n_transit": 2},
        [(0.0, 20.0, 0.0, 0, 0.0), (12.0, 20.0, 0.0, 0, 0.0)],
    ),
    (
        "oral_2cmt CMT 1 + central infusion + peripheral SS=2, lag, F",
        "oral_2cmt",
        {"ka": 0.9, "f": 0.6},
        [(0.0, 100.0, 0.0, 0, 0.0, 1), (1.0, 30.0, 60.0, 0, 0.0, 2), (12.0, 20, 0, 2, 12.0, 3)],
    ),
    (
        "iv_3cmt into each peripheral, SS=1 infusion",
        "iv_3cmt",
        {"f": 0.7},
        [(0.0, 100.0, 40.0, 1, 12.0, 2), (12.0, 80.0, 0.0, 0, 0.0, 3)],
    ),
    (
        "transit_1cmt + central infusion",
        "transit_1cmt",
        {"ka": 1.1, "mtt": 1.33, "n_transit": 2},
        [(0.0, 20.0, 0.0, 0, 0.0, 1), (2.0, 20.0, 40.0, 0, 0.0, 2)],
    ),
]


def _names(model_name):
    return [n for n in PK_MODELS[model_name].parameter_names if n != "n_transit"]


def _values(model_name, extra):
    params = {**BASE, **extra}
    return {n: params[n] for n in _names(model_name) if n in params}


def _doses(rows):
    columns = np.array([row[:5] for row in rows], dtype=float).T
    return [np.broadcast_to(c, (TIMES.size, c.size)) for c in columns]


def _cmts(rows):
    """Each dose's CMT where the rows give one, else None (the model's own route)."""
    return np.array([row[5] for row in rows]) if len(rows[0]) > 5 else None


def _numpy_concentration(model_name, values, amounts, rows, extra):
    time, _, rate, ss, ii = _doses(rows)
    params = {n: np.full(TIMES.size, v) for n, v in values.items()}
    if "n_transit" in extra:
        params["n_transit"] = extra["n_transit"]
    return concentration(
        PK_MODELS[model_name], params, time, amounts, rate, ss, ii, TIMES, dose_cmt=_cmts(rows)
    )


def _graph(cases):
    inputs, outputs = [], []
    for _, model_name, extra, rows in cases:
        values = _values(model_name, extra)
        symbols = {n: pt.dvector(n) for n in values}
        amounts = pt.dmatrix("amt")
        time, _, rate, ss, ii = (pt.as_tensor(d) for d in _doses(rows))
        params = dict(symbols)
        if "n_transit" in extra:
            params["n_transit"] = extra["n_transit"]
        model, cmt = PK_MODELS[model_name], _cmts(rows)
        c = concentration(model, params, time, amounts, rate, ss, ii, TIMES, dose_cmt=cmt, xp=pt)
        wrt = [*symbols.values(), amounts]
        inputs += wrt
        outputs += [c, *pytensor.grad(c.sum(), wrt)]
    return inputs, outputs


def _arguments(cases):
    arguments = []
    for _, model_name, extra, rows in cases:
        values = _values(model_name, extra)
        arguments += [np.full(TIMES.size, v) for v in values.values()]
        arguments.append(_doses(rows)[1].copy())
    return arguments


@pytest.fixture(scope="module")
def evaluated():
    compiled = pytensor.function(*_graph(CASES), mode=Mode(linker="py", optimizer=None))
    results = compiled(*_arguments(CASES))
    by_case, position = {}, 0
    for case_id, model_name, extra, _ in CASES:
        size = len(_values(model_name, extra)) + 2
        by_case[case_id] = results[position : position + size]
        position += size
    return by_case


@pytest.mark.parametrize(
    ("case_id", "model_name", "extra", "rows"), CASES, ids=[c[0] for c in CASES]
)
def test_graph_value_and_gradient(evaluated, case_id, model_name, extra, rows):
    value, *gradients = evaluated[case_id]
    values = _values(model_name, extra)
    amounts = _doses(rows)[1].copy()
    expected = _numpy_concentration(model_name, values, amounts, rows, extra)
    np.testing.assert_allclose(value, expected, rtol=1e-13)
    for name, gradient in zip(values, gradients[:-1], strict=True):
        step = 1e-6 * values[name] if values[name] != 0 else 1e-7
        up = _numpy_concentration(
            model_name, {**values, name: values[name] + step}, amounts, rows, extra
        )
        down = _numpy_concentration(
            model_name, {**values, name: values[name] - step}, amounts, rows, extra
        )
        finite_difference = (up - down) / (2 * step)
        assert np.all(np.isfinite(gradient)), name
        scale = np.abs(finite_difference).max()
        np.testing.assert_allclose(
            gradient, finite_difference, rtol=1e-6, atol=1e-8 * scale, err_msg=name
        )
    # dose amounts (not linear for infusions: the duration is F * AMT / RATE)
    for j in range(len(rows)):
        step = np.zeros_like(amounts)
        step[:, j] = 1e-6 * amounts[0, j]
        up = _numpy_concentration(model_name, values, amounts + step, rows, extra)
        down = _numpy_concentration(model_name, values, amounts - step, rows, extra)
        finite_difference = (up - down) / (2 * step[0, j])
        np.testing.assert_allclose(
            gradients[-1][:, j], finite_difference, rtol=1e-6, atol=1e-8 * np.abs(up).max()
        )


def test_numba_backend_agrees(evaluated):
    case = CASES[2]
    compiled = pytensor.function(*_graph([case]), mode="NUMBA")
    for numba_result, graph_result in zip(
        compiled(*_arguments([case])), evaluated[case[0]], strict=True
    ):
        np.testing.assert_allclose(numba_result, graph_result, rtol=1e-12, atol=1e-300)
