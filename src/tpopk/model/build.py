"""Turn a model card and an event table into a PyMC model.

The model has coordinates ``subject`` (subject IDs) and, for each observation type
``<dvid>`` present in the data, ``obs_<dvid>`` whose values are the positions of those
observations in the event table's flat observation list (so predictions of several
types can be put back in data order). Individual predictions are kept as
``ipred_<dvid>`` for goodness-of-fit plots and VPCs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import cast

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import NDArray
from pytensor.tensor import TensorVariable

from tpopk.data import EventTable, SubjectArrays
from tpopk.model.card import CardError, ModelCard, drug_effect_parameters
from tpopk.model.likelihood import likelihood
from tpopk.model.parameters import individual_parameters
from tpopk.pd import PD_MODELS, SolverGrid, observe, solve
from tpopk.pd.drug_effect import DRUG_EFFECTS
from tpopk.pk import PK_MODELS, concentration

# Size of one amount unit in mg (mass) or µmol (molar), and of one volume unit in L:
# enough to put a dose-per-litre prediction into the unit the data declare.
_AMOUNT = {
    "pg": ("mass", 1e-9),
    "ng": ("mass", 1e-6),
    "µg": ("mass", 1e-3),
    "mg": ("mass", 1.0),
    "g": ("mass", 1e3),
    "nmol": ("molar", 1e-3),
    "µmol": ("molar", 1.0),
    "mmol": ("molar", 1e3),
}
_VOLUME_L = {"mL": 1e-3, "µL": 1e-6, "L": 1.0, "dL": 0.1}


def concentration_factor(dose_unit: str, concentration_unit: str) -> float:
    """Factor turning ``dose_unit`` per litre into ``concentration_unit``.

    >>> concentration_factor("mg", "ng/mL")
    1000.0
    """
    amount, _, volume = concentration_unit.partition("/")
    if dose_unit not in _AMOUNT or amount not in _AMOUNT or volume not in _VOLUME_L:
        raise CardError(
            f"cannot convert a dose in '{dose_unit}' per litre into '{concentration_unit}'"
        )
    (dose_basis, dose_size), (basis, size) = _AMOUNT[dose_unit], _AMOUNT[amount]
    if dose_basis != basis:
        raise CardError(
            f"a {dose_basis} dose ('{dose_unit}') cannot predict a {basis} concentration "
            f"('{concentration_unit}') without a molecular weight"
        )
    return dose_size / size * _VOLUME_L[volume]


def _check_dvids(card: ModelCard, arrays: SubjectArrays) -> list[str]:
    dvids = sorted(set(arrays.obs_dvid.tolist()))
    if missing := [d for d in dvids if d not in card.residual]:
        raise CardError(
            f"card '{card.name}' has no residual error model for observation type(s) "
            f"{missing} present in the data (add [residual.{missing[0]}])"
        )
    responses = [d for d in dvids if d != "conc"]
    if responses and card.structure.pd is None:
        raise CardError(
            f"card '{card.name}' is a PK model but the data hold {responses} "
            "observations; select a PD structure or drop those records"
        )
    if responses and responses != [card.structure.response]:
        raise CardError(
            f"card '{card.name}' models the response '{card.structure.response}' but the data "
            f"hold {responses} observations"
        )
    return dvids


def _dose_amounts(
    card: ModelCard, events: EventTable, arrays: SubjectArrays
) -> NDArray[np.float64]:
    """Dose amounts in the card's dose unit; weight-based doses (µg/kg) times WT."""
    amounts = np.asarray(arrays.dose_amt, dtype=float)
    dose_unit = events.units["AMT"]
    if events.units.dose_per_weight:
        weight = events.covariates["WT"].to_numpy(dtype=float)
        amounts = amounts * weight[:, None]
        dose_unit = dose_unit.split("/")[0]
    if dose_unit != card.units.dose:
        raise CardError(
            f"data doses are in '{events.units['AMT']}' but card '{card.name}' expects "
            f"'{card.units.dose}'"
        )
    return amounts


def predict_concentration(
    card: ModelCard,
    events: EventTable,
    individual: dict[str, TensorVariable],
    subject: NDArray[np.int64],
    time: NDArray[np.float64],
    unit: str,
) -> TensorVariable:
    """Concentration in ``unit`` of subjects ``subject`` at ``time`` (same shape)."""
    arrays = events.subject_arrays()
    pk_model = PK_MODELS[card.structure.pk]
    wrong_cmt = arrays.dose_mask & (arrays.dose_cmt != pk_model.dose_cmt)
    if wrong_cmt.any():
        s, _ = np.argwhere(wrong_cmt)[0]
        raise CardError(
            f"PK model '{pk_model.name}' doses into CMT {pk_model.dose_cmt}, but subject "
            f"{arrays.subject_ids[s]} has doses into CMT "
            f"{sorted(set(arrays.dose_cmt[wrong_cmt].tolist()))}"
        )
    amounts = _dose_amounts(card, events, arrays)
    pk_names = set(pk_model.parameter_names)
    params = {
        name: value[subject] if value.ndim == 1 else value
        for name, value in individual.items()
        if name in pk_names
    }
    dose = {
        name: pt.as_tensor(values[subject])
        for name, values in {
            "time": arrays.dose_time,
            "amt": amounts,
            "rate": arrays.dose_rate,
            "ss": arrays.dose_ss,
            "ii": arrays.dose_ii,
        }.items()
    }
    amount = concentration(
        pk_model,
        params,
        dose["time"],
        dose["amt"],
        dose["rate"],
        dose["ss"],
        dose["ii"],
        pt.as_tensor(time),
        xp=pt,
    )
    return amount * concentration_factor(card.units.dose, unit)


