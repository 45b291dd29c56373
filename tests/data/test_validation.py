"""Every malformed-input class: a broken CSV on disk, and the message that names it.

Each case edits a small valid dataset (``BASE``) so that exactly one rule breaks, then
checks the violation's rule, row (CSV line, header = 1), column and expectation, and
that the printed message carries them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from tpopk.data import EventDataError, Violation, read_events

HEADER = "ID,TIME,EVID,AMT,DV,CMT,MDV"
BASE = [  # CSV lines 2-6
    "1,0,1,100,.,1,1",
    "1,1,0,0,5.2,2,0",
    "1,2,0,0,4.1,2,0",
    "2,0,1,100,.,1,1",
    "2,1,0,0,6.0,2,0",
]


def edited(
    replace: dict[int, str] | None = None,
    header: str = HEADER,
    extra: tuple[str, ...] = (),
    column: tuple[str, str] | None = None,
) -> str:
    """BASE with lines replaced by CSV line number, extra lines, or a column appended."""
    lines = [header, *BASE, *extra]
    if column is not None:
        name, values = column
        cells = values.split("|")
        lines = [f"{lines[0]},{name}"] + [f"{x},{c}" for x, c in zip(lines[1:], cells, strict=True)]
    for line, text in (replace or {}).items():
        lines[line - 1] = text
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Case:
    rule: str
    text: str
    row: int | None
    column: str | None
    expected: str
    value: str | None = None
    units: dict[str, str] | None = None
    also: frozenset[str] = field(default_factory=frozenset)  # rules that follow necessarily


RATE_HEADER = HEADER + ",RATE,II,ADDL,SS"


def dosing(dose_line: str) -> str:
    """BASE with dosing items; line 2 replaced by ``dose_line``."""
    rows = [f"{r},0,0,0,0" for r in BASE]
    return "\n".join([RATE_HEADER, dose_line, *rows[1:]]) + "\n"


def separated(delimiter: str) -> Case:
    """BASE written with another column separator."""
    lines = [line.replace(",", delimiter) for line in edited().splitlines()]
    expected = f"comma-separated columns (this header looks {delimiter!r}-separated)"
    return Case("wrong-delimiter", "\n".join(lines) + "\n", 1, None, expected, lines[0])


CASES = {
    "semicolon-separated": separated(";"),
    "tab-separated": separated("\t"),
    "whitespace-separated": separated(" "),
    "empty file": Case("empty-file", "", 1, None, "a header line"),
    "header only": Case("no-records", HEADER + "\n", 2, None, "at least one data record"),
    "ragged row": Case(
        "ragged-row", edited({3: "1,1,0,0,5.2,2"}), 3, None, "7 fields", value="6 fields"
    ),
    "duplicate column after case folding": Case(
        "duplicate-column",
        edited(header="ID,TIME,EVID,AMT,DV,CMT,time"),
        1,
        "TIME",
        "unique after upper-casing",
        value="time",
    ),
    "blank column name": Case(
        "blank-column-name", edited(column=("", "||||")), 1, "#8", "name a column", ""
    ),
    "missing required column": Case(
        "missing-column",
        edited(header="ID,TIME,EVID,AMT,DX,CMT,MDV"),
        1,
        "DV",
        "a column named DV",
    ),
    "non-numeric value": Case(
        "non-numeric", edited({3: "1,one,0,0,5.2,2,0"}), 3, "TIME", "a finite number", "one"
    ),
    "infinite value": Case(
        "non-numeric", edited({3: "1,1,0,0,inf,2,0"}), 3, "DV", "a finite number", "inf"
    ),
    "non-integer CMT": Case(
        "non-integer", edited({3: "1,1,0,0,5.2,2.5,0"}), 3, "CMT", "a whole number", "2.5"
    ),
    "NaN in required field": Case(
        "missing-value", edited({3: "1,1,0,0,5.2,.,0"}), 3, "CMT", "a value in CMT", "missing"
    ),
    "ID in two blocks": Case(
        "id-not-contiguous",
        edited(extra=("1,3,0,0,3.0,2,0",)),
        7,
        "ID",
        "all records of ID 1 in one block (it already began at row 2)",
        "1",
    ),
    "negative TIME": Case(
        "negative-time", edited({2: "1,-1,1,100,.,1,1"}), 2, "TIME", "TIME ≥ 0", "-1"
    ),
    "decreasing TIME within ID": Case(
        "decreasing-time", edited({4: "1,0.5,0,0,4.1,2,0"}), 4, "TIME", "not below", "0.5"
    ),
    "unknown EVID": Case(
        "unknown-evid", edited({3: "1,1,5,0,5.2,2,0"}), 3, "EVID", "EVID 0 (obs), 1", "5"
    ),
    "MDV not 0/1": Case("mdv-value", edited({3: "1,1,0,0,5.2,2,2"}), 3, "MDV", "MDV 0 or 1", "2"),
    "MDV 0 on a dose": Case(
        "mdv-evid-mismatch", edited({2: "1,0,1,100,.,1,0"}), 2, "MDV", "MDV 1 on records", "0"
    ),
    "dose row without AMT": Case(
        "dose-without-amt", edited({2: "1,0,1,.,.,1,1"}), 2, "AMT", "AMT > 0 on a dose", "missing"
    ),
    "negative AMT": Case(
        "negative-amt", edited({2: "1,0,1,-100,.,1,1"}), 2, "AMT", "AMT ≥ 0", "-100"
    ),
    "AMT on an observation": Case(
        "dosing-item-off-dose", edited({3: "1,1,0,50,5.2,2,0"}), 3, "AMT", "AMT 0 or missing", "50"
    ),
    "modelled RATE -2": Case(
        "modelled-rate", dosing("1,0,1,100,.,1,1,-2,0,0,0"), 2, "RATE", "modelled rate (-1)", "-2"
    ),
    "negative RATE": Case(
        "negative-rate", dosing("1,0,1,100,.,1,1,-5,0,0,0"), 2, "RATE", "RATE 0 (bolus)", "-5"
    ),
    "RATE inconsistent with AMT": Case(
        "rate-without-amt",
        dosing("1,0,1,0,.,1,1,10,0,0,0"),
        2,
        "RATE",
        "an infusion RATE with AMT > 0",
        "10",
        also=frozenset({"dose-without-amt"}),
    ),
    "negative II": Case(
        "negative-ii", dosing("1,0,1,100,.,1,1,0,-24,2,0"), 2, "II", "II ≥ 0", "-24"
    ),
    "II without ADDL or SS": Case(
        "ii-without-addl-ss", dosing("1,0,1,100,.,1,1,0,24,0,0"), 2, "II", "ADDL > 0 or SS", "24"
    ),
    "ADDL without II": Case(
        "addl-without-ii", dosing("1,0,1,100,.,1,1,0,0,3,0"), 2, "II", "II > 0 when ADDL", "0"
    ),
    "negative ADDL": Case(
        "negative-addl", dosing("1,0,1,100,.,1,1,0,0,-1,0"), 2, "ADDL", "ADDL ≥ 0", "-1"
    ),
    "unknown SS": Case(
        "unknown-ss", dosing("1,0,1,100,.,1,1,0,24,0,3"), 2, "SS", "SS 0, 1 or 2", "3"
    ),
    "SS with II = 0": Case(
        "ss-without-ii", dosing("1,0,1,100,.,1,1,0,0,0,1"), 2, "II", "II > 0 on a steady", "0"
    ),
    "SS infusion longer than II": Case(
        "ss-infusion-longer-than-ii",
        dosing("1,0,1,100,.,1,1,5,12,0,1"),
        2,
        "RATE",
        "AMT/RATE ≤ II",
        "5",
    ),
    "dose into CMT 0": Case(
        "cmt-not-positive", edited({2: "1,0,1,100,.,0,1"}), 2, "CMT", "CMT ≥ 1 on a dose", "0"
    ),
    "observation into negative CMT": Case(
        "cmt-not-positive", edited({3: "1,1,0,0,5.2,-2,0"}), 3, "CMT", "CMT ≥ 0", "-2"
    ),
    "observation without DV and MDV 0": Case(
        "dv-missing", edited({3: "1,1,0,0,.,2,0"}), 3, "DV", "set MDV 1 to skip", "missing"
    ),
    "negative DV for a count": Case(
        "negative-dv",
        edited(column=("DVID", ".|plt|plt|.|plt"), replace={3: "1,1,0,0,-3,2,0,plt"}),
        3,
        "DV",
        "DV ≥ 0",
        "-3",
    ),
    "unknown DVID": Case(
        "unknown-dvid", edited(column=("DVID", ".|1|9|.|1")), 4, "DVID", "1 conc, 2 plt", "9"
    ),
    "named response without its unit": Case(
        "undeclared-response",
        edited(column=("DVID", ".|1|pca|.|1")),
        4,
        "DVID",
        "the unit of response 'pca' declared",
        "pca",
    ),
    "DVID missing on an observation": Case(
        "missing-dvid",
        edited(column=("DVID", ".|conc|.|.|conc")),
        4,
        "DVID",
        "a DVID on every",
        "missing",
    ),
    "BLQ flag without LLOQ": Case(
        "blq-without-lloq", edited(column=("BLQ", "0|0|1|0|0")), 4, "LLOQ", "an LLOQ on every"
    ),
    "BLQ not 0/1": Case(
        "blq-value", edited(column=("BLQ", "0|0|2|0|0")), 4, "BLQ", "BLQ 0 or 1", "2"
    ),
    "negative LLOQ": Case(
        "negative-lloq", edited(column=("LLOQ", ".|-0.1|0.1|.|0.1")), 3, "LLOQ", "LLOQ ≥ 0", "-0.1"
    ),
    "subject with no observations": Case(
        "no-observations", edited(extra=("3,0,1,100,.,1,1",)), 7, "ID", "for ID 3", "3"
    ),
    "duplicate rows": Case(
        "duplicate-row", edited({4: "1,1,0,0,5.2,2,0"}), 4, None, "each record once (same as row 3)"
    ),
    "unknown AGONIST": Case(
        "unknown-agonist",
        edited(column=("AGONIST", "aspirin|.|.|eltrombopag|.")),
        2,
        "AGONIST",
        "one of avatrombopag, eltrombopag",
        "aspirin",
    ),
    "dose without AGONIST": Case(
        "missing-agonist",
        edited(column=("AGONIST", ".|.|.|Eltrombopag|.")),
        2,
        "AGONIST",
        "an AGONIST on every dose",
        "missing",
    ),
    "constant covariate changes": Case(
        "covariate-not-constant",
        edited(column=("SPLENECTOMY", "0|0|1|1|1")),
        4,
        "SPLENECTOMY",
        "constant within ID 1 (it was 0)",
        "1",
    ),
    "non-positive weight": Case(
        "covariate-not-positive", edited(column=("WT", "70|70|0|80|80")), 4, "WT", "WT > 0", "0"
    ),
    "flag covariate not 0/1": Case(
        "covariate-flag", edited(column=("EAST_ASIAN", "1|1|1|2|.")), 5, "EAST_ASIAN", "0 or 1", "2"
    ),
    "category covariate not whole": Case(
        "covariate-category",
        edited(column=("HEPATIC", "0|0|0|1.5|1")),
        5,
        "HEPATIC",
        "whole",
        "1.5",
    ),
    "unknown unit string": Case(
        "unknown-unit",
        edited(),
        None,
        "units[AMT]",
        "one of ng, µg, mg",
        "furlong",
        {"AMT": "furlong"},
    ),
    "AMT in a concentration unit": Case(
        "unit-quantity-mismatch",
        edited(),
        None,
        "units[AMT]",
        "not a concentration unit",
        "ng/mL",
        {"AMT": "ng/mL"},
    ),
    "units for a column that does not exist": Case(
        "unknown-unit-key",
        edited(),
        None,
        "units[FOO]",
        "a column of the data",
        "mg",
        {"FOO": "mg"},
    ),
    "µg/kg dose without WT": Case(
        "weight-dose-without-wt", edited(), None, "WT", "a WT column (kg)", None, {"AMT": "ug/kg"}
    ),
    "mass dose with molar concentrations": Case(
        "unit-basis-mismatch",
        edited(),
        None,
        "units[AMT]",
        "both in mass units or both in molar",
        "mg",
        {"conc": "nmol/L"},
    ),
}
# The BLQ/DV consistency case is easier to write out in full.
CASES["DV below LLOQ but BLQ 0"] = Case(
    "blq-inconsistent",
    edited(header=HEADER + ",LLOQ", column=("BLQ", "0|0|0|0|0"), replace={})
    .replace("1,1,0,0,5.2,2,0,0", "1,1,0,0,0.5,2,0,1,0")
    .replace("1,2,0,0,4.1,2,0,0", "1,2,0,0,4.1,2,0,1,0")
    .replace("1,0,1,100,.,1,1,0", "1,0,1,100,.,1,1,.,0")
    .replace("2,0,1,100,.,1,1,0", "2,0,1,100,.,1,1,.,0")
    .replace("2,1,0,0,6.0,2,0,0", "2,1,0,0,6.0,2,0,1,0"),
    3,
    "BLQ",
    "BLQ 1 where DV is below LLOQ",
    "0",
)


def violations_of(path: Path, units: dict[str, str] | None = None) -> tuple[list[Violation], str]:
    with pytest.raises(EventDataError) as caught:
        read_events(path, units=units)
    return caught.value.violations, str(caught.value)


def test_base_dataset_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "base.csv"
    path.write_text(edited())
    events = read_events(path)
    assert len(events.observations) == 3
    assert len(events.doses) == 2


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_is_reported(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    path = tmp_path / "data.csv"
    path.write_text(case.text, encoding="utf-8")
    violations, message = violations_of(path, case.units)
    assert {v.rule for v in violations} <= {case.rule, *case.also}
    (violation,) = [v for v in violations if v.rule == case.rule]
    assert violation.row == case.row
    assert violation.column == case.column
    assert case.expected in violation.expected
    assert violation.value == case.value
    line = next(line for line in message.splitlines() if f"[{case.rule}]" in line)
    where = "file" if case.row is None else f"row {case.row}"
    assert line.strip().startswith(where)
    if case.column is not None:
        assert f"column {case.column}" in line
    assert case.expected in line


def test_every_violation_in_one_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text(
        edited(
            {
                2: "1,0,1,-100,.,1,1",  # negative AMT
                3: "1,1,7,0,5.2,2,0",  # unknown EVID
                5: "2,0,1,100,.,0,1",  # dose into CMT 0
                6: "2,-1,0,0,6.0,2,0",  # negative and decreasing time
            }
        )
    )
    violations, message = violations_of(path)
    found = [(v.row, v.rule) for v in violations]
    assert found == [
        (2, "negative-amt"),
        (3, "unknown-evid"),
        (5, "cmt-not-positive"),
        (6, "negative-time"),
        (6, "decreasing-time"),
    ]
    assert message.splitlines()[0].startswith("5 problem(s) in ")
    assert "header = row 1" in message.splitlines()[0]
    assert len(message.splitlines()) == 6


def test_dataframe_rows_are_numbered_like_their_csv(tmp_path: Path) -> None:
    frame = pd.read_csv(io.StringIO(edited({4: "1,0.5,0,0,4.1,2,0"})))
    with pytest.raises(EventDataError) as caught:
        read_events(frame)
    (violation,) = caught.value.violations
    assert (violation.rule, violation.row) == ("decreasing-time", 4)
    assert caught.value.source == "DataFrame"


def test_missing_file_is_a_violation_not_a_traceback(tmp_path: Path) -> None:
    violations, message = violations_of(tmp_path / "absent.csv")
    assert [v.rule for v in violations] == ["unreadable-file"]
    assert "absent.csv" in message


def test_broken_units_sidecar_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "study.csv"
    path.write_text(edited())
    (tmp_path / "study.units.toml").write_text('AMT = "mg\n')
    violations, _ = violations_of(path)
    assert [(v.rule, v.column) for v in violations] == [
        ("bad-units-file", "units file study.units.toml")
    ]
