"""write_report: a fit and a trial in, one HTML file out, the comparison simulated by compare."""

from __future__ import annotations

from pathlib import Path

import pytest

import tpopk
from tpopk.report import write_report

from .conftest import MODELS, comparison_tree
from .test_html import check_self_contained, parse

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fits")]


def test_trial_is_compared_and_reported(
    theophylline_fit, tmp_path: Path, monkeypatch, capsys
) -> None:
    calls = []

    def compare(fit, design, **options):
        calls.append((fit, design.name, options))
        return comparison_tree()

    monkeypatch.setattr(tpopk, "compare", compare, raising=False)
    path = write_report(
        theophylline_fit,
        tmp_path / "out" / "report.html",
        trial=MODELS / "trials" / "eltrombopag_itp.toml",
    )
    assert calls == [(theophylline_fit, "eltrombopag_itp", {"progressbar": True})]
    page = parse(path)
    check_self_contained(page, n_figures=len(page.images))
    text = "".join(page.text)
    assert "summary by arm" in text
    assert "Simulation settings: trial = eltrombopag_itp" in text
    assert "responder_week_6: Count >= 50 at week 6" in text  # the design's endpoints
    progress = capsys.readouterr().err
    assert "tpopk report: VPC and pcVPC of conc done" in progress
