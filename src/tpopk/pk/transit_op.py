"""The Erlang weights of transit absorption as PyTensor scalar ops, with exact derivatives.

:mod:`tpopk.pk.transit` needs, for an integer power ``p`` and ``y >= 0``,

* ``W_start(p, y) = int_0^1 v^(p-1) exp(-y v) dv`` and
* ``W_end(p, y) = int_0^1 v^(p-1) exp(-y (1 - v)) dv``,

each a power series for ``y <= p`` and a finite incomplete-gamma sum above (the formulas
and their error analysis are in :mod:`tpopk.pk.transit`). Written with elementary ops,
avatrombopag's 10-compartment chain (39-57 series terms per weight) put 4839 nodes into
the log density of a study model (876-1338 for each other agonist), and PyTensor's graph
rewriting of the five-agonist study model did not finish in 40 minutes. As ops they are
one node per weight, and their derivatives are the same ops one power up:

* ``d/dy W_start(p, y) = -W_start(p + 1, y)``;
* ``d/dy W_end(p, y) = W_end(p + 1, y) - W_end(p, y)``.

The NumPy path of :mod:`tpopk.pk.transit` keeps its vectorised form of the same sums
(as :mod:`tpopk.pk.divided` does beside :mod:`tpopk.pk.decay_op`); tests check it against
quadrature and the ops (Python, numba and C) against it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.scalar import register_scalar_funcify, scalar_op_cache_key
from pytensor.scalar.basic import ScalarOp, upgrade_to_float
from pytensor.tensor.elemwise import Elemwise

__all__ = ["erlang_weight", "series_length"]

# Compiled code is cached on disk under keys salted with this file's source.
_VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15]


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


def _start(p: int, terms: int, y: float) -> float:
    if y <= p:
        series = 0.0
        for k in range(terms, -1, -1):
            series = (1.0 + y * series) / (p + k)
        return math.exp(-y) * series
    log_y, upper = math.log(y), 0.0
    for j in range(p):
        upper += math.exp(j * log_y - y - math.lgamma(j + 1.0))
    return math.exp(math.lgamma(p) - p * log_y) * (1.0 - upper)


def _end(p: int, terms: int, y: float) -> float:
    if y <= p:
        series = 0.0
        for k in range(terms, -1, -1):
            series = 1.0 / (p + k) + series * y / (k + 1)
        return math.exp(-y) * series
    log_y = math.log(y)
    closed = (1.0 if p % 2 == 0 else -1.0) * math.exp(math.lgamma(p) - y - p * log_y)
    for j in range(p):
        falling = math.exp(math.lgamma(p) - math.lgamma(p - j))
        closed += (1.0 if j % 2 == 0 else -1.0) * falling * math.exp(-(j + 1) * log_y)
    return closed


_START_C = """
{{
    double y_ = {y}, r_;
    if (y_ <= {p}.0) {{
        double s_ = 0.0;
        for (int k_ = {terms}; k_ >= 0; --k_) s_ = (1.0 + y_ * s_) / ({p}.0 + k_);
        r_ = exp(-y_) * s_;
    }} else {{
        double l_ = log(y_), u_ = 0.0;
        for (int j_ = 0; j_ < {p}; ++j_) u_ += exp(j_ * l_ - y_ - lgamma(j_ + 1.0));
        r_ = exp(lgamma({p}.0) - {p}.0 * l_) * (1.0 - u_);
    }}
    {z} = r_;
}}
"""

_END_C = """
{{
    double y_ = {y}, r_;
    if (y_ <= {p}.0) {{
        double s_ = 0.0;
        for (int k_ = {terms}; k_ >= 0; --k_) s_ = 1.0 / ({p}.0 + k_) + s_ * y_ / (k_ + 1.0);
        r_ = exp(-y_) * s_;
    }} else {{
        double l_ = log(y_);
        r_ = {sign} * exp(lgamma({p}.0) - y_ - {p}.0 * l_);
        for (int j_ = 0; j_ < {p}; ++j_) {{
            double f_ = exp(lgamma({p}.0) - lgamma({p}.0 - j_));
            r_ += (j_ % 2 == 0 ? 1.0 : -1.0) * f_ * exp(-(j_ + 1.0) * l_);
        }}
    }}
    {z} = r_;
}}
"""


class ErlangWeight(ScalarOp):  # type: ignore[misc]
    """``W_end(power, y)`` if ``end`` else ``W_start(power, y)`` (module docstring)."""

    nin = 1
    nout = 1

    def __init__(self, end: bool, power: int) -> None:
        if power < 1:
            raise ValueError(f"power must be a positive integer, got {power}")
        kind = "end" if end else "start"
        super().__init__(upgrade_to_float, name=f"erlang_weight_{kind}_{power}")
        self.end, self.power = end, power
        self.terms = end_terms(power) if end else start_terms(power)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ErlangWeight) and (self.end, self.power) == (
            other.end,
            other.power,
        )

    def __hash__(self) -> int:
        return hash((type(self), self.end, self.power))

    def impl(self, y: float) -> float:
        return (_end if self.end else _start)(self.power, self.terms, float(y))

    def pullback(self, inputs: Any, outputs: Any, grads: Any) -> list[Any]:
        (y,), (w,), (gz,) = inputs, outputs, grads
        up = ErlangWeight(self.end, self.power + 1)(y)
        return [gz * (up - w if self.end else -up)]

    def c_code(self, node: Any, name: str, inp: Any, out: Any, sub: Any) -> str:
        template = _END_C if self.end else _START_C
        sign = "1.0" if self.power % 2 == 0 else "-1.0"
        return template.format(y=inp[0], z=out[0], p=self.power, terms=self.terms, sign=sign)

    def c_code_cache_version(self) -> tuple[int, ...]:
        return (1, int(_VERSION, 16))


@cache
def erlang_weight(end: bool, power: int) -> Elemwise:
    """Elementwise ``W_end(power, .)`` or ``W_start(power, .)`` on tensors."""
    return Elemwise(ErlangWeight(end, power))


_start_jit = numba_basic.numba_njit(_start)
_end_jit = numba_basic.numba_njit(_end)


def _numba_erlang_weight(op: ErlangWeight, node: Any, **kwargs: Any) -> tuple[Any, str]:
    p, terms = op.power, op.terms  # compile-time constants of the closure
    scalar = _end_jit if op.end else _start_jit

    def weight(y: float) -> Any:
        return scalar(p, terms, y)

    key = scalar_op_cache_key(op, cache_version=_VERSION, end=op.end, power=p)
    return numba_basic.numba_njit(weight), key


register_scalar_funcify(ErlangWeight)(_numba_erlang_weight)
