"""Routes into the central compartment: IV, first-order, dual sequential first-order.

Per unit bioavailable dose, the central amount is a sum over disposition modes
``(coefficient_i, eigenvalue_i)`` (:mod:`tpopk.pk.disposition`) of

* IV (dose into the central compartment): ``coefficient_i f(eigenvalue_i)``;
* first-order absorption from a depot: the input ``ka exp(-ka s)`` convolved with the
  mode, ``-ka coefficient_i f[ka, eigenvalue_i]`` (a divided difference);
* dual sequential first-order absorption (eltrombopag, Gibiansky 2011; Farrell 2014):
  ``ka1`` from the end of the lag until ``mtime`` after the dose, ``ka2`` afterwards.
  With ``m = max(mtime - tlag, 0)`` and ``c = exp(-ka1 m)`` the depot still holding a
  fraction ``c`` at the switch, the input rate equals a ``ka1`` first-order input, minus
  ``c`` times the same input delayed by ``m``, plus ``c`` times a ``ka2`` input delayed by
  ``m``; three first-order terms, so infusions and steady state come for free. Each
  dose keeps its own clock (superposition), whereas rxode2's ``tad()`` restarts the
  phase of every depot at the next dose; they differ only by depot content left at the
  next dose, which is nil for daily eltrombopag (``exp(-5.26 * 22.5)``).

``f`` is the dosing function of :mod:`tpopk.pk.dosing`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Protocol

from tpopk.pk.disposition import Mode
from tpopk.pk.dosing import DoseSchedule, dose_response, input_elapsed
from tpopk.pk.namespace import Array

__all__ = [
    "CentralAmount",
    "central_amount_dual",
    "central_amount_first_order",
    "central_amount_iv",
]


class CentralAmount(Protocol):
    """Signature shared by the closed forms of each route (and :mod:`tpopk.pk.transit`)."""

    def __call__(
        self,
        xp: ModuleType,
        modes: tuple[Mode, ...],
        params: Mapping[str, Array],
        schedule: DoseSchedule,
    ) -> Array:
        """Return the central amount per unit bioavailable dose.

        Parameters
        ----------
        xp : module
            Array namespace.
        modes : tuple of Mode
            Disposition modes.
        params : mapping
            Model parameters (rate constants 1/h, times h), each with a trailing dose axis.
        schedule : DoseSchedule
            Dose timing, shape ``B + (D,)``.

        Returns
        -------
        Array
            Central amount per unit amount [-], shape ``B + (D,)``; exactly 0 for doses
            that do not act yet.
        """


def central_amount_iv(
    xp: ModuleType, modes: tuple[Mode, ...], params: Mapping[str, Array], schedule: DoseSchedule
) -> Array:
    """:class:`CentralAmount` of a dose into the central compartment (uses ``tlag``)."""
    elapsed, acting = input_elapsed(xp, schedule, params["tlag"])
    total = 0.0
    for mode in modes:
        total = (
            total
            + mode.coefficient * dose_response(xp, None, mode.eigenvalue, elapsed, schedule).at_b
        )
    return xp.where(acting, total, 0.0)


def _first_order(
    xp: ModuleType,
    modes: tuple[Mode, ...],
    ka: Array,
    delay: Array,
    schedule: DoseSchedule,
) -> Array:
    elapsed, acting = input_elapsed(xp, schedule, delay)
    total = 0.0
    for mode in modes:
        response = dose_response(xp, ka, mode.eigenvalue, elapsed, schedule)
        total = total - ka * mode.coefficient * response.diff
    return xp.where(acting, total, 0.0)


def central_amount_first_order(
    xp: ModuleType, modes: tuple[Mode, ...], params: Mapping[str, Array], schedule: DoseSchedule
) -> Array:
    """:class:`CentralAmount` of first-order absorption (``ka``, ``tlag``)."""
    return _first_order(xp, modes, params["ka"], params["tlag"], schedule)


def central_amount_dual(
    xp: ModuleType, modes: tuple[Mode, ...], params: Mapping[str, Array], schedule: DoseSchedule
) -> Array:
    """:class:`CentralAmount` of dual absorption (``ka1``, ``ka2``, ``mtime``, ``tlag``)."""
    ka1, ka2, tlag = params["ka1"], params["ka2"], params["tlag"]
    first_phase = xp.maximum(params["mtime"] - tlag, 0.0)
    left_at_switch = xp.exp(-ka1 * first_phase)
    switch = tlag + first_phase
    return _first_order(xp, modes, ka1, tlag, schedule) + left_at_switch * (
        _first_order(xp, modes, ka2, switch, schedule)
        - _first_order(xp, modes, ka1, switch, schedule)
    )
