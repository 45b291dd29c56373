"""Central concentrations of any registered PK model for NONMEM-style dose records."""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

import numpy as np

from tpopk.errors import TpopkError
from tpopk.pk.absorption import (
    CentralAmount,
    central_amount_dual,
    central_amount_first_order,
    central_amount_iv,
)
from tpopk.pk.disposition import disposition_modes
from tpopk.pk.dosing import dose_schedule
from tpopk.pk.models import Absorption, PKModel
from tpopk.pk.namespace import Array, as_array, resolve_namespace
from tpopk.pk.transit import central_amount_transit, transit_count

__all__ = ["concentration"]

_CENTRAL_AMOUNT: dict[Absorption, CentralAmount] = {
    "iv": central_amount_iv,
    "first_order": central_amount_first_order,
    "dual": central_amount_dual,
    "transit": central_amount_transit,
}


def concentration(
    model: PKModel,
    params: Mapping[str, object],
    dose_time: object,
    dose_amt: object,
    dose_rate: object,
    dose_ss: object,
    dose_ii: object,
    t: object,
    *,
    xp: ModuleType = np,
) -> Array:
    """Return the central concentration of ``model`` at times ``t``.

    Doses act by superposition with NONMEM semantics (see :mod:`tpopk.pk.dosing`).

    Parameters
    ----------
    model : PKModel
        Structural model, e.g. ``PK_MODELS["oral_2cmt"]``.
    params : mapping of str to array_like
        One entry per name in ``model.parameters`` (those with a default may be
        omitted), each broadcastable to the shape ``B`` of ``t``. Units as in the
        specs: rate constants 1/h, clearances L/h, volumes L, times h.
        ``n_transit`` must be a concrete integer.
    dose_time : array_like
        Dose times [h], shape ``B + (D,)``; the trailing axis lists doses.
    dose_amt : array_like
        Dose amounts (any amount unit), shape ``B + (D,)``. Padding doses have amount 0
        and contribute exactly 0.
    dose_rate : array_like
        Infusion rate [amount/h], 0 for a bolus into ``model.dose_cmt``.
    dose_ss : array_like
        NONMEM ``SS``: 0 none, 1 steady state with reset, 2 steady state added.
    dose_ii : array_like
        Dosing interval ``II`` [h] of steady-state doses.
    t : array_like
        Observation times [h], any shape ``B``.
    xp : module, default numpy
        ``numpy`` for values, ``pytensor.tensor`` for a symbolic, differentiable graph.

    Returns
    -------
    Array
        Concentration in amount units per L (e.g. mg/L), shape ``B``.

    Raises
    ------
    TpopkError
        If a required parameter is missing, a name is unknown, ``n_transit`` is not a
        concrete non-negative integer, or a transit model gets an infusion or steady
        state dose.
    """
    xp = resolve_namespace(xp)
    values = _resolve_parameters(xp, model, params)
    doses = [as_array(xp, d) for d in (dose_time, dose_amt, dose_rate, dose_ss, dose_ii)]
    time, amount, rate, steady_state, interval = doses
    observed = as_array(xp, t)[..., None]
    schedule = dose_schedule(xp, values["f"], time, amount, rate, steady_state, interval, observed)
    if model.absorption == "transit":
        values["n_transit"] = transit_count(params["n_transit"])
        _check_transit_doses(dose_rate, dose_ss)
    modes = disposition_modes(xp, model.n_compartments, values)
    per_unit = _CENTRAL_AMOUNT[model.absorption](xp, modes, values, schedule)
    central = xp.sum(values["f"] * amount * per_unit, axis=-1)
    return central / values["v"][..., 0]


def _resolve_parameters(
    xp: ModuleType, model: PKModel, params: Mapping[str, object]
) -> dict[str, Array]:
    """Fill defaults, reject unknown names, and add the trailing dose axis."""
    unknown = sorted(set(params) - set(model.parameter_names))
    if unknown:
        raise TpopkError(
            f"{model.name} has no parameter(s) {unknown}; expected {list(model.parameter_names)}"
        )
    values: dict[str, Array] = {}
    missing = []
    for spec in model.parameters:
        if spec.name in params:
            if spec.name != "n_transit":  # a fixed integer, read by the transit closed form
                values[spec.name] = as_array(xp, params[spec.name])[..., None]
        elif spec.default is not None:
            values[spec.name] = as_array(xp, spec.default)[..., None]
        else:
            missing.append(spec.name)
    if missing:
        raise TpopkError(f"{model.name} needs parameter(s) {missing}")
    return values


def _check_transit_doses(dose_rate: object, dose_ss: object) -> None:
    """Refuse infusions and steady state for transit absorption (no closed form here)."""
    for name, value in (("an infusion (RATE > 0)", dose_rate), ("a steady-state dose", dose_ss)):
        concrete = _concrete(value)
        if concrete is not None and np.any(concrete != 0):
            raise TpopkError(
                f"transit absorption supports bolus doses only, not {name}; "
                "use an ODE model for these records"
            )


def _concrete(value: object) -> np.ndarray | None:
    """Return ``value`` as a NumPy array if it is data rather than a symbolic tensor."""
    data = getattr(value, "data", value)  # PyTensor constants carry their value in .data
    try:
        return np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        return None
