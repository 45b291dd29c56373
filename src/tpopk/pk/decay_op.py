"""The decay divided difference as one PyTensor scalar op, with hand-written derivatives.

``exp[a, b](t) = (exp(-a t) - exp(-b t)) / (a - b)`` is the core of every first-order
absorption closed form (:func:`tpopk.pk.divided.decay`). Written with PyTensor's
elementary ops it needs ``abs``, ``min``, two double-``where`` branches and their
gradients: about 60 scalar nodes for the value and 150 for its gradient per use, six uses
for a dual-absorption two-compartment model, which numba then compiles one function per
node (minutes for a study model). As one scalar op it is one node, a small branching
function in numba and C with four outputs: the value and its three partial derivatives,
computed together from shared exponentials (four transcendental calls where separate
value and derivative ops made eleven). Its pullback reads those outputs, so a log density
+ gradient evaluates each use once.

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

from numba.extending import register_jitable
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.scalar import register_scalar_funcify, scalar_op_cache_key
from pytensor.scalar.basic import ScalarOp, upgrade_to_float
from pytensor.tensor.elemwise import Elemwise

__all__ = ["decay_difference"]

# g(y) from its series below this (as tpopk.pk.divided.relexp); k and j below _KJ_SERIES.
_G_SERIES = 1e-3
_KJ_SERIES = 0.1
_KJ_TERMS = 12  # truncation error < 0.1^12 / 14! ~ 1e-23 relative
# Compiled code (C modules, numba functions) is cached on disk under keys salted with this
# file's source, so an edited formula is never served from an old cache.
_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15]


def _coefficients(weight: int) -> tuple[float, ...]:
    """``(-1)^n (n + 1)^weight / (n + 2)!`` for n = 0.. (k: weight 0, j: weight 1)."""
    return tuple((-1.0) ** n * (n + 1) ** weight / math.factorial(n + 2) for n in range(_KJ_TERMS))


_K = _coefficients(0)
_J = _coefficients(1)


def _horner(coefficients: tuple[float, ...], y: str) -> str:
    """C expression of the polynomial with ``coefficients`` (lowest first) at ``y``."""
    expression = repr(coefficients[-1])
    for c in reversed(coefficients[:-1]):
        expression = f"({expression} * {y} + {c!r})"
    return expression


def _kj(a_first: bool, y: float) -> float:
    """``k(y)`` if ``a_first`` (the differentiated node is the smaller) else ``j(y)``."""
    if y < _KJ_SERIES:
        coefficients = _K if a_first else _J
        factor = 0.0
        for n in range(_KJ_TERMS - 1, -1, -1):
            factor = factor * y + coefficients[n]
        return factor
    if a_first:
        return (y + math.expm1(-y)) / (y * y)
    return (-math.expm1(-y) - y * math.exp(-y)) / (y * y)


# callable from the numba-compiled _decay as well as from Python
register_jitable(_kj)


def _decay(a: float, b: float, t: float) -> tuple[float, float, float, float]:
    """``exp[a, b](t)`` and its derivatives in ``a``, ``b``, ``t`` (module docstring)."""
    m, y = min(a, b), abs(a - b) * t
    g = 1.0 - y / 2.0 * (1.0 - y / 3.0 * (1.0 - y / 4.0)) if y < _G_SERIES else -math.expm1(-y) / y
    decayed = math.exp(-m * t)
    value = -t * decayed * g
    square = t * t * decayed
    d_a = square * _kj(a <= b, y)
    d_b = square * _kj(b <= a, y)
    d_t = -(math.exp(-max(a, b) * t) + m * value)
    return value, d_a, d_b, d_t


_SUPPORT_C = """
#ifndef TPOPK_DECAY_DIFFERENCE
#define TPOPK_DECAY_DIFFERENCE
static double tpopk_kj(int a_first, double y) {
    if (y < @KJ_SERIES@) return a_first ? @K@ : @J@;
    if (a_first) return (y + expm1(-y)) / (y * y);
    return (-expm1(-y) - y * exp(-y)) / (y * y);
}
static void tpopk_decay(double a, double b, double t, double *out) {
    double m = fmin(a, b), y = fabs(a - b) * t, g, decayed, square;
    g = y < @G_SERIES@ ? 1.0 - y / 2.0 * (1.0 - y / 3.0 * (1.0 - y / 4.0)) : -expm1(-y) / y;
    decayed = exp(-m * t);
    out[0] = -t * decayed * g;
    square = t * t * decayed;
    out[1] = square * tpopk_kj(a <= b, y);
    out[2] = square * tpopk_kj(b <= a, y);
    out[3] = -(exp(-fmax(a, b) * t) + m * out[0]);
}
#endif
"""
for _name, _text in {
    "@KJ_SERIES@": repr(_KJ_SERIES),
    "@G_SERIES@": repr(_G_SERIES),
    "@K@": _horner(_K, "y"),
    "@J@": _horner(_J, "y"),
}.items():
    _SUPPORT_C = _SUPPORT_C.replace(_name, _text)


def _four_floats(*types: Any) -> tuple[Any, ...]:
    """Output types of :class:`DecayDifference`: four of the inputs' float type."""
    return tuple(upgrade_to_float(*types)) * 4


class DecayDifference(ScalarOp):  # type: ignore[misc]
    """``exp[a, b](t)`` and its partial derivatives in ``a``, ``b``, ``t`` (module docstring).

    Differentiable once: the pullback returns the last three outputs.
    """

    nin = 3
    nout = 4

    def impl(self, a: float, b: float, t: float) -> tuple[float, ...]:
        return _decay(float(a), float(b), float(t))

    def pullback(self, inputs: Any, outputs: Any, grads: Any) -> list[Any]:
        if any(not isinstance(g.type, DisconnectedType) for g in grads[1:]):
            return [grad_not_implemented(self, i, x) for i, x in enumerate(inputs)]
        return [grads[0] * partial for partial in outputs[1:]]

    def c_support_code(self, **kwargs: Any) -> str:
        return _SUPPORT_C

    def c_code(self, node: Any, name: str, inp: Any, out: Any, sub: Any) -> str:
        a, b, t = inp
        stores = "\n".join(f"{z} = out_[{i}];" for i, z in enumerate(out))
        return f"""
        {{
            double out_[4];
            tpopk_decay({a}, {b}, {t}, out_);
            {stores}
        }}
        """

    def c_code_cache_version(self) -> tuple[int, ...]:
        return (2, int(_VERSION, 16))


decay_difference_s = DecayDifference(_four_floats, name="decay_difference")
_decay_elemwise = Elemwise(decay_difference_s)


def decay_difference(a: Any, b: Any, t: Any) -> Any:
    """``exp[a, b](t)`` elementwise on tensors, differentiable once (what NUTS needs)."""
    return _decay_elemwise(a, b, t)[0]


# Under PyTensor's numba backend (nutpie): one small compiled function.
_decay_jit = numba_basic.numba_njit(_decay)


def _numba_decay(op: DecayDifference, node: Any, **kwargs: Any) -> tuple[Any, str]:
    return _decay_jit, scalar_op_cache_key(op, cache_version=_VERSION)


register_scalar_funcify(DecayDifference)(_numba_decay)
