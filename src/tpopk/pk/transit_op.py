"""Transit absorption per disposition mode as one PyTensor scalar op, with its gradient.

:mod:`tpopk.pk.transit` needs, per mode of eigenvalue ``lambda``, the divided difference
``G[ka, lambda](s)`` of

``G(mu) = (ktr s)^m / (m-1)! int_0^1 v^(m-1) exp(-s (ktr v + mu (1 - v))) dv``

(the Erlang input convolved with ``exp(-mu s)``; formulas and error analysis in
:mod:`tpopk.pk.transit`). With ``F_p(mu)`` the same expression with ``v^(p-1)`` in the
integrand, every derivative is a combination of ``F_m``, ``F_(m+1)``, ``F_(m+2)`` at the
two nodes (or their midpoint when they nearly coincide):

* ``dG/dmu = -s (F_m - F_(m+1))``, ``d2G/dmu2 = s^2 (F_m - 2 F_(m+1) + F_(m+2))``;
* ``dG/dktr = (m / ktr) F_m - s F_(m+1)``;
* ``dG/ds = E(s) - mu G``, so ``d/ds G[a, b] = -(a G[a, b] + G(b))``.

The three ``F_p`` at one node share their exponentials: ``y = |ktr - mu| s`` selects a
positive series (``y <= m + 2``; the two lower powers follow by the stable downward
recurrence ``W(p) = (exp(-y) + y W(p+1)) / p``) or the finite incomplete-gamma sums
(Poisson terms by recurrence from one exponential). The op has five outputs: the value
and its four partial derivatives, computed together in one pass; its pullback reads
them, so NUTS's log density + gradient evaluates each (dose lag, mode) once. Each branch
is a real ``if``: nothing is evaluated on the side not taken.

The NumPy path of :mod:`tpopk.pk.transit` keeps its vectorised form of the same sums
(as :mod:`tpopk.pk.divided` does beside :mod:`tpopk.pk.decay_op`); tests check it against
quadrature and the op (Python and numba) and its derivatives against it. The op has no C
implementation: PyTensor's default linker is numba, and the sampler runs the numba one.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytensor.assumptions  # noqa: F401  (registers the Elemwise rules shadowed below)
from numba.extending import register_jitable
from pytensor.assumptions.core import ASSUMPTION_INFER_REGISTRY, FactState, register_assumption
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.scalar import register_scalar_funcify, scalar_op_cache_key
from pytensor.scalar.basic import ScalarOp, upgrade_to_float
from pytensor.tensor.elemwise import Elemwise

__all__ = ["end_terms", "series_length", "start_terms", "transit_mode"]

# Compiled code is cached on disk under keys salted with this file's source.
_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15]
# Nodes closer than this (relative, in units of 1/s) use derivatives at the midpoint
# (as tpopk.pk.transit._CLOSE_NODES).
_CLOSE_NODES = 1e-5
# Series stop when a term falls below this fraction of the sum.
_TINY = 1e-17


def series_length(ratio: Callable[[int], float]) -> int:
    """Terms after which a positive series with term ratios ``ratio(k)`` drops below 1e-17."""
    term, k = 1.0, 0
    while term > 1e-17 or ratio(k + 1) >= 1.0:
        k += 1
        term *= ratio(k)
    return k


def start_terms(p: int) -> int:
    """Series terms of ``W_start(p, y)`` for ``y <= p`` (term ratio ``y / (p + k)``)."""
    return series_length(lambda k: p / (p + k))


def end_terms(p: int) -> int:
    """Series terms of ``W_end(p, y)`` for ``y <= p`` (term ratio ``y / (k + 1)``)."""
    return series_length(lambda k: p / k)


def _alternating(p: int, y: float, e: float) -> float:
    """``W_end(p, y)`` for ``y > p`` by its finite sum, given ``e = exp(-y)``."""
    # sum_(j<p) (-1)^j (p-1)!/(p-1-j)! / y^(j+1) + (-1)^p (p-1)! e^-y / y^p: alternating,
    # terms shrinking by (p-1-j)/y < 1, so the sum keeps >= 1/p of its first term
    term = 1.0 / y
    total = term
    for j in range(1, p):
        term *= -(p - j) / y
        total += term
    return total - term * e


def _powers(
    m: int, lg_m: float, lg_m2: float, ktr: float, mu: float, s: float
) -> tuple[float, float, float]:
    """``F_m, F_(m+1), F_(m+2)`` at ``mu`` (module docstring) for ``s > 0``.

    ``lg_m = lgamma(m)``, ``lg_m2 = lgamma(m + 2)``.
    """
    log_kts = math.log(ktr * s)
    if ktr >= mu:
        # F_p = (ktr s)^m / (m-1)! exp(-mu s) W_start(p, y), W_start = int v^(p-1) e^(-y v)
        y = (ktr - mu) * s
        if y <= m + 2.0:
            # W_start(m+2) = exp(-y) sum_k y^k / ((m+2) ... (m+2+k)): positive terms
            top = m + 2.0
            term = 1.0 / top
            total = term
            k = 0.0
            while term > _TINY * total:
                k += 1.0
                term *= y / (top + k)
                total += term
            e = math.exp(-y)
            w2 = e * total
            w1 = (e + y * w2) / (m + 1.0)
            w0 = (e + y * w1) / m
            scale = math.exp(m * log_kts - lg_m - mu * s)
            return scale * w0, scale * w1, scale * w2
        # W_start(p, y) = (p-1)! / y^p (1 - Q(p, y)), Q(p, y) = sum_(j<p) e^-y y^j / j!
        # <= 1/2 here (y > p); Poisson terms downward from j = m + 1, one exponential
        log_y = math.log(y)
        poisson = math.exp((m + 1.0) * log_y - y - lg_m2)
        above_m1 = poisson  # the j = m + 1 term
        poisson *= (m + 1.0) / y
        above_m = poisson  # j = m
        below = 0.0
        for j in range(m - 1, -1, -1):
            poisson *= (j + 1.0) / y
            below += poisson
        base = math.exp(m * (log_kts - log_y) - mu * s)  # F_m / (1 - Q(m, y))
        f0 = base * (1.0 - below)
        f1 = base * m / y * (1.0 - below - above_m)
        f2 = base * m * (m + 1.0) / (y * y) * (1.0 - below - above_m - above_m1)
        return f0, f1, f2
    # mu > ktr: F_p = (ktr s)^m / (m-1)! exp(-ktr s) W_end(p, y), W_end = int v^(p-1) e^(-y(1-v))
    y = (mu - ktr) * s
    scale = math.exp(m * log_kts - lg_m - ktr * s)
    if y <= m + 2.0:
        # W_end(p, y) = exp(-y) sum_k y^k / (k! (p + k)): positive terms
        term = 1.0
        w0, w1, w2 = 1.0 / m, 1.0 / (m + 1.0), 1.0 / (m + 2.0)
        k = 0.0
        while True:
            k += 1.0
            term *= y / k
            piece = term / (m + k)
            w0 += piece
            w1 += term / (m + 1.0 + k)
            w2 += term / (m + 2.0 + k)
            if k > y and piece <= _TINY * w0:
                break
        e = math.exp(-y)
        return scale * e * w0, scale * e * w1, scale * e * w2
    e = math.exp(-y)
    return (
        scale * _alternating(m, y, e),
        scale * _alternating(m + 1, y, e),
        scale * _alternating(m + 2, y, e),
    )


# callable from the numba-compiled _transit_mode as well as from Python
register_jitable(_alternating)
register_jitable(_powers)


def _transit_mode(
    m: int, lg_m: float, lg_m2: float, ktr: float, a: float, b: float, s: float
) -> tuple[float, float, float, float, float]:
    """``G[a, b](s)`` and its derivatives in ``ktr``, ``a``, ``b``, ``s`` (``m`` = order)."""
    if s <= 0.0:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    if abs(a - b) * s <= _CLOSE_NODES * max(1.0, max(a, b) * s):
        # G[a, b] = G'(mid) and G[a, a, b] = G[a, b, b] = G''(mid) / 2, to O(gap^2)
        mid = (a + b) / 2.0
        f0, f1, f2 = _powers(m, lg_m, lg_m2, ktr, mid, s)
        value = -s * (f0 - f1)
        curvature = s * s * (f0 - 2.0 * f1 + f2) / 2.0
        d_ktr = -s * (m / ktr) * (f0 - f1) + s * s * (f1 - f2)
        return value, d_ktr, curvature, curvature, -(mid * value + f0)
    fa0, fa1, _ = _powers(m, lg_m, lg_m2, ktr, a, s)
    fb0, fb1, _ = _powers(m, lg_m, lg_m2, ktr, b, s)
    gap = a - b
    value = (fa0 - fb0) / gap
    d_a = (-s * (fa0 - fa1) - value) / gap
    d_b = (value + s * (fb0 - fb1)) / gap
    d_ktr = (m / ktr) * value - s * (fa1 - fb1) / gap
    return value, d_ktr, d_a, d_b, -(a * value + fb0)


def _five_floats(*types: Any) -> tuple[Any, ...]:
    """Output types of :class:`TransitMode`: five of the inputs' float type."""
    return tuple(upgrade_to_float(*types)) * 5


