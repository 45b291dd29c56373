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
from typing import TYPE_CHECKING, Literal

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from arviz_plots import PlotCollection
from pydantic import BaseModel, ConfigDict
from pymc_extras.prior import Prior

import tpopk
from tpopk import diagnostics
from tpopk.model.card import LevelSD, ModelCard
from tpopk.progress import step
from tpopk.report.comparison import Table, comparison_tables
from tpopk.simulate import TrialDesign

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
#: Probability of the credible intervals in the parameter table.
CI_PROB = 0.9
#: Posterior draws evaluated for PRED (η = 0), the correction of the pcVPC.
PRED_DRAWS = 100

FigureSection = Literal["convergence", "shrinkage", "vpc", "gof", "individual"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSummary(_Frozen):
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


class PriorRow(_Frozen):
    """One card parameter: how it is estimated, its priors and where they came from."""

    parameter: str
    unit: str
    origin: Literal["estimated", "fixed", "data"]
    prior: str
    iiv: str
    covariates: str
    pooling: str
    source: str


class ResidualRow(_Frozen):
    """The residual-error model of one observation type."""

    dvid: str
    error: str
    priors: str
    source: str


class CardSummary(_Frozen):
    """One model card as the report lists it."""

    name: str
    kind: str
    description: str
    structure: str
    parameters: tuple[PriorRow, ...]
    residuals: tuple[ResidualRow, ...]
    iiv_block: str


class ChainRow(_Frozen):
    """Sampler health of one chain."""

    chain: int
    draws: int
    divergences: int
    bfmi: float


class Convergence(_Frozen):
    """Per-chain sampler statistics and the plain-language warnings of the whole fit."""

    chains: tuple[ChainRow, ...]
    warnings: tuple[str, ...]


class ParameterRow(_Frozen):
    """Posterior summary of one population parameter (one row of :meth:`Fit.summary`)."""

    parameter: str
    mean: float
    sd: float
    lower: float
    median: float
    upper: float
    ess_bulk: float | None
    ess_tail: float | None
    r_hat: float | None


class ParameterTable(_Frozen):
    """The population parameters with equal-tailed ``ci_prob`` intervals."""

    ci_prob: float
    rows: tuple[ParameterRow, ...]


class ShrinkageRow(_Frozen):
    """η-shrinkage of one parameter with IIV (fraction, 0 none to 1 total)."""

    parameter: str
    omega: float
    shrinkage: float


class Shrinkage(_Frozen):
    """η-shrinkage per parameter and ε-shrinkage per observation type."""

    eta: tuple[ShrinkageRow, ...]
    epsilon: dict[str, float]


class LooRow(_Frozen):
    """PSIS-LOO of one observation type (or ``all``)."""

    dvid: str
    elpd: float
    se: float
    p_loo: float
    n: int
    good_k: float
    n_bad_k: int


class Figure(_Frozen):
    """A figure as a PNG image, with the section it belongs to."""

    section: FigureSection
    title: str
    caption: str
    png_base64: str


class TrialSummary(_Frozen):
    """The trial design that the comparison simulates."""

    name: str
    description: str
    arms: tuple[str, ...]
    endpoints: tuple[str, ...]
    sources: tuple[str, ...]


class ReportPayload(_Frozen):
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
    comparison_settings: dict[str, str] = {}
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


def summarise_parameters(fit: Fit, ci_prob: float = CI_PROB) -> ParameterTable:
    """Rows of :meth:`Fit.summary` with the interval bounds under fixed names."""
    table = fit.summary(ci_prob=ci_prob)
    lower, median, upper = table.columns[2:5]  # the quantile columns, named by their level
    rows = tuple(
        ParameterRow(
            parameter=str(name),
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
            )
            for p in eta["parameter"].values
        )
        if eta is not None
        else ()
    )
    epsilon = diagnostics.epsilon_shrinkage(fit)
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


def encode_figure(plot: PlotCollection, section: FigureSection, title: str, caption: str) -> Figure:
    """Render a plot to PNG and close it: a report holds dozens, matplotlib keeps them all."""
    figure = plot.viz["figure"].item()
    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
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
    with _step(f"population prediction (PRED) of {dvid}", progress):
        pred = {dvid: fit.population_prediction(dvid, draws=PRED_DRAWS).values}
    # Bergstrand's correction divides by PRED: undefined where PRED is 0 (pre-dose samples)
    undefined = int(np.sum(~(pred[dvid] > 0)))
    with _step(f"VPC and pcVPC of {dvid}", progress):
        for corrected in (False, True) if not undefined else (False,):
            check = diagnostics.vpc(fit, [dvid], group=group, pred=pred if corrected else None)
            kind = "prediction-corrected VPC" if corrected else "VPC"
            caption = (
                f"Observed 5th, 50th and 95th percentiles per time bin (points) against the "
                f"{100 * check.attrs['ci_prob']:g}% interval of the same percentiles over "
                f"replicates of {replicates} (shaded; dashed: median)."
            )
            if corrected:
                caption += " Values scaled by PRED_bin / PRED (Bergstrand et al. 2011)."
            elif undefined:
                caption += (
                    f" No prediction-corrected VPC: PRED is 0 at {undefined} observation(s) "
                    "(e.g. before the first dose), where the correction is undefined."
                )
            figures.append(
                encode_figure(diagnostics.plot_vpc(check), "vpc", f"{kind}: {dvid}", caption)
            )
    with _step(f"goodness of fit of {dvid}", progress):
        gof = diagnostics.goodness_of_fit(fit, dvid, pred=pred)
        figures.append(
            encode_figure(
                diagnostics.plot_goodness_of_fit(gof),
                "gof",
                f"Goodness of fit: {dvid}",
                "Observations against PRED (η = 0) and IPRED (posterior median), and IWRES "
                "against time and IPRED; BLQ observations left out.",
            )
        )
    with _step(f"individual fits of {dvid}", progress):
        subjects = diagnostics.observations(fit, dvid)["subject"].values.tolist()
        chosen = list(dict.fromkeys(subjects))[:INDIVIDUAL_PANELS]
        points = INDIVIDUAL_GRID_POINTS["conc" if dvid == "conc" else "response"]
        panels = diagnostics.individual_fits(
            fit, dvid, subjects=chosen, grid_points=points, draws=INDIVIDUAL_DRAWS
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
        parameters = summarise_parameters(fit)
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
    with _step("PSIS-LOO", progress):
        loo, loo_warnings = summarise_loo(fit)
    for dvid in diagnostics.observation_types(fit.tree):
        figures += observation_figures(fit, dvid, progress=progress)
    with _step("trial comparison", progress):
        tables = comparison_tables(comparison) if comparison is not None else ()
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
