"""Model predictions, written once for the PyMC graph and for NumPy simulation.

Every function takes ``xp`` (``pytensor.tensor`` when building the model, ``numpy`` when
simulating virtual trials) and only combines :mod:`tpopk.pk`'s closed forms,
:mod:`tpopk.pd.drug_effect` and :mod:`tpopk.pd`'s solver, so the model that is fitted
and the model that simulates trials cannot drift apart.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray
from pytensor.tensor.signal import convolve1d

from tpopk.data import EventTable
from tpopk.data.schema import DOSE_EVIDS
from tpopk.model.card import CardError, ModelCard, drug_effect_parameters
from tpopk.pd import PD_MODELS, PDModel, SolverGrid, observe, simulate, solve
from tpopk.pd.drug_effect import DRUG_EFFECTS
from tpopk.pk import PK_MODELS, PKModel, concentration

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
class Dosing:
    """Dose records of some subjects, ``[S, D]`` arrays, amounts in the card's dose unit.

    Padding has ``amount`` 0 and ``mask`` False. ``duration`` is 0 for a bolus. ``cmt`` is
    each dose's NONMEM ``CMT`` (:attr:`tpopk.pk.PKModel.compartments`); ``None`` when
    every dose goes to the PK model's ``dose_cmt``.
    """

    time: NDArray[np.float64]
    amount: NDArray[np.float64]
    rate: NDArray[np.float64]
    ss: NDArray[np.int64]
    ii: NDArray[np.float64]
    duration: NDArray[np.float64]
    mask: NDArray[np.bool_]
    cmt: NDArray[np.int64] | None = None

    @classmethod
    def from_events(
        cls, events: EventTable, card: ModelCard, subjects: NDArray[np.int64]
    ) -> Dosing:
        """Doses of ``subjects`` (positions in ``events.subjects``) for ``card``'s PK.

        Weight-based doses (µg/kg) are multiplied by each subject's ``WT``. A dose into a
        compartment the card's PK model lacks is refused, naming its row.
        """
        arrays = events.subject_arrays()
        amount = np.asarray(arrays.dose_amt, dtype=float)
        dose_unit = events.units["AMT"]
        if events.units.dose_per_weight:
            weight = events.covariates["WT"].to_numpy(dtype=float)
            amount = amount * weight[:, None]
            dose_unit = dose_unit.split("/")[0]
        if dose_unit != card.units.dose:
            # e.g. a mg dataset for a card in µg: same basis, a power of ten apart
            data, wanted = _AMOUNT.get(dose_unit), _AMOUNT.get(card.units.dose)
            if data is None or wanted is None or data[0] != wanted[0]:
                raise CardError(
                    f"data doses are in '{events.units['AMT']}' but card '{card.name}' "
                    f"expects '{card.units.dose}'"
                )
            amount = amount * (data[1] / wanted[1])
        pk_model = PK_MODELS[cast(str, card.structure.pk)]
        _check_dose_cmts(events, card, pk_model, arrays.subject_ids[subjects])
        mask = arrays.dose_mask[subjects]
        cmt = np.where(mask, arrays.dose_cmt[subjects], pk_model.dose_cmt)
        return cls(
            time=arrays.dose_time[subjects],
            amount=amount[subjects],
            rate=arrays.dose_rate[subjects],
            ss=arrays.dose_ss[subjects],
            ii=arrays.dose_ii[subjects],
            duration=arrays.dose_duration[subjects],
            mask=mask,
            cmt=None if np.all(cmt == pk_model.dose_cmt) else cmt,
        )

    def breakpoints(self) -> NDArray[np.float64]:
        """``[S, 2D]`` dose starts and infusion ends (NaN for padding), for the solver grid."""
        starts = np.where(self.mask, self.time, np.nan)
        ends = np.where(self.mask & (self.duration > 0), self.time + self.duration, np.nan)
        return np.concatenate([starts, ends], axis=1)


def _check_dose_cmts(
    events: EventTable, card: ModelCard, pk_model: PKModel, subject_ids: NDArray[np.int64]
) -> None:
    """Refuse dose records into a compartment ``pk_model`` does not have, naming the first."""
    frame = events.frame
    doses = frame["EVID"].isin([int(e) for e in DOSE_EVIDS]) & frame["ID"].isin(subject_ids)
    wrong = np.flatnonzero(doses & ~frame["CMT"].isin(pk_model.dose_cmts))
    if wrong.size:
        first = int(wrong[0])
        raise CardError(
            f"row {events.row_of(first)}, column CMT: found {frame['CMT'].iat[first]} "
            f"(ID {frame['ID'].iat[first]}, {wrong.size} dose record(s) in all); expected a "
            f"compartment of card '{card.name}' (PK model '{pk_model.name}'): "
            f"CMT {pk_model.describe_cmts()}"
        )


@dataclass(frozen=True)
class Drug:
    """A card giving PK and drug effect to some subjects, with their doses.

    ``subjects`` are positions among all subjects; ``suffix`` names the card's variables
    in a cross-agonist study (``_eltrombopag``), empty for a single card.
    """

    card: ModelCard
    subjects: NDArray[np.int64]
    dosing: Dosing
    suffix: str = ""
    subject_dim: str = "subject"


def _rows(value: Any, rows: NDArray[np.int64]) -> Any:
    """Individual values (``[S]``) at ``rows``; fixed scalars pass through."""
    return value[rows] if getattr(value, "ndim", 0) == 1 else value


def concentration_at(
    drug: Drug,
    params: Mapping[str, Any],
    rows: NDArray[np.int64],
    time: NDArray[np.float64],
    unit: str,
    xp: ModuleType,
) -> Any:
    """Concentration in ``unit`` at ``time`` of ``drug``'s subjects ``rows`` (same shape).

    ``rows`` index ``drug.subjects``; ``params`` hold individual values per subject of
    the drug (or fixed scalars). Either ``rows`` ``[S, 1]`` with ``time`` ``[S, G]`` (a
    solver grid), or both ``[N]`` (observations). One request of
    :func:`concentrations_at`.
    """
    return concentrations_at(drug, params, [(rows, time, unit)], xp)[0]


def concentrations_at(
    drug: Drug,
    params: Mapping[str, Any],
    requests: Sequence[tuple[NDArray[np.int64], NDArray[np.float64], str]],
    xp: ModuleType,
) -> list[Any]:
    """Concentrations of ``drug`` for several ``(rows, time, unit)`` requests at once.

    Each request is as in :func:`concentration_at`. When the doses lie on a lattice, all
    requests share one evaluation of the unit-dose closed form (at the union of their
    lags, :func:`_lattice_superposition`): a study model needs the concentration both at
    the PK observations and at the platelet solver's stage times, and evaluating the
    closed form (and its gradient) once instead of twice halves the part of the graph
    that dominates its compile time. Otherwise each request takes the general path.
    """
    pk_model = PK_MODELS[cast(str, drug.card.structure.pk)]
    names = set(pk_model.parameter_names)
    d = drug.dosing
    blocks: list[NDArray[np.float64]] = []
    gathers: list[tuple[NDArray[np.int64], NDArray[np.int64], tuple[int, ...]] | None] = []
    n_local = d.time.shape[0]
    given = d.mask & (d.amount != 0)
    before = float(d.time[given].min()) - 1.0 if given.any() else 0.0
    for rows, time, _ in requests:
        if rows.ndim == 2 and np.ndim(time) == 2 and np.array_equal(rows[:, 0], np.arange(n_local)):
            blocks.append(np.asarray(time, dtype=float))
            gathers.append(None)
            continue
        # any other request: one row per subject, padded with a time before any dose
        shape = np.shape(time)
        rows, time = np.ravel(np.broadcast_to(rows, shape)), np.ravel(time)
        column = np.zeros(rows.size, dtype=np.int64)
        for r in np.unique(rows):
            column[rows == r] = np.arange(np.count_nonzero(rows == r))
        block = np.full((n_local, int(column.max(initial=-1)) + 1), before)
        block[rows, column] = time
        blocks.append(block)
        gathers.append((rows, column, shape))
    if blocks and all(b.shape[1] > 0 for b in blocks):
        joint = np.concatenate(blocks, axis=1)
        fast = _lattice_superposition(pk_model, params, names, d, np.arange(n_local), joint, xp)
        if fast is not None:
            results, start = [], 0
            for block, gather, (_, _, unit) in zip(blocks, gathers, requests, strict=True):
                part = fast[:, start : start + block.shape[1]]
                start += block.shape[1]
                if gather is not None:
                    part = part[gather[0], gather[1]].reshape(gather[2])
                results.append(part * concentration_factor(drug.card.units.dose, unit))
            return results
    return [_general_superposition(drug, pk_model, params, names, *r, xp) for r in requests]


def _general_superposition(
    drug: Drug,
    pk_model: Any,
    params: Mapping[str, Any],
    names: set[str],
    rows: NDArray[np.int64],
    time: NDArray[np.float64],
    unit: str,
    xp: ModuleType,
) -> Any:
    """Every dose at every time (``rows`` and ``time`` of one request)."""
    individual = {k: _rows(v, rows) for k, v in params.items() if k in names}
    d = drug.dosing
    dose_time, amount, rate, ss, ii, t = (
        x if xp is np else xp.as_tensor(x)
        for x in (d.time[rows], d.amount[rows], d.rate[rows], d.ss[rows], d.ii[rows], time)
    )
    cmt = None if d.cmt is None else d.cmt[rows]
    amount_per_litre = concentration(
        pk_model, individual, dose_time, amount, rate, ss, ii, t, dose_cmt=cmt, xp=xp
    )
    return amount_per_litre * concentration_factor(drug.card.units.dose, unit)


def _lattice_superposition(
    pk_model: Any,
    params: Mapping[str, Any],
    names: set[str],
    dosing: Dosing,
    subjects: NDArray[np.int64],
    time: NDArray[np.float64],
    xp: ModuleType,
) -> Any:
    """Superposition of bolus doses on a time lattice, or ``None`` if they are not.

    Trial simulations dose on a lattice (daily or weekly slots), and their solver grids
    repeat after every dose, so the lags ``t - t_k`` between ``[S, G]`` times and ``D``
    doses take few distinct values: ``q·step + r`` over the distinct residues ``r`` of
    each subject's times. The closed form of a unit dose is evaluated at those lags only,
    then convolved with the dose amounts along the lattice. Linear PK makes this exact
    (to rounding); infusions and steady-state doses take the general path. In a fit (``xp``
    PyTensor) this is what makes PK/PD affordable: the general path evaluates every dose at
    every solver stage, ``S x 2K x D`` closed forms (benchmarks/README.md, "PD solver");
    here the index bookkeeping is data and only the ``[U, L]`` unit responses and their
    convolution are in the graph.
    """
    dose_time, amount = dosing.time[subjects], dosing.amount[subjects]
    given = dosing.mask[subjects] & (amount != 0)
    if np.any(dosing.rate[subjects][given] != 0) or np.any(dosing.ss[subjects][given] != 0):
        return None
    if dosing.cmt is not None:
        return None  # doses by several routes: one unit response does not describe them
    if not given.any():
        return np.zeros(time.shape)
    starts = np.unique(dose_time[given])
    if starts.size == 1:
        return None  # one dose time: nothing repeats
    origin, step = starts[0], float(np.diff(starts).min())
    index = (dose_time - origin) / step
    if not np.allclose(index[given], np.round(index[given]), rtol=0.0, atol=1e-9):
        return None
    slot = np.where(given, np.round(index), 0).astype(np.int64)
    elapsed = time - origin
    q = np.floor(elapsed / step).astype(np.int64)
    residue = np.where(q >= 0, np.maximum(elapsed - q * step, 0.0), 0.0)
    # distinct (subject, residue); residues equal to 1e-15 steps (float noise between
    # days) merge, a shift too small to move any concentration beyond rounding
    n_subjects = time.shape[0]
    tick = step * 1e-15
    ticks = np.round(residue / tick).astype(np.int64).ravel()
    who = np.repeat(np.arange(n_subjects), time.shape[1])
    order = np.lexsort((ticks, who))
    new = np.r_[True, (np.diff(ticks[order]) != 0) | (np.diff(who[order]) != 0)]
    inverse = np.empty(ticks.size, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    owner, first = who[order][new], ticks[order][new]
    n_lags = int(max(q.max(), 0)) + 1
    if owner.size * n_lags > time.size * given.shape[1]:
        return None  # no repetition to exploit (irregular grid or a fine lattice)
    lags = first[:, None] * tick + step * np.arange(n_lags)[None, :]  # [U, L]
    individual = {
        k: (v[subjects][owner][:, None] if getattr(v, "ndim", 0) == 1 else v)
        for k, v in params.items()
        if k in names
    }
    zero = np.zeros((len(owner), 1, 1))  # one unit dose at 0 per (subject, residue)
    unit_dose = (zero, zero + 1.0, zero, zero, zero, lags)
    if xp is not np:
        unit_dose = tuple(xp.as_tensor(x) for x in unit_dose)
    unit = concentration(pk_model, individual, *unit_dose, xp=xp)
    # causal convolution with each subject's amounts per lattice slot
    per_slot = np.zeros((n_subjects, n_lags))
    # doses after every requested time (slot beyond the last lag) add nothing
    inside = given & (slot < n_lags)
    np.add.at(per_slot, (np.nonzero(inside)[0], slot[inside]), amount[inside])
    per_slot = per_slot[owner]
    if xp is np:
        convolved = np.zeros_like(unit)
        for k in np.flatnonzero(per_slot.any(axis=0)):
            convolved[:, k:] += per_slot[:, k : k + 1] * unit[:, : n_lags - k]
    else:
        convolved = convolve1d(xp.as_tensor(per_slot), unit, mode="full")[:, :n_lags]
    out = convolved[inverse.reshape(time.shape), np.maximum(q, 0)]
    return out * (q >= 0)


def drive_at(
    drug: Drug, params: Mapping[str, Any], times: NDArray[np.float64], xp: ModuleType
) -> Any:
    """Drug-effect multiplier of ``drug``'s subjects at ``times`` ``[S_drug, G]``."""
    rows = np.arange(len(drug.subjects))[:, None]
    conc = concentration_at(drug, params, rows, times, drug.card.units.concentration, xp)
    return drug_effect_at(drug, params, conc, xp)


