"""Predictions for event records: PRED and IPRED per observation, the equivalent of mrgsim.

:func:`predict` takes records (doses, covariates, observation times), model cards and
parameter values, and returns the records with their predictions added:

- ``PRED``: the typical subject's prediction (every inter-individual deviate 0, the
  subject's covariates applied);
- ``IPRED``: the subject's own prediction, with its deviates from a fit (matched by
  ``ID``); without a fit no deviate is known and ``IPRED`` equals ``PRED``.

Parameter values come from a fit (its posterior draws: the median prediction and an
equal-tailed interval over draws, by default ``PRED_Q5``, ``PRED_Q95``, ``IPRED_Q5`` and
``IPRED_Q95``), from a TOML file of typical values (:func:`read_parameters`), or, with
neither, the cards' own typical values (each prior's median). Predictions are evaluated
with the NumPy form of the fitted model (:mod:`tpopk.model.structural`): closed-form PK
and the platelet solver, never a second engine. A dense time grid (``grid_step`` or
``grid_points``) adds rows with ``EVID`` 2 (NONMEM's "other event": predicted, not
observed) for every modelled ``DVID``.

>>> table = predict(events, cards, grid_step=0.5)  # doctest: +SKIP
>>> table = predict(events, fit=Fit.load("fit.nc"))  # doctest: +SKIP
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import xarray as xr
from numpy.typing import NDArray
from pytensor.graph.replace import graph_replace

from tpopk.data import EventTable, read_events
from tpopk.data.files import write_records
from tpopk.data.units import canonical_unit
from tpopk.errors import TpopkError
from tpopk.inference.fitting import Fit
from tpopk.model import ModelCard, load_card, population_variables
from tpopk.model.build import (
    Study,
    _check_concentration_cmt,
    arrange_study,
    study_coords,
    study_parameters,
)
from tpopk.model.structural import concentrations_at, response_at
from tpopk.simulate.synthetic import prior_quantile

FloatArray = NDArray[np.float64]
#: Record rows to predict, their subjects' positions and their times.
Rows = tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]
#: Individual values: per drug (by ``Drug.suffix``) and of the system card, by parameter.
Individual = tuple[dict[str, dict[str, Any]], dict[str, Any]]
Evaluate = Callable[[Mapping[str, FloatArray], Mapping[str, FloatArray] | None], Individual]

#: EVID of the rows a dense time grid adds (NONMEM's "other event": no dose, no DV).
GRID_EVID: Final = 2


class PredictionError(TpopkError):
    """Prediction inputs that do not fit together: parameters, grid or cards."""


def read_parameters(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read a TOML file of typical values, ``name = { value = 2.5, unit = "L/h" }``.

    A name is a card parameter (``cl``; in a study with its agonist, ``cl_eltrombopag``)
    or any population variable of the fit's naming (``beta_cl_WT``, ``omega_cl``). A
    parameter with a unit must state it, and it must be the card's (units are never
    assumed); a bare number is taken for dimensionless ones and for other variables.
    Returned as given; :func:`predict` checks names and units against the cards.
    """
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PredictionError(f"parameter file '{path}' does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise PredictionError(f"parameter file '{path}' is not TOML: {err}") from None


def predict(
    events: EventTable | str | Path,
    cards: ModelCard | str | Path | Sequence[ModelCard | str | Path] = (),
    *,
    params: str | Path | Mapping[str, Any] | None = None,
    fit: Fit | None = None,
    grid_step: float | None = None,
    grid_points: int | None = None,
    draws: int = 200,
    ci_prob: float = 0.9,
    dvids: Sequence[str] | None = None,
    pred: bool = True,
) -> xr.Dataset:
    """Predict every observation record of ``events`` (and a dense grid, if asked).

    Parameters
    ----------
    events
        Event records (or the path of a CSV with its units sidecar): doses, covariates
        and the times to predict. Every ``EVID`` 0 record of a ``DVID`` the cards model is
        predicted, whatever its ``MDV``.
    cards
        One ``pk``/``pkpd`` card, or a system card with agonist cards; taken from
        ``fit`` when one is given.
    params
        Typical values overriding the cards' (:func:`read_parameters`); not with ``fit``.
    fit
        A fit of the same cards: population values from its posterior, each subject's
        deviates from its posterior by ``ID`` (subjects the fit lacks get no ``IPRED``).
    grid_step, grid_points
        Add, per subject and modelled ``DVID``, grid rows from the subject's first to
        last record time: every ``grid_step`` (h) or ``grid_points`` evenly spaced
        times. At most one of the two.
    draws
        Posterior draws used (evenly thinned) with ``fit``.
    ci_prob
        Probability of the equal-tailed interval over draws with ``fit``: 0.9 writes
        the 5% and 95% quantiles (``PRED_Q5``, ``PRED_Q95``, ...).
    dvids
        Predict (and grid) only these observation types; default every one the cards
        model (``conc`` and the system card's response).
    pred
        With ``fit``, ``False`` leaves out ``PRED`` (and its evaluation at every draw)
        when only ``IPRED`` is wanted.

    Returns
    -------
    xarray.Dataset
        One entry per record on dim ``record`` (the canonical columns of
        :attr:`EventTable.frame`, grid rows sorted in by ``ID`` and ``TIME``), plus
        ``PRED`` and ``IPRED`` in each row's ``DVID`` unit (NaN on other rows) and, with
        ``fit``, their interval's quantiles over draws (``PRED_Q5`` ...). Attrs:
        ``source`` of the parameters, ``draws``, ``ci_prob`` and ``units`` (JSON).
    """
    if fit is not None and params is not None:
        raise PredictionError("give parameters from a fit or from a file, not both")
    given = [cards] if isinstance(cards, ModelCard | str | Path) else list(cards)
    if fit is not None and given:
        raise PredictionError("a fit brings its own cards: give the fit or the cards, not both")
    loaded = list(fit.cards) if fit is not None else [_card(c) for c in given]
    if not loaded:
        raise PredictionError("give the model cards (or a fit) to predict with")
    if draws < 1:
        raise PredictionError(f"draws must be at least 1, not {draws}")
    if not 0 < ci_prob < 1:
        raise PredictionError(f"ci_prob must lie strictly between 0 and 1, not {ci_prob}")
    quantiles = ((1 - ci_prob) / 2, (1 + ci_prob) / 2)
    events = events if isinstance(events, EventTable) else read_events(events)
    if events.units["TIME"] != "h":
        # the cards' rate constants and the grid step are per hour
        raise PredictionError(
            f"predictions need TIME in h (the cards' time unit); the data declare "
            f"'{events.units['TIME']}'"
        )
    study = arrange_study(loaded, events)
    modelled = _modelled_dvids(study)
    wanted = modelled if dvids is None else list(dvids)
    if unknown := sorted(set(wanted) - set(modelled)):
        raise PredictionError(f"the cards do not predict {unknown} (they predict {modelled})")
    arrays = events.subject_arrays()
    for drug in study.drugs:
        _check_concentration_cmt(drug, arrays)
    records = _with_grid(events, wanted, grid_step, grid_points)
    units = events.units.as_dict()
    for drug in study.drugs:
        units.setdefault("conc", drug.card.units.concentration)
    with pm.Model(coords=study_coords(study, arrays.subject_ids)) as model:
        individual, system = study_parameters(study, events.covariates)
    population, deviates, known, source = _parameter_draws(model, study, params, fit, draws)
    evaluate = _individual_function(model, study, individual, system)
    rows = _prediction_rows(records, wanted, events.subjects)
    sizes = (len(records), len(events.subjects))
    typical, own = [], []
    for d, values in enumerate(population):
        if deviates is None or pred:
            typical.append(_predictions(study, evaluate(values, None), rows, units, sizes))
        if deviates is not None:
            own.append(_predictions(study, evaluate(values, deviates[d]), rows, units, sizes))
    table = records.copy()
    if deviates is None:
        table["PRED"] = table["IPRED"] = typical[0]
    else:
        missing = ~np.isin(table["ID"].to_numpy(), known)
        columns = [("PRED", typical)] if pred else []
        for name, draws_of in [*columns, ("IPRED", own)]:
            stack = np.stack(draws_of)
            summary = np.quantile(stack, [0.5, *quantiles], axis=0)  # NaN off predicted rows
            if name == "IPRED":
                summary[:, missing] = np.nan
            table[name] = summary[0]
            for q, values in zip(quantiles, summary[1:], strict=True):
                table[f"{name}_Q{100 * q:.3g}"] = values
    result = xr.Dataset.from_dataframe(table.reset_index(drop=True).rename_axis("record"))
    for column in result.data_vars:
        if result[column].dtype == object:
            result[column] = result[column].astype(str)
    result.attrs |= {"source": source, "draws": len(population), "ci_prob": ci_prob}
    result.attrs["units"] = _json(units)
    return result


def write_predictions(table: xr.Dataset, path: str | Path) -> Path:
    """Write :func:`predict`'s table as CSV (missing as ``.``) with its units sidecar.

    Both files are replaced atomically.
    """
    import json

    path = Path(path)
    frame = table.to_dataframe().reset_index(drop=True)
    write_records(frame, path, json.loads(str(table.attrs["units"])))
    return path


def _json(units: Mapping[str, str]) -> str:
    import json

    return json.dumps(dict(units), ensure_ascii=False)


def _card(source: ModelCard | str | Path) -> ModelCard:
    return source if isinstance(source, ModelCard) else load_card(source)


def _modelled_dvids(study: Study) -> list[str]:
    """``conc`` and the system card's response, if any: what the cards predict."""
    dvids = ["conc"]
    if study.system is not None:
        dvids.append(study.system.structure.response)
    return dvids


def _with_grid(
    events: EventTable, dvids: Sequence[str], step: float | None, points: int | None
) -> pd.DataFrame:
    """Return the records, with dense-grid rows (``EVID`` 2) sorted in when asked."""
    frame = events.frame
    if step is None and points is None:
        return frame
    if step is not None and points is not None:
        raise PredictionError("give a grid step or a number of grid points, not both")
    if step is not None and not (np.isfinite(step) and step > 0):
        raise PredictionError(f"the grid step must be a positive number of hours, not {step}")
    if points is not None and points < 2:
        raise PredictionError(f"a grid needs at least 2 points, not {points}")
    span = frame.groupby("ID", sort=False)["TIME"].agg(["min", "max"])
    rows = []
    for subject, start, end in zip(span.index, span["min"], span["max"], strict=True):
        if step is not None:
            times = start + step * np.arange(int(np.floor((end - start) / step + 1e-9)) + 1)
        else:
            times = np.linspace(start, end, cast(int, points))
        rows += [pd.DataFrame({"ID": subject, "TIME": times, "DVID": d}) for d in dvids]
    grid = pd.concat(rows, ignore_index=True)
    grid = grid.merge(events.covariates, left_on="ID", right_index=True, how="left")
    grid = grid.assign(EVID=GRID_EVID, AMT=0.0, DV=np.nan, CMT=0, MDV=1, RATE=0.0)
    grid = grid.assign(II=0.0, ADDL=0, SS=0, LLOQ=np.nan, BLQ=0)
    joined = pd.concat([frame, grid[[c for c in frame.columns if c in grid]]], ignore_index=True)
    order = np.lexsort((joined.index, joined["TIME"], joined["ID"].map(_position(frame))))
    joined = joined.iloc[order].reset_index(drop=True)
    return joined.astype({c: frame[c].dtype for c in ("ID", "EVID", "CMT", "MDV", "SS")})


def _position(frame: pd.DataFrame) -> dict[Any, int]:
    """Order of first appearance of each ``ID`` (records keep their subjects' order)."""
    return {subject: i for i, subject in enumerate(pd.unique(frame["ID"]))}


def _prediction_rows(
    records: pd.DataFrame, dvids: Sequence[str], subjects: NDArray[np.int64]
) -> dict[str, Rows]:
    """Per modelled DVID: record rows to predict, their subject positions and times."""
    position = {int(s): i for i, s in enumerate(subjects)}
    evid = records["EVID"].to_numpy()
    rows = {}
    for dvid in dvids:
        mask = np.isin(evid, [0, GRID_EVID]) & (records["DVID"] == dvid).to_numpy()
        which = np.flatnonzero(mask).astype(np.int64)
        subject = np.asarray(records["ID"].iloc[which].map(position), dtype=np.int64)
        time = np.asarray(records["TIME"].iloc[which], dtype=np.float64)
        rows[dvid] = (which, subject, time)
    return rows


def _predictions(
    study: Study,
    values: Individual,
    rows: Mapping[str, Rows],
    units: Mapping[str, str],
    sizes: tuple[int, int],
) -> FloatArray:
    """Predictions at ``rows`` (one column of the table, NaN where nothing is predicted).

    ``values`` are each drug's and the system's individual values; ``sizes`` the number
    of records and of subjects.
    """
    individual, system = values
    n_records, n_subjects = sizes
    out = np.full(n_records, np.nan)
    which, subject, time = rows.get("conc", _NO_ROWS)
    for drug in study.drugs:
        mine = np.isin(subject, drug.subjects)
        if mine.any():
            local = np.searchsorted(drug.subjects, subject[mine])
            request = (local, time[mine], units["conc"])
            (conc,) = concentrations_at(drug, individual[drug.suffix], [request], np)
            out[which[mine]] = conc
    if study.system is not None:
        which, subject, time = rows.get(study.system.structure.response, _NO_ROWS)
        if which.size:
            out[which] = response_at(
                cast(str, study.system.structure.pd),
                [(d, individual[d.suffix]) for d in study.drugs],
                system,
                subject,
                time,
                n_subjects,
                np,
            )
    return out


_NO_ROWS: Final[Rows] = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))

