"""Format a :class:`~tpopk.report.payload.ReportPayload` as one self-contained HTML file.

The renderer computes nothing: it escapes and lays out what the payload holds. The page
needs nothing outside itself (inline CSS, figures as ``data:`` URIs, no scripts), so it
can be mailed, archived or opened offline. It is written to a temporary file in the
destination folder and moved into place, so a failure leaves an earlier report intact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from html import escape
from pathlib import Path

from pydantic import BaseModel

from tpopk.files import atomic_write
from tpopk.report.comparison import Cell
from tpopk.report.payload import Figure, FigureSection, ParameterRow, ReportPayload

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1em 2em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #446; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
nav ol { columns: 3; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; max-width: 100%; }
caption { text-align: left; font-weight: bold; padding: .3em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; vertical-align: top; }
th { background: #eef; }
/* a word too long for any column (a URL in a source) may break anywhere */
td.long { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #444; }
.warning { background: #fff3cd; border-left: 4px solid #e0a800; padding: .4em .8em; }
.ok { background: #e7f6e7; border-left: 4px solid #2e7d32; padding: .4em .8em; }
.meta { color: #555; }
"""

#: (heading, id) of each section, in page order.
SECTIONS = (
    ("Data", "data"),
    ("Model", "model"),
    ("Convergence", "convergence"),
    ("Parameters", "parameters"),
    ("Shrinkage", "shrinkage"),
    ("Cross-validation (PSIS-LOO)", "loo"),
    ("Visual predictive checks", "vpc"),
    ("Goodness of fit", "gof"),
    ("Prediction discrepancies (NPDE)", "npde"),
    ("Individual fits", "individual"),
    ("Trial comparison", "comparison"),
)


