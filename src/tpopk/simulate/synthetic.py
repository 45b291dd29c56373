"""Synthetic studies with known truth: event data simulated from model cards at stated values.

The simulator is the fitted model itself. The cards and an event *design* (doses,
covariates and sampling times, with placeholder ``DV``) are built into the PyMC model
with :func:`tpopk.model.build_model`; a :class:`tpopk.inference.Fit` whose posterior is a
single draw holding the known population values then gives new subjects (fresh
inter-individual deviates) and their observations by PyMC's posterior predictive, as
``tpopk simulate --fit`` does for trials. What is simulated is therefore exactly the
likelihood the data will be fitted with.

>>> design = design_itp_study(ITP_STUDY_ARMS, 8, seed=1)  # doctest: +SKIP
>>> study = simulate_study(cards, design, seed=2)  # doctest: +SKIP
>>> study.events, study.values, study.individual  # doctest: +SKIP

Regenerate the bundled study (``tpopk.datasets.load_itp_study``)::

    python -m tpopk.simulate.synthetic --out src/tpopk/datasets/itp_study.csv
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from numpy.typing import NDArray

from tpopk.data import AGONISTS, EventTable, read_events
from tpopk.data.files import write_records
from tpopk.inference import Fit
from tpopk.model import ModelCard, build_model, load_card, population_variables
from tpopk.model.levels import is_population_level
from tpopk.progress import quiet_pymc

FloatArray = NDArray[np.float64]

#: The agonist arms of the bundled ITP study in the order it was generated (subject IDs run
#: arm by arm), so that :func:`design_itp_study` with its recorded seed rebuilds its design.
ITP_STUDY_ARMS: Final = (
    "hetrombopag",
    "eltrombopag",
    "avatrombopag",
    "lusutrombopag",
    "romiplostim",
)

#: Label-based regimens of the synthetic ITP study, fixed (no titration): dose per
#: administration in mg (romiplostim µg/kg, converted to mg by each subject's weight),
#: interval (h) and number of administrations. Design choices, not estimates.
REGIMENS: Final[Mapping[str, tuple[float, str, float, int]]] = {
    "hetrombopag": (5.0, "mg", 24.0, 42),  # phase III 5 mg once daily
    "eltrombopag": (50.0, "mg", 24.0, 42),  # label ITP start 50 mg daily (25 mg East Asian)
    "avatrombopag": (20.0, "mg", 24.0, 42),  # label ITP start 20 mg daily
    "lusutrombopag": (3.0, "mg", 24.0, 7),  # label course 3 mg daily x 7 days
    "romiplostim": (3.0, "µg/kg", 168.0, 6),  # weekly SC, a mid-range maintenance dose
}

#: Concentration sampling times (h) per agonist: first dose, then troughs and peaks
#: while dosing (lusutrombopag within its 7-day course).
_DAILY = (1.0, 4.0, 24.0 * 13, 24.0 * 13 + 4.0, 24.0 * 27, 24.0 * 27 + 4.0)
PK_TIMES: Final[Mapping[str, tuple[float, ...]]] = {
    "hetrombopag": _DAILY,
    "eltrombopag": _DAILY,
    "avatrombopag": _DAILY,
    "lusutrombopag": (1.0, 4.0, 24.0, 96.0, 144.0, 148.0),
    "romiplostim": (24.0, 72.0, 168.0, 168.0 * 3 + 48.0, 168.0 * 5, 168.0 * 5 + 72.0),
}
#: Platelet counts: baseline, then days 3, 7, 10, 14, 21, 28, 35, 42 (before that day's dose).
PLATELET_DAYS: Final = (0.0, 3.0, 7.0, 10.0, 14.0, 21.0, 28.0, 35.0, 42.0)

#: Units of a design / simulated study.
UNITS: Final = {"TIME": "h", "AMT": "mg", "conc": "ng/mL", "plt": "10^9/L", "WT": "kg"}


def design_itp_study(
    agonists: Sequence[str],
    n_per_agonist: int,
    *,
    seed: int,
    pk_times: Mapping[str, Sequence[float]] = PK_TIMES,
    platelet_days: Sequence[float] = PLATELET_DAYS,
    regimens: Mapping[str, tuple[float, str, float, int]] = REGIMENS,
    disease: str = "ITP",
    east_asian: float = 0.3,
    splenectomy: float = 0.3,
) -> pd.DataFrame:
    """Event design of a parallel-arm study (ITP by default): doses, covariates, samples.

    Every subject has ``DISEASE`` ``disease`` and ``FED`` 0 (fasted); ``WT`` is
    log-normal (median 70 kg, SD of log 0.2, kept within 45-120 kg), ``EAST_ASIAN`` and
    ``SPLENECTOMY`` are 1 with the given probabilities. Doses follow ``regimens`` (one
    record with ``II``/``ADDL``; eltrombopag's dose halved in East Asians as on its
    label, µg/kg doses times weight, in mg). ``DV`` holds a placeholder 1 on
    observation records.

    Parameters
    ----------
    agonists
        Arms, one agonist each (keys of :data:`REGIMENS`).
    n_per_agonist
        Subjects per arm.
    seed
        Seed of the covariates.
    pk_times
        Concentration sampling times (h) per agonist.
    platelet_days
        Platelet sampling days.
    regimens
        Per agonist: dose, its unit (``mg`` or ``µg/kg``), interval (h) and number of
        administrations (:data:`REGIMENS`).
    disease, east_asian, splenectomy
        ``DISEASE`` of everyone; probabilities of ``EAST_ASIAN`` and ``SPLENECTOMY``.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    subject = 0
    for agonist in agonists:
        dose, unit, interval, n_doses = regimens[agonist]
        for _ in range(n_per_agonist):
            subject += 1
            weight = float(np.clip(70.0 * np.exp(0.2 * rng.standard_normal()), 45.0, 120.0))
            is_east_asian = int(rng.random() < east_asian)
            covariates = {
                "AGONIST": agonist,
                "WT": round(weight, 1),
                "EAST_ASIAN": is_east_asian,
                "SPLENECTOMY": int(rng.random() < splenectomy),
                "DISEASE": disease,
                "FED": 0,
            }
            amount = dose * round(weight, 1) / 1000.0 if unit == "µg/kg" else dose
            if agonist == "eltrombopag" and is_east_asian:
                amount = dose / 2
            record = {"ID": subject, "CMT": 1, "MDV": 1, "DV": np.nan, "DVID": ""}
            rows.append(
                {
                    **record,
                    "TIME": 0.0,
                    "EVID": 1,
                    "AMT": round(amount, 6),
                    "II": interval if n_doses > 1 else 0.0,
                    "ADDL": n_doses - 1,
                    **covariates,
                }
            )
            observed = {"ID": subject, "EVID": 0, "AMT": 0.0, "II": 0.0, "ADDL": 0, "MDV": 0}
            rows += [
                {**observed, "TIME": t, "CMT": 2, "DV": 1.0, "DVID": "conc", **covariates}
                for t in pk_times[agonist]
            ]
            rows += [
                {**observed, "TIME": 24.0 * d, "CMT": 3, "DV": 1.0, "DVID": "plt", **covariates}
                for d in platelet_days
            ]
    frame = pd.DataFrame(rows)
    # an observation at a dose time is taken before the dose (NONMEM orders by row)
    frame["_order"] = np.where(frame["EVID"] == 1, 1, 0)
    frame = frame.sort_values(["ID", "TIME", "_order"], kind="stable").drop(columns="_order")
    columns = ["ID", "TIME", "EVID", "AMT", "DV", "CMT", "MDV", "II", "ADDL", "DVID"]
    return frame[columns + [c for c in frame.columns if c not in columns]].reset_index(drop=True)