#: Units of dimensionless card parameters, whose values may be given as bare numbers.
_DIMENSIONLESS: Final = frozenset({"1", "-", ""})


def _same_unit(a: str, b: str) -> bool:
    return (canonical_unit(a) or a.replace(" ", "")) == (canonical_unit(b) or b.replace(" ", ""))


def _card_labels(study: Study) -> dict[str, tuple[ModelCard, str]]:
    """Card parameters by their name in the fit (``cl``, ``cl_eltrombopag``)."""
    labels = {f"{p}{d.suffix}": (d.card, p) for d in study.drugs for p in d.card.parameters}
    if study.system is not None:
        labels |= {p: (study.system, p) for p in study.system.parameters}
    return labels


def _typical_values(
    model: pm.Model, study: Study, source: str | Path | Mapping[str, Any]
) -> dict[str, FloatArray]:
    """Return the cards' typical values, with those of ``source`` (:func:`read_parameters`)."""
    values = prior_quantile(model)
    where = f"parameter file '{source}'" if not isinstance(source, Mapping) else "params"
    labels = _card_labels(study)
    problems = []
    for key, given in read_parameters(source).items():
        if key in labels:
            card, name = labels[key]
            spec = card.parameters[name]
            target = f"pop_{key}"
            if spec.prior is None:
                problems.append(
                    f"'{key}' is not estimated in card '{card.name}' (a fixed value or a "
                    "data column): change it in the card"
                )
                continue
            expected = spec.unit
        elif key in values:
            target, expected = key, ""
        else:
            known = sorted({*labels, *values})
            problems.append(
                f"'{key}' is neither a card parameter nor a population variable "
                f"of these cards (expected one of {known})"
            )
            continue
        if isinstance(given, Mapping):
            if set(given) != {"value", "unit"}:
                problems.append(
                    f"'{key}' takes {{ value = ..., unit = ... }}, got keys {sorted(given)}"
                )
                continue
            value, unit = given["value"], str(given["unit"])
            if not _same_unit(unit, expected or "1"):
                problems.append(
                    f"'{key}' is in '{unit}'; card '{labels[key][0].name}' expects '{expected}'"
                    if key in labels
                    else f"'{key}' is dimensionless, not '{unit}'"
                )
                continue
        else:
            value = given
            if expected not in _DIMENSIONLESS:
                problems.append(
                    f"'{key}' needs its unit: {key} = {{ value = {value}, unit = \"{expected}\" }}"
                )
                continue
        array = np.asarray(value, dtype=float) if _is_number(value) else None
        if (
            array is None
            or array.shape != np.shape(values[target])
            or not np.all(np.isfinite(array))
        ):
            problems.append(
                f"'{key}' must be a finite number (of shape "
                f"{np.shape(values[target])}), got {value!r}"
            )
            continue
        if target.startswith("pop_") and np.any(array <= 0):
            problems.append(f"'{key}' is a typical value and must be positive, got {value!r}")
            continue
        values[target] = array
    if problems:
        raise PredictionError(f"{where}: " + "; ".join(problems))
    return values


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, list) and all(_is_number(v) for v in value)