def predict_response(
    card: ModelCard,
    events: EventTable,
    individual: dict[str, TensorVariable],
    positions: NDArray[np.int64],
) -> TensorVariable:
    """PD response (e.g. platelets) at the flat observations ``positions``.

    The concentration is evaluated in closed form at the solver's stage times, turned
    into the drive by the drug-effect model, and the thrombopoiesis ODE is integrated
    for all subjects at once (:func:`tpopk.pd.solve`).
    """
    assert card.structure.pd is not None
    assert card.structure.drug_effect is not None
    arrays = events.subject_arrays()
    pd_model = PD_MODELS[card.structure.pd]
    n_subjects = len(arrays.subject_ids)
    infusion_end = np.where(
        arrays.dose_duration > 0, arrays.dose_time + arrays.dose_duration, np.nan
    )
    breakpoints = np.concatenate(
        [np.where(arrays.dose_mask, arrays.dose_time, np.nan), infusion_end], axis=1
    )
    grid = SolverGrid.build(
        arrays.obs_subject[positions],
        arrays.obs_time[positions],
        n_subjects,
        breakpoints=breakpoints,
    )
    conc = predict_concentration(
        card,
        events,
        individual,
        np.arange(n_subjects)[:, None],
        grid.stage_times,
        card.units.concentration,
    )
    effect = cast(Callable[..., TensorVariable], DRUG_EFFECTS[card.structure.drug_effect])
    effect_parameters = {
        name: individual[name][:, None] if individual[name].ndim == 1 else individual[name]
        for name in drug_effect_parameters(effect)
    }
    options: dict[str, object] = {"direction": card.structure.direction}
    if "xp" in inspect.signature(effect).parameters:
        options["xp"] = pt
    drive = effect(conc, **effect_parameters, **options)
    columns = []
    for spec in pd_model.parameters:
        value = individual[spec.name] if spec.name in individual else pt.as_tensor(spec.default)
        columns.append(pt.broadcast_to(value, (n_subjects,)))
    states = solve(pd_model, pt.stack(columns, axis=1), drive, grid)
    return observe(pd_model, states, grid)


def build_model(card: ModelCard, events: EventTable) -> pm.Model:
    """Build the PyMC model of ``card`` for the data in ``events``.

    Parameters
    ----------
    card
        Validated model card (:func:`tpopk.model.load_card`).
    events
        Event table (:func:`tpopk.data.read_events`).

    Raises
    ------
    CardError
        If the card and the data do not fit together (missing covariates, residual
        models, dose compartments or units).
    """
    arrays = events.subject_arrays()
    dvids = _check_dvids(card, arrays)
    positions = {d: np.flatnonzero(arrays.obs_dvid == d) for d in dvids}
    coords: dict[str, NDArray[np.generic]] = {"subject": np.asarray(arrays.subject_ids)}
    coords |= {f"obs_{d}": idx for d, idx in positions.items()}
    with pm.Model(coords=coords) as model:
        individual = individual_parameters(card.parameters, events.covariates, card.iiv_block)
        for dvid in dvids:
            idx = positions[dvid]
            if dvid == "conc":
                prediction = predict_concentration(
                    card,
                    events,
                    individual,
                    arrays.obs_subject[idx],
                    arrays.obs_time[idx],
                    events.units["conc"],
                )
            else:
                prediction = predict_response(card, events, individual, idx)
            # Keeps the likelihood finite where a prediction is exactly zero (before the
            # first dose); the value is far below any assay's LLOQ.
            prediction = (
                pt.maximum(prediction, 1e-12)
                if card.residual[dvid].error
                in (
                    "proportional",
                    "lognormal",
                )
                else prediction
            )
            pm.Deterministic(f"ipred_{dvid}", prediction, dims=f"obs_{dvid}")
            likelihood(
                card.residual[dvid],
                dvid,
                prediction,
                np.asarray(arrays.obs_dv[idx], dtype=float),
                np.asarray(arrays.obs_blq[idx], dtype=bool),
                np.asarray(arrays.obs_lloq[idx], dtype=float),
                dims=f"obs_{dvid}",
            )
    return model