def prior_quantile(model: pm.Model, q: float = 0.5) -> dict[str, FloatArray]:
    """Return the ``q`` quantile of each population variable's prior (``q=0.5``: median).

    Typical values, IIV SDs, covariate coefficients, residual SDs and partial-pooling
    ``tau`` take their prior's quantile; the standard-normal deviates of partially
    pooled typical values (``z_<P>_agonist``) take 0 whatever ``q``, so every agonist
    shares the pooled value.
    """
    values: dict[str, FloatArray] = {}
    quantiles = {}
    for name in population_variables(model):
        rv = model[name]
        if name.startswith("z_") and name.endswith("_agonist"):
            values[name] = np.zeros(
                tuple(len(model.coords[d]) for d in model.named_vars_to_dims[name])
            )
            continue
        quantiles[name] = pm.icdf(rv, pt.fill(rv, q))
    # one compiled function for all: a study has dozens of priors, each .eval() a compile
    evaluate = pytensor.function([], list(quantiles.values()), mode="FAST_COMPILE")
    for name, value in zip(quantiles, evaluate(), strict=True):
        values[name] = np.asarray(value, dtype=float)
    return values


def known_fit(cards: Sequence[ModelCard], events: EventTable, values: Mapping[str, Any]) -> Fit:
    """Make a :class:`Fit` whose posterior is one draw holding ``values``.

    ``values`` must give every population variable of the model
    (:func:`tpopk.model.population_variables`) in natural units.
    """
    model = build_model(cards, events)
    names = population_variables(model)
    if missing := sorted(set(names) - set(values)):
        raise ValueError(f"known values lack population variables {missing}")
    if extra := sorted(set(values) - set(names)):
        raise ValueError(f"{extra} are not population variables of these cards")
    posterior = xr.Dataset(
        {
            name: (
                ("chain", "draw", *model.named_vars_to_dims.get(name, ())),
                np.asarray(values[name], dtype=float)[None, None],
            )
            for name in names
        },
        coords={
            d: np.asarray(model.coords[d])
            for n in names
            for d in model.named_vars_to_dims.get(n, ())
        },
    )
    result = Fit(
        tree=xr.DataTree.from_dict({"posterior": posterior}), cards=tuple(cards), events=events
    )
    result.__dict__["model"] = model
    return result


