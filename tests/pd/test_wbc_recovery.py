"""Parameter recovery on the public Friberg WBC simulation (paclitaxel -> white cells).

The data (nlmixr2data ``wbcSim``, bundled as :func:`tpopk.datasets.load_wbc_sim`) were
simulated from a Friberg model with CIRC0 7.21 x10^9/L, MTT 124 h, GAMMA 0.239 and SLOPU
28.9 L/µmol (shared/data/README.md). Sequential PK/PD as in the generating model:
two-compartment IV paclitaxel PK from each subject's CLI, V1I, V2I and Q = 204 L/h
(closed form, :mod:`tpopk.pk`), three transit compartments, linear inhibition of
proliferation, log-normal IIV on CIRC0, MTT and SLOPU, proportional residual error. The
PyMC model is written here directly on the PD engine, independent of :mod:`tpopk.model`.
"""

import numpy as np
import nutpie
import pymc as pm
import pytensor.tensor as pt
import pytest

from tpopk.datasets import load_wbc_sim
from tpopk.inference.nutpie_bridge import compile_nutpie
from tpopk.pd import PD_MODELS, SolverGrid, drug_effect, observe, solve
from tpopk.pk import PK_MODELS, concentration

GENERATING = {"circ0": 7.21, "mtt": 124.0, "gamma": 0.239, "slope": 28.9}
# The default 12 h steps: against solve_ivp the WBC at observations erred 2e-4 at the
# generating values (24 h: 4e-4, but 13% at mtt 60 h, slope 80, which warmup visits).
MAX_STEP = 12.0


def wbc_inputs():
    """Grid, paclitaxel concentration at the stage times (µmol/L) and observed WBC."""
    events = load_wbc_sim()
    arrays = events.subject_arrays()
    cov = events.covariates.loc[arrays.subject_ids]
    n = len(arrays.subject_ids)
    infusion_end = np.where(arrays.dose_mask, arrays.dose_time + arrays.dose_duration, np.nan)
    grid = SolverGrid.build(
        arrays.obs_subject,
        arrays.obs_time,
        n,
        breakpoints=np.concatenate(
            [np.where(arrays.dose_mask, arrays.dose_time, np.nan), infusion_end], axis=1
        ),
        max_step=MAX_STEP,
    )
    shape = (*grid.stage_times.shape, arrays.dose_time.shape[1])

    def per_dose(x):
        return np.broadcast_to(x[:, None, :], shape)

    params = {
        "cl": cov["CLI"].to_numpy()[:, None],
        "v": cov["V1I"].to_numpy()[:, None],
        "q": 204.0,
        "v2": cov["V2I"].to_numpy()[:, None],
    }
    conc = concentration(
        PK_MODELS["iv_2cmt"],
        params,
        per_dose(np.where(arrays.dose_mask, arrays.dose_time, 0.0)),
        per_dose(arrays.dose_amt),
        per_dose(arrays.dose_rate),
        per_dose(arrays.dose_ss),
        per_dose(arrays.dose_ii),
        grid.stage_times,
    )
    return grid, np.asarray(conc), arrays.obs_dv


# One worker fits this module's model once (split across workers, each would compile and
# fit it, at the same time, into the same numba cache entry).
pytestmark = pytest.mark.xdist_group("wbc_recovery")


@pytest.fixture(scope="module")
def posterior():
    grid, conc, wbc = wbc_inputs()
    n = grid.n_subjects
    model = PD_MODELS["friberg"]
    with pm.Model():
        # Weakly informative priors, centred away from the truth (Friberg 2002 docetaxel
        # values for circ0, mtt, gamma; 10 L/µmol for the slope).
        log_circ0 = pm.Normal("log_circ0", np.log(5.05), 1.0)
        log_mtt = pm.Normal("log_mtt", np.log(88.7), 0.7)
        log_gamma = pm.Normal("log_gamma", np.log(0.161), 0.7)
        log_slope = pm.Normal("log_slope", np.log(10.0), 1.5)
        omega = pm.HalfNormal("omega", 0.5, shape=3)
        z = pm.Normal("z", 0.0, 1.0, shape=(3, n))
        circ0 = pt.exp(log_circ0 + omega[0] * z[0])
        mtt = pt.exp(log_mtt + omega[1] * z[1])
        slope = pt.exp(log_slope + omega[2] * z[2])
        params = pt.stack([circ0, mtt, pt.exp(log_gamma) * pt.ones(n), pt.ones(n)], axis=1)
        drive = drug_effect.linear(pt.constant(conc), slope[:, None], "inhibit")
        pred = observe(model, solve(model, params, drive, grid), grid)
        sigma = pm.HalfNormal("sigma", 0.5)
        pm.Normal("wbc", mu=pred, sigma=sigma * pred, observed=wbc)
        compiled = compile_nutpie(pm.modelcontext(None))
    # target_accept 0.9: at the default 0.8 this model had 4 divergences in 800 draws.
    return nutpie.sample(
        compiled,
        draws=400,
        tune=400,
        chains=2,
        cores=2,
        seed=20261122,
        target_accept=0.95,
        progress_bar=False,
    )


@pytest.mark.slow
def test_wbc_fit_converged(posterior):
    post = posterior["posterior"]
    stats = posterior["sample_stats"]
    # Known and not yet solved: 2 of 800 transitions diverge (4 at target_accept 0.8; 72
    # before Friberg carried log(Prol)). Allow at most 0.5% until the cause is found.
    assert int(stats["diverging"].sum()) <= 0.005 * stats["diverging"].size
    for name in ("log_circ0", "log_mtt", "log_gamma", "log_slope"):
        draws = post[name].values  # [chain, draw]
        # Split-chain R-hat from first principles (bulk, rank-free), strict enough here.
        halves = draws.reshape(draws.shape[0] * 2, -1)
        within = halves.var(axis=1, ddof=1).mean()
        between = halves.mean(axis=1).var(ddof=1) * halves.shape[1]
        rhat = np.sqrt(
            ((halves.shape[1] - 1) / halves.shape[1] * within + between / halves.shape[1]) / within
        )
        assert rhat < 1.05, (name, rhat)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(GENERATING))
def test_wbc_90pct_interval_covers_generating_value(posterior, name):
    draws = np.exp(posterior["posterior"][f"log_{name}"].values.ravel())
    low, high = np.quantile(draws, [0.05, 0.95])
    assert low < GENERATING[name] < high, (name, low, high)
    # And the interval is informative, not the prior: narrower than a factor 2.5.
    assert high / low < 2.5
