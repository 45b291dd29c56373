"""Turn model cards and an event table into a PyMC model.

Two shapes of model come out of the same code:

- **one card** (``pk`` or ``pkpd``): every subject gets the card's parameters;
- **a study**: one ``system`` card (the thrombopoiesis structure and its parameters,
  shared or partially pooled across agonists) plus one ``agonist`` card per agonist
  (PK and potency). Each subject takes the agonist card named by its ``AGONIST``
  covariate; agonist parameters carry the agonist's name (``pop_cl_eltrombopag``,
  individual values on the ``subject_eltrombopag`` dim) because agonists differ in
  structure, and the platelet ODE is solved once for all subjects. A sixth agonist is a
  new card, not new code.

Coordinates: ``subject`` (subject IDs), ``agonist`` (in a study) and, for each
observation type ``<dvid>`` in the data, ``obs_<dvid>`` whose values are the positions
of those observations in :meth:`EventTable.subject_arrays`' flat observation list.
Individual predictions are kept as ``ipred_<dvid>``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import NDArray
from pytensor.tensor import TensorVariable

from tpopk.data import EventTable, SubjectArrays
from tpopk.model.card import CardError, ModelCard, drug_effect_parameters
from tpopk.model.likelihood import likelihood, residual_sd
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


@dataclass(frozen=True)
class Drug:
    """The card that gives some subjects their PK and drug effect, and those subjects.

    ``suffix`` distinguishes the variables of one agonist's card in a study.
    """

    card: ModelCard
    subjects: NDArray[np.int64]
    suffix: str
    subject_dim: str


@dataclass(frozen=True)
class Study:
    """Cards arranged for one dataset: the drugs and, for PK/PD, the system card."""

    drugs: tuple[Drug, ...]
    system: ModelCard | None
    agonists: tuple[str, ...]

    @property
    def cards(self) -> tuple[ModelCard, ...]:
        """Every card of the study, system first."""
        drugs = tuple(d.card for d in self.drugs)
        return drugs if self.system is None or self.system in drugs else (self.system, *drugs)

    @property
    def is_pooled(self) -> bool:
        """Whether this is a cross-agonist study (system + agonist cards)."""
        return bool(self.agonists)


def arrange_study(cards: ModelCard | Sequence[ModelCard], events: EventTable) -> Study:
    """Match cards to subjects: one ``pk``/``pkpd`` card, or a system card + agonist cards."""
    cards = [cards] if isinstance(cards, ModelCard) else list(cards)
    n_subjects = len(events.subjects)
    if len(cards) == 1 and cards[0].kind in ("pk", "pkpd"):
        card = cards[0]
        drug = Drug(card, np.arange(n_subjects), "", "subject")
        return Study((drug,), card if card.kind == "pkpd" else None, ())
    systems = [c for c in cards if c.kind == "system"]
    agonist_cards = [c for c in cards if c.kind == "agonist"]
    if len(systems) != 1 or len(agonist_cards) != len(cards) - 1:
        raise CardError(
            "give one pk/pkpd card, or one system card with agonist cards; got "
            + ", ".join(f"'{c.name}' ({c.kind})" for c in cards)
        )
    if "AGONIST" not in events.covariates.columns:
        raise CardError("a cross-agonist study needs an AGONIST column in the data")
    subject_agonist = events.covariates["AGONIST"].astype(str).str.lower().to_numpy()
    by_name = {str(c.agonist).lower(): c for c in agonist_cards}
    if len(by_name) != len(agonist_cards):
        raise CardError("two agonist cards name the same agonist")
    if unknown := sorted(set(subject_agonist) - set(by_name)):
        raise CardError(
            f"subjects take agonist(s) {unknown} for which no agonist card was given "
            f"(cards: {sorted(by_name)})"
        )
    agonists = tuple(a for a in by_name if (subject_agonist == a).any())
    drugs = tuple(
        Drug(by_name[a], np.flatnonzero(subject_agonist == a), f"_{a}", f"subject_{a}")
        for a in agonists
    )
    return Study(drugs, systems[0], agonists)


def _check_dvids(study: Study, arrays: SubjectArrays) -> list[str]:
    dvids = sorted(set(arrays.obs_dvid.tolist()))
    response = study.system.structure.response if study.system is not None else None
    for dvid in dvids:
        if dvid == "conc":
            cards = [d.card for d in study.drugs]
        elif dvid == response:
            cards = [cast(ModelCard, study.system)]
        else:
            raise CardError(
                f"the data hold '{dvid}' observations, which no card models "
                f"(concentrations 'conc'{f' and the response {response!r}' if response else ''})"
            )
        for card in cards:
            if dvid not in card.residual:
                raise CardError(
                    f"card '{card.name}' has no residual error model for the '{dvid}' "
                    f"observations in the data (add [residual.{dvid}])"
                )
    if "conc" in dvids and len({d.card.residual["conc"].error for d in study.drugs}) > 1:
        raise CardError("agonist cards in one study must use the same 'conc' error model")
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
    drug: Drug,
    events: EventTable,
    individual: dict[str, TensorVariable],
    subject: NDArray[np.int64],
    time: NDArray[np.float64],
    unit: str,
) -> TensorVariable:
    """Concentration in ``unit`` of ``drug``'s subjects at ``time``.

    ``subject`` indexes ``drug.subjects`` (and ``individual``); same shape as ``time``.
    """
    arrays = events.subject_arrays()
    card = drug.card
    pk_model = PK_MODELS[cast(str, card.structure.pk)]
    mask = arrays.dose_mask[drug.subjects]
    wrong_cmt = mask & (arrays.dose_cmt[drug.subjects] != pk_model.dose_cmt)
    if wrong_cmt.any():
        s, _ = np.argwhere(wrong_cmt)[0]
        raise CardError(
            f"PK model '{pk_model.name}' doses into CMT {pk_model.dose_cmt}, but subject "
            f"{arrays.subject_ids[drug.subjects[s]]} has doses into CMT "
            f"{sorted(set(arrays.dose_cmt[drug.subjects][wrong_cmt].tolist()))}"
        )
    rows = drug.subjects[subject]
    amounts = _dose_amounts(card, events, arrays)
    dose = {
        name: pt.as_tensor(values[rows])
        for name, values in {
            "time": arrays.dose_time,
            "amt": amounts,
            "rate": arrays.dose_rate,
            "ss": arrays.dose_ss,
            "ii": arrays.dose_ii,
        }.items()
    }
    pk_names = set(pk_model.parameter_names)
    params = {
        name: value[subject] if value.ndim == 1 else value
        for name, value in individual.items()
        if name in pk_names
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


def _drive(
    drug: Drug,
    events: EventTable,
    individual: dict[str, TensorVariable],
    stage_times: NDArray[np.float64],
) -> TensorVariable:
    """Drug-effect multiplier of ``drug``'s subjects at the solver's stage times."""
    card = drug.card
    rows = np.arange(len(drug.subjects))[:, None]
    conc = predict_concentration(
        drug, events, individual, rows, stage_times[drug.subjects], card.units.concentration
    )
    effect = cast(
        Callable[..., TensorVariable], DRUG_EFFECTS[cast(str, card.structure.drug_effect)]
    )
    effect_parameters = {
        name: individual[name][:, None] if individual[name].ndim == 1 else individual[name]
        for name in drug_effect_parameters(effect)
    }
    options: dict[str, object] = {"direction": card.structure.direction}
    if "xp" in inspect.signature(effect).parameters:
        options["xp"] = pt
    return effect(conc, **effect_parameters, **options)


def predict_response(
    study: Study,
    events: EventTable,
    individual: dict[str, dict[str, TensorVariable]],
    system: dict[str, TensorVariable],
    positions: NDArray[np.int64],
) -> TensorVariable:
    """PD response (e.g. platelets) at the flat observations ``positions``.

    Each drug's concentration is evaluated in closed form at the solver's stage times
    and turned into the drive by its drug-effect model; the thrombopoiesis ODE is then
    integrated for all subjects at once (:func:`tpopk.pd.solve`).
    """
    assert study.system is not None
    arrays = events.subject_arrays()
    pd_model = PD_MODELS[cast(str, study.system.structure.pd)]
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
    drive = pt.ones(grid.stage_times.shape)
    for drug in study.drugs:
        drive = pt.set_subtensor(
            drive[drug.subjects], _drive(drug, events, individual[drug.suffix], grid.stage_times)
        )
    columns = [
        pt.broadcast_to(
            system[p.name] if p.name in system else pt.as_tensor(p.default), (n_subjects,)
        )
        for p in pd_model.parameters
    ]
    states = solve(pd_model, pt.stack(columns, axis=1), drive, grid)
    return observe(pd_model, states, grid)


def build_model(cards: ModelCard | Sequence[ModelCard], events: EventTable) -> pm.Model:
    """Build the PyMC model of ``cards`` for the data in ``events``.

    Parameters
    ----------
    cards
        One ``pk``/``pkpd`` card, or a ``system`` card with ``agonist`` cards
        (:func:`tpopk.model.load_card`).
    events
        Event table (:func:`tpopk.data.read_events`).

    Raises
    ------
    CardError
        If the cards and the data do not fit together (missing covariates, residual
        models, agonist cards, dose compartments or units).
    """
    study = arrange_study(cards, events)
    arrays = events.subject_arrays()
    if events.frame["EVID"].isin([3, 4]).any():
        raise CardError(
            "reset records (EVID 3/4) are not supported by the closed-form PK yet; "
            "split the subject's occasions into separate IDs"
        )
    dvids = _check_dvids(study, arrays)
    positions = {d: np.flatnonzero(arrays.obs_dvid == d) for d in dvids}
    covariates = events.covariates
    coords: dict[str, object] = {"subject": np.asarray(arrays.subject_ids)}
    coords |= {f"obs_{d}": idx for d, idx in positions.items()}
    if study.is_pooled:
        coords["agonist"] = list(study.agonists)
        coords |= {d.subject_dim: arrays.subject_ids[d.subjects] for d in study.drugs}
    with pm.Model(coords=coords) as model:
        individual = {
            d.suffix: individual_parameters(
                d.card.parameters,
                covariates.iloc[d.subjects],
                d.card.iiv_block,
                suffix=d.suffix,
                subject_dim=d.subject_dim,
            )
            for d in study.drugs
        }
        system: dict[str, TensorVariable] = {}
        if study.system is not None:
            system = (
                individual[""]
                if not study.is_pooled
                else individual_parameters(
                    study.system.parameters,
                    covariates,
                    study.system.iiv_block,
                    agonist_index=_agonist_index(study, len(arrays.subject_ids)),
                )
            )
        for dvid in dvids:
            idx = positions[dvid]
            if dvid == "conc":
                prediction, sd = _concentration_predictions(study, events, individual, idx)
                error = study.drugs[0].card.residual["conc"].error
            else:
                prediction = predict_response(study, events, individual, system, idx)
                spec = cast(ModelCard, study.system).residual[dvid]
                prediction = _floor(prediction, spec.error)
                sd, error = residual_sd(spec, dvid, prediction), spec.error
            pm.Deterministic(f"ipred_{dvid}", prediction, dims=f"obs_{dvid}")
            likelihood(
                error,
                dvid,
                prediction,
                sd,
                np.asarray(arrays.obs_dv[idx], dtype=float),
                np.asarray(arrays.obs_blq[idx], dtype=bool),
                np.asarray(arrays.obs_lloq[idx], dtype=float),
                dims=f"obs_{dvid}",
            )
    return model


def _agonist_index(study: Study, n_subjects: int) -> NDArray[np.int64]:
    index = np.zeros(n_subjects, dtype=np.int64)
    for position, drug in enumerate(study.drugs):
        index[drug.subjects] = position
    return index


def _floor(prediction: TensorVariable, error: str) -> TensorVariable:
    # Proportional and log-normal errors need a positive prediction; before the first
    # dose a concentration is exactly 0, far below any assay's LLOQ, so 1e-12 changes
    # nothing measurable while keeping the log-density finite.
    return pt.maximum(prediction, 1e-12) if error in ("proportional", "lognormal") else prediction


def _concentration_predictions(
    study: Study,
    events: EventTable,
    individual: dict[str, dict[str, TensorVariable]],
    positions: NDArray[np.int64],
) -> tuple[TensorVariable, TensorVariable]:
    """Concentration predictions and residual SDs, each drug's part in its subjects' rows."""
    arrays = events.subject_arrays()
    obs_subject = arrays.obs_subject[positions]
    prediction = pt.zeros(len(positions))
    sd = pt.zeros(len(positions))
    for drug in study.drugs:
        rows = np.flatnonzero(np.isin(obs_subject, drug.subjects))
        if rows.size == 0:
            continue
        local = np.searchsorted(drug.subjects, obs_subject[rows])
        spec = drug.card.residual["conc"]
        part = _floor(
            predict_concentration(
                drug,
                events,
                individual[drug.suffix],
                local,
                arrays.obs_time[positions][rows],
                events.units["conc"],
            ),
            spec.error,
        )
        name = "conc" if not drug.suffix else f"conc{drug.suffix}"
        prediction = pt.set_subtensor(prediction[rows], part)
        sd = pt.set_subtensor(sd[rows], residual_sd(spec, name, part))
    return prediction, sd