def drug_effect_at(drug: Drug, params: Mapping[str, Any], conc: Any, xp: ModuleType) -> Any:
    """Drug-effect multiplier of ``drug``'s subjects at concentrations ``[S_drug, G]``.

    ``conc`` is in the card's concentration unit (:func:`concentration_at`).
    """
    card = drug.card
    effect = cast(Callable[..., Any], DRUG_EFFECTS[cast(str, card.structure.drug_effect)])
    arguments = {
        name: params[name][:, None] if getattr(params[name], "ndim", 0) == 1 else params[name]
        for name in drug_effect_parameters(effect)
    }
    options: dict[str, object] = {"direction": card.structure.direction}
    if "xp" in inspect.signature(effect).parameters:
        options["xp"] = xp
    return effect(conc, **arguments, **options)


def _scatter(xp: ModuleType, target: Any, rows: NDArray[np.int64], values: Any) -> Any:
    if xp is np:
        target[rows] = values
        return target
    return xp.set_subtensor(target[rows], values)


def solver_grid(
    pd_name: str,
    drugs: Sequence[Drug],
    obs_subject: NDArray[np.int64],
    obs_time: NDArray[np.float64],
    n_subjects: int,
    max_step: float | NDArray[np.float64] | None = None,
) -> SolverGrid:
    """Return the platelet solver's grid for observations at ``obs_time`` of ``obs_subject``.

    Every dose start and infusion end of ``drugs`` is a breakpoint; ``max_step`` as in
    :func:`response_at`.
    """
    pd_model: PDModel = PD_MODELS[pd_name]
    breakpoints = np.full((n_subjects, 1), np.nan)
    for drug in drugs:
        rows = np.full((n_subjects, drug.dosing.time.shape[1] * 2), np.nan)
        rows[drug.subjects] = drug.dosing.breakpoints()
        breakpoints = np.concatenate([breakpoints, rows], axis=1)
    return SolverGrid.build(
        obs_subject,
        obs_time,
        n_subjects,
        breakpoints=breakpoints,
        max_step=pd_model.max_step if max_step is None else max_step,
    )


