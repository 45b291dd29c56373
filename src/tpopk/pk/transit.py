"""Transit-compartment absorption (Savic et al., J Pharmacokinet Pharmacodyn 2007;34:711).

A dose passes ``n_transit + 1`` compartments in series, each left with rate constant
``ktr = (n_transit + 1) / mtt``, into an absorption compartment left with ``ka``. The
input into the absorption compartment is therefore the Erlang density
``E(u) = ktr^m u^(m-1) exp(-ktr u) / (m-1)!`` with ``m = n_transit + 1`` (Savic's
analytical input for integer ``n``). Per disposition mode of eigenvalue ``lambda`` the
central amount is ``-ka coefficient G[ka, lambda]`` with

``G(mu) = int_0^s E(u) exp(-mu (s - u)) du
        = (ktr s)^m / (m-1)! * int_0^1 v^(m-1) exp(-s (ktr v + mu (1 - v))) dv``.

The remaining integral is a confluent hypergeometric function; it is evaluated with
``lo = min(ktr, mu)`` factored out, so its argument ``y = |ktr - mu| s`` is never
negative, by a positive power series for small ``y`` and the finite incomplete-gamma
sums for large ``y`` (each branch where it has no cancellation). ``G[ka, lambda]`` is the
difference quotient, or ``G'`` at the midpoint when the nodes nearly coincide.

``n_transit`` is a structural integer, fixed when the model is built: the number of
series terms depends on it. Under PyTensor ``G[ka, lambda]`` with its gradient is one
scalar op per mode (:mod:`tpopk.pk.transit_op`); under NumPy the sums run vectorised
here. Bolus doses only (superposition, lag and F apply).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from types import ModuleType

import numpy as np

from tpopk.errors import TpopkError
from tpopk.pk.disposition import Mode
from tpopk.pk.dosing import DoseSchedule, input_elapsed
from tpopk.pk.namespace import Array, is_numpy
from tpopk.pk.transit_op import end_terms, start_terms, transit_mode

__all__ = ["central_amount_transit", "transit_count"]

# Nodes closer than this (relative, in units of 1/s) use the derivative at the midpoint.
_CLOSE_NODES = 1e-5


def transit_count(value: object) -> int:
    """Return ``n_transit`` as a Python integer.

    Parameters
    ----------
    value : int or array_like or PyTensor constant
        Number of transit compartments; every element must be the same non-negative
        integer.

    Returns
    -------
    int
        The number of transit compartments.

    Raises
    ------
    TpopkError
        If ``value`` is symbolic, non-integer, negative or not the same everywhere.
    """
    data = getattr(value, "data", value)
    try:
        values = np.unique(np.asarray(data, dtype=float))
    except (TypeError, ValueError):
        raise TpopkError("n_transit must be a fixed integer, not a random variable") from None
    if values.size != 1 or values[0] < 0 or values[0] != np.round(values[0]):
        raise TpopkError(f"n_transit must be one non-negative integer, got {values.tolist()}")
    return int(values[0])


def central_amount_transit(
    xp: ModuleType, modes: tuple[Mode, ...], params: Mapping[str, Array], schedule: DoseSchedule
) -> Array:
    """:class:`~tpopk.pk.absorption.CentralAmount` of transit absorption (bolus doses).

    Uses ``ka`` [1/h], ``mtt`` [h], ``tlag`` [h] and ``n_transit`` (a Python int).
    """
    order = operator.index(params["n_transit"]) + 1
    ka = params["ka"]
    ktr = order / params["mtt"]
    elapsed, acting = input_elapsed(xp, schedule, params["tlag"])
    total = 0.0
    for mode in modes:
        if is_numpy(xp):
            difference = _erlang_decay_difference(xp, order, ktr, ka, mode.eigenvalue, elapsed)
        else:  # one node with its gradient (tpopk.pk.transit_op)
            difference = transit_mode(order)(ktr, ka, mode.eigenvalue, elapsed)[0]
        total = total - ka * mode.coefficient * difference
    return xp.where(acting, total, 0.0)


def _erlang_decay_difference(
    xp: ModuleType, order: int, ktr: Array, a: Array, b: Array, s: Array
) -> Array:
    """Return ``G[a, b]``: the divided difference in ``mu`` of ``G`` (module docstring)."""
    close = xp.abs(a - b) * s <= _CLOSE_NODES * xp.maximum(1.0, xp.maximum(a, b) * s)
    safe_gap = xp.where(close, 1.0, a - b)
    quotient = (
        _erlang_decay(xp, order, order, ktr, a, s) - _erlang_decay(xp, order, order, ktr, b, s)
    ) / safe_gap
    middle = (a + b) / 2.0
    # G'(mu) = -s (ktr s)^m / (m-1)! int v^(m-1) (1 - v) exp(...) dv
    derivative = -s * (
        _erlang_decay(xp, order, order, ktr, middle, s)
        - _erlang_decay(xp, order, order + 1, ktr, middle, s)
    )
    return xp.where(close, derivative, quotient)


def _erlang_decay(xp: ModuleType, order: int, power: int, ktr: Array, mu: Array, s: Array) -> Array:
    """Return ``(ktr s)^m / (m-1)! * int_0^1 v^(p-1) exp(-s (ktr v + mu (1-v))) dv``.

    ``m = order``, ``p = power`` (``m`` or ``m + 1``); ``s >= 0``.
    """
    # Each branch is analytic in mu across ktr = mu (no abs/min), so gradients are exact
    # at the tie too.
    transit_faster = ktr >= mu
    safe_s = xp.where(s > 0.0, s, 1.0)
    log_power = order * xp.log(ktr * safe_s) - math.lgamma(order)
    at_start = xp.exp(log_power - mu * s) * _weight_at_start(
        xp, power, xp.where(transit_faster, (ktr - mu) * s, 0.0)
    )
    at_end = xp.exp(log_power - ktr * s) * _weight_at_end(
        xp, power, xp.where(transit_faster, 0.0, (mu - ktr) * s)
    )
    return xp.where(s > 0.0, xp.where(transit_faster, at_start, at_end), 0.0)


def _weight_at_start(xp: ModuleType, p: int, y: Array) -> Array:
    """Return ``int_0^1 v^(p-1) exp(-y v) dv = gamma(p, y) / y^p`` for ``y >= 0``."""
    small = y <= p
    y_small = xp.where(small, y, 0.0)
    y_big = xp.where(small, p + 1.0, y)
    # exp(-y) sum_k y^k / (p (p+1) ... (p+k)): positive terms, ratio y / (p + k) <= p / (p + k)
    series = 0.0
    for k in range(start_terms(p), -1, -1):
        series = (1.0 + y_small * series) / (p + k)
    series = xp.exp(-y_small) * series
    # (p-1)! / y^p * (1 - Q(p, y)), Q(p, y) = exp(-y) sum_{j<p} y^j / j! <= 1/2 for y > p
    upper = 0.0
    for j in range(p):
        upper = upper + xp.exp(j * xp.log(y_big) - y_big - math.lgamma(j + 1))
    closed = xp.exp(math.lgamma(p) - p * xp.log(y_big)) * (1.0 - upper)
    return xp.where(small, series, closed)


def _weight_at_end(xp: ModuleType, p: int, y: Array) -> Array:
    """Return ``int_0^1 v^(p-1) exp(-y (1 - v)) dv`` for ``y >= 0``."""
    small = y <= p
    y_small = xp.where(small, y, 0.0)
    y_big = xp.where(small, p + 1.0, y)
    # exp(-y) sum_k y^k / (k! (p + k)): positive terms, ratio y / (k + 1) <= p / (k + 1)
    series = 0.0
    for k in range(end_terms(p), -1, -1):
        series = 1.0 / (p + k) + series * y_small / (k + 1)
    series = xp.exp(-y_small) * series
    # sum_{j<p} (-1)^j (p-1)!/(p-1-j)! / y^(j+1) + (-1)^p (p-1)! exp(-y) / y^p: alternating,
    # terms shrinking by (p-1-j)/y < 1, so the sum keeps >= 1/p of its first term (y > p)
    closed = (-1.0) ** p * xp.exp(math.lgamma(p) - y_big - p * xp.log(y_big))
    for j in range(p):
        falling = math.exp(math.lgamma(p) - math.lgamma(p - j))
        closed = closed + (-1.0) ** j * falling * xp.exp(-(j + 1) * xp.log(y_big))
    return xp.where(small, series, closed)
