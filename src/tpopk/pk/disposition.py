"""Disposition: the central-compartment response to a unit bolus as a sum of exponentials.

A linear 1-, 2- or 3-compartment model with elimination from the central compartment
answers a unit amount put into the central compartment at time 0 with the central amount
``sum_i coefficient_i * exp(-eigenvalue_i * t)`` (Gibaldi & Perrier, *Pharmacokinetics*,
2nd ed., ch. 2-3; the same macro-constants as NONMEM ADVAN1/3/11). The coefficients sum
to 1. Micro-constants: ``k10 = CL/V``, ``k12 = Q/V``, ``k21 = Q/V2``, ``k13 = Q3/V``,
``k31 = Q3/V3``.

A unit amount put into a peripheral compartment reaches the central one with the same
eigenvalues: in the Laplace domain the central amount is ``prod_j (s + k_j1) /
prod_i (s + lambda_i)`` for central input, and the factor ``(s + k_j1)`` of the dosed
peripheral ``j`` becomes ``k_j1``. The residue at ``-lambda_i`` gives the coefficients
``prod_j (k_j1 - lambda_i) / prod_{m != i} (lambda_m - lambda_i)``, with ``k_j1 - lambda_i``
replaced by ``k_j1`` for the dosed peripheral; they sum to 0 (the central compartment
starts empty).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

from tpopk.pk.namespace import Array

__all__ = ["Mode", "disposition_modes"]


@dataclass(frozen=True)
class Mode:
    """One exponential of the central unit-bolus response.

    Attributes
    ----------
    coefficient : Array
        Fraction of the dose the mode carries [-].
    eigenvalue : Array
        Its rate constant [1/h] (positive).
    """

    coefficient: Array
    eigenvalue: Array


def disposition_modes(
    xp: ModuleType, n_compartments: int, params: Mapping[str, Array], into: int = 0
) -> tuple[Mode, ...]:
    """Return the modes of the central amount after a unit bolus into compartment ``into``.

    Parameters
    ----------
    xp : module
        Array namespace (``numpy`` or ``pytensor.tensor``).
    n_compartments : {1, 2, 3}
        Number of disposition compartments.
    params : mapping
        ``cl`` [L/h], ``v`` [L]; with 2 compartments also ``q`` [L/h], ``v2`` [L]; with 3
        also ``q3`` [L/h], ``v3`` [L].
    into : int, default 0
        Dosed compartment: 0 central, 1 the first peripheral (``q``, ``v2``), 2 the
        second (``q3``, ``v3``).

    Returns
    -------
    tuple of Mode
        One mode per compartment, largest eigenvalue first.
    """
    if not 0 <= into < n_compartments:
        raise ValueError(f"compartment {into} of a {n_compartments}-compartment model")
    k10 = params["cl"] / params["v"]
    if n_compartments == 1:
        return (Mode(1.0 + 0.0 * k10, k10),)
    k12 = params["q"] / params["v"]
    k21 = params["q"] / params["v2"]
    if n_compartments == 2:
        return _two_compartment(xp, k10, k12, k21, into)
    k13 = params["q3"] / params["v"]
    k31 = params["q3"] / params["v3"]
    return _three_compartment(xp, k10, k12, k21, k13, k31, into)


def _two_compartment(
    xp: ModuleType, k10: Array, k12: Array, k21: Array, into: int
) -> tuple[Mode, Mode]:
    total = k10 + k12 + k21
    # (k10 + k12 + k21)^2 - 4 k10 k21 rewritten as a sum of non-negative terms: no cancellation.
    gap = xp.sqrt((k10 - k21) ** 2 + k12 * (k12 + 2.0 * (k10 + k21)))
    alpha = (total + gap) / 2.0
    beta = k10 * k21 / alpha  # alpha * beta = k10 k21, without the cancellation of (S - gap)/2
    if into == 1:  # alpha - beta = gap
        return (Mode(-k21 / gap, alpha), Mode(k21 / gap, beta))
    return (
        Mode((alpha - k21) / gap, alpha),
        Mode((k21 - beta) / gap, beta),
    )


def _three_compartment(
    xp: ModuleType, k10: Array, k12: Array, k21: Array, k13: Array, k31: Array, into: int
) -> tuple[Mode, Mode, Mode]:
    # Roots of x^3 - a2 x^2 + a1 x - a0 (trigonometric form, as in NONMEM ADVAN11).
    a0 = k10 * k21 * k31
    a1 = k10 * k31 + k21 * k31 + k21 * k13 + k10 * k21 + k31 * k12
    a2 = k10 + k12 + k13 + k21 + k31
    p = a1 - a2 * a2 / 3.0
    q = 2.0 * a2**3 / 27.0 - a1 * a2 / 3.0 + a0
    r1 = xp.sqrt(-(p**3) / 27.0)
    # Only rounding can push the cosine argument past +-1; clamping it biases nothing.
    cosine = xp.minimum(xp.maximum(-q / (2.0 * r1), -1.0), 1.0)
    phi = xp.arccos(cosine) / 3.0
    r2 = 2.0 * xp.exp(xp.log(r1) / 3.0)
    largest = a2 / 3.0 - r2 * xp.cos(phi + 2.0 * math.pi / 3.0)
    middle = a2 / 3.0 - r2 * xp.cos(phi + 4.0 * math.pi / 3.0)
    # The smallest root from the product of roots: no cancellation against a2/3.
    smallest = a0 / (largest * middle)
    eigenvalues = (largest, middle, smallest)
    modes = []
    for i, lam in enumerate(eigenvalues):
        others = [eigenvalues[j] for j in range(3) if j != i]
        from_first = k21 if into == 1 else k21 - lam
        from_second = k31 if into == 2 else k31 - lam
        coefficient = from_first * from_second / ((others[0] - lam) * (others[1] - lam))
        modes.append(Mode(coefficient, lam))
    return (modes[0], modes[1], modes[2])
