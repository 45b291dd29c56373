"""Population or individual level: one rule, by dimension.

A variable is individual-level when it varies per subject: it has a subject dimension
(``subject``, or ``subject_<agonist>`` for an agonist's own subjects) or an observation
dimension (``obs_<dvid>``, whose rows each belong to a subject). Every other variable
(typical values, IIV SDs, covariate coefficients, residual SDs, between-agonist SDs and
deviates, their standard-normal parameterisations) is population-level: one value per
draw, shared by every subject and by the virtual patients simulated from a fit.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

import xarray as xr

if TYPE_CHECKING:
    import pymc as pm

#: Dimension name prefixes of individual-level variables.
INDIVIDUAL_DIM_PREFIXES = ("subject", "obs_")


def is_population_level(dims: Iterable[Hashable]) -> bool:
    """Whether a variable with these dimensions is population-level (none per subject)."""
    return not any(str(dim).startswith(INDIVIDUAL_DIM_PREFIXES) for dim in dims)


def population_variables(source: pm.Model | xr.DataTree | xr.Dataset) -> list[str]:
    """Names of the population-level variables, in their stored order.

    Parameters
    ----------
    source
        A PyMC model: its free variables (what the sampler draws, what a trial draw shares
        and a known truth fixes). A fit's DataTree or its posterior Dataset: every
        posterior variable, deterministics included (``pop_<P>``, ``pop_<P>_agonist``).
    """
    if isinstance(source, xr.DataTree):
        source = source["posterior"].to_dataset()
    if isinstance(source, xr.Dataset):
        return [str(name) for name, v in source.data_vars.items() if is_population_level(v.dims)]
    dims = source.named_vars_to_dims
    return [rv.name for rv in source.free_RVs if is_population_level(dims.get(rv.name, ()))]