def _text(value: Cell) -> str:
    """Write a cell as escaped text: numbers to four significant digits, missing as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


#: Words longer than this many characters may break anywhere in a table cell.
LONG_WORD = 30


def _cell(value: Cell) -> str:
    if isinstance(value, int | float):
        return f'<td class="number">{_text(value)}</td>'
    if value is not None and any(len(word) > LONG_WORD for word in str(value).split()):
        return f'<td class="long">{_text(value)}</td>'
    return f"<td>{_text(value)}</td>"


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    caption: str = "",
    note: str = "",
    *,
    scroll: bool = False,
) -> str:
    """Return an HTML table; numeric cells are right-aligned.

    Tables fit the page; ``scroll`` puts one (a trial comparison, a column per endpoint
    statistic) in a box that scrolls sideways where it cannot.
    """
    # variable names are long and unspaced: let them wrap after their underscores
    head = "".join(f'<th scope="col">{escape(c).replace("_", "_<wbr>")}</th>' for c in columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>\n" for row in rows)
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    after = f'<p class="meta">{escape(note)}</p>' if note else ""
    html = f"<table>{title}<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"
    return (f'<div class="scroll">{html}</div>' if scroll else html) + f"{after}\n"


def _records(
    columns: Sequence[tuple[str, str]], records: Sequence[BaseModel], caption: str = ""
) -> str:
    """Table of typed rows: ``columns`` pairs a heading with the field it shows."""
    rows = [tuple(getattr(record, field) for _, field in columns) for record in records]
    return table([heading for heading, _ in columns], rows, caption)


def _figure(figure: Figure) -> str:
    return (
        f'<figure><img alt="{escape(figure.title)}" '
        f'src="data:image/png;base64,{figure.png_base64}">'
        f"<figcaption><b>{escape(figure.title)}.</b> {escape(figure.caption)}</figcaption>"
        "</figure>\n"
    )


def _figures(payload: ReportPayload, section: FigureSection) -> str:
    figures = payload.section_figures(section)
    if not figures:
        return '<p class="meta">No figure: the fit has nothing to show here.</p>\n'
    return "".join(_figure(f) for f in figures)


def _heading(section: str) -> str:
    title = {key: name for name, key in SECTIONS}[section]
    return f'<section id="{section}"><h2>{escape(title)}</h2>\n'


def _data(payload: ReportPayload) -> str:
    data = payload.data
    rows: list[tuple[Cell, ...]] = [
        ("subjects", data.subjects),
        ("event records", data.records),
        ("doses (ADDL expanded)", data.doses),
        *((f"observations: {d}", n) for d, n in data.observations.items()),
        (f"time span ({data.time_unit})", f"{data.time_start:g} to {data.time_end:g}"),
        ("dose unit", data.dose_unit),
        *((f"unit of {d}", u) for d, u in data.units.items()),
        ("agonists", ", ".join(data.agonists) or "none"),
        ("covariates", ", ".join(data.covariates) or "none"),
    ]
    return table(["", "value"], rows)


def _model(payload: ReportPayload) -> str:
    parts = []
    for card in payload.cards:
        parts.append(
            f'<h3>{escape(card.name)} <span class="meta">({escape(card.kind)} card)</span></h3>'
            f"<p>{escape(card.description)}</p><p>Structure: {escape(card.structure)}</p>\n"
        )
        parts.append(
            _records(
                [
                    ("parameter", "parameter"),
                    ("unit", "unit"),
                    ("origin", "origin"),
                    ("prior (typical value)", "prior"),
                    ("IIV (ω)", "iiv"),
                    ("covariates", "covariates"),
                    ("pooling", "pooling"),
                    ("source", "source"),
                ],
                card.parameters,
                "Parameters and priors",
            )
        )
        parts.append(
            _records(
                [
                    ("observation", "dvid"),
                    ("error", "error"),
                    ("priors", "priors"),
                    ("source", "source"),
                ],
                card.residuals,
                "Residual error",
            )
        )
        if card.iiv_block:
            parts.append(f"<p>{escape(card.iiv_block)}</p>\n")
    return "".join(parts)


def _warnings(messages: tuple[str, ...], fine: str) -> str:
    if not messages:
        return f'<p class="ok">{escape(fine)}</p>\n'
    return "<ul>" + "".join(f'<li class="warning">{escape(m)}</li>' for m in messages) + "</ul>\n"


def _convergence(payload: ReportPayload) -> str:
    if payload.approximate:
        return _warnings(payload.convergence.warnings, "")
    advice = _warnings(
        payload.convergence.warnings,
        "No convergence warnings: R-hat ≤ 1.01, bulk and tail ESS ≥ 400, no divergences, "
        "E-BFMI ≥ 0.3.",
    )
    chains = _records(
        [
            ("chain", "chain"),
            ("draws", "draws"),
            ("divergences", "divergences"),
            ("E-BFMI", "bfmi"),
        ],
        payload.convergence.chains,
        "Sampler statistics per chain",
    )
    return advice + chains + _figures(payload, "convergence")


def _cv_text(row: ParameterRow) -> Cell:
    """``32 (21-48)``: the %CV of a log-normal SD at its median and interval bounds."""
    if row.cv_median is None or row.cv_lower is None or row.cv_upper is None:
        return None
    return f"{row.cv_median:.3g} ({row.cv_lower:.3g}–{row.cv_upper:.3g})"


def _parameters(payload: ReportPayload) -> str:
    parameters = payload.parameters
    level = 100 * parameters.ci_prob
    lower, upper = f"{(100 - level) / 2:g}%", f"{(100 + level) / 2:g}%"
    threshold = f"{100 * parameters.prior_dominated:g}%"
    columns = [
        "parameter",
        "unit",
        "mean",
        "sd",
        lower,
        "median",
        upper,
        f"as %CV: median ({level:g}% interval)",
        "prior overlap",
    ]
    caption = f"Population parameters: posterior mean, SD and {level:g}% equal-tailed interval"
    if payload.approximate:
        caption += f" ({payload.inference_method} approximation, not MCMC)"
    else:
        columns += ["ESS bulk", "ESS tail", "R-hat"]
    rows = [
        (
            row.parameter,
            row.unit or "–",
            row.mean,
            row.sd,
            row.lower,
            row.median,
            row.upper,
            _cv_text(row),
            None
            if row.prior_overlap is None
            else f"{100 * row.prior_overlap:.0f}%"
            + (" mainly prior" if row.prior_overlap > parameters.prior_dominated else ""),
            *(() if payload.approximate else (row.ess_bulk, row.ess_tail, row.r_hat)),
        )
        for row in parameters.rows
    ]
    note = (
        "%CV: the coefficient of variation 100·sqrt(exp(ω²) − 1) that a log-normal SD "
        "(omega, tau) implies. Prior overlap: the area shared by the prior and posterior "
        "densities (Garrett & Zeger 2000), 100% when the data say nothing; above "
        f"{threshold} a parameter is informed mainly by its prior."
    )
    flagged = parameters.prior_informed()
    advice = _warnings(
        tuple(
            f"{name}: informed mainly by its prior (prior-posterior overlap above "
            f"{threshold}); the data add little to what the card assumed."
            for name in flagged
        ),
        f"Every population parameter's prior-posterior overlap is at most {threshold}.",
    )
    return table(columns, rows, caption, note) + advice


def _shrinkage(payload: ReportPayload) -> str:
    shrinkage = payload.shrinkage
    eta = _records(
        [
            ("parameter", "parameter"),
            ("ω (posterior mean, SD of log)", "omega"),
            ("ω as %CV", "cv_percent"),
            ("η-shrinkage (fraction)", "shrinkage"),
        ],
        shrinkage.eta,
        "η-shrinkage (above 0.2-0.3, individual estimates carry the prior, not the data)",
    )
    epsilon = table(
        ["observation", "ε-shrinkage (fraction)"],
        list(shrinkage.epsilon.items()),
        "ε-shrinkage (1 − SD of IWRES)",
    )
    return eta + epsilon + _figures(payload, "shrinkage")


def _loo(payload: ReportPayload) -> str:
    table = _records(
        [
            ("observations", "dvid"),
            ("ELPD-LOO (log density)", "elpd"),
            ("SE", "se"),
            ("p_loo (effective parameters)", "p_loo"),
            ("n (observations)", "n"),
            ("Pareto-k threshold", "good_k"),
            ("n above threshold", "n_bad_k"),
        ],
        payload.loo,
        "Expected log predictive density (PSIS-LOO) per observation type and for all",
    )
    return (
        table
        + _warnings(payload.loo_warnings, "Every Pareto k is below its threshold.")
        + _figures(payload, "loo")
    )


def _comparison(payload: ReportPayload) -> str:
    parts = []
    if payload.trial is not None:
        trial = payload.trial
        parts.append(f"<h3>{escape(trial.name)}</h3><p>{escape(trial.description)}</p>\n")
        for heading, items in (("Arms", trial.arms), ("Endpoints", trial.endpoints)):
            listed = "".join(f"<li>{escape(item)}</li>" for item in items)
            parts.append(f"<p>{heading}:</p><ul>{listed}</ul>\n")
        if trial.sources:
            parts.append(f'<p class="meta">Sources: {escape("; ".join(trial.sources))}</p>\n')
    if not payload.comparison:
        parts.append('<p class="meta">No trial comparison was requested for this report.</p>\n')
    if payload.comparison_settings:
        settings = ", ".join(f"{k} = {v}" for k, v in payload.comparison_settings.items())
        parts.append(f'<p class="meta">Simulation settings: {escape(settings)}</p>\n')
    if payload.section_figures("comparison"):
        parts.append(_figures(payload, "comparison"))
    parts += [table(t.columns, t.rows, t.title, t.note, scroll=True) for t in payload.comparison]
    return "".join(parts)


def _draws_origin(payload: ReportPayload) -> str:
    if payload.approximate:
        return f"{payload.draws} draws of a {escape(payload.inference_method)} approximation"
    return f"{payload.chains} chains × {payload.draws} draws"


def html_chunks(payload: ReportPayload) -> Iterator[str]:
    """Yield the report page in document order, one section at a time."""
    yield (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(payload.title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(payload.title)}</h1>\n"
        f'<p class="meta">Created {escape(payload.created)} by tpopk '
        f"{escape(payload.tpopk_version)} from {_draws_origin(payload)}.</p>\n"
        + (
            f'<p class="warning"><strong>Approximate posterior ({escape(payload.inference_method)}'
            "), not MCMC</strong>: for model building; confirm the final model with NUTS.</p>\n"
            if payload.approximate
            else ""
        )
        + "<nav><ol>"
        + "".join(f'<li><a href="#{key}">{escape(name)}</a></li>' for name, key in SECTIONS)
        + "</ol></nav>\n"
    )
    formatters = {
        "data": _data,
        "model": _model,
        "convergence": _convergence,
        "parameters": _parameters,
        "shrinkage": _shrinkage,
        "loo": _loo,
        "vpc": lambda p: _figures(p, "vpc"),
        "gof": lambda p: _figures(p, "gof"),
        "npde": lambda p: _figures(p, "npde"),
        "individual": lambda p: _figures(p, "individual"),
        "comparison": _comparison,
    }
    for _, key in SECTIONS:
        yield _heading(key) + formatters[key](payload) + "</section>\n"
    yield "</body>\n</html>\n"


def write_html(payload: ReportPayload, path: str | Path) -> Path:
    """Write the report page atomically.

    The page goes to a hidden temporary file beside ``path`` and replaces ``path`` only
    once complete, so an error while formatting leaves any earlier report untouched.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    return atomic_write(path, html_chunks(payload))
