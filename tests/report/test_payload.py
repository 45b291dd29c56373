"""The report payload of a real fit holds the fit's numbers, cards and figures."""

from __future__ import annotations

import base64
import io
import tomllib

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from PIL import Image

from tpopk.report.comparison import comparison_tables
from tpopk.report.payload import (
    ReportPayload,
    observation_figures,
    prior_text,
)

from .conftest import MODELS, comparison_tree

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fits")]


def test_parameter_table_matches_fit_summary(theophylline_fit, theophylline_payload) -> None:
    summary = theophylline_fit.summary(ci_prob=0.9)
    rows = {row.parameter: row for row in theophylline_payload.parameters.rows}
    assert list(rows) == list(summary.index)
    for name, expected in summary.iterrows():
        row = rows[name]
        assert (row.mean, row.sd, row.r_hat) == (
            expected["mean"],
            expected["sd"],
            expected["r_hat"],
        )
        assert (row.lower, row.median, row.upper) == (
            expected["q0.05"],
            expected["q0.5"],
            expected["q0.95"],
        )
        assert (row.ess_bulk, row.ess_tail) == (expected["ess_bulk"], expected["ess_tail"])
    # and against the draws themselves, not only through Fit.summary
    draws = theophylline_fit.posterior["pop_cl"].values.ravel()
    assert rows["pop_cl"].median == pytest.approx(np.median(draws), rel=1e-12)
    assert rows["pop_cl"].upper == pytest.approx(np.quantile(draws, 0.95), rel=1e-12)


def test_every_card_parameter_has_its_prior_and_source(theophylline_payload) -> None:
    card = tomllib.loads((MODELS / "generic" / "oral_1cmt.toml").read_text(encoding="utf-8"))
    (summary,) = theophylline_payload.cards
    rows = {row.parameter: row for row in summary.parameters}
    assert set(rows) == set(card["parameters"])
    for name, spec in card["parameters"].items():
        prior = spec["prior"]
        arguments = ", ".join(f"{k}={v:g}" for k, v in prior.items() if k != "dist")
        assert rows[name].prior == f"{prior['dist']}({arguments})"
        assert rows[name].iiv == f"HalfNormal(sigma={spec['iiv']['sigma']:g})"
        assert rows[name].source == spec["source"]
        assert rows[name].unit == spec["unit"]
    (residual,) = summary.residuals
    assert residual.dvid == "conc"
    assert residual.priors == "sigma_add ~ HalfNormal(sigma=2)"
    assert residual.source == card["residual"]["conc"]["source"]
    assert summary.structure == "pk = oral_1cmt"


def test_data_summary_counts_the_event_records(theophylline_fit, theophylline_payload) -> None:
    frame = theophylline_fit.events.frame
    data = theophylline_payload.data
    observed = frame[(frame["EVID"] == 0) & (frame["MDV"] == 0)]
    assert data.subjects == frame["ID"].nunique() == 12
    assert data.observations == {"conc": len(observed)} == {"conc": 132}
    assert data.records == len(frame)
    assert (data.time_start, data.time_end) == (frame["TIME"].min(), frame["TIME"].max())
    assert data.units == {"conc": theophylline_fit.events.units["conc"]}


def test_convergence_counts_divergences_and_bfmi(theophylline_fit, theophylline_payload) -> None:
    chains = theophylline_payload.convergence.chains
    energy = theophylline_fit.tree["sample_stats"]["energy"].values
    assert [c.chain for c in chains] == list(range(energy.shape[0]))
    assert sum(c.divergences for c in chains) == theophylline_fit.divergences
    for chain in chains:
        e = energy[chain.chain]
        # E-BFMI (Betancourt 2016, eq. 3)
        assert chain.bfmi == pytest.approx(np.sum(np.diff(e) ** 2) / np.sum((e - e.mean()) ** 2))