def _parameter_draws(
    model: pm.Model,
    study: Study,
    params: str | Path | Mapping[str, Any] | None,
    fit: Fit | None,
    draws: int,
) -> tuple[list[dict[str, FloatArray]], list[dict[str, FloatArray]] | None, NDArray[np.int64], str]:
    """Return population values and subject deviates (a fit only) per draw.

    Also the subject IDs whose deviates the fit holds, and where the values came from.
    """
    if fit is None:
        if params is None:
            return (
                [prior_quantile(model)],
                None,
                np.array([], dtype=np.int64),
                "card typical values",
            )
        source = "parameter values" if isinstance(params, Mapping) else f"parameters {params}"
        return [_typical_values(model, study, params)], None, np.array([], np.int64), source
    posterior = fit.tree["posterior"].to_dataset()
    names = population_variables(model)
    if missing := [n for n in names if n not in posterior]:
        raise PredictionError(f"the fit's posterior lacks population variables {missing}")
    subject_level = [rv.name for rv in model.free_RVs if rv.name not in names]
    flat = posterior[names + subject_level].stack(sample=("chain", "draw"))
    chosen = np.unique(np.linspace(0, flat.sizes["sample"] - 1, draws).round().astype(int))
    flat = flat.isel(sample=chosen)
    if "agonist" in model.coords:
        flat = flat.sel(agonist=list(model.coords["agonist"]))
    known: set[int] = set()
    for dim in [d for d in flat.dims if str(d).startswith("subject")]:
        known |= set(np.asarray(flat[dim]).tolist())
        flat = flat.reindex({dim: np.asarray(model.coords[str(dim)])}, fill_value=0.0)
    population, deviates = [], []
    for i in range(flat.sizes["sample"]):
        draw = flat.isel(sample=i)
        population.append({n: np.asarray(draw[n].to_numpy(), dtype=float) for n in names})
        deviates.append({n: np.asarray(draw[n].to_numpy(), dtype=float) for n in subject_level})
    source = f"fit posterior ({len(population)} draws)"
    return population, deviates, np.asarray(sorted(known), dtype=np.int64), source


