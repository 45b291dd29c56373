"""A synthetic fit with known properties, fabricated with NumPy (no MCMC).

Data are simulated from a one-compartment oral model with log-normal IIV on ka, CL, V and
a proportional residual error (conc), plus a log-normal platelet-like observation (plt).
The "posterior" is centred on the true individual parameters with a small spread, and
the posterior predictive draws come from the same model, so a correct diagnostic finds
no misfit. ``bias`` multiplies the observed concentrations after simulation (a
deliberately mis-specified fit), ``lloq`` censors concentrations below it (M3-style:
observed value set to the LLOQ, replicates at BLQ rows clipped at it, as PyMC's
``Censored`` does). The tree is described as :func:`tpopk.inference.fit` describes a
fit (:func:`tpopk.diagnostics.describe_observations`, ``pred_<dvid>`` in the posterior).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from tpopk.data import EventTable, read_events
from tpopk.diagnostics import describe_observations

TIMES = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0])  # h
PLT_TIMES = np.array([48.0, 96.0])  # h
TRUE = {"ka": 1.2, "cl": 4.0, "v": 40.0}  # 1/h, L/h, L
OMEGA = 0.3
SIGMA_PROP = 0.15
SIGMA_LOG_PLT = 0.1
CHAINS, DRAWS = 2, 250


def one_compartment_oral(dose, ka, cl, v, time):
    """Concentration (mg/L) after an oral dose (mg) at time 0."""
    k = cl / v
    return dose * ka / (v * (ka - k)) * (np.exp(-k * time) - np.exp(-ka * time))


@dataclass
class Synthetic:
    tree: xr.DataTree
    events: EventTable
    eta_true: dict[str, np.ndarray]
    pred: dict[str, np.ndarray]  # population prediction (eta = 0, true typical values)


def make_synthetic(
    *,
    n_subjects: int = 40,
    bias: float = 1.0,
    lloq: float | None = None,
    posterior_sd: float = 0.05,
    seed: int = 7,
) -> Synthetic:
    rng = np.random.default_rng(seed)
    agonist = np.where(np.arange(n_subjects) % 2 == 0, "eltrombopag", "avatrombopag")
    dose = np.tile([50.0, 100.0, 200.0], n_subjects)[:n_subjects]
    eta = {p: rng.normal(0, OMEGA, n_subjects) for p in TRUE}
    baseline = rng.lognormal(np.log(30.0), 0.2, n_subjects)  # platelets 10^9/L

    def conc(eta_draw, time, subject):
        params = {p: TRUE[p] * np.exp(eta_draw[p][..., subject]) for p in TRUE}
        return one_compartment_oral(dose[subject], **params, time=time)

    conc_subject = np.repeat(np.arange(n_subjects), len(TIMES))
    conc_time = np.tile(TIMES, n_subjects)
    plt_subject = np.repeat(np.arange(n_subjects), len(PLT_TIMES))
    plt_time = np.tile(PLT_TIMES, n_subjects)

    def platelets(eta_cl, subject):
        # higher clearance, lower exposure, smaller platelet rise
        return baseline[subject] * (1 + 0.5 * np.exp(-eta_cl[..., subject]))

    true_conc = conc(eta, conc_time, conc_subject)
    y_conc = true_conc * (1 + SIGMA_PROP * rng.standard_normal(true_conc.shape)) * bias
    true_plt = platelets(eta["cl"], plt_subject)
    y_plt = true_plt * np.exp(SIGMA_LOG_PLT * rng.standard_normal(true_plt.shape))
    blq = y_conc < lloq if lloq is not None else np.zeros(y_conc.shape, dtype=bool)
    y_conc_observed = np.where(blq, lloq if lloq is not None else 0.0, y_conc)

    rows = []
    for s in range(n_subjects):
        common = {"ID": s + 1, "AGONIST": agonist[s], "WT": 70.0}
        rows.append({**common, "TIME": 0.0, "EVID": 1, "AMT": dose[s], "CMT": 1, "DVID": ""})
        for j in np.flatnonzero(conc_subject == s):
            rows.append(
                {
                    **common,
                    "TIME": conc_time[j],
                    "EVID": 0,
                    "DV": y_conc_observed[j],
                    "CMT": 2,
                    "DVID": "conc",
                    "LLOQ": lloq if lloq is not None else np.nan,
                    "BLQ": int(blq[j]),
                }
            )
        for j in np.flatnonzero(plt_subject == s):
            row = {**common, "TIME": plt_time[j], "EVID": 0, "DV": y_plt[j], "CMT": 0}
            row["DVID"] = "plt"
            rows.append(row)
    events = read_events(pd.DataFrame(rows), units={"conc": "mg/L"})
    per_subject = len(TIMES) + len(PLT_TIMES)
    obs_conc = (conc_subject * per_subject + np.tile(np.arange(len(TIMES)), n_subjects)).astype(
        np.int64
    )
    obs_plt = (
        plt_subject * per_subject + len(TIMES) + np.tile(np.arange(len(PLT_TIMES)), n_subjects)
    ).astype(np.int64)

    # posterior: individual eta near the truth, population values near the truth
    shape = (CHAINS, DRAWS)
    eta_draws = {p: eta[p] + posterior_sd * rng.standard_normal((*shape, n_subjects)) for p in TRUE}
    omega = {p: OMEGA * np.exp(0.05 * rng.standard_normal(shape)) for p in TRUE}
    sigma_prop = SIGMA_PROP * np.exp(0.05 * rng.standard_normal(shape))
    sigma_log = SIGMA_LOG_PLT * np.exp(0.05 * rng.standard_normal(shape))
    ipred_conc = conc(eta_draws, conc_time, conc_subject)
    ipred_plt = platelets(eta_draws["cl"], plt_subject)
    sd = sigma_prop[..., None] * ipred_conc
    rep_conc = ipred_conc + sd * rng.standard_normal(ipred_conc.shape)
    if lloq is not None:
        rep_conc = np.where(blq, np.maximum(rep_conc, lloq), rep_conc)
    rep_plt = ipred_plt * np.exp(sigma_log[..., None] * rng.standard_normal(ipred_plt.shape))
    loglik_conc = np.where(
        blq,
        stats.norm.logcdf(lloq if lloq is not None else 0.0, ipred_conc, sd),
        stats.norm.logpdf(y_conc_observed, ipred_conc, sd),
    )
    loglik_plt = stats.lognorm.logpdf(y_plt, sigma_log[..., None], scale=ipred_plt)

    zero = {p: np.zeros(n_subjects) for p in TRUE}
    pred = {
        "conc": conc(zero, conc_time, conc_subject),
        "plt": platelets(zero["cl"], plt_subject),
    }
    sample = ("chain", "draw")
    coords = {
        "chain": np.arange(CHAINS),
        "draw": np.arange(DRAWS),
        "subject": events.subjects,
        "obs_conc": obs_conc,
        "obs_plt": obs_plt,
    }
    posterior = {}
    for p in TRUE:
        posterior[f"pop_{p}"] = (sample, TRUE[p] * np.exp(0.03 * rng.standard_normal(shape)))
        posterior[f"omega_{p}"] = (sample, omega[p])
        posterior[f"z_{p}"] = ((*sample, "subject"), eta_draws[p] / omega[p][..., None])
        posterior[f"eta_{p}"] = ((*sample, "subject"), eta_draws[p])
        posterior[p] = ((*sample, "subject"), TRUE[p] * np.exp(eta_draws[p]))
    posterior["sigma_prop_conc"] = (sample, sigma_prop)
    posterior["sigma_log_plt"] = (sample, sigma_log)
    posterior["ipred_conc"] = ((*sample, "obs_conc"), ipred_conc)
    posterior["ipred_plt"] = ((*sample, "obs_plt"), ipred_plt)
    for dvid, values in pred.items():  # PRED at the true typical values in every draw
        posterior[f"pred_{dvid}"] = (
            (*sample, f"obs_{dvid}"),
            np.broadcast_to(values, (*shape, values.size)),
        )
    observed = {"y_conc": ("obs_conc", y_conc_observed), "y_plt": ("obs_plt", y_plt)}
    replicates = {
        "y_conc": ((*sample, "obs_conc"), rep_conc),
        "y_plt": ((*sample, "obs_plt"), rep_plt),
    }
    loglik = {
        "y_conc": ((*sample, "obs_conc"), loglik_conc),
        "y_plt": ((*sample, "obs_plt"), loglik_plt),
    }
    energy = rng.standard_normal(shape)
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(posterior, coords=coords),
            "posterior_predictive": xr.Dataset(replicates, coords=coords),
            "log_likelihood": xr.Dataset(loglik, coords=coords),
            "observed_data": xr.Dataset(
                observed, coords={k: coords[k] for k in ("obs_conc", "obs_plt")}
            ),
            "sample_stats": xr.Dataset(
                {"diverging": (sample, np.zeros(shape, dtype=bool)), "energy": (sample, energy)},
                coords={k: coords[k] for k in sample},
            ),
        }
    )
    return Synthetic(describe_observations(tree, events), events, eta, pred)


def replaced(tree: xr.DataTree, group: str, drop: tuple[str, ...] = (), **variables) -> xr.DataTree:
    """A copy of ``tree`` with variables of one group dropped, replaced or added."""
    tree = tree.copy()
    data = tree[group].to_dataset().drop_vars(list(drop)).assign(**variables)
    tree[group] = xr.DataTree(data)
    return tree