def test_shrinkage_and_loo_from_the_draws(theophylline_fit, theophylline_payload) -> None:
    posterior = theophylline_fit.posterior
    for row in theophylline_payload.shrinkage.eta:
        eta_mean = posterior[f"eta_{row.parameter}"].mean(("chain", "draw")).values
        omega = float(posterior[f"omega_{row.parameter}"].mean())
        assert row.shrinkage == pytest.approx(1 - np.std(eta_mean, ddof=1) / omega)
    assert {row.parameter for row in theophylline_payload.shrinkage.eta} == {"ka", "cl", "v"}
    loo = {row.dvid: row for row in theophylline_payload.loo}
    reference = az.loo(theophylline_fit.tree, var_name="y_conc")
    assert loo["conc"].elpd == pytest.approx(reference.elpd, rel=1e-9)
    assert loo["all"].elpd == pytest.approx(reference.elpd, rel=1e-9)
    assert loo["all"].n == 132


def _png(figure) -> Image.Image:
    data = base64.b64decode(figure.png_base64, validate=True)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(data))


def test_figures_are_pngs_and_closed(theophylline_fit, theophylline_payload) -> None:
    counts = {
        section: len(theophylline_payload.section_figures(section))
        for section in ("convergence", "shrinkage", "vpc", "gof", "individual")
    }
    # theophylline has pre-dose samples (PRED = 0), so the VPC is not prediction-corrected
    assert counts == {"convergence": 1, "shrinkage": 1, "vpc": 1, "gof": 1, "individual": 1}
    for figure in theophylline_payload.figures:
        image = _png(figure)
        assert min(image.size) > 200
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or ()) > 2  # not blank
    assert plt.get_fignums() == []
    frame = theophylline_fit.events.frame
    observed = frame[(frame["EVID"] == 0) & (frame["MDV"] == 0)]
    pre_dose = int((observed["TIME"] == 0).sum())
    (vpc,) = theophylline_payload.section_figures("vpc")
    assert f"PRED is 0 at {pre_dose} observation(s)" in vpc.caption
    (individual,) = theophylline_payload.section_figures("individual")
    assert "first 12 subjects" in individual.caption
    assert "on 200 times from each subject's first to last record; log scale." in individual.caption


def test_pcvpc_drawn_where_pred_is_positive(theophylline_fit, monkeypatch) -> None:
    positions = theophylline_fit.tree["observed_data"]["obs_conc"].values
    positive = xr.DataArray(np.full(len(positions), 2.0), dims="obs_conc")
    monkeypatch.setattr(type(theophylline_fit), "population_prediction", lambda *a, **k: positive)
    figures = observation_figures(theophylline_fit, "conc", progress=False)
    titles = [f.title for f in figures if f.section == "vpc"]
    assert titles == ["VPC: conc", "prediction-corrected VPC: conc"]
    assert plt.get_fignums() == []


def test_payload_round_trips_through_json(theophylline_payload) -> None:
    text = theophylline_payload.model_dump_json()
    assert ReportPayload.model_validate_json(text) == theophylline_payload


def test_comparison_tables_are_in_the_payload(theophylline_payload) -> None:
    assert theophylline_payload.comparison == comparison_tables(comparison_tree())
    assert theophylline_payload.comparison_settings["trial"] == "eltrombopag_itp"
    assert theophylline_payload.trial is not None
    assert theophylline_payload.trial.name == "eltrombopag_itp"
    with pytest.raises(ValueError, match="frozen"):
        theophylline_payload.parameters.rows[0].mean = 0.0  # type: ignore[misc]


def test_prior_text_of_a_fixed_value_and_none() -> None:
    assert prior_text(None) == ""
    assert prior_text(0.75) == "0.75"


def test_card_summary_lists_the_per_level_sds() -> None:
    from tpopk.model import load_card
    from tpopk.report.payload import summarise_card

    summary = summarise_card(load_card(MODELS / "thrombopoiesis.toml"))
    tplt = next(row for row in summary.parameters if row.parameter == "tplt")
    assert tplt.iiv == (
        "LogNormal(mu=-2.43456, sigma=0.5); DISEASE "
        "ITP: LogNormal(mu=-0.74997, sigma=0.5), CLD: LogNormal(mu=-0.74997, sigma=0.5)"
    )
    (plt,) = summary.residuals
    assert plt.priors == (
        "sigma_log ~ LogNormal(mu=-2.38808, sigma=0.5); DISEASE "
        "ITP: LogNormal(mu=-0.470004, sigma=0.25), CLD: LogNormal(mu=-0.857588, sigma=0.4)"
    )
