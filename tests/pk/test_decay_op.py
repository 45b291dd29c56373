"""The decay divided difference op: value and partial derivatives in every backend."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from tpopk.pk import divided
from tpopk.pk.decay_op import decay_difference


def _nodes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    n = 600
    a = np.exp(rng.uniform(-5.0, 3.0, n))
    b = np.exp(rng.uniform(-5.0, 3.0, n))
    t = rng.uniform(0.0, 300.0, n)
    ties = rng.choice([0.0, 1e-12, 1e-8, 1e-5, 1e-3, 0.05, 0.3, -0.3, -1e-6], 200)
    b[:200] = a[:200] * (1.0 + ties)  # ties and near ties, either side
    t[:10] = 0.0
    a[200:210] = 1e12  # an almost instantaneous absorption
    t[200:220] = rng.uniform(0.0, 1.0, 20)
    return a, b, t


def _exact(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """Value and partials in extended precision from the textbook formulas."""
    a, b, t = (np.asarray(x, dtype=np.longdouble) for x in (a, b, t))
    ea, eb = np.exp(-a * t), np.exp(-b * t)
    gap = a - b
    far = np.abs(gap) * t > 1e-2
    safe = np.where(far, gap, 1.0)
    value = (ea - eb) / safe
    d_a = (-t * ea - value) / safe
    d_b = (t * eb + value) / safe
    d_t = -(a * ea - b * eb) / safe
    return [np.asarray(x, dtype=float)[far] for x in (value, d_a, d_b, d_t)]


# FAST_RUN (PyTensor's default) compiles with numba; CVM (C thunks) runs the op in Python
@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA", "CVM", "py"])
def test_value_and_gradient_match_the_elementary_graph(mode: str) -> None:
    """Equal (to rounding) to the autodiff of the elementary form it replaces, at ties too,
    and to extended-precision textbook formulas away from ties."""
    a, b, t = (pt.dvector(name) for name in "abt")
    value = decay_difference(a, b, t)
    gradient = pt.grad(value.sum(), [a, b, t])
    compiled = pytensor.function(
        [a, b, t],
        [value, *gradient],
        mode=pytensor.compile.mode.Mode(linker="py", optimizer=None) if mode == "py" else mode,
    )
    nodes = _nodes()
    ours = compiled(*nodes)

    # the elementary graph: abs/min, double where, relexp series (its numpy twin is the
    # value reference); gradient by autodiff
    def elementary(xp, a, b, t):  # type: ignore[no-untyped-def]
        gap = xp.abs(a - b)
        near = gap <= 0.5 * xp.maximum(a, b)
        exponent = xp.where(near, (gap - (a + b)) * t / 2.0, -xp.minimum(a, b) * t)
        return -t * xp.exp(exponent) * divided.relexp(xp, gap * t)

    graph = elementary(pt, a, b, t)
    reference = pytensor.function([a, b, t], [graph, *pt.grad(graph.sum(), [a, b, t])])(*nodes)
    np.testing.assert_allclose(ours[0], elementary(np, *nodes), rtol=1e-12, atol=0)
    for mine, theirs in zip(ours, reference, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-300)
    far = _exact(*nodes)
    mask = np.abs(nodes[0] - nodes[1]) * nodes[2] > 1e-2
    for mine, exact in zip(ours, far, strict=True):
        np.testing.assert_allclose(mine[mask], exact, rtol=1e-9, atol=1e-300)


def test_second_derivatives_are_refused() -> None:
    a, b, t = (pt.dvector(name) for name in "abt")
    d_a = pt.grad(decay_difference(a, b, t).sum(), a)
    with pytest.raises(Exception, match=r"not implemented|NullType"):
        pt.grad(d_a.sum(), a)
