"""The report's content, computed once from a fit: tables, warnings and figures as data.

Everything a report shows is held in one frozen, typed :class:`ReportPayload`:
numbers stay numbers, texts stay unformatted, figures are PNG images (base64). The
renderer (:mod:`tpopk.report.html`) only formats it, and the payload serialises to JSON
(``payload.model_dump_json()``) for any other renderer. Trial comparisons are laid out
as tables by :mod:`tpopk.report.comparison`.

>>> from tpopk.report.payload import build_payload  # doctest: +SKIP
>>> payload = build_payload(fit)  # doctest: +SKIP
>>> payload.parameters.rows[0].median  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import io
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from arviz_plots import PlotCollection
from matplotlib.figure import Figure as MplFigure
from pydantic import Field
from pymc_extras.prior import Prior

import tpopk
from tpopk import diagnostics
from tpopk.data import read_events
from tpopk.diagnostics.prior_posterior import PRIOR_DOMINATED
from tpopk.model import population_variables
from tpopk.model.card import LevelSD, ModelCard
from tpopk.model.parameters import population_unit
from tpopk.progress import step
from tpopk.report.comparison import Table, comparison_tables, plot_contrasts
from tpopk.simulate import TrialDesign
from tpopk.simulate.predict import predict
from tpopk.typed import FrozenModel

if TYPE_CHECKING:
    from tpopk.inference import Fit

#: At most this many subjects get an individual-fit panel per observation type.
INDIVIDUAL_PANELS = 12
#: Times per subject at which individual fits draw IPRED (concentrations: daily peaks and
#: troughs over six weeks; a response turns over in days), and the posterior draws behind
#: its band: each draw re-evaluates the PK (and the ODE) of every panel's subject.
INDIVIDUAL_GRID_POINTS = {"conc": 200, "response": 100}
INDIVIDUAL_DRAWS = 40
#: Resolution of embedded figures (dots per inch).
FIGURE_DPI = 96
#: How figures are saved: the image grows to hold every label (none is cut off).
SAVEFIG: dict[str, Any] = {"format": "png", "dpi": FIGURE_DPI, "bbox_inches": "tight"}
#: Probability of the credible intervals in the parameter table.
CI_PROB = 0.9
#: Prior draws the prior-posterior overlap is estimated from.
PRIOR_DRAWS = 2000
#: Replicates each observation's NPDE is computed from.
NPDE_DRAWS = 1000

FigureSection = Literal[
    "convergence", "shrinkage", "loo", "vpc", "gof", "npde", "individual", "comparison"
]


class DataSummary(FrozenModel):
    """What was fitted: counts, time span and units of the event records."""

    subjects: int
    records: int
    doses: int
    observations: dict[str, int]
    time_start: float
    time_end: float
    time_unit: str
    dose_unit: str
    units: dict[str, str]
    agonists: tuple[str, ...]
    covariates: tuple[str, ...]


class PriorRow(FrozenModel):
    """One card parameter: how it is estimated, its priors and where they came from."""

    parameter: str
    unit: str
    origin: Literal["estimated", "fixed", "data"]
    prior: str
    iiv: str
    covariates: str
    pooling: str
    source: str


class ResidualRow(FrozenModel):
    """The residual-error model of one observation type."""

    dvid: str
    error: str
    priors: str
    source: str


class CardSummary(FrozenModel):
    """One model card as the report lists it."""

    name: str
    kind: str
    description: str
    structure: str
    parameters: tuple[PriorRow, ...]
    residuals: tuple[ResidualRow, ...]
    iiv_block: str


class ChainRow(FrozenModel):
    """Sampler health of one chain."""

    chain: int
    draws: int
    divergences: int
    bfmi: float


class Convergence(FrozenModel):
    """Per-chain sampler statistics and the plain-language warnings of the whole fit."""

    chains: tuple[ChainRow, ...]
    warnings: tuple[str, ...]


class ParameterRow(FrozenModel):
    """Posterior summary of one population parameter (one row of :meth:`Fit.summary`).

    A log-normal SD (``omega_``, ``tau_``) is also given as the coefficient of variation
    it implies, ``100 sqrt(exp(ω²) − 1)`` %, at its interval bounds and median (the
    transform is monotone, so these are the CV's own quantiles). ``prior_overlap`` is
    the Garrett-Zeger overlap of its prior and posterior densities
    (:mod:`tpopk.diagnostics.prior_posterior`).
    """

    parameter: str
    unit: str = ""
    mean: float
    sd: float
    lower: float
    median: float
    upper: float
    ess_bulk: float | None
    ess_tail: float | None
    r_hat: float | None
    cv_lower: float | None = None
    cv_median: float | None = None
    cv_upper: float | None = None
    prior_overlap: float | None = None


class ParameterTable(FrozenModel):
    """The population parameters with equal-tailed ``ci_prob`` intervals.

    ``prior_dominated`` is the overlap above which a parameter is flagged as informed
    mainly by its prior.
    """

    ci_prob: float
    rows: tuple[ParameterRow, ...]
    prior_dominated: float = PRIOR_DOMINATED

    def prior_informed(self) -> tuple[str, ...]:
        """Parameters whose prior-posterior overlap is above ``prior_dominated``."""
        return tuple(
            row.parameter
            for row in self.rows
            if row.prior_overlap is not None and row.prior_overlap > self.prior_dominated
        )


class ShrinkageRow(FrozenModel):
    """η-shrinkage of one parameter with IIV (fraction, 0 none to 1 total)."""

    parameter: str
    omega: float
    shrinkage: float
    cv_percent: float | None = None


class Shrinkage(FrozenModel):
    """η-shrinkage per parameter and ε-shrinkage per observation type."""

    eta: tuple[ShrinkageRow, ...]
    epsilon: dict[str, float]


class LooRow(FrozenModel):
    """PSIS-LOO of one observation type (or ``all``)."""

    dvid: str
    elpd: float
    se: float
    p_loo: float
    n: int
    good_k: float
    n_bad_k: int


class Figure(FrozenModel):
    """A figure as a PNG image, with the section it belongs to."""

    section: FigureSection
    title: str
    caption: str
    png_base64: str


class TrialSummary(FrozenModel):
    """The trial design that the comparison simulates."""

    name: str
    description: str
    arms: tuple[str, ...]
    endpoints: tuple[str, ...]
    sources: tuple[str, ...]


class ReportPayload(FrozenModel):
    """Everything a fit report shows, computed once."""

    title: str
    created: str
    tpopk_version: str
    chains: int
    draws: int
    data: DataSummary
    cards: tuple[CardSummary, ...]
    convergence: Convergence
    parameters: ParameterTable
    shrinkage: Shrinkage
    loo: tuple[LooRow, ...]
    loo_warnings: tuple[str, ...]
    figures: tuple[Figure, ...]
    trial: TrialSummary | None = None
    comparison: tuple[Table, ...] = ()
    comparison_settings: dict[str, str] = Field(default_factory=dict)
    inference_method: str = "nuts"
    approximate: bool = False

    def section_figures(self, section: FigureSection) -> tuple[Figure, ...]:
        """Return the figures of one section, in the order they were made."""
        return tuple(f for f in self.figures if f.section == section)


def _step(name: str, progress: bool) -> AbstractContextManager[None]:
    """Say on stderr what is being computed and how long it took (figures take seconds)."""
    return step("report", name, progress)


def prior_text(prior: Prior | float | None) -> str:
    """Write a prior as ``LogNormal(mu=1.6, sigma=1.2)``; nested priors recursively."""
    if prior is None:
        return ""
    if not isinstance(prior, Prior):
        return f"{prior:g}"
    arguments = ", ".join(
        f"{key}={prior_text(value) if isinstance(value, Prior | float | int) else value}"
        for key, value in prior.parameters.items()
    )
    return f"{prior.distribution}({arguments})"


def levels_text(by: LevelSD | None) -> str:
    """Write per-level SD priors as ``; DISEASE ITP: HalfNormal(sigma=1)``, or nothing."""
    if by is None:
        return ""
    levels = ", ".join(f"{level}: {prior_text(prior)}" for level, prior in by.levels.items())
    return f"; {by.covariate} {levels}"


def summarise_card(card: ModelCard) -> CardSummary:
    """List a card's parameters with their priors, IIV, covariates and sources."""
    rows = []
    for name, spec in card.parameters.items():
        if spec.prior is not None:
            origin: Literal["estimated", "fixed", "data"] = "estimated"
            prior = prior_text(spec.prior)
        elif spec.value is not None:
            origin, prior = "fixed", f"fixed at {spec.value:g}"
        else:
            origin, prior = "data", f"read from column {spec.from_covariate}"
        effects = "; ".join(
            f"{c.covariate} ({c.effect}, reference {c.reference}): {prior_text(c.coefficient)}"
            + (f" [{c.source}]" if c.source else "")
            for c in spec.covariates
        )
        pooling = spec.pooling + (f", τ ~ {prior_text(spec.tau)}" if spec.tau is not None else "")
        rows.append(
            PriorRow(
                parameter=name,
                unit=spec.unit,
                origin=origin,
                prior=prior,
                iiv=prior_text(spec.iiv) + levels_text(spec.iiv_by),
                covariates=effects,
                pooling=pooling,
                source=spec.source,
            )
        )
    residuals = tuple(
        ResidualRow(
            dvid=dvid,
            error=spec.error,
            priors=", ".join(
                f"{kind} ~ {prior_text(getattr(spec, kind))}"
                for kind in ("sigma_add", "sigma_prop", "sigma_log")
                if getattr(spec, kind) is not None
            )
            + levels_text(spec.sigma_by),
            source=spec.source,
        )
        for dvid, spec in card.residual.items()
    )
    structure = card.structure
    parts = [
        f"{key} = {value}" for key, value in structure.model_dump(exclude_defaults=True).items()
    ]
    block = card.iiv_block
    return CardSummary(
        name=card.name,
        kind=card.kind,
        description=card.description,
        structure=", ".join(parts),
        parameters=tuple(rows),
        residuals=residuals,
        iiv_block=(
            f"correlated IIV on {', '.join(block.parameters)}: SD ~ {prior_text(block.sd)}, "
            f"LKJ(eta={block.eta:g})" + (f" [{block.source}]" if block.source else "")
            if block is not None
            else ""
        ),
    )


def summarise_data(fit: Fit) -> DataSummary:
    """Count subjects, records, doses and observations per type of the fitted events."""
    events = fit.events
    frame = events.frame
    observed = events.observations
    per_type = {str(k): int(v) for k, v in observed.groupby("DVID", sort=True).size().items()}
    agonists = (
        tuple(sorted(str(a) for a in frame["AGONIST"].dropna().unique()))
        if "AGONIST" in frame.columns
        else ()
    )
    return DataSummary(
        subjects=len(events.subjects),
        records=len(frame),
        doses=len(events.doses),
        observations=per_type,
        time_start=float(frame["TIME"].min()),
        time_end=float(frame["TIME"].max()),
        time_unit=events.units["TIME"],
        dose_unit=events.units["AMT"],
        units={dvid: events.units[dvid] for dvid in per_type},
        agonists=agonists,
        covariates=tuple(str(c) for c in events.covariates.columns if c != "AGONIST"),
    )


def summarise_convergence(fit: Fit) -> Convergence:
    """Divergences and E-BFMI per chain, and every convergence warning in words.

    An approximate fit has no chains to judge: its one warning says so.
    """
    if fit.approximate:
        return Convergence(chains=(), warnings=(approximation_warning(fit.method),))
    table = diagnostics.convergence(fit.tree)
    chains = tuple(
        ChainRow(
            chain=int(chain),
            draws=int(table["draws"].sel(chain=chain)),
            divergences=int(table["divergences"].sel(chain=chain)),
            bfmi=float(table["bfmi"].sel(chain=chain)),
        )
        for chain in table["chain"].values
    )
    return Convergence(chains=chains, warnings=tuple(diagnostics.convergence_warnings(table)))


def _optional(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def approximation_warning(method: str) -> str:
    """Say that a fit's draws are approximate and what that means for its diagnostics."""
    return (
        f"These draws come from a {method} approximation of the posterior, not from MCMC. "
        "R-hat, effective sample sizes, divergences and E-BFMI do not apply and are not "
        "shown; the approximation can be too narrow or off-centre (hierarchical variances "
        "especially). Use it to build the model, and confirm the final model with NUTS."
    )


def log_sd_cv(sd: float) -> float:
    """Return the %CV of a log-normal whose log has SD ``sd``: ``100 sqrt(exp(sd²) − 1)``."""
    return float(100 * np.sqrt(np.expm1(sd**2)))


def summarise_parameters(
    fit: Fit, ci_prob: float = CI_PROB, prior_overlap: dict[str, float] | None = None
) -> ParameterTable:
    """Rows of :meth:`Fit.summary` with units, the interval bounds under fixed names, %CV.

    ``prior_overlap`` (per row name) fills the overlap column where given.
    """
    table = fit.summary(ci_prob=ci_prob)
    lower, median, upper = table.columns[2:5]  # the quantile columns, named by their level
    units = fit.events.units.as_dict()
    overlap = prior_overlap or {}

    def cv(name: object, value: float) -> float | None:
        return log_sd_cv(value) if str(name).startswith(("omega_", "tau_")) else None

    rows = tuple(
        ParameterRow(
            parameter=str(name),
            unit=population_unit(str(name), fit.cards, units),
            cv_lower=cv(name, float(row[lower])),
            cv_median=cv(name, float(row[median])),
            cv_upper=cv(name, float(row[upper])),
            prior_overlap=overlap.get(str(name)),
            mean=float(row["mean"]),
            sd=float(row["sd"]),
            lower=float(row[lower]),
            median=float(row[median]),
            upper=float(row[upper]),
            ess_bulk=_optional(row.get("ess_bulk")),
            ess_tail=_optional(row.get("ess_tail")),
            r_hat=_optional(row.get("r_hat")),
        )
        for name, row in table.iterrows()
    )
    return ParameterTable(ci_prob=ci_prob, rows=rows)


def summarise_shrinkage(fit: Fit) -> tuple[Shrinkage, xr.Dataset | None]:
    """η-shrinkage (and the dataset behind it, for its figure) and ε-shrinkage."""
    has_iiv = any(str(v).startswith("eta_") for v in fit.posterior.data_vars)
    eta = diagnostics.eta_shrinkage(fit.tree) if has_iiv else None
    rows = (
        tuple(
            ShrinkageRow(
                parameter=str(p),
                omega=float(eta["omega"].sel(parameter=p)),
                shrinkage=float(eta["shrinkage"].sel(parameter=p)),
                cv_percent=log_sd_cv(float(eta["omega"].sel(parameter=p))),
            )
            for p in eta["parameter"].values
        )
        if eta is not None
        else ()
    )
    epsilon = diagnostics.epsilon_shrinkage(fit.tree)
    values = {str(d): float(epsilon.sel(dvid=d)) for d in epsilon["dvid"].values}
    return Shrinkage(eta=rows, epsilon=values), eta


def summarise_loo(fit: Fit) -> tuple[tuple[LooRow, ...], tuple[str, ...]]:
    """PSIS-LOO per observation type and for all observations together, and its warnings."""
    table = diagnostics.loo_summary(fit.tree)
    rows = tuple(
        LooRow(
            dvid=str(name),
            elpd=float(row["elpd"]),
            se=float(row["se"]),
            p_loo=float(row["p_loo"]),
            n=int(row["n"]),
            good_k=float(row["good_k"]),
            n_bad_k=int(row["n_bad_k"]),
        )
        for name, row in table.iterrows()
    )
    return rows, tuple(diagnostics.loo_warnings(table))


def encode_figure(
    plot: PlotCollection | MplFigure, section: FigureSection, title: str, caption: str
) -> Figure:
    """Render a plot to PNG and close it: a report holds dozens, matplotlib keeps them all."""
    figure = plot.viz["figure"].item() if isinstance(plot, PlotCollection) else plot
    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, **SAVEFIG)
    finally:
        plt.close(figure)
    return Figure(
        section=section,
        title=title,
        caption=caption,
        png_base64=base64.b64encode(buffer.getvalue()).decode("ascii"),
    )


def observation_figures(fit: Fit, dvid: str, *, progress: bool = True) -> list[Figure]:
    """Draw the VPC, pcVPC (where PRED allows), GOF panels and individual fits of one DVID."""
    figures = []
    new_subjects = "predictions" in fit.tree.children
    group = "predictions" if new_subjects else "posterior_predictive"
    replicates = (
        "new subjects simulated from the population posterior"
        if new_subjects
        else "the fitted subjects re-simulated with their own η (narrower than a true VPC)"
    )
    # PRED as stored at fit time; Bergstrand's correction divides by it, so the pcVPC
    # leaves out the observations where it is 0 (pre-dose samples)
    pred = diagnostics.population_prediction(fit.tree, dvid)
    with _step(f"VPC and pcVPC of {dvid}", progress):
        for corrected in (False, True) if pred is not None else (False,):
            check = diagnostics.vpc(fit.tree, [dvid], group=group, prediction_corrected=corrected)
            kind = "prediction-corrected VPC" if corrected else "VPC"
            caption = (
                f"Observed 5th, 50th and 95th percentiles per time bin (points) against the "
                f"{100 * check.attrs['ci_prob']:g}% interval of the same percentiles over "
                f"replicates of {replicates} (shaded; dashed: median)."
            )
            if corrected:
                caption += " Values scaled by PRED_bin / PRED (Bergstrand et al. 2011)."
                if left_out := check.attrs["n_left_out"]:
                    caption += (
                        f" {left_out} observation(s) where PRED is 0 (before the first dose) "
                        "are left out: the correction is undefined there."
                    )
            figures.append(
                encode_figure(diagnostics.plot_vpc(check), "vpc", f"{kind}: {dvid}", caption)
            )
    with _step(f"goodness of fit of {dvid}", progress):
        gof = diagnostics.goodness_of_fit(fit.tree, dvid)
        figures.append(
            encode_figure(
                diagnostics.plot_goodness_of_fit(gof),
                "gof",
                f"Goodness of fit: {dvid}",
                "Observations against PRED (η = 0) and IPRED (posterior median), and IWRES "
                "against time and IPRED; BLQ observations left out.",
            )
        )
    with _step(f"NPDE of {dvid}", progress):
        discrepancies = diagnostics.npde(fit.tree, dvid, group=group, num_draws=NPDE_DRAWS)
        tests = discrepancies.attrs
        figures.append(
            encode_figure(
                diagnostics.plot_npde(discrepancies, pred=pred),
                "npde",
                f"NPDE: {dvid}",
                f"Normalised prediction distribution errors (Brendel et al. 2006; "
                f"decorrelated within subject) from {tests['n_replicates']} replicates of "
                f"{replicates}: N(0, 1) when the model is right (dotted: 0 and ±1.96). "
                f"Mean {tests['mean']:.2f} (t-test p = {tests['p_mean']:.2g}), variance "
                f"{tests['variance']:.2f} (p = {tests['p_variance']:.2g}), Shapiro-Wilk "
                f"p = {tests['p_normal']:.2g}; global p = {tests['p_global']:.2g}. BLQ "
                "observations left out. CWRES are not computed: they linearise the model "
                "around the FOCE estimates; NPDE are their simulation-based counterpart.",
            )
        )
    with _step(f"individual fits of {dvid}", progress):
        subjects = diagnostics.observations(fit.tree, dvid)["subject"].values.tolist()
        chosen = list(dict.fromkeys(subjects))[:INDIVIDUAL_PANELS]
        points = INDIVIDUAL_GRID_POINTS["conc" if dvid == "conc" else "response"]
        frame = fit.events.frame
        shown = read_events(frame[frame["ID"].isin(chosen)], units=fit.events.units.as_dict())
        dense = predict(
            shown,
            fit=fit,
            grid_points=points,
            draws=INDIVIDUAL_DRAWS,
            ci_prob=CI_PROB,
            dvids=[dvid],
            pred=False,
        )
        panels = diagnostics.individual_fits(
            fit.tree, dvid, subjects=chosen, ci_prob=CI_PROB, predictions=dense
        )
        semi_log = dvid == "conc"  # PK read semi-log: log-linear phases are straight
        figures.append(
            encode_figure(
                diagnostics.plot_individual_fits(panels, log_y=semi_log),
                "individual",
                f"Individual fits: {dvid}",
                f"The first {len(chosen)} subjects in data order: observations (points; "
                f"hollow: BLQ at the LLOQ), IPRED posterior median and "
                f"{100 * panels.attrs['ci_prob']:g}% band over {INDIVIDUAL_DRAWS} draws on "
                f"{points} times from each subject's first to last record"
                + ("; log scale." if semi_log else "."),
            )
        )
    return figures


def summarise_trial(design: TrialDesign) -> TrialSummary:
    """Name the trial's arms and endpoints."""
    arms = tuple(
        f"{arm.name}: {arm.agonist} ({arm.route}), titration '{arm.titration}'"
        + (", placebo" if arm.placebo else "")
        + (f" — {arm.description}" if arm.description else "")
        for arm in design.arms
    )
    endpoints = tuple(
        endpoint.name + (f": {endpoint.description}" if endpoint.description else "")
        for endpoint in design.endpoints
    )
    return TrialSummary(
        name=design.name,
        description=design.description,
        arms=arms,
        endpoints=endpoints,
        sources=design.sources,
    )


def build_payload(
    fit: Fit,
    *,
    trial: TrialDesign | None = None,
    comparison: xr.DataTree | xr.Dataset | None = None,
    title: str | None = None,
    progress: bool = True,
) -> ReportPayload:
    """Compute every table and figure of a fit report.

    Parameters
    ----------
    fit
        The fit.
    trial
        The trial design that ``comparison`` simulates, described in the report.
    comparison
        Trial comparison (from ``tpopk.compare``, or any Dataset): every variable is
        tabulated (see :func:`comparison_tables`), its attrs listed as settings.
    title
        Report title; default names the model card(s).
    progress
        Print each step and its duration (s) on stderr.

    Returns
    -------
    ReportPayload
        Frozen content of the report.
    """
    names = " + ".join(card.name for card in fit.cards)
    with _step("data, model cards and parameter table", progress):
        data = summarise_data(fit)
        cards = tuple(summarise_card(card) for card in fit.cards)
    with _step("prior draws and prior-posterior overlap", progress):
        population = population_variables(fit.tree)
        prior = diagnostics.prior_draws(fit.model, population, draws=PRIOR_DRAWS)
        overlap = diagnostics.prior_posterior_overlap(prior, fit.posterior[population])
        parameters = summarise_parameters(fit, prior_overlap=overlap)
    figures = []
    with _step("convergence and rank plots", progress):
        convergence = summarise_convergence(fit)
        if not fit.approximate:  # ranks across chains: meaningless for independent draws
            figures.append(
                encode_figure(
                    diagnostics.plot_convergence(fit.tree),
                    "convergence",
                    "Rank plots",
                    "Rank of each draw among all chains, per chain and parameter: uniform and "
                    "overlapping when the chains mixed.",
                )
            )
    with _step("shrinkage", progress):
        shrinkage, eta = summarise_shrinkage(fit)
        if eta is not None:
            figures.append(
                encode_figure(
                    diagnostics.plot_eta_shrinkage(eta),
                    "shrinkage",
                    "η-shrinkage",
                    "Posterior-mean η per subject against the N(0, ω) the IIV model implies.",
                )
            )
    with _step("PSIS-LOO and LOO-PIT", progress):
        loo, loo_warnings = summarise_loo(fit)
        figures.append(
            encode_figure(
                diagnostics.plot_loo_pit(fit.tree),
                "loo",
                "LOO-PIT",
                "Empirical CDF of the leave-one-out probability integral transforms "
                "P(y_rep ≤ y | the other observations), minus the uniform CDF (Δ ECDF), per "
                "observation type: near 0 when the predictive distributions are calibrated. "
                "p: simultaneous test of uniformity; highlighted points lie outside its "
                "envelope. A hump (∩) means predictive distributions too narrow, a dip (∪) "
                "too wide; one-sided, biased.",
            )
        )
    for dvid in diagnostics.observation_types(fit.tree):
        figures += observation_figures(fit, dvid, progress=progress)
    with _step("trial comparison", progress):
        tables = comparison_tables(comparison) if comparison is not None else ()
        if isinstance(comparison, xr.DataTree) and (forest := plot_contrasts(comparison)):
            level = comparison.attrs.get("ci_prob", "")
            figures.append(
                encode_figure(
                    forest,
                    "comparison",
                    "Contrasts between arms",
                    "Posterior median difference of each endpoint between two arms (point) "
                    f"and its {100 * float(level):g}% credible interval (line), "
                    "each pair once; P(better) is the posterior probability that the first "
                    "arm is better (higher responders, lower overshoot and time to response)."
                    if level != ""
                    else "Posterior median difference between arms and its credible interval.",
                )
            )
    posterior = fit.posterior
    return ReportPayload(
        title=title or f"tpopk fit report: {names}",
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        tpopk_version=tpopk.__version__,
        inference_method=fit.method,
        approximate=fit.approximate,
        chains=int(posterior.sizes["chain"]),
        draws=int(posterior.sizes["draw"]),
        data=data,
        cards=cards,
        convergence=convergence,
        parameters=parameters,
        shrinkage=shrinkage,
        loo=loo,
        loo_warnings=loo_warnings,
        figures=tuple(figures),
        trial=summarise_trial(trial) if trial is not None else None,
        comparison=tables,
        comparison_settings=(
            {str(k): str(v) for k, v in comparison.attrs.items()} if comparison is not None else {}
        ),
    )