@dataclass(frozen=True)
class SyntheticStudy:
    """Simulated event data and the values that generated them.

    Attributes
    ----------
    events
        The design with simulated ``DV``.
    records
        The same records as given (columns and integer covariates as in the design).
    units
        Units declared for the records.
    values
        Population values (natural units), by posterior variable name.
    individual
        Each subject's simulated individual parameter values (by variable name,
        e.g. ``cl_eltrombopag`` on that agonist's subjects).
    cards
        The cards simulated.
    """

    events: EventTable
    records: pd.DataFrame
    units: dict[str, str]
    values: dict[str, FloatArray]
    individual: dict[str, FloatArray] = field(default_factory=dict)
    cards: tuple[ModelCard, ...] = ()

    def generating_values(self) -> dict[str, Any]:
        """JSON-ready record of the cards and population values (lists for vectors)."""
        return {
            "synthetic": True,
            "cards": [c.name for c in self.cards],
            "population": {k: np.asarray(v).tolist() for k, v in sorted(self.values.items())},
        }


def simulate_study(
    cards: Sequence[ModelCard],
    design: pd.DataFrame | EventTable,
    *,
    values: Mapping[str, Any] | None = None,
    seed: int,
) -> SyntheticStudy:
    """Simulate observations of new subjects at known population values.

    Parameters
    ----------
    cards
        A ``pk``/``pkpd`` card, or a system card and agonist cards.
    design
        Event records with every dose, covariate and sampling time
        (:func:`design_itp_study`); their ``DV`` are replaced.
    values
        Population values by variable name; default: every prior's median
        (:func:`prior_quantile`).
    seed
        Seed of the inter-individual deviates and residual errors.
    """
    if isinstance(design, pd.DataFrame):
        units = dict(design.attrs.get("units", UNITS))
        events = read_events(design, units=units)
    else:
        events, units = design, design.units.as_dict()
    model = build_model(cards, events)
    truth = (
        prior_quantile(model) if values is None else {k: np.asarray(v) for k, v in values.items()}
    )
    fitted = known_fit(cards, events, truth)
    observed = [rv.name for rv in model.observed_RVs]
    individual = [
        v.name
        for v in model.deterministics
        if not is_population_level(model.named_vars_to_dims.get(v.name, ()))
        and not v.name.startswith(("eta_", "ipred_"))
    ]
    with quiet_pymc():
        simulated = pm.sample_posterior_predictive(
            fitted.tree,
            model=model,
            var_names=observed + individual,
            predictions=True,
            random_seed=seed,
            progressbar=False,
            # one forward draw: compiling the graph with numba would cost more than running it
            compile_kwargs={"mode": "FAST_COMPILE"},
        )["predictions"]
    # The records as given (a DataFrame design keeps its columns and integer covariates);
    # observations are the EVID 0 / MDV 0 rows, in the order of the model's flat list.
    frame = design.copy() if isinstance(design, pd.DataFrame) else events.frame
    is_observation = ((frame["EVID"] == 0) & (frame.get("MDV", 0) == 0)).to_numpy()
    dv = np.full(int(is_observation.sum()), np.nan)
    for name in observed:
        positions = np.asarray(model.coords[f"obs_{name.removeprefix('y_')}"], dtype=int)
        dv[positions] = simulated[name].to_numpy().reshape(-1)
    frame["DV"] = frame["DV"].astype(float)
    frame.loc[is_observation, "DV"] = _significant(dv, 6)
    if (below := dv < 0).any():
        # Normal (additive/proportional) error can draw a negative value; an assay reports
        # it as below quantification: BLQ at LLOQ 0, which the fit's M3 likelihood censors
        # as P(y <= 0), the very event the model simulated.
        at = list(frame.columns).index("DVID") + 1
        for column, fill in (("BLQ", 0), ("LLOQ", np.nan)):
            if column not in frame.columns:
                frame.insert(at, column, fill)
        rows = frame.index[is_observation][below]
        frame.loc[rows, ["DV", "LLOQ", "BLQ"]] = [np.nan, 0.0, 1]
    simulated_events = read_events(frame, units=events.units.as_dict())
    if not np.array_equal(
        simulated_events.observations["DV"].to_numpy(),
        frame["DV"][is_observation].to_numpy(),
        equal_nan=True,
    ):
        raise AssertionError("simulated observations were not written in the model's order")
    return SyntheticStudy(
        events=simulated_events,
        records=frame,
        units=units,
        values=truth,
        individual={n: simulated[n].to_numpy().reshape(-1) for n in individual},
        cards=tuple(cards),
    )


