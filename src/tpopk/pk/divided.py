"""Exponential divided differences, evaluated stably at coincident and distant nodes.

Every closed form in :mod:`tpopk.pk` is a sum over disposition modes ``lambda_i`` of a
function of one rate constant ``x``: ``f(x) = exp(-x s)`` for a bolus, times
``g(x T)`` for an infusion of duration ``T``, times ``1 / (1 - exp(-x tau))`` at steady
state. IV doses need ``f(lambda_i)``; first-order absorption convolves the dose with
``ka exp(-ka s)``, which turns ``f(lambda_i)`` into the divided difference
``-ka f[ka, lambda_i] = -ka (f(ka) - f(lambda_i)) / (ka - lambda_i)``. That quotient is a
removable singularity at ``ka = lambda_i`` (the "flip-flop" corner); :class:`NodeFunction`
carries ``f(a)``, ``f(b)`` and ``f[a, b]`` together and multiplies them with the Leibniz
rule, so each factor only needs its own stable divided difference:

* ``exp(-x t)``: ``-t exp(-min(a,b) t) g(|a - b| t)``, which never overflows and is
  exact at ``a = b``; near the tie ``exp(-min(a,b) t)`` is written in a form even in
  ``a - b`` so that the gradient is right at ``a = b`` too;
* ``g(x w)`` with ``g(y) = (1 - exp(-y)) / y``: the quotient, or the derivative at the
  midpoint when the nodes are within a relative ``1e-5`` (error below ``1e-10``);
* ``h(x) = 1 / (1 - exp(-x tau))``: ``h[a,b] = exp[a,b](tau) h(a) h(b)``.

Branches use the double-``where`` idiom: the unused branch is evaluated at a safe
argument so that its gradient is finite and ``where`` can discard it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

from tpopk.pk.namespace import Array, is_numpy

__all__ = ["NodeFunction", "decay", "geometric", "relexp", "relexp_at", "relexp_derivative"]

# Below this argument g(y) = (1 - e^-y)/y is taken from its Taylor series: the quotient is
# accurate, but its autodiff gradient cancels like eps / y^2.
_G_SERIES_BELOW = 1e-3
# Below this argument g'(y) is taken from its Taylor series (the closed form cancels).
_DG_SERIES_BELOW = 5e-2
# Nodes closer than this (relative) use g'(midpoint) instead of the difference quotient.
_CLOSE_NODES = 1e-5


def relexp(xp: ModuleType, y: Array) -> Array:
    """Return ``g(y) = (1 - exp(-y)) / y`` for ``y >= 0`` (``g(0) = 1``).

    Parameters
    ----------
    xp : module
        Array namespace (``numpy`` or ``pytensor.tensor``).
    y : Array
        Dimensionless argument (rate constant x time), non-negative.

    Returns
    -------
    Array
        ``g(y)`` in (0, 1], with finite gradient everywhere.
    """
    small = y < _G_SERIES_BELOW
    y_big = xp.where(small, 1.0, y)
    y_small = xp.where(small, y, 0.0)
    series = 1.0 - y_small / 2.0 * (1.0 - y_small / 3.0 * (1.0 - y_small / 4.0))
    return xp.where(small, series, -xp.expm1(-y_big) / y_big)


def relexp_derivative(xp: ModuleType, y: Array) -> Array:
    """Return ``g'(y) = (exp(-y) (1 + y) - 1) / y**2`` for ``y >= 0`` (``g'(0) = -1/2``).

    Parameters
    ----------
    xp : module
        Array namespace.
    y : Array
        Dimensionless argument, non-negative.

    Returns
    -------
    Array
        ``g'(y)`` in [-1/2, 0).
    """
    small = y < _DG_SERIES_BELOW
    y_big = xp.where(small, 1.0, y)
    y_small = xp.where(small, y, 0.0)
    # sum_k (-1)^(k+1) (k+1) y^k / (k+2)!, k = 0..6; truncation error < 1e-13 here.
    series = 0.0
    for k in range(6, -1, -1):
        coefficient = (-1.0) ** (k + 1) * (k + 1) / _factorial(k + 2)
        series = series * y_small + coefficient
    closed = (xp.exp(-y_big) * (1.0 + y_big) - 1.0) / (y_big * y_big)
    return xp.where(small, series, closed)


def _factorial(n: int) -> float:
    result = 1.0
    for k in range(2, n + 1):
        result *= k
    return result


@dataclass(frozen=True)
class NodeFunction:
    """A function of a rate constant, known at two nodes ``a`` and ``b`` with ``f[a, b]``.

    ``b`` is a disposition eigenvalue; ``a`` is an absorption rate constant, or absent
    for IV doses (then only :attr:`at_b` is carried).

    Attributes
    ----------
    at_b : Array
        ``f(b)``.
    at_a : Array or None
        ``f(a)``, or ``None`` without an absorption node.
    diff : Array or None
        The divided difference ``f[a, b] = (f(a) - f(b)) / (a - b)`` (a derivative
        where ``a = b``), or ``None`` without an absorption node.
    """

    at_b: Array
    at_a: Array | None = None
    diff: Array | None = None

    def __mul__(self, other: NodeFunction) -> NodeFunction:
        """Multiply pointwise; divided differences by the Leibniz rule."""
        at_b = self.at_b * other.at_b
        if self.at_a is None or other.at_a is None or self.diff is None or other.diff is None:
            return NodeFunction(at_b)
        # (pq)[a,b] = p[a,b] q(b) + p(a) q[a,b]
        diff = self.diff * other.at_b + self.at_a * other.diff
        return NodeFunction(at_b, self.at_a * other.at_a, diff)

    def scaled(self, factor: Array) -> NodeFunction:
        """Multiply by a factor that does not depend on the rate constant."""
        if self.at_a is None or self.diff is None:
            return NodeFunction(self.at_b * factor)
        return NodeFunction(self.at_b * factor, self.at_a * factor, self.diff * factor)

    def __add__(self, other: NodeFunction) -> NodeFunction:
        """Add pointwise (divided differences are linear)."""
        at_b = self.at_b + other.at_b
        if self.at_a is None or other.at_a is None or self.diff is None or other.diff is None:
            return NodeFunction(at_b)
        return NodeFunction(at_b, self.at_a + other.at_a, self.diff + other.diff)


def decay(xp: ModuleType, a: Array | None, b: Array, t: Array) -> NodeFunction:
    """Return ``x -> exp(-x t)`` at nodes ``a``, ``b`` (``t >= 0``, time units of 1/x)."""
    at_b = xp.exp(-b * t)
    if a is None:
        return NodeFunction(at_b)
    return NodeFunction(at_b, xp.exp(-a * t), _decay_difference(xp, a, b, t))


def _decay_difference(xp: ModuleType, a: Array, b: Array, t: Array) -> Array:
    """Return ``exp[a, b](t) = (exp(-a t) - exp(-b t)) / (a - b)``."""
    if not is_numpy(xp):
        # one scalar op with hand-written derivatives (tpopk.pk.decay_op): the same
        # formula, a fraction of the graph that the compilers see
        from tpopk.pk.decay_op import decay_difference

        return decay_difference(a, b, t)
    gap = xp.abs(a - b)
    # exp(-min(a,b) t). Near a tie it is written exp(-(a+b) t/2 + |a-b| t/2), even in
    # a-b, so the gradient is exact at a = b even though d|x|/dx is taken as 0 there; far
    # from a tie that form cancels (ka = 1e12 against k = 0.1), so min() is used.
    near_tie = gap <= 0.5 * xp.maximum(a, b)
    even = (gap - (a + b)) * t / 2.0
    exponent = xp.where(near_tie, even, -xp.minimum(a, b) * t)
    return -t * xp.exp(exponent) * relexp(xp, gap * t)


def relexp_at(xp: ModuleType, a: Array | None, b: Array, w: Array) -> NodeFunction:
    """Return ``x -> g(x w) = (1 - exp(-x w)) / (x w)`` at nodes ``a``, ``b`` (``w >= 0``)."""
    y_b = b * w
    at_b = relexp(xp, y_b)
    if a is None:
        return NodeFunction(at_b)
    y_a = a * w
    at_a = relexp(xp, y_a)
    gap = y_a - y_b
    close = xp.abs(gap) <= _CLOSE_NODES * xp.maximum(1.0, xp.maximum(y_a, y_b))
    safe_gap = xp.where(close, 1.0, gap)
    quotient = (at_a - at_b) / safe_gap
    midpoint = relexp_derivative(xp, (y_a + y_b) / 2.0)
    # d/dx g(x w) = w g'(x w)
    return NodeFunction(at_b, at_a, w * xp.where(close, midpoint, quotient))


def geometric(xp: ModuleType, a: Array | None, b: Array, tau: Array) -> NodeFunction:
    """Return ``x -> 1 / (1 - exp(-x tau))``, the steady-state accumulation factor (tau > 0)."""
    at_b = -1.0 / xp.expm1(-b * tau)
    if a is None:
        return NodeFunction(at_b)
    at_a = -1.0 / xp.expm1(-a * tau)
    return NodeFunction(at_b, at_a, _decay_difference(xp, a, b, tau) * at_a * at_b)