def response_on_grid(
    pd_name: str,
    drives: Sequence[tuple[Drug, Any]],
    system: Mapping[str, Any],
    grid: SolverGrid,
    n_subjects: int,
    xp: ModuleType,
) -> Any:
    """PD response at the grid's observations, given each drug's drive at its stage times.

    ``drives`` pair each drug with its multiplier at ``grid.stage_times[drug.subjects]``
    (:func:`drug_effect_at`); other arguments as in :func:`response_at`.
    """
    pd_model: PDModel = PD_MODELS[pd_name]
    drive = xp.ones(grid.stage_times.shape)
    for drug, part in drives:
        drive = _scatter(xp, drive, drug.subjects, part)
    columns = []
    for spec in pd_model.parameters:
        value = system.get(spec.name, spec.default)
        if value is None:
            raise CardError(f"PD structure '{pd_name}' needs parameter '{spec.name}'")
        columns.append(xp.broadcast_to(value, (n_subjects,)))
    params = xp.stack(columns, axis=1)
    states = (simulate if xp is np else solve)(pd_model, params, drive, grid)
    return observe(pd_model, states, grid)


def response_at(
    pd_name: str,
    drugs: Sequence[tuple[Drug, Mapping[str, Any]]],
    system: Mapping[str, Any],
    obs_subject: NDArray[np.int64],
    obs_time: NDArray[np.float64],
    n_subjects: int,
    xp: ModuleType,
    max_step: float | NDArray[np.float64] | None = None,
) -> Any:
    """PD response (e.g. platelets, 10^9/L) at each observation.

    Each drug's concentration is evaluated in closed form at the solver's stage times
    and turned into the drive by its drug-effect model; the thrombopoiesis ODE is then
    integrated for all subjects at once (:func:`solver_grid`, :func:`drive_at`,
    :func:`response_on_grid`).

    Parameters
    ----------
    pd_name
        The PD structure (:data:`tpopk.pd.PD_MODELS`).
    drugs
        Each drug with its individual parameter values (per subject of the drug).
    system
        Individual values of the PD structure's parameters, ``[n_subjects]`` or scalars;
        missing ones take the structure's default.
    obs_subject, obs_time
        ``[N]`` subject position and time (h) of each observation.
    n_subjects
        Number of subjects.
    xp
        ``pytensor.tensor`` (symbolic, differentiable) or ``numpy``.
    max_step
        Longest solver step (h), scalar or ``[n_subjects]``; default the structure's.
    """
    grid = solver_grid(pd_name, [d for d, _ in drugs], obs_subject, obs_time, n_subjects, max_step)
    drives = [
        (drug, drive_at(drug, params, grid.stage_times[drug.subjects], xp))
        for drug, params in drugs
    ]
    return response_on_grid(pd_name, drives, system, grid, n_subjects, xp)
