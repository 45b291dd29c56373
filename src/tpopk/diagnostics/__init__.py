"""Fit diagnostics: convergence, PSIS-LOO, VPC/pcVPC, GOF, NPDE, shrinkage, prior overlap, SBC.

Every computation returns numbers (an xarray Dataset, a DataFrame or ArviZ's ELPD
object) and has a matching ``plot_*`` function that draws those numbers and returns an
:class:`arviz_plots.PlotCollection` (matplotlib backend; the figure is
``pc.viz["figure"].item()``). Functions take the fit's DataTree first, then ArviZ's
keywords (``var_names``, ``ci_prob``, ``group``); the observations are described by
coordinates in the tree (:func:`describe_observations`) and PRED/IPRED are posterior
variables, so a fit file alone is all they need.

>>> from tpopk import diagnostics  # doctest: +SKIP
>>> table = diagnostics.convergence(fit.tree)  # doctest: +SKIP
>>> for line in diagnostics.convergence_warnings(table): print(line)  # doctest: +SKIP
>>> check = diagnostics.vpc(fit.tree, prediction_corrected=True)  # doctest: +SKIP
>>> diagnostics.plot_vpc(check).savefig("pcvpc.png")  # doctest: +SKIP
"""

from tpopk.diagnostics.convergence import (
    convergence,
    convergence_warnings,
    parameter_summary,
    plot_convergence,
)
from tpopk.diagnostics.cross_validation import (
    loo,
    loo_compare,
    loo_pit,
    loo_summary,
    loo_warnings,
    plot_khat,
    plot_loo_compare,
    plot_loo_pit,
)
from tpopk.diagnostics.goodness_of_fit import (
    goodness_of_fit,
    individual_weighted_residuals,
    plot_goodness_of_fit,
)
from tpopk.diagnostics.individual import individual_fits, plot_individual_fits
from tpopk.diagnostics.npde import npde, npde_tests, plot_npde, prediction_discrepancies
from tpopk.diagnostics.observations import (
    DiagnosticsError,
    describe_observations,
    observation_coords,
    observation_types,
    observations,
    population_prediction,
    simulated_draws,
)
from tpopk.diagnostics.prior_posterior import prior_draws, prior_posterior_overlap
from tpopk.diagnostics.sbc import plot_sbc, sbc_ranks, sbc_uniformity, simulate_sbc
from tpopk.diagnostics.shrinkage import epsilon_shrinkage, eta_shrinkage, plot_eta_shrinkage
from tpopk.diagnostics.vpc import plot_vpc, vpc

__all__ = [
    "DiagnosticsError",
    "convergence",
    "convergence_warnings",
    "describe_observations",
    "epsilon_shrinkage",
    "eta_shrinkage",
    "goodness_of_fit",
    "individual_fits",
    "individual_weighted_residuals",
    "loo",
    "loo_compare",
    "loo_pit",
    "loo_summary",
    "loo_warnings",
    "npde",
    "npde_tests",
    "observation_coords",
    "observation_types",
    "observations",
    "parameter_summary",
    "plot_convergence",
    "plot_eta_shrinkage",
    "plot_goodness_of_fit",
    "plot_individual_fits",
    "plot_khat",
    "plot_loo_compare",
    "plot_loo_pit",
    "plot_npde",
    "plot_sbc",
    "plot_vpc",
    "population_prediction",
    "prediction_discrepancies",
    "prior_draws",
    "prior_posterior_overlap",
    "sbc_ranks",
    "sbc_uniformity",
    "simulate_sbc",
    "simulated_draws",
    "vpc",
]
