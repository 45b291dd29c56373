"""Parameter recovery: two agonists sharing thrombopoiesis, PK + platelets, known truth.

Data are simulated by :mod:`tpopk.simulate.synthetic` (the fitted model's own
likelihood, new subjects) from the library cards, then fitted with nutpie; the 90%
posterior interval of every population parameter must cover the value that generated
the data, and the typical values must be learnt from the data (posterior narrower
than the prior), with no divergent transitions.

Kept small for ``make test`` (2 x 5 healthy volunteers, 3 weeks), so the library cards
are simplified where the design cannot inform them, and the test says so:

- healthy volunteers only, none splenectomised: the DISEASE and SPLENECTOMY effects on
  plt0 and tplt multiply by 1 and are dropped;
- ``tp`` is shared, not partially pooled: two agonists cannot inform the between-agonist
  SD ``tau``;
- no feedback on production (``gamma`` dropped, so the lifespan structure's default 0):
  counts end on day 21, before the return to baseline that would inform it;
- hetrombopag's relative bioavailability ``f`` is fixed at 1 (fasted, its definition;
  the FED effect is dropped), since F, CL/F and V/F are not separable from oral data.

Measured 2026-12-01 at f2492fe (RK4 substeps; lifespan structure on the default 12 h
grid instead of 2 h), 2 cores shared with another fit: 439 s wall including the nutpie
compile (warm cache), 0 divergent transitions, 121 leapfrog steps per draw (tree depth up
to 8), all 26 population parameters covered, smallest ESS_bulk 200 (omega_slope). Before
that change (2 h grid) the same fit sampled for 831 s and had 3 divergences.

Truth: each typical value at its prior's 75% quantile (off the prior median, so an
interval that merely echoed the prior would not be centred on it); IIV SDs and residual
SDs at their prior medians.

Coverage is judged against the posterior's 5% and 95% quantiles, widened by two Monte
Carlo standard errors of each estimated quantile (ArviZ ``mcse``, method "quantile").
The data are seeded, so the posterior is fixed; the sampled chains are not bit-for-bit
the same from run to run (the CI machine's differ from this one's, and two runs here on
2026-12-03 estimated 0.4434 and 0.4270 for the same quantile; cause not found), and an
estimated bound 0.6% from the truth must not decide the test. The 2026-12-03 CI run of ce45521
missed ``sigma_prop_conc_romiplostim`` by exactly that (truth 0.4, estimated 95%
quantile 0.3976); a run of the same test here the same day estimated 0.4434 with an
MCSE of 0.016 (502 s, 0 divergences, all 26 covered before the allowance too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest

from tpopk.data import read_events
from tpopk.inference.nutpie_bridge import sample_nutpie
from tpopk.model import ModelCard, build_model, load_card
from tpopk.simulate.synthetic import UNITS, design_itp_study, prior_quantile, simulate_study

MODELS = Path(__file__).parents[2] / "models"
AGONISTS = ("hetrombopag", "romiplostim")
# healthy-volunteer courses: hetrombopag 7.5 mg daily x 10 days (Zheng 2017's highest
# multiple-dose group), romiplostim one 2 µg/kg SC dose (Wang 2004)
REGIMENS = {"hetrombopag": (7.5, "mg", 24.0, 10), "romiplostim": (2.0, "µg/kg", 168.0, 1)}
PK_TIMES = {
    "hetrombopag": (1.0, 4.0, 24.0, 216.0, 220.0),
    "romiplostim": (24.0, 72.0, 120.0, 168.0, 336.0),
}
PLATELET_DAYS = (0.0, 4.0, 7.0, 10.0, 14.0, 17.0, 21.0)
N_PER_AGONIST = 5
SEEDS = {"design": 3, "simulation": 4, "sampler": 5}
SAMPLER = {"draws": 200, "tune": 300, "chains": 4, "cores": 2, "target_accept": 0.95}


def simplified(name: str) -> ModelCard:
    """The library card with the simplifications listed in the module docstring."""
    table: dict[str, Any] = load_card(MODELS / f"{name}.toml").to_toml_dict()
    parameters = table["parameters"]
    if name == "thrombopoiesis":
        for p in ("plt0", "tplt"):
            parameters[p].pop("covariates", None)
        parameters["tp"]["pooling"] = "shared"
        parameters["tp"].pop("tau")
        del parameters["gamma"]
    if name == "hetrombopag":
        f = parameters["f"]
        f["value"] = 1.0
        for key in ("prior", "covariates"):
            f.pop(key, None)
    return load_card(table)


def run_recovery() -> dict[str, Any]:
    """Simulate the two-agonist study at the known values and fit it."""
    cards = [simplified("thrombopoiesis"), *(simplified(a) for a in AGONISTS)]
    design = design_itp_study(
        AGONISTS,
        N_PER_AGONIST,
        seed=SEEDS["design"],
        pk_times=PK_TIMES,
        platelet_days=PLATELET_DAYS,
        regimens=REGIMENS,
        disease="HV",
        east_asian=0.0,
        splenectomy=0.0,
    )
    model = build_model(cards, read_events(design, units=UNITS))
    truth = prior_quantile(model, 0.5) | {
        k: v for k, v in prior_quantile(model, 0.75).items() if k.startswith("pop_")
    }
    study = simulate_study(cards, design, values=truth, seed=SEEDS["simulation"])
    fitted = build_model(cards, study.events)
    tree = sample_nutpie(fitted, seed=SEEDS["sampler"], progressbar=False, **SAMPLER)
    prior = pm.sample_prior_predictive(
        draws=2000,
        model=fitted,
        var_names=sorted(truth),
        random_seed=1,
        compile_kwargs={"mode": "FAST_COMPILE"},
    )["prior"]
    return {"truth": truth, "posterior": tree["posterior"], "prior": prior, "tree": tree}


@pytest.fixture(scope="module")
def recovery() -> dict[str, Any]:
    return run_recovery()


# Monte Carlo standard errors of an estimated quantile allowed either side of it
MCSE_ALLOWANCE = 2.0


def coverage_table(recovery: dict[str, Any]) -> pd.DataFrame:
    posterior = recovery["posterior"]
    names = sorted(recovery["truth"])
    mcse = {p: az.mcse(posterior, var_names=names, method="quantile", prob=p) for p in (0.05, 0.95)}
    rows = []
    for name, value in sorted(recovery["truth"].items()):
        draws = posterior[name].to_numpy().reshape(-1)
        prior = recovery["prior"][name].to_numpy().reshape(-1)
        q5, q50, q95 = np.quantile(draws, [0.05, 0.5, 0.95])
        p5, p95 = np.quantile(prior, [0.05, 0.95])
        se5, se95 = (float(mcse[p][name]) for p in (0.05, 0.95))
        low, high = q5 - MCSE_ALLOWANCE * se5, q95 + MCSE_ALLOWANCE * se95
        rows.append(
            {
                "parameter": name,
                "truth": float(value),
                "q5": q5,
                "q50": q50,
                "q95": q95,
                "mcse_q5": se5,
                "mcse_q95": se95,
                "covered": bool(low <= value <= high),
                "width_vs_prior": (q95 - q5) / (p95 - p5),
            }
        )
    return pd.DataFrame(rows).set_index("parameter")


@pytest.mark.slow
@pytest.mark.xdist_group("fits")
def test_two_agonist_recovery_covers_the_truth_without_divergences(
    recovery: dict[str, Any],
) -> None:
    table = coverage_table(recovery)
    print("\n" + table.to_string(float_format=lambda x: f"{x:.4g}"))
    # 34 with the ITP and CLD omegas of tp and tplt (iiv_by), the ITP and CLD count
    # errors (sigma_by) and the count fluctuation's share and half-life, which these
    # healthy volunteers (count SD 0.09) leave near their priors: covered as their priors are
    assert len(table) == 34
    assert int(recovery["tree"]["sample_stats"]["diverging"].sum()) == 0
    missed = table.index[~table["covered"]].tolist()
    assert not missed, f"90% intervals miss the truth of {missed}"
    # the data, not the prior, locate the typical values
    typical = table[table.index.str.startswith("pop_")]
    assert (typical["width_vs_prior"] < 1.0).all(), typical["width_vs_prior"]
