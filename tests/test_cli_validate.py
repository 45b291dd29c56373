"""``tpopk validate``: exit 0 with a summary, or exit 2 with every violation."""

from __future__ import annotations

from pathlib import Path

import pytest

from tpopk.cli import main

GOOD = "ID,TIME,EVID,AMT,DV\n1,0,1,100,.\n1,1,0,0,5\n2,0,1,100,.\n2,2,0,0,4\n"
UNITS = 'TIME = "h"\nAMT = "mg"\nconc = "ng/mL"\n'


def test_valid_file_exits_0_with_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.csv"
    path.write_text(GOOD)
    (tmp_path / "good.units.toml").write_text(UNITS)
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


@pytest.mark.parametrize("command", ["validate", "fit"])
def test_units_are_never_assumed(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # without a sidecar, a file in mg/L would be read as ng/mL and fit 1000-fold wrong
    path = tmp_path / "good.csv"
    path.write_text(GOOD)
    (tmp_path / "good.units.toml").write_text('TIME = "h"\n')
    args = [command, str(path)]
    if command == "fit":
        model = Path(__file__).parents[1] / "models" / "generic" / "oral_1cmt.toml"
        args += ["--model", str(model), "--out", str(tmp_path / "fit.nc")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "column units[AMT]: expected its unit declared" in err
    assert "units[conc]" in err
    assert "units[TIME]" not in err
    assert "undeclared-unit" in err
    assert not (tmp_path / "fit.nc").exists()


def test_bundled_theophylline_file_validates(capsys: pytest.CaptureFixture[str]) -> None:
    # as published by rxode2: EVID 101 is a bolus into CMT 1; units in the sidecar
    path = Path(__file__).parents[1] / "src" / "tpopk" / "datasets" / "theo_sd.csv"
    assert main(["validate", str(path)]) == 0
    assert "12 subjects, 12 doses" in capsys.readouterr().out


def test_rxode2_bolus_into_another_compartment_than_cmt_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rx.csv"
    path.write_text("ID,TIME,EVID,AMT,DV,CMT\n1,0,201,100,.,1\n1,1,0,0,5,2\n")
    (tmp_path / "rx.units.toml").write_text(UNITS)
    assert main(["validate", str(path)]) == 2
    assert "row 2, column EVID: found '201'" in capsys.readouterr().err


def test_one_systematic_error_in_a_large_file_is_grouped_and_capped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"{i},0,1,100,.\n{i},1,0,0,-5\n" for i in range(1, 5001)]
    path = tmp_path / "big.csv"
    path.write_text("ID,TIME,EVID,AMT,DV\n" + "".join(rows) + "5001,0,1,-1,.\n5001,1,0,0,1\n")
    (tmp_path / "big.units.toml").write_text(UNITS)
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) < 20
    assert "5001 problem(s)" in lines[0]
    assert "[negative-dv] 5000 problem(s)" in lines[1]
    assert lines[2].strip().startswith("row 3, column DV: found '-5'")
    assert "... and 4995 more" in lines[7]
    assert any("row 10002, column AMT" in line for line in lines[8:])


RXODE2_INFUSION = (
    "ID,TIME,EVID,AMT,RATE,DV,CMT\n"
    "1,0,10101,50,50,.,1\n1,1,0,0,0,5,2\n1,2,10101,-50,-50,.,1\n1,3,0,0,0,4,2\n"
)


def test_rxode2_infusion_start_and_stop_read_as_one_nonmem_infusion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tpopk.data import read_events

    path = tmp_path / "rx.csv"
    path.write_text(RXODE2_INFUSION)
    (tmp_path / "rx.units.toml").write_text(UNITS)
    frame = read_events(path, require_units=True).frame
    start, stop = frame[frame["TIME"] == 0].iloc[0], frame[frame["TIME"] == 2].iloc[0]
    # 50 per hour from 0 to 2 h: NONMEM's EVID 1 with RATE 50 and AMT 100 into CMT 1
    assert (start["EVID"], start["AMT"], start["RATE"], start["CMT"]) == (1, 100.0, 50.0, 1)
    assert (stop["EVID"], stop["AMT"], stop["RATE"]) == (2, 0.0, 0.0)
    assert main(["validate", str(path)]) == 0
    assert "1 subjects, 1 doses" in capsys.readouterr().out


def test_rxode2_infusion_without_its_stop_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rx.csv"
    path.write_text("ID,TIME,EVID,AMT,RATE,DV,CMT\n1,0,10101,50,50,.,1\n1,1,0,0,0,5,2\n")
    (tmp_path / "rx.units.toml").write_text(UNITS)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "row 2, column EVID: found '10101'" in err
    assert "a start (+RATE) and then a stop (-RATE) for the same ID" in err
