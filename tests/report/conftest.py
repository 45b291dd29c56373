"""Report fixtures: a hand-built payload (fast) and the payload of the real theophylline fit."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from tpopk.report.comparison import comparison_tables
from tpopk.report.payload import (
    CardSummary,
    ChainRow,
    Convergence,
    DataSummary,
    LooRow,
    ParameterRow,
    ParameterTable,
    PriorRow,
    ReportPayload,
    ResidualRow,
    Shrinkage,
    ShrinkageRow,
    build_payload,
    encode_figure,
    log_sd_cv,
)
from tpopk.simulate import load_trial
from tpopk.simulate.comparison import contrasts, summarise

MODELS = Path(__file__).parents[2] / "models"

matplotlib.use("Agg")

#: Text that breaks a page unless escaped.
HOSTILE = '<script>alert("x")</script> & <b>µg/kg</b> "quoted"'


def comparison_dataset() -> xr.Dataset:
    """What a trial comparison could hold: endpoints per arm, contrasts per pair, draws."""
    arms = ["eltrombopag", "avatrombopag", "romiplostim"]
    rng = np.random.default_rng(3)
    return xr.Dataset(
        {
            "responders_week6_median": ("arm", [0.61, 0.72, 0.80], {"units": "fraction"}),
            "responders_week6_lower": ("arm", [0.52, 0.63, 0.71], {"units": "fraction"}),
            "responders_week6_upper": ("arm", [0.70, 0.80, 0.87], {"units": "fraction"}),
            "p_better": (("arm", "comparator"), rng.uniform(size=(3, 3))),
            "time_to_response": (
                ("arm", "draw"),
                rng.gamma(4.0, 2.0, size=(3, 400)),
                {"units": "d"},
            ),
            "n_patients": ((), 200),
        },
        coords={"arm": arms, "comparator": arms},
    )


def comparison_draws() -> xr.Dataset:
    """Endpoint draws per arm, as ``tpopk.compare`` simulates them."""
    rng = np.random.default_rng(5)
    return xr.Dataset(
        {
            "responder_week_6": (
                ("arm", "draw"),
                rng.beta([[6], [8]], 4, size=(2, 300)),
                {"units": "fraction of patients"},
            ),
            "time_to_response": (
                ("arm", "draw"),
                rng.gamma(4.0, [[3.0], [2.0]], size=(2, 300)),
                {"units": "d"},
            ),
        },
        coords={"arm": ["eltrombopag", "placebo"]},
    )


def comparison_tree() -> xr.DataTree:
    """A comparison laid out as ``tpopk.compare`` returns it, from its own summary functions."""
    draws = comparison_draws()
    kinds = {"responder_week_6": "responder_at", "time_to_response": "time_to_response"}
    tree = xr.DataTree.from_dict(
        {
            "draws": draws,
            "summary": summarise(draws, 0.9),
            "contrasts": contrasts(draws, kinds, 0.9),
        }
    )
    tree.attrs |= {"trial": "eltrombopag_itp", "ci_prob": 0.9, "n_patients": 100}
    return tree


def png_figure(title: str, section: str):
    """A real matplotlib figure encoded the way the report does it."""
    from arviz_plots import PlotCollection

    data = xr.Dataset({"y": ("x", np.arange(5.0))})
    plot = PlotCollection.wrap(data, cols=[], backend="matplotlib")
    plot.viz["plot"].item().plot(data["x"], data["y"])
    return encode_figure(plot, section, title, f"caption of {title} {HOSTILE}")


def make_payload(**changes) -> ReportPayload:
    """A small payload of every kind of content, built without any fit."""
    card = CardSummary(
        name="oral_1cmt",
        kind="pk",
        description=f"description {HOSTILE}",
        structure="pk = oral_1cmt",
        parameters=(
            PriorRow(
                parameter="cl",
                unit="L/h",
                origin="estimated",
                prior="LogNormal(mu=1.6, sigma=1.2)",
                iiv="HalfNormal(sigma=1)",
                covariates="",
                pooling="shared",
                source=f"source {HOSTILE}",
            ),
        ),
        residuals=(
            ResidualRow(
                dvid="conc", error="additive", priors="sigma_add ~ HalfNormal(sigma=2)", source=""
            ),
        ),
        iiv_block="",
    )
    fields = {
        "title": f"report {HOSTILE}",
        "created": "2026-01-01 00:00 UTC",
        "tpopk_version": "0.1.0",
        "chains": 2,
        "draws": 100,
        "data": DataSummary(
            subjects=3,
            records=30,
            doses=3,
            observations={"conc": 27},
            time_start=0.0,
            time_end=24.0,
            time_unit="h",
            dose_unit="mg",
            units={"conc": "mg/L"},
            agonists=(),
            covariates=("WT",),
        ),
        "cards": (card,),
        "convergence": Convergence(
            chains=(ChainRow(chain=0, draws=100, divergences=0, bfmi=0.91),),
            warnings=(f"warning {HOSTILE}",),
        ),
        "parameters": ParameterTable(
            ci_prob=0.9,
            rows=(
                ParameterRow(
                    parameter="pop_cl",
                    unit="L/h",
                    mean=2.75,
                    sd=0.2,
                    lower=2.4,
                    median=2.74,
                    upper=3.1,
                    ess_bulk=812.4,
                    ess_tail=790.0,
                    r_hat=1.0012,
                    prior_overlap=0.12,
                ),
                ParameterRow(
                    parameter="omega_cl",
                    unit="SD of log",
                    mean=0.31,
                    sd=0.09,
                    lower=0.196,
                    median=0.3,
                    upper=0.463,
                    ess_bulk=1384.0,
                    ess_tail=2216.0,
                    r_hat=1.003,
                    cv_lower=log_sd_cv(0.196),
                    cv_median=log_sd_cv(0.3),
                    cv_upper=log_sd_cv(0.463),
                    prior_overlap=0.48,
                ),
            ),
        ),
        "shrinkage": Shrinkage(
            eta=(ShrinkageRow(parameter="cl", omega=0.3, shrinkage=0.12),), epsilon={"conc": 0.1}
        ),
        "loo": (LooRow(dvid="all", elpd=-160.0, se=17.0, p_loo=30.0, n=27, good_k=0.7, n_bad_k=1),),
        "loo_warnings": (f"Pareto k is above 0.7 for 1 of 27 conc observations {HOSTILE}",),
        "figures": tuple(
            png_figure(f"figure {i}", section)
            for i, section in enumerate(
                [
                    "convergence",
                    "shrinkage",
                    "loo",
                    "vpc",
                    "gof",
                    "npde",
                    "individual",
                    "comparison",
                ]
            )
        ),
        "comparison": comparison_tables(comparison_dataset()),
    }
    plt.close("all")
    return ReportPayload(**(fields | changes))


@pytest.fixture(scope="session")
def small_payload() -> ReportPayload:
    return make_payload()


@pytest.fixture(scope="session")
def theophylline_payload(theophylline_fit) -> ReportPayload:
    design = load_trial(MODELS / "trials" / "eltrombopag_itp.toml")
    return build_payload(
        theophylline_fit, trial=design, comparison=comparison_tree(), progress=False
    )
