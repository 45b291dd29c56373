"""The decay divided difference as one PyTensor scalar op, with hand-written derivatives.

``exp[a, b](t) = (exp(-a t) - exp(-b t)) / (a - b)`` is the core of every first-order
absorption closed form (:func:`tpopk.pk.divided.decay`). Written with PyTensor's
elementary ops it needs ``abs``, ``min``, two double-``where`` branches and their
gradients: about 60 scalar nodes for the value and 150 for its gradient per use, six uses
for a dual-absorption two-compartment model, which numba then compiles one function per
node (minutes for a study model). As one scalar op it is one node, and its gradient three
(one per partial derivative), each a small branching function compiled by numba (PyTensor's
default linker and the sampler's; the op has no C implementation).

With ``m = min(a, b)``, ``M = max(a, b)``, ``y = |a - b| t``:

* ``exp[a, b](t) = -t exp(-m t) g(y)``, ``g(y) = (1 - exp(-y)) / y``;
* ``d/da exp[a, b](t) = exp[a, a, b](t) = t^2 exp(-m t) k(y)`` if ``a <= b``, else
  ``t^2 exp(-m t) j(y)``, with ``k(y) = (y - 1 + exp(-y)) / y^2`` and
  ``j(y) = (1 - (1 + y) exp(-y)) / y^2`` (both 1/2 at 0), by symmetry the same with ``a``
  and ``b`` swapped for ``d/db``;
* ``d/dt exp[a, b](t) = -(exp(-M t) + m exp[a, b](t))``.

Every form is a product of non-negative factors (no cancellation) and is exact at
``a = b``; ``g``, ``k`` and ``j`` take their Taylor series for small ``y``.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from pytensor.gradient import grad_not_implemented
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.scalar import register_scalar_funcify, scalar_op_cache_key
from pytensor.scalar.basic import ScalarOp, upgrade_to_float
from pytensor.tensor.elemwise import Elemwise

__all__ = ["decay_difference"]

# g(y) from its series below this (as tpopk.pk.divided.relexp); k and j below _KJ_SERIES.
_G_SERIES = 1e-3
_KJ_SERIES = 0.1
_KJ_TERMS = 12  # truncation error < 0.1^12 / 14! ~ 1e-23 relative
# Compiled numba functions are cached on disk under keys salted with this file's source,
# so an edited formula is never served from an old cache.
_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15]


def _coefficients(weight: int) -> tuple[float, ...]:
    """``(-1)^n (n + 1)^weight / (n + 2)!`` for n = 0.. (k: weight 0, j: weight 1)."""
    return tuple((-1.0) ** n * (n + 1) ** weight / math.factorial(n + 2) for n in range(_KJ_TERMS))


_K = _coefficients(0)
_J = _coefficients(1)


def _difference(a: float, b: float, t: float) -> float:
    m, y = min(a, b), abs(a - b) * t
    g = 1.0 - y / 2.0 * (1.0 - y / 3.0 * (1.0 - y / 4.0)) if y < _G_SERIES else -math.expm1(-y) / y
    return -t * math.exp(-m * t) * g


def _slope(a: float, b: float, t: float) -> float:
    m, y = min(a, b), abs(a - b) * t
    if y < _KJ_SERIES:
        coefficients = _K if a <= b else _J
        factor = 0.0
        for n in range(_KJ_TERMS - 1, -1, -1):
            factor = factor * y + coefficients[n]
    elif a <= b:
        factor = (y + math.expm1(-y)) / (y * y)
    else:
        factor = (-math.expm1(-y) - y * math.exp(-y)) / (y * y)
    return t * t * math.exp(-m * t) * factor


def _rate(a: float, b: float, t: float) -> float:
    m, y = min(a, b), abs(a - b) * t
    g = 1.0 - y / 2.0 * (1.0 - y / 3.0 * (1.0 - y / 4.0)) if y < _G_SERIES else -math.expm1(-y) / y
    return -(math.exp(-max(a, b) * t) - m * t * math.exp(-m * t) * g)


class _DecayScalar(ScalarOp):  # type: ignore[misc]
    """Base: three float inputs ``(a, b, t)``, one float output."""

    nin = 3
    nout = 1


class DecayDifference(_DecayScalar):
    """``exp[a, b](t)`` (see the module docstring)."""

    def impl(self, a: float, b: float, t: float) -> float:
        return _difference(float(a), float(b), float(t))

    def pullback(self, inputs: Any, outputs: Any, grads: Any) -> list[Any]:
        a, b, t = inputs
        (gz,) = grads
        return [
            gz * decay_slope_s(a, b, t),
            gz * decay_slope_s(b, a, t),
            gz * decay_rate_s(a, b, t),
        ]


class DecaySlope(_DecayScalar):
    """``d/da exp[a, b](t)`` (see the module docstring); not differentiable further here."""

    def impl(self, a: float, b: float, t: float) -> float:
        return _slope(float(a), float(b), float(t))

    def pullback(self, inputs: Any, outputs: Any, grads: Any) -> list[Any]:
        return [grad_not_implemented(self, i, x) for i, x in enumerate(inputs)]


class DecayRate(_DecayScalar):
    """``d/dt exp[a, b](t)`` (see the module docstring); not differentiable further here."""

    def impl(self, a: float, b: float, t: float) -> float:
        return _rate(float(a), float(b), float(t))

    def pullback(self, inputs: Any, outputs: Any, grads: Any) -> list[Any]:
        return [grad_not_implemented(self, i, x) for i, x in enumerate(inputs)]


decay_difference_s = DecayDifference(upgrade_to_float, name="decay_difference")
decay_slope_s = DecaySlope(upgrade_to_float, name="decay_slope")
decay_rate_s = DecayRate(upgrade_to_float, name="decay_rate")
decay_difference = Elemwise(decay_difference_s)
"""``exp[a, b](t)`` elementwise on tensors, differentiable once (what NUTS needs)."""

# Under PyTensor's numba backend (nutpie): one small compiled function per op.
_difference_jit = numba_basic.numba_njit(_difference)
_slope_jit = numba_basic.numba_njit(_slope)
_rate_jit = numba_basic.numba_njit(_rate)


def _numba_difference(op: DecayDifference, node: Any, **kwargs: Any) -> tuple[Any, str]:
    return _difference_jit, scalar_op_cache_key(op, cache_version=_VERSION)


def _numba_slope(op: DecaySlope, node: Any, **kwargs: Any) -> tuple[Any, str]:
    return _slope_jit, scalar_op_cache_key(op, cache_version=_VERSION)


def _numba_rate(op: DecayRate, node: Any, **kwargs: Any) -> tuple[Any, str]:
    return _rate_jit, scalar_op_cache_key(op, cache_version=_VERSION)


register_scalar_funcify(DecayDifference)(_numba_difference)
register_scalar_funcify(DecaySlope)(_numba_slope)
register_scalar_funcify(DecayRate)(_numba_rate)
