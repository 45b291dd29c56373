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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from numpy.typing import NDArray
from pytensor.tensor import TensorVariable

from tpopk.data import EventTable, SubjectArrays
from tpopk.model.card import CardError, ModelCard, ResidualSpec
from tpopk.model.likelihood import (
    SubjectLayout,
    fluctuation_variables,
    likelihood,
    residual_sd,
)
from tpopk.model.parameters import covariate_levels, individual_parameters
from tpopk.model.structural import (
    Dosing,
    Drug,
    concentrations_at,
    drug_effect_at,
    response_on_grid,
    solver_grid,
)
from tpopk.pd import SolverGrid
from tpopk.pk import PK_MODELS


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
        everyone = np.arange(n_subjects)
        drug = Drug(card, everyone, Dosing.from_events(events, card, everyone))
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
    drugs = []
    for agonist in agonists:
        subjects = np.flatnonzero(subject_agonist == agonist)
        card = by_name[agonist]
        dosing = Dosing.from_events(events, card, subjects)
        drugs.append(Drug(card, subjects, dosing, f"_{agonist}", f"subject_{agonist}"))
    return Study(tuple(drugs), systems[0], agonists)


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
    for drug in study.drugs:
        _check_concentration_cmt(drug, arrays)
    return dvids


def _check_card_units(study: Study, events: EventTable, dvids: list[str]) -> None:
    """Refuse data whose units are not the card's: time, the response's and each ``per``'s."""
    if events.units["TIME"] != "h":
        # every card's rate constants, times and grid steps are per hour; nothing is converted
        raise CardError(
            f"model cards give their rates and times in h; the data declare TIME in "
            f"'{events.units['TIME']}': give TIME (and II) in h"
        )
    system = study.system
    if system is not None and system.units.response is not None:
        response = system.structure.response
        if response in dvids and events.units[response] != system.units.response:
            raise CardError(
                f"card '{system.name}' gives its response '{response}' in "
                f"'{system.units.response}', but the data declare '{events.units[response]}'"
            )
    declared = events.units.as_dict()
    for card in study.cards:
        for name, spec in card.parameters.items():
            if spec.per is None:
                continue
            unit = declared.get(spec.per.upper())
            if unit is None:
                raise CardError(
                    f"card '{card.name}', parameters.{name}: 'per' = '{spec.per}' needs the "
                    f"unit of {spec.per} declared in the data (it makes '{spec.unit}')"
                )
            if not spec.unit.endswith(f"/{unit}"):
                raise CardError(
                    f"card '{card.name}', parameters.{name}: unit '{spec.unit}' is per "
                    f"{spec.per}, which the data give in '{unit}'"
                )


def _check_concentration_cmt(drug: Drug, arrays: SubjectArrays) -> None:
    """Concentrations are observed in the PK model's central compartment (or CMT 0).

    The prediction is the central concentration whatever CMT says, so an observation
    in another compartment (a typo, a peripheral or a compartment the model lacks)
    would be fitted as if it were central.
    """
    pk = PK_MODELS[cast(str, drug.card.structure.pk)]
    rows = (arrays.obs_dvid == "conc") & np.isin(arrays.obs_subject, drug.subjects)
    wrong = rows & (arrays.obs_cmt != 0) & (arrays.obs_cmt != pk.obs_cmt)
    if wrong.any():
        raise CardError(
            f"card '{drug.card.name}' (PK model '{pk.name}') predicts concentrations in its "
            f"central compartment, CMT {pk.obs_cmt} (or CMT 0); {int(wrong.sum())} 'conc' "
            f"observations are in CMT {sorted(set(arrays.obs_cmt[wrong].tolist()))} "
            f"(subjects {sorted(set(arrays.subject_ids[arrays.obs_subject[wrong]].tolist()))[:5]})"
        )


