"""Central concentrations of any registered PK model for NONMEM-style dose records.

A dose may name any compartment of the model (NONMEM ``CMT``, numbered as in
:attr:`PKModel.compartments`). The model is linear, so each dose's central response is
that of its own route, summed over doses: CMT 1 takes the model's absorption (the central
input of IV models) with ``f`` and ``tlag`` (NONMEM ``F1``, ``ALAG1``); the central
compartment of an extravascular model is the IV response; a peripheral compartment
reaches the central one through the disposition modes of peripheral input
(:func:`tpopk.pk.disposition.disposition_modes`). Doses into other compartments take
their ``AMT`` whole and without lag.
"""

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
    dose_cmt: object = None,
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
        Infusion rate [amount/h], 0 for a bolus.
    dose_ss : array_like
        NONMEM ``SS``: 0 none, 1 steady state with reset, 2 steady state added.
    dose_ii : array_like
        Dosing interval ``II`` [h] of steady-state doses.
    t : array_like
        Observation times [h], any shape ``B``.
    dose_cmt : array_like of int, optional
        NONMEM ``CMT`` of each dose, shape ``B + (D,)``, data (not symbolic); one of
        ``model.dose_cmts``. Default: every dose into ``model.dose_cmt``.
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
        concrete non-negative integer, a transit model gets an infusion or steady
        state dose into its depot, or a dose names a compartment the model lacks.
    """
    xp = resolve_namespace(xp)
    values = _resolve_parameters(xp, model, params)
    doses = [as_array(xp, d) for d in (dose_time, dose_amt, dose_rate, dose_ss, dose_ii)]
    time, amount, rate, steady_state, interval = doses
    observed = as_array(xp, t)[..., None]
    cmt = _dose_compartments(model, dose_cmt)
    if cmt is None:  # every dose by the model's own route: the graph of one route
        bioavailability = values["f"]
        first = None
    else:
        first = cmt == model.dose_cmt
        bioavailability = xp.where(first, values["f"], 1.0)
    schedule = dose_schedule(
        xp, bioavailability, time, amount, rate, steady_state, interval, observed
    )
    if model.absorption == "transit":
        values["n_transit"] = transit_count(params["n_transit"])
        _check_transit_doses(dose_rate, dose_ss, first)
    modes = disposition_modes(xp, model.n_compartments, values)
    per_unit = _CENTRAL_AMOUNT[model.absorption](xp, modes, values, schedule)
    if cmt is not None:
        per_unit = xp.where(first, per_unit, 0.0)
        for number in np.unique(cmt[cmt != model.dose_cmt]):
            into = int(number) - model.obs_cmt  # 0 central, 1 and 2 peripherals
            routed = disposition_modes(xp, model.n_compartments, values, into)
            amount_there = central_amount_iv(xp, routed, {"tlag": 0.0}, schedule)
            per_unit = per_unit + xp.where(cmt == number, amount_there, 0.0)
    central = xp.sum(bioavailability * amount * per_unit, axis=-1)
    return central / values["v"][..., 0]


def _dose_compartments(model: PKModel, dose_cmt: object) -> np.ndarray | None:
    """``dose_cmt`` as integers, checked; ``None`` when every dose takes ``model.dose_cmt``."""
    if dose_cmt is None:
        return None
    cmt = _concrete(dose_cmt)
    if cmt is None:
        raise TpopkError("dose_cmt must be data (NONMEM CMT numbers), not a symbolic tensor")
    unknown = sorted(set(np.unique(cmt).tolist()) - set(model.dose_cmts))
    if unknown:
        raise TpopkError(
            f"{model.name} has no compartment CMT {', '.join(f'{c:g}' for c in unknown)}; "
            f"its compartments are CMT {model.describe_cmts()}"
        )
    if np.all(cmt == model.dose_cmt):
        return None
    return cmt.astype(np.int64)


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


def _check_transit_doses(dose_rate: object, dose_ss: object, depot: np.ndarray | None) -> None:
    """Refuse infusions and steady state into the transit chain (no closed form here).

    ``depot`` marks the doses into the chain (``None``: all of them); doses into other
    compartments take every dosing form.
    """
    for name, value in (("an infusion (RATE > 0)", dose_rate), ("a steady-state dose", dose_ss)):
        concrete = _concrete(value)
        if concrete is not None and depot is not None:
            concrete = np.where(np.broadcast_to(depot, concrete.shape), concrete, 0.0)
        if concrete is not None and np.any(concrete != 0):
            raise TpopkError(
                f"transit absorption supports bolus doses only, not {name} into the "
                "depot (CMT 1); use an ODE model for these records"
            )


def _concrete(value: object) -> np.ndarray | None:
    """Return ``value`` as a NumPy array if it is data rather than a symbolic tensor."""
    data = getattr(value, "data", value)  # PyTensor constants carry their value in .data
    try:
        return np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        return None