class TransitMode(ScalarOp):  # type: ignore[misc]
    """``G[ka, lambda](s)`` of a chain of order ``m`` and its partial derivatives.

    Inputs ``(ktr, ka, lambda, s)``; outputs the value, then its derivatives in each
    input (module docstring). Differentiable once: the pullback returns the outputs.
    """

    nin = 4
    nout = 5

    def __init__(self, order: int) -> None:
        if order < 1:
            raise ValueError(f"order must be a positive integer, got {order}")
        super().__init__(_five_floats, name=f"transit_mode_{order}")
        self.order = order
        self.lg_m, self.lg_m2 = math.lgamma(order), math.lgamma(order + 2.0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TransitMode) and self.order == other.order

    def __hash__(self) -> int:
        return hash((type(self), self.order))

    def impl(self, ktr: float, a: float, b: float, s: float) -> tuple[float, ...]:
        m, lg_m, lg_m2 = self.order, self.lg_m, self.lg_m2
        return _transit_mode(m, lg_m, lg_m2, float(ktr), float(a), float(b), float(s))

    def pullback(self, inputs: Any, outputs: Any, grads: Any) -> list[Any]:
        if any(not isinstance(g.type, DisconnectedType) for g in grads[1:]):
            return [grad_not_implemented(self, i, x) for i, x in enumerate(inputs)]
        gz = grads[0]
        return [gz * partial for partial in outputs[1:]]


