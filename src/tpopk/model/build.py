"""Turn a model card and an event table into a PyMC model.

The model has coordinates ``subject`` (subject IDs) and, for each observation type
``<dvid>`` present in the data, ``obs_<dvid>`` whose values are the positions of those
observations in the event table's flat observation list (so predictions of several
types can be put back in data order). Individual predictions are kept as
``ipred_<dvid>`` for goodness-of-fit plots and VPCs.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import NDArray
from pytensor.tensor import TensorVariable

from tpopk.data import EventTable, SubjectArrays
from tpopk.model.card import CardError, ModelCard
from tpopk.model.likelihood import observe
from tpopk.model.parameters import individual_parameters
from tpopk.pk import PK_MODELS, concentration

# Mass of one unit in mg, and volume of one unit in L: enough to put a dose/volume
# prediction into the unit the data declare for concentrations.
_MASS_MG = {"ng": 1e-6, "µg": 1e-3, "mg": 1.0, "g": 1e3}
_VOLUME_L = {"mL": 1e-3, "µL": 1e-6, "L": 1.0, "dL": 0.1}


def concentration_factor(dose_unit: str, concentration_unit: str) -> float:
    """Factor turning ``dose_unit`` per litre into ``concentration_unit``.

    >>> concentration_factor("mg", "ng/mL")
    1000.0
    """
    mass, _, volume = concentration_unit.partition("/")
    if dose_unit not in _MASS_MG or mass not in _MASS_MG or volume not in _VOLUME_L:
        raise CardError(
            f"cannot convert a dose in '{dose_unit}' per litre into '{concentration_unit}': "
            "mass doses and mass concentrations are supported"
        )
    return _MASS_MG[dose_unit] / _MASS_MG[mass] * _VOLUME_L[volume]


def _check_dvids(card: ModelCard, arrays: SubjectArrays) -> list[str]:
    dvids = sorted(set(arrays.obs_dvid.tolist()))
    if missing := [d for d in dvids if d not in card.residual]:
        raise CardError(
            f"card '{card.name}' has no residual error model for observation type(s) "
            f"{missing} present in the data (add [residual.{missing[0]}])"
        )
    if unsupported := [d for d in dvids if d != "conc" and card.structure.pd is None]:
        raise CardError(
            f"card '{card.name}' is a PK model but the data hold {sorted(set(unsupported))} "
            "observations; select a PD structure or drop those records"
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
) -> TensorVariable:
    """Concentration (in the data's ``conc`` unit) of subjects ``subject`` at ``time``."""
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
    params = {
        name: value[subject] if value.ndim == 1 else value for name, value in individual.items()
    }
    amount = concentration(
        pk_model,
        params,
        arrays.dose_time[subject],
        amounts[subject],
        arrays.dose_rate[subject],
        arrays.dose_ss[subject],
        arrays.dose_ii[subject],
        time,
        xp=pt,
    )
    return amount * concentration_factor(card.units.dose, events.units["conc"])


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
            prediction = predict_concentration(
                card, events, individual, arrays.obs_subject[idx], arrays.obs_time[idx]
            )
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
            observe(
                card.residual[dvid],
                dvid,
                prediction,
                np.asarray(arrays.obs_dv[idx], dtype=float),
                np.asarray(arrays.obs_blq[idx], dtype=bool),
                np.asarray(arrays.obs_lloq[idx], dtype=float),
                dims=f"obs_{dvid}",
            )
    return model
