"""The report payload of a real fit holds the fit's numbers, cards and figures."""

from __future__ import annotations

import base64
import io
import tomllib
from dataclasses import replace

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from arviz_plots import PlotCollection
from PIL import Image
from scipy import stats

from conftest import THEOPHYLLINE_UNITS
from tpopk.diagnostics import npde
from tpopk.report import payload as payload_module
from tpopk.report.comparison import comparison_tables
from tpopk.report.payload import (
    ReportPayload,
    observation_figures,
    prior_text,
)

from .conftest import MODELS, comparison_tree
from .layout import clipped_text, overlapping_text

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
            expected["eti90_lb"],
            expected["median"],
            expected["eti90_ub"],
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
    sections = ("convergence", "shrinkage", "loo", "vpc", "gof", "npde", "individual")
    counts = {s: len(theophylline_payload.section_figures(s)) for s in (*sections, "comparison")}
    # VPC and pcVPC; one figure of each other kind, the forest plot of the contrasts
    assert counts == {s: 2 if s == "vpc" else 1 for s in (*sections, "comparison")}
    for figure in theophylline_payload.figures:
        image = _png(figure)
        assert min(image.size) > 200
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or ()) > 2  # not blank
    assert plt.get_fignums() == []
    frame = theophylline_fit.events.frame
    observed = frame[(frame["EVID"] == 0) & (frame["MDV"] == 0)]
    pre_dose = int((observed["TIME"] == 0).sum())
    # theophylline has pre-dose samples (PRED = 0): the pcVPC leaves them out
    _, pcvpc = theophylline_payload.section_figures("vpc")
    assert pcvpc.title == "prediction-corrected VPC: conc"
    assert f"{pre_dose} observation(s) where PRED is 0 (before the first dose)" in pcvpc.caption
    (individual,) = theophylline_payload.section_figures("individual")
    assert "first 12 subjects" in individual.caption
    assert "on 200 times from each subject's first to last record; log scale." in individual.caption


def test_pcvpc_drawn_where_pred_is_positive(theophylline_fit) -> None:
    tree = theophylline_fit.tree.copy()
    posterior = tree["posterior"].to_dataset()
    tree["posterior"] = xr.DataTree(
        posterior.assign(pred_conc=xr.full_like(posterior.pred_conc, 2))
    )
    figures = observation_figures(replace(theophylline_fit, tree=tree), "conc", progress=False)
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


def test_parameter_units_cv_and_prior_overlap(theophylline_fit, theophylline_payload) -> None:
    rows = {row.parameter: row for row in theophylline_payload.parameters.rows}
    units = {name: row.unit for name, row in rows.items()}
    assert units == THEOPHYLLINE_UNITS
    omega = theophylline_fit.posterior["omega_cl"].values.ravel()
    cv = 100 * np.sqrt(np.exp(omega**2) - 1)  # the CV's own draws
    # equal up to the interpolation between neighbouring draws
    assert rows["omega_cl"].cv_median == pytest.approx(np.median(cv), rel=1e-6)
    assert rows["omega_cl"].cv_upper == pytest.approx(np.quantile(cv, 0.95), rel=1e-6)
    assert rows["pop_cl"].cv_median is None
    # pop_cl's prior is LogNormal(mu=1.6, sigma=1.2): the overlap against its exact density
    log_cl = np.log(theophylline_fit.posterior["pop_cl"].values.ravel())
    grid = np.linspace(log_cl.min() - 1, log_cl.max() + 1, 4000)
    shared = np.minimum(stats.gaussian_kde(log_cl)(grid), stats.norm.pdf(grid, 1.6, 1.2))
    assert rows["pop_cl"].prior_overlap == pytest.approx(np.trapezoid(shared, grid), abs=0.03)
    flagged = theophylline_payload.parameters.prior_informed()
    assert flagged == tuple(n for n, r in rows.items() if (r.prior_overlap or 0) > 0.35)


def test_npde_figure_states_the_tests(theophylline_fit, theophylline_payload) -> None:
    (figure,) = theophylline_payload.section_figures("npde")
    result = npde(theophylline_fit.tree, "conc", group="predictions", num_draws=1000)
    assert f"Mean {result.attrs['mean']:.2f} (t-test p = {result.attrs['p_mean']:.2g})" in (
        figure.caption
    )
    assert figure.title == "NPDE: conc"


def test_every_figure_keeps_its_text_apart(theophylline_fit, monkeypatch) -> None:
    problems = {}
    encode = payload_module.encode_figure

    def checked(plot, section, title, caption):  # type: ignore[no-untyped-def]
        figure = plot.viz["figure"].item() if isinstance(plot, PlotCollection) else plot
        problems[title] = (overlapping_text(figure), clipped_text(figure))
        return encode(plot, section, title, caption)

    monkeypatch.setattr(payload_module, "encode_figure", checked)
    payload_module.build_payload(theophylline_fit, comparison=comparison_tree(), progress=False)
    assert len(problems) == 9  # rank, η, LOO-PIT, VPC, pcVPC, GOF, NPDE, individual, forest
    assert problems == dict.fromkeys(problems, ([], []))
