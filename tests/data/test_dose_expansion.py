"""ADDL/II expansion and reset bookkeeping against a plain-loop reading of NONMEM's rules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from tpopk.data import expand_doses, read_events

# SEQ, a free covariate, keeps repeated identical events (two resets) from being duplicates.
COLUMNS = ["ID", "TIME", "EVID", "AMT", "DV", "CMT", "MDV", "II", "ADDL", "SS", "SEQ"]
KINDS = ["obs", "dose", "addl", "ss", "ss_addl", "reset", "reset_dose"]


def record(subject: int, time: float, kind: str, amount: float) -> list[float]:
    """One NONMEM record of the given kind (AMT made unique to identify doses)."""
    evid, ii, addl, ss = {
        "obs": (0, 0, 0, 0),
        "dose": (1, 0, 0, 0),
        "addl": (1, 12, 3, 0),
        "ss": (1, 24, 0, 1),
        "ss_addl": (1, 8, 2, 1),
        "reset": (3, 0, 0, 0),
        "reset_dose": (4, 0, 0, 0),
    }[kind]
    dose = evid in (1, 4)
    return [
        subject,
        time,
        evid,
        amount if dose else 0.0,
        1.0 if evid == 0 else math.nan,
        1 if dose else 2,
        0 if evid == 0 else 1,
        ii,
        addl,
        ss,
        amount,
    ]


def reference(frame: pd.DataFrame) -> list[tuple[int, float, float, float]]:
    """(ID, TIME, AMT, UNTIL) of every dose, written as directly as NONMEM states it."""
    out = []
    records = frame.to_dict("records")
    for subject in dict.fromkeys(frame["ID"]):
        mine = [(i, r) for i, r in enumerate(records) if r["ID"] == subject]
        wipes = [
            (i, r["TIME"])
            for i, r in mine
            if r["EVID"] in (3, 4) or (r["EVID"] in (1, 4) and r["SS"] == 1)
        ]
        doses = []
        for i, r in mine:
            if r["EVID"] not in (1, 4):
                continue
            resets = [q["TIME"] for j, q in mine if j > i and q["EVID"] in (3, 4)]
            for k in range(int(r["ADDL"]) + 1):
                time = r["TIME"] + k * r["II"]
                if k > 0 and any(reset <= time for reset in resets):
                    continue  # a reset cancels additional doses not yet given
                if k == 0:  # a wipe later in the file, even at the same time
                    until = min((t for j, t in wipes if j > i), default=math.inf)
                else:
                    until = min((t for _, t in wipes if t >= time), default=math.inf)
                doses.append((int(subject), time, r["AMT"], until))
        out += sorted(doses, key=lambda dose: dose[1])  # stable: file order on ties
    return out


schedules = st.lists(
    st.tuples(st.sampled_from([0.0, 0.5, 6.0, 12.0, 24.0, 30.0]), st.sampled_from(KINDS)),
    min_size=1,
    max_size=12,
)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.lists(schedules, min_size=1, max_size=3))
def test_expansion_matches_plain_reading_of_nonmem(subjects: list[list[tuple[float, str]]]) -> None:
    rows = []
    amount = 1.0
    for subject, events in enumerate(subjects, start=1):
        time = 0.0
        for gap, kind in [*events, (1.0, "obs")]:  # every subject is observed
            time += gap
            rows.append(record(subject, time, kind, amount))
            amount += 1.0
    frame = pd.DataFrame(rows, columns=COLUMNS)
    doses = read_events(frame).doses
    expected = reference(frame)
    assert list(doses["ID"]) == [d[0] for d in expected]
    np.testing.assert_array_equal(doses["TIME"], [d[1] for d in expected])
    np.testing.assert_array_equal(doses["AMT"], [d[2] for d in expected])
    np.testing.assert_array_equal(doses["UNTIL"], [d[3] for d in expected])
    first = doses.groupby("AMT").cumcount().to_numpy() == 0
    assert (doses.loc[~first, "SS"] == 0).all()  # only the record itself is steady state
    assert (doses.loc[~first, "II"] == 0).all()


def test_expand_doses_of_a_frame_without_doses() -> None:
    frame = pd.DataFrame([record(1, 0.0, "obs", 0.0)], columns=COLUMNS)
    assert expand_doses(read_events(frame).frame).empty