def _individual_function(
    model: pm.Model,
    study: Study,
    individual: Mapping[str, Mapping[str, Any]],
    system: Mapping[str, Any],
) -> Evaluate:
    """Compile individual values from population values and deviates (zero when ``None``)."""
    population = [model[name] for name in population_variables(model)]
    subject_level = [rv for rv in model.free_RVs if rv not in population]
    keys = [(s, n) for s, values in individual.items() for n in values]
    keys += [("system", n) for n in system]
    outputs = [individual[s][n] if s != "system" else system[n] for s, n in keys]
    inputs = [rv.type(name=rv.name) for rv in (*population, *subject_level)]
    replaced = graph_replace(
        outputs, dict(zip((*population, *subject_level), inputs, strict=True)), strict=False
    )
    function = pytensor.function(inputs, replaced, mode="FAST_COMPILE", on_unused_input="ignore")
    shapes = {
        rv.name: tuple(len(model.coords[d]) for d in model.named_vars_to_dims[rv.name])
        for rv in subject_level
    }

    def evaluate(
        values: Mapping[str, FloatArray], deviates: Mapping[str, FloatArray] | None
    ) -> Individual:
        given = [values[rv.name] for rv in population]
        given += [
            np.zeros(shapes[rv.name]) if deviates is None else deviates[rv.name]
            for rv in subject_level
        ]
        results = function(*given)
        drug_values: dict[str, dict[str, Any]] = {s: {} for s in individual}
        system_values: dict[str, Any] = {}
        for (s, n), value in zip(keys, results, strict=True):
            (system_values if s == "system" else drug_values[s])[n] = np.asarray(value)
        if study.system is not None and not study.is_pooled:
            system_values = drug_values[""]
        return drug_values, system_values

    return evaluate
