"""Model x dosing cases for the accuracy check against the ODE reference.

Shared by tests/pk/test_accuracy.py and benchmarks/pk_accuracy.py (which prints the
table of measured errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ode_reference import Dose, reference_concentration

from tpopk.pk import PK_MODELS, concentration

# Disposition loosely after eltrombopag (Farrell 2014: CL/F 0.95 L/h, Vc/F 9.75 L) but
# faster, so that the tests stay short; absorption after Farrell 2014 / Liu 2025.
BASE = {
    "cl": 2.0,
    "v": 10.0,
    "q": 1.5,
    "v2": 20.0,
    "q3": 0.4,
    "v3": 30.0,
    "ka": 0.8,
    "ka1": 0.333,
    "ka2": 5.26,
    "mtime": 1.46,
    "mtt": 1.33,
    "n_transit": 4,
}
LAG_F = {"tlag": 0.45, "f": 0.6}
TIMES = np.array(
    [0.0, 0.2, 0.45, 0.7, 1.0, 1.46, 2.0, 2.2, 3.0, 6.0, 11.9, 12.0, 12.3, 17.0, 23.9, 24.0,
     24.3, 24.6, 26.0, 30.0, 36.0, 47.5, 72.0]
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    dosing: str
    doses: tuple[Dose, ...]
    extra: dict[str, float] = field(default_factory=dict)
    infusion: bool = False
    steady_state: bool = False


DOSING = (
    Case("bolus, single", (Dose(0.0, 100.0),)),
    Case(
        "bolus, 3 doses + padding",
        (Dose(0.0, 100.0), Dose(12.0, 50.0), Dose(24.0, 80.0), Dose(0.0, 0.0)),
    ),
    Case("bolus, lag + F", (Dose(0.0, 100.0), Dose(24.0, 50.0)), LAG_F),
    Case("infusion", (Dose(0.0, 100.0, rate=40.0), Dose(24.0, 50.0, rate=100.0)), infusion=True),
    Case(
        "infusion, lag + F",
        (Dose(0.0, 100.0, rate=40.0), Dose(24.0, 50.0, rate=100.0)),
        LAG_F,
        infusion=True,
    ),
    Case("SS=1 bolus", (Dose(0.0, 100.0, ss=1, ii=24.0),), steady_state=True),
    Case(
        "SS=1 bolus, lag + F",
        (Dose(0.0, 100.0, ss=1, ii=12.0), Dose(24.0, 100.0)),
        LAG_F,
        steady_state=True,
    ),
    Case(
        "SS=1 infusion, lag + F",
        (Dose(0.0, 100.0, rate=30.0, ss=1, ii=12.0), Dose(24.0, 100.0, rate=30.0)),
        LAG_F,
        infusion=True,
        steady_state=True,
    ),
    Case(
        "SS=1 resets earlier doses",
        (Dose(0.0, 100.0), Dose(6.0, 100.0), Dose(12.0, 80.0, ss=1, ii=12.0)),
        LAG_F,
        steady_state=True,
    ),
    Case(
        "SS=2 added to earlier doses",
        (Dose(0.0, 100.0), Dose(12.0, 80.0, ss=2, ii=12.0)),
        LAG_F,
        steady_state=True,
    ),
)


def applicable(model_name: str, case: Case) -> bool:
    """Transit models take bolus doses only; dual absorption is ODE-checked without infusions."""
    absorption = PK_MODELS[model_name].absorption
    if absorption == "transit":
        return not (case.infusion or case.steady_state)
    return not (absorption == "dual" and case.infusion)


def corner_cases() -> list[tuple[str, str, dict[str, float], tuple[Dose, ...]]]:
    """Removable singularities and switch corners: (model, label, params, doses)."""
    doses = (Dose(0.0, 100.0), Dose(12.0, 100.0, ss=2, ii=12.0))
    corners = [("oral_1cmt", "ka = k exactly, SS=2", {"ka": 0.2}, doses)]
    for n_cmt in (2, 3):
        name = f"oral_{n_cmt}cmt"
        for index, label in ((0, "largest"), (-1, "smallest")):
            rate = disposition_eigenvalues(name)[index]
            corners.append((name, f"ka = {label} eigenvalue, SS=2", {"ka": rate}, doses))
    corners.append(("oral_dual_2cmt", "ka1 = ka2", {"ka1": 0.7, "ka2": 0.7}, doses))
    corners.append(("oral_dual_2cmt", "mtime < tlag", {"mtime": 0.2, **LAG_F}, doses))
    corners.append(("transit_1cmt", "ka = k, n_transit = 0", {"ka": 0.2, "n_transit": 0},
                    doses[:1]))  # fmt: skip
    corners.append(("transit_1cmt", "ka = ktr, n_transit = 9",
                    {"ka": 10 / 1.33, "n_transit": 9}, doses[:1]))  # fmt: skip
    return corners


def disposition_eigenvalues(model_name: str) -> np.ndarray:
    """Eigenvalues of the disposition rate matrix, by numpy.linalg (descending)."""
    p = BASE
    k10, k12, k21 = p["cl"] / p["v"], p["q"] / p["v"], p["q"] / p["v2"]
    k13, k31 = p["q3"] / p["v"], p["q3"] / p["v3"]
    if PK_MODELS[model_name].n_compartments == 2:
        matrix = np.array([[-k10 - k12, k21], [k12, -k21]])
    else:
        matrix = np.array([[-k10 - k12 - k13, k21, k31], [k12, -k21, 0], [k13, 0, -k31]])
    return np.sort(-np.linalg.eigvals(matrix).real)[::-1]


def parameters(model_name: str, extra: dict[str, float]) -> dict[str, float]:
    names = PK_MODELS[model_name].parameter_names
    return {k: v for k, v in {**BASE, **extra}.items() if k in names}


def closed_form(model_name: str, params: dict[str, float], doses, times=TIMES) -> np.ndarray:
    def column(attribute):
        return np.array([getattr(d, attribute) for d in doses], dtype=float)

    return concentration(
        PK_MODELS[model_name],
        params,
        column("time"),
        column("amt"),
        column("rate"),
        column("ss"),
        column("ii"),
        times,
        dose_cmt=column("cmt"),
    )


def max_relative_error(model_name: str, params: dict[str, float], doses) -> float:
    """Max relative error over TIMES; inf if a zero of the reference is not exactly zero."""
    reference = reference_concentration(PK_MODELS[model_name], params, list(doses), TIMES)
    value = closed_form(model_name, params, doses)
    zero = reference == 0.0
    if np.any(value[zero] != 0.0):
        return float("inf")
    return float(np.max(np.abs(value[~zero] - reference[~zero]) / reference[~zero]))


def all_cases() -> list[tuple[str, str, dict[str, float], tuple[Dose, ...]]]:
    cases = [
        (name, case.dosing, parameters(name, case.extra), case.doses)
        for name in PK_MODELS
        for case in DOSING
        if applicable(name, case)
    ]
    return cases + [(n, label, parameters(n, extra), d) for n, label, extra, d in corner_cases()]
