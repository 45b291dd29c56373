"""The main job end to end: ``tpopk demo --quick`` writes every file, and they are valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tpopk.demo import QUICK, STUDY_AGONISTS, STUDY_TRIAL, run_demo
from tpopk.inference import Fit
from tpopk.simulate import load_trial


@pytest.mark.slow
def test_quick_demo_writes_fits_reports_and_comparisons(tmp_path: Path) -> None:
    written = run_demo(tmp_path, quick=True)
    assert set(written) == {
        "fit",
        "report",
        "comparison",
        "study_fit",
        "study_comparison",
        "study_report",
    }
    assert all(path.parent == tmp_path and path.stat().st_size > 0 for path in written.values())

    study = Fit.load(written["study_fit"])
    assert set(map(str, study.posterior["agonist"].to_numpy())) == set(STUDY_AGONISTS)
    assert study.posterior.sizes["draw"] == QUICK.study_fit["draws"]

    table = json.loads(written["study_comparison"].read_text())
    arms = {arm.name for arm in load_trial(STUDY_TRIAL).arms}
    assert table["trial"] == load_trial(STUDY_TRIAL).name
    for endpoint in table["endpoints"].values():
        assert set(endpoint["arms"]) == arms

    html = written["study_report"].read_text()
    assert html.count("<img") >= 5  # convergence, parameters, VPC, GOF, individual fits
    for agonist in STUDY_AGONISTS:
        assert agonist in html
