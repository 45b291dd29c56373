"""Fit reports: one self-contained HTML page per fit, computed once and then formatted.

:func:`build_payload` computes every table and figure into a frozen
:class:`ReportPayload`; :func:`write_html` formats it. :func:`write_report` does both.

>>> from tpopk.report import write_report  # doctest: +SKIP
>>> write_report(fit, "report.html", trial="models/trials/eltrombopag_itp.toml")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from tpopk.report.html import write_html
from tpopk.report.payload import ReportPayload, build_payload
from tpopk.simulate import TrialDesign, load_trial

if TYPE_CHECKING:
    from tpopk.inference import Fit

__all__ = ["ReportPayload", "build_payload", "write_html", "write_report"]


def write_report(
    fit: Fit,
    path: str | Path,
    *,
    trial: TrialDesign | str | Path | None = None,
    comparison: xr.DataTree | xr.Dataset | None = None,
    progress: bool = True,
) -> Path:
    """Write the HTML report of a fit, with a trial comparison when a trial is given.

    Parameters
    ----------
    fit
        The fit.
    path
        HTML file to write (replaced atomically).
    trial
        Trial design (or its TOML path) to compare the agonists on. Without
        ``comparison``, the comparison is simulated here with ``tpopk.compare``.
    comparison
        An already computed comparison of ``trial`` (``tpopk.compare``'s tree, or any
        Dataset of endpoints); every variable is tabulated.
    progress
        Print each step and its duration on stderr.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    design = trial if isinstance(trial, TrialDesign | None) else load_trial(trial)
    if design is not None and comparison is None:
        import tpopk

        comparison = tpopk.compare(fit, design, progressbar=progress)
    payload = build_payload(fit, trial=design, comparison=comparison, progress=progress)
    return write_html(payload, path)
