"""Transit absorption: the NumPy sums (checked by quadrature), the scalar op (Python, C,
numba) against them, its partial derivatives against finite differences, one node."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode
from pytensor.gradient import NullTypeGradError
from pytensor.graph.traversal import applys_between, graph_inputs
from scipy.integrate import quad

from tpopk.pk import PK_MODELS, concentration
from tpopk.pk.transit import _erlang_decay_difference, _weight_at_end, _weight_at_start
from tpopk.pk.transit_op import transit_mode

# Around the series/closed-form switch at y = p, at 0 and far out.
POWERS = (1, 2, 3, 10, 11, 60)


def _grid(p: int) -> np.ndarray:
    near = p * np.array([1 - 1e-9, 1.0, 1 + 1e-9])
    return np.concatenate([[0.0, 1e-12, 1e-6, 0.3], near, [p + 0.7, 3.0 * p, 40.0, 700.0]])


def _numpy(end: bool, p: int, y: np.ndarray) -> np.ndarray:
    return (_weight_at_end if end else _weight_at_start)(np, p, y)


def _integrand(v: float, end: bool, p: int, y: float) -> float:
    return float(v ** (p - 1) * np.exp(-y * ((1 - v) if end else v)))


@pytest.mark.parametrize("end", [False, True], ids=["start", "end"])
def test_numpy_sums_equal_quadrature(end: bool) -> None:
    # independent reference for both codings: the defining integral, by adaptive quadrature
    for p in POWERS:
        grid = _grid(p)[:-1]  # quad resolves the peak up to y = 40, not at 700
        reference = [
            quad(_integrand, 0.0, 1.0, args=(end, p, y), epsabs=0.0, epsrel=1e-13)[0] for y in grid
        ]
        np.testing.assert_allclose(_numpy(end, p, grid), reference, rtol=1e-11)


LINKERS = {
    "python": Mode(linker="py", optimizer=None),
    "cvm": Mode(linker="cvm", optimizer="fast_run"),  # C thunks; the op itself runs in Python
    "numba": Mode(linker="numba", optimizer="fast_run"),
}

# (order, ktr, ka, lambda): transit faster than both nodes (avatrombopag), slower than
# both (W_end sums), between them, ka = ktr, nearly coincident nodes, a long chain.
RATES = (
    (10, 7.5, 0.58, 0.038),
    (10, 7.5, 7.5, 0.038),
    (3, 0.5, 2.0, 0.1),
    (3, 0.5, 0.1, 2.0),
    (1, 1.0, 1.0 + 1e-9, 0.2),
    (4, 3.0, 0.7, 0.7 + 1e-8),
    (2, 0.3, 0.7, 0.7),
    (60, 45.0, 0.58, 0.038),
    (60, 0.5, 0.58, 0.038),
)
# from 0 through the series/closed-form switches (y = m + 2) to seven weeks
TIMES = (0.0, 1e-9, 1e-4, 0.3, 1.0, 1.33, 2.0, 5.0, 24.0, 100.0, 1176.0)


def _numpy_mode(order: int, ktr: float, a: float, b: float, s: np.ndarray) -> np.ndarray:
    full = np.broadcast_arrays(ktr, a, b, s)
    return np.asarray(_erlang_decay_difference(np, order, full[0], full[1], full[2], s))


def _op_function(order: int, linker: str) -> Any:
    inputs = [pt.dvector(n) for n in ("ktr", "ka", "lam", "s")]
    return pytensor.function(inputs, transit_mode(order)(*inputs), mode=LINKERS[linker])


@pytest.mark.parametrize("linker", LINKERS)
def test_op_equals_the_numpy_sums(linker: str) -> None:
    for order, ktr, a, b in RATES:
        s = np.array(TIMES)
        value = _op_function(order, linker)(*np.broadcast_arrays(ktr, a, b, s))[0]
        reference = _numpy_mode(order, ktr, a, b, s)
        assert value[0] == 0.0
        # numba's fastmath flags cost a few ulps in exp/log; values below 1e-12 of the
        # profile's peak (1e-229 for 60 compartments 0.1 ms after the dose) only absolutely
        atol = 1e-12 * np.abs(reference).max()
        np.testing.assert_allclose(value, reference, rtol=1e-10, atol=atol)


def _central_difference(order: int, point: list[np.ndarray], i: int, h: np.ndarray) -> np.ndarray:
    up = [x + h if j == i else x for j, x in enumerate(point)]
    down = [x - h if j == i else x for j, x in enumerate(point)]
    value = _erlang_decay_difference
    return np.asarray((value(np, order, *up) - value(np, order, *down)) / (2 * h))


@pytest.mark.parametrize("linker", ["python", "numba"])
def test_op_partials_equal_finite_differences(linker: str) -> None:
    for order, ktr, a, b in RATES:
        s = np.array(TIMES[3:])  # central differences need s > step
        point = list(np.broadcast_arrays(ktr, a, b, s))
        partials = _op_function(order, linker)(*point)[1:]
        for i, got in enumerate(partials):
            # Richardson-extrapolated central differences: smaller steps drown in rounding
            # for the 60-compartment chain, and in the difference quotient's cancellation
            # when they move the nodes 1e-4 apart
            h = (1e-4 if abs(a - b) > 1e-3 else 2e-3) * point[i]
            coarse = _central_difference(order, point, i, h)
            fine = _central_difference(order, point, i, h / 2)
            want = (4 * fine - coarse) / 3
            scale = np.abs(want).max()  # absolute floor for values that are ~1e-300
            message = f"order {order}, rates {ktr, a, b}, input {i}"
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8 * scale, err_msg=message)


def test_op_gradient_is_its_partials() -> None:
    # pytensor.grad goes through the op's pullback (and Elemwise broadcasting)
    ktr, a, b, s = pt.dscalar("ktr"), pt.dscalar("ka"), pt.dscalar("lam"), pt.dvector("s")
    value, *partials = transit_mode(10)(ktr, a, b, s)
    grads = pytensor.grad(value.sum(), [ktr, a, b, s])
    f = pytensor.function([ktr, a, b, s], [*grads, *partials], mode=LINKERS["numba"])
    times = np.array(TIMES)
    *got, p_ktr, p_a, p_b, p_s = f(7.5, 0.58, 0.038, times)
    np.testing.assert_allclose(got[0], p_ktr.sum(), rtol=1e-14)
    np.testing.assert_allclose(got[1], p_a.sum(), rtol=1e-14)
    np.testing.assert_allclose(got[2], p_b.sum(), rtol=1e-14)
    np.testing.assert_array_equal(got[3], p_s)


def test_op_is_differentiable_once() -> None:
    ktr, a, b, s = (pt.dscalar(n) for n in ("ktr", "ka", "lam", "s"))
    first = pytensor.grad(transit_mode(10)(ktr, a, b, s)[0], ktr)
    with pytest.raises(NullTypeGradError):
        pytensor.grad(first, a)


def _transit_graph_size(n_transit: int) -> int:
    names = ("ka", "mtt", "cl", "v", "tlag")
    params = {n: pt.dvector(n) for n in names} | {"n_transit": n_transit}
    times = np.array([1.0, 4.0, 24.0])
    doses = [np.broadcast_to(np.array([0.0]), (3, 1)) for _ in range(4)]
    time, rate, ss, ii = doses
    amounts = np.full((3, 1), 20.0)
    model = PK_MODELS["transit_1cmt"]
    c = concentration(model, params, time, amounts, rate, ss, ii, times, xp=pt)
    grads = pytensor.grad(c.sum(), [params[n] for n in names])
    outputs = [c, *grads]
    return len(list(applys_between(list(graph_inputs(outputs)), outputs)))


def test_graph_does_not_grow_with_the_transit_chain() -> None:
    # Before the ops, the series unrolled into the graph: a 10-compartment chain
    # (avatrombopag) took ~4500 scalar nodes where other agonists took ~900.
    assert _transit_graph_size(9) <= _transit_graph_size(1) + 10


def test_graph_rewrites_take_the_five_output_op_without_failing(caplog):
    # PyTensor's Elemwise assumption rules answer one state per node; on the five-output
    # op they raised and the rewriter logged a traceback at every compile of a model
    x = pt.dvector("x")
    value = transit_mode(3)(x, 0.5 + 0 * x, 0.1 + 0 * x, 2.0 + 0 * x)[0]
    with caplog.at_level(logging.ERROR, logger="pytensor"):
        pytensor.function([x], pt.log(value * x * 2.0).sum(), mode="FAST_RUN")
    assert not [r for r in caplog.records if "Rewrite failure" in r.getMessage()]