class MultiOutputElemwise(Elemwise):  # type: ignore[misc]
    """Elemwise of a scalar op with several outputs (a value and its partials).

    PyTensor's assumption rules for Elemwise (unit magnitude, triangular, ...) answer one
    state per node; a five-output node makes them raise, which the graph rewriter logs as
    a traceback at every compile. This class answers "unknown" for each output instead.
    """


def _unknown_per_output(
    key: Any, op: Any, feature: Any, fgraph: Any, node: Any, input_states: Any
) -> list[Any]:
    return [FactState.UNKNOWN] * len(node.outputs)


for _key, _op_type in list(ASSUMPTION_INFER_REGISTRY):
    if _op_type is Elemwise:
        register_assumption(_key, MultiOutputElemwise)(_unknown_per_output)


@cache
def transit_mode(order: int) -> Elemwise:
    """Elementwise :class:`TransitMode` of ``order`` on tensors ``(ktr, ka, lambda, s)``."""
    return MultiOutputElemwise(TransitMode(order))


_transit_mode_jit = numba_basic.numba_njit(_transit_mode)


def _numba_transit_mode(op: TransitMode, node: Any, **kwargs: Any) -> tuple[Any, str]:
    m, lg_m, lg_m2 = op.order, op.lg_m, op.lg_m2  # compile-time constants of the closure

    def mode(ktr: float, a: float, b: float, s: float) -> Any:
        return _transit_mode_jit(m, lg_m, lg_m2, ktr, a, b, s)

    key = scalar_op_cache_key(op, cache_version=_VERSION, order=m)
    return numba_basic.numba_njit(mode), key


register_scalar_funcify(TransitMode)(_numba_transit_mode)