def build_model(
    cards: ModelCard | Sequence[ModelCard], events: EventTable, *, reparameterise: bool = False
) -> pm.Model:
    """Build the PyMC model of ``cards`` for the data in ``events``.

    Parameters
    ----------
    cards
        One ``pk``/``pkpd`` card, or a ``system`` card with ``agonist`` cards
        (:func:`tpopk.model.load_card`).
    events
        Event table (:func:`tpopk.data.read_events`).
    reparameterise
        Sample the typical values the data inform instead of the card's reference and
        effects (:mod:`tpopk.model.parameters`): the same posterior in other sampling
        coordinates; :func:`tpopk.fit` samples these (benchmarks/README.md, "Study
        posterior geometry"). With ``False`` (simulations) the free variables are the
        card's population parameters.

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
    _check_card_units(study, events, dvids)
    positions = {d: np.flatnonzero(arrays.obs_dvid == d) for d in dvids}
    covariates = events.covariates
    coords = study_coords(study, arrays.subject_ids)
    coords |= {f"obs_{d}": idx for d, idx in positions.items()}
    with pm.Model(coords=coords) as model:
        individual, system = study_parameters(study, covariates, reparameterise=reparameterise)
        grid = _response_grid(study, arrays, positions)
        concentrations = _drug_concentrations(study, events, individual, positions, grid)
        for dvid in dvids:
            idx = positions[dvid]
            fluctuation = None
            if dvid == "conc":
                prediction, sd = _concentration_predictions(
                    study, concentrations, idx, covariates, arrays.obs_subject[idx]
                )
                spec = study.drugs[0].card.residual["conc"]
                error = spec.error
                if any(d.card.residual["conc"].fluctuation for d in study.drugs):
                    if len(study.drugs) > 1:
                        raise CardError(
                            "residual.conc: 'fluctuation' is supported for one drug's "
                            "concentrations, not pooled across agonists"
                        )
                    fluctuation = _fluctuation(spec, "conc", arrays, idx)
            else:
                system_card = cast(ModelCard, study.system)
                prediction = response_on_grid(
                    cast(str, system_card.structure.pd),
                    [
                        (d, drug_effect_at(d, individual[d.suffix], stage, pt))
                        for d, (stage, _) in zip(study.drugs, concentrations, strict=True)
                    ],
                    system,
                    cast(SolverGrid, grid),
                    len(arrays.subject_ids),
                    pt,
                )
                spec = system_card.residual[dvid]
                prediction = _floor(prediction, spec.error)
                levels = _residual_levels(spec, dvid, covariates, arrays.obs_subject[idx])
                sd, error = residual_sd(spec, dvid, prediction, levels), spec.error
                fluctuation = _fluctuation(spec, dvid, arrays, idx)
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
                fluctuation=fluctuation,
            )
    return model


def study_coords(study: Study, subject_ids: NDArray[np.int64]) -> dict[str, object]:
    """Coordinates of the parameters of ``study``: subjects (IDs) and, in a study, agonists."""
    coords: dict[str, object] = {"subject": np.asarray(subject_ids)}
    if study.is_pooled:
        coords["agonist"] = list(study.agonists)
        coords |= {d.subject_dim: subject_ids[d.subjects] for d in study.drugs}
    return coords


def study_parameters(
    study: Study, covariates: pd.DataFrame, *, reparameterise: bool = False
) -> tuple[dict[str, dict[str, TensorVariable]], dict[str, TensorVariable]]:
    """Create the population and individual variables of every card of ``study``.

    Call inside a model with :func:`study_coords`. Returns each drug's individual values
    (by ``Drug.suffix``, then parameter name) and the system card's (empty without one;
    for a ``pkpd`` card, the card's own).
    """
    individual = {
        d.suffix: individual_parameters(
            d.card.parameters,
            covariates.iloc[d.subjects],
            d.card.iiv_block,
            suffix=d.suffix,
            subject_dim=d.subject_dim,
            reparameterise=reparameterise,
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
                agonist_index=_agonist_index(study, len(covariates)),
                reparameterise=reparameterise,
            )
        )
    return individual, system


def _residual_levels(
    spec: ResidualSpec, dvid: str, covariates: pd.DataFrame, obs_subject: NDArray[np.int64]
) -> NDArray[np.str_] | None:
    """Each observation's level of the residual's ``sigma_by`` covariate (None without one)."""
    if spec.sigma_by is None:
        return None
    where = f"residual.{dvid}: 'sigma_by'"
    return covariate_levels(covariates, spec.sigma_by.covariate, where)[obs_subject]


def _fluctuation(
    spec: ResidualSpec, dvid: str, arrays: SubjectArrays, idx: NDArray[np.int64]
) -> tuple[TensorVariable, TensorVariable, SubjectLayout] | None:
    """Create the fluctuation variables of ``dvid`` and lay out its observations (or None)."""
    if spec.fluctuation is None:
        return None
    share, half_life = fluctuation_variables(spec.fluctuation, dvid)
    return share, half_life, SubjectLayout.of(arrays.obs_subject[idx], arrays.obs_time[idx])


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


def _response_grid(
    study: Study, arrays: SubjectArrays, positions: dict[str, NDArray[np.int64]]
) -> SolverGrid | None:
    """Return the platelet solver's grid, or ``None`` without response observations."""
    if study.system is None or study.system.structure.response not in positions:
        return None
    idx = positions[study.system.structure.response]
    return solver_grid(
        cast(str, study.system.structure.pd),
        study.drugs,
        arrays.obs_subject[idx],
        arrays.obs_time[idx],
        len(arrays.subject_ids),
    )