def _significant(values: FloatArray, digits: int) -> FloatArray:
    """Round to ``digits`` significant digits (a data file, not a memory dump)."""
    with np.errstate(divide="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(values))))
    scale = np.where(np.isfinite(scale), scale, 1.0)
    return np.asarray(np.round(values * scale) / scale, dtype=float)


def library_cards(agonists: Sequence[str], models: Path) -> list[ModelCard]:
    """Load the thrombopoiesis system card and the agonist cards of ``models/``."""
    return [
        load_card(models / "thrombopoiesis.toml"),
        *(load_card(models / f"{a}.toml") for a in agonists),
    ]


def write_study(study: SyntheticStudy, out: Path, command: str) -> None:
    """Write the events (CSV + units sidecar) and ``<stem>.values.json`` beside them."""
    write_records(study.records, out, study.units)
    record = study.generating_values() | {"command": command}
    out.with_name(f"{out.stem}.values.json").write_text(
        json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tpopk.simulate.synthetic``: simulate an ITP study from the library."""
    parser = argparse.ArgumentParser(prog="python -m tpopk.simulate.synthetic", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="CSV to write")
    parser.add_argument("--models", type=Path, default=Path("models"), help="the model library")
    parser.add_argument("--agonist", action="append", choices=AGONISTS, help="repeat; default all")
    parser.add_argument("--n", type=int, default=8, help="subjects per agonist")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args(argv)
    agonists = args.agonist or list(ITP_STUDY_ARMS)
    design = design_itp_study(agonists, args.n, seed=args.seed)
    study = simulate_study(library_cards(agonists, args.models), design, seed=args.seed + 1)
    command = "python -m tpopk.simulate.synthetic " + " ".join(
        [
            f"--out {args.out}",
            *(f"--agonist {a}" for a in agonists),
            f"--n {args.n}",
            f"--seed {args.seed}",
        ]
    )
    write_study(study, args.out, command)
    print(f"wrote {args.out}: {study.events.describe().splitlines()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
