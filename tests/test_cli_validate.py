"""``tpopk validate``: exit 0 with a summary, or exit 2 with every violation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tpopk.cli import main

GOOD = "ID,TIME,EVID,AMT,DV\n1,0,1,100,.\n1,1,0,0,5\n2,0,1,100,.\n2,2,0,0,4\n"


def test_valid_file_exits_0_with_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.csv"
    path.write_text(GOOD)
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "2 subjects, 2 doses (2 dose records, 0 steady state), 2 observations (conc 2)" in out
    assert err == ""


def test_invalid_file_exits_2_listing_every_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(GOOD.replace("1,1,0,0,5", "1,1,0,0,-5").replace("2,2,0,0,4", "2,2,9,0,4"))
    assert main(["validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith("3 problem(s) in ")
    assert "row 3, column DV: found '-5'; expected DV ≥ 0" in lines[1]
    assert "row 4, column ID: found '2'" in lines[2]
    assert "no-observations" in lines[2]
    assert "row 5, column EVID: found '9'" in lines[3]
    assert "Traceback" not in err


def test_missing_file_exits_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(tmp_path / "nowhere.csv")]) == 2
    err = capsys.readouterr().err
    assert "unreadable-file" in err
    assert "Traceback" not in err