def _drug_concentrations(
    study: Study,
    events: EventTable,
    individual: dict[str, dict[str, TensorVariable]],
    positions: dict[str, NDArray[np.int64]],
    grid: SolverGrid | None,
) -> list[tuple[TensorVariable | None, TensorVariable | None]]:
    """Each drug's concentration at its solver stage times and at its PK observations.

    One :func:`concentrations_at` call per drug, so that the PK closed form of each drug
    is in the graph once (the solver stages and the PK observations share it); ``None``
    where the model needs no such prediction. Stage concentrations are in the card's
    unit, observed ones in the data's.
    """
    arrays = events.subject_arrays()
    results: list[tuple[TensorVariable | None, TensorVariable | None]] = []
    for drug in study.drugs:
        requests = []
        if grid is not None:
            requests.append(
                (
                    np.arange(len(drug.subjects))[:, None],
                    grid.stage_times[drug.subjects],
                    drug.card.units.concentration,
                )
            )
        observed = None
        if "conc" in positions:
            obs_subject = arrays.obs_subject[positions["conc"]]
            rows = np.flatnonzero(np.isin(obs_subject, drug.subjects))
            if rows.size:
                local = np.searchsorted(drug.subjects, obs_subject[rows])
                time = arrays.obs_time[positions["conc"]][rows]
                requests.append((local, time, events.units["conc"]))
                observed = rows
        parts = concentrations_at(drug, individual[drug.suffix], requests, pt)
        stage = parts[0] if grid is not None else None
        results.append((stage, (observed, parts[-1]) if observed is not None else None))
    return results


def _concentration_predictions(
    study: Study,
    concentrations: list[tuple[TensorVariable | None, TensorVariable | None]],
    positions: NDArray[np.int64],
    covariates: pd.DataFrame,
    obs_subject: NDArray[np.int64],
) -> tuple[TensorVariable, TensorVariable]:
    """Concentration predictions and residual SDs, each drug's part in its subjects' rows.

    ``obs_subject`` is the subject of each concentration observation (``positions``).
    """
    prediction = pt.zeros(len(positions))
    sd = pt.zeros(len(positions))
    for drug, (_, observed) in zip(study.drugs, concentrations, strict=True):
        if observed is None:
            continue
        rows, conc = observed
        spec = drug.card.residual["conc"]
        part = _floor(conc, spec.error)
        name = "conc" if not drug.suffix else f"conc{drug.suffix}"
        prediction = pt.set_subtensor(prediction[rows], part)
        levels = _residual_levels(spec, "conc", covariates, obs_subject[rows])
        sd = pt.set_subtensor(sd[rows], residual_sd(spec, name, part, levels))
    return prediction, sd
