"""Erlang-weight scalar ops: the NumPy sums' values (both checked by quadrature), exact
derivatives, one node each."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode
from pytensor.graph.traversal import applys_between, graph_inputs
from scipy.integrate import quad

from tpopk.pk import PK_MODELS, concentration
from tpopk.pk.transit import _weight_at_end, _weight_at_start
from tpopk.pk.transit_op import erlang_weight

# Around the series/closed-form switch at y = p, at 0 and far out.
POWERS = (1, 2, 3, 10, 11)


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
    "c": Mode(linker="c", optimizer="fast_run"),
    "numba": Mode(linker="numba", optimizer="fast_run"),
}


@pytest.mark.parametrize("linker", LINKERS)
@pytest.mark.parametrize("end", [False, True], ids=["start", "end"])
def test_op_equals_the_numpy_sums(linker: str, end: bool) -> None:
    y = pt.dvector("y")
    for p in POWERS:
        f = pytensor.function([y], erlang_weight(end, p)(y), mode=LINKERS[linker])
        grid = _grid(p)
        np.testing.assert_allclose(f(grid), _numpy(end, p, grid), rtol=1e-13, atol=0.0)


@pytest.mark.parametrize("end", [False, True], ids=["start", "end"])
def test_op_derivatives_equal_finite_differences(end: bool) -> None:
    y = pt.dvector("y")
    w = erlang_weight(end, 10)(y)
    first = pytensor.grad(w.sum(), y)
    second = pytensor.grad(first.sum(), y)
    f = pytensor.function([y], [first, second], mode=LINKERS["python"])
    # away from the switch at y = p, where central differences straddle two formulas
    grid = np.array([0.05, 0.7, 4.0, 9.5, 10.5, 16.0, 40.0])
    w_at = lambda x: _numpy(end, 10, x)  # noqa: E731
    h = 1e-5 * np.maximum(1.0, grid)
    d1 = (w_at(grid + h) - w_at(grid - h)) / (2 * h)
    h = 1e-4 * np.maximum(1.0, grid)  # larger step: a second difference loses eps / h^2
    d2 = (w_at(grid + h) - 2 * w_at(grid) + w_at(grid - h)) / h**2
    got1, got2 = f(grid)
    np.testing.assert_allclose(got1, d1, rtol=1e-7)
    np.testing.assert_allclose(got2, d2, rtol=1e-5)


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
