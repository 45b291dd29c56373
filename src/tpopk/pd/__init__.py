"""Platelet dynamics: thrombopoiesis model structures and the differentiable solver.

Typical use inside a PyMC model::

    grid = SolverGrid.build(obs_subject, obs_time, n_subjects, breakpoints=dose_time)
    conc = <closed-form PK at grid.stage_times>                      # [S, 2K + 1]
    drive = drug_effect.emax(conc, emax, ec50)                       # [S, 2K + 1]
    model = PD_MODELS["friberg"]
    states = solve(model, pt.stack([circ0, mtt, gamma, kel_ratio], axis=1), drive, grid)
    plt = observe(model, states, grid)                               # [N]

``simulate`` runs the same compiled kernel on NumPy arrays.
"""

from tpopk.pd import drug_effect
from tpopk.pd.grid import DEFAULT_MAX_STEP, SolverGrid
from tpopk.pd.solve import observe, simulate, solve
from tpopk.pd.structures import (
    PD_MODELS,
    PDModel,
    drug_concentration,
    friberg,
    indirect_response,
    lifespan,
    qss_tmdd_lifespan,
)

__all__ = [
    "DEFAULT_MAX_STEP",
    "PD_MODELS",
    "PDModel",
    "SolverGrid",
    "drug_concentration",
    "drug_effect",
    "friberg",
    "indirect_response",
    "lifespan",
    "observe",
    "qss_tmdd_lifespan",
    "simulate",
    "solve",
]
