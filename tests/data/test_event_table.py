"""EventTable: NONMEM defaults, dose expansion, arrays, xarray, immutability, writing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tpopk.data import EventDataError, EventTable, read_events, write_events

INF = np.inf

# Subject 1: ADDL/II; subject 2: steady-state infusion with ADDL, then an EVID 4 dose
# that resets; subject 3: ADDL cut short by an EVID 3 reset, an EVID 2 record, a new dose.
SCHEDULE = """\
ID,TIME,EVID,AMT,DV,CMT,MDV,RATE,II,ADDL,SS
1,0,1,100,.,1,1,0,12,3,0
1,1,0,0,5,2,0,0,0,0,0
1,40,0,0,3,2,0,0,0,0,0
2,0,1,50,.,1,1,25,24,1,1
2,30,0,0,2,2,0,0,0,0,0
2,48,4,80,.,1,1,0,0,0,0
2,50,0,0,2,2,0,0,0,0,0
3,0,1,10,.,1,1,0,24,5,0
3,10,0,0,1,2,0,0,0,0,0
3,60,3,0,.,1,1,0,0,0,0
3,61,0,0,.,2,1,0,0,0,0
3,70,2,0,.,1,1,0,0,0,0
3,80,1,20,.,1,1,0,0,0,0
3,90,0,0,0.5,2,0,0,0,0,0
"""

# Written by hand from NONMEM's rules, not computed.
EXPECTED_DOSES = pd.DataFrame(
    [
        # ID, TIME, AMT, RATE, DURATION, CMT, SS, II, EVID, UNTIL
        (1, 0.0, 100.0, 0.0, 0.0, 1, 0, 0.0, 1, INF),
        (1, 12.0, 100.0, 0.0, 0.0, 1, 0, 0.0, 1, INF),
        (1, 24.0, 100.0, 0.0, 0.0, 1, 0, 0.0, 1, INF),
        (1, 36.0, 100.0, 0.0, 0.0, 1, 0, 0.0, 1, INF),
        (2, 0.0, 50.0, 25.0, 2.0, 1, 1, 24.0, 1, 48.0),
        (2, 24.0, 50.0, 25.0, 2.0, 1, 0, 0.0, 1, 48.0),
        (2, 48.0, 80.0, 0.0, 0.0, 1, 0, 0.0, 4, INF),
        (3, 0.0, 10.0, 0.0, 0.0, 1, 0, 0.0, 1, 60.0),
        (3, 24.0, 10.0, 0.0, 0.0, 1, 0, 0.0, 1, 60.0),
        (3, 48.0, 10.0, 0.0, 0.0, 1, 0, 0.0, 1, 60.0),
        (3, 80.0, 20.0, 0.0, 0.0, 1, 0, 0.0, 1, INF),
    ],
    columns=["ID", "TIME", "AMT", "RATE", "DURATION", "CMT", "SS", "II", "EVID", "UNTIL"],
)


@pytest.fixture
def schedule(tmp_path: Path) -> EventTable:
    path = tmp_path / "schedule.csv"
    path.write_text(SCHEDULE)
    return read_events(path)


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_doses_expand_addl_keep_ss_and_honour_resets(schedule: EventTable) -> None:
    pd.testing.assert_frame_equal(schedule.doses, EXPECTED_DOSES, check_dtype=False)
    assert schedule.doses["ID"].dtype == np.int64


def test_observations_are_evid_0_mdv_0_only(schedule: EventTable) -> None:
    obs = schedule.observations
    assert obs["TIME"].tolist() == [1.0, 40.0, 30.0, 50.0, 10.0, 90.0]
    assert set(schedule.frame["EVID"]) == {0, 1, 2, 3, 4}  # every record is kept in the frame


def test_subject_arrays_pad_doses_and_flatten_observations(schedule: EventTable) -> None:
    arrays = schedule.subject_arrays()
    assert arrays.subject_ids.tolist() == [1, 2, 3]
    assert arrays.dose_time.shape == (3, 4)
    np.testing.assert_array_equal(
        arrays.dose_mask, [[True] * 4, [True, True, True, False], [True] * 4]
    )
    np.testing.assert_array_equal(arrays.dose_time[1], [0.0, 24.0, 48.0, 0.0])
    np.testing.assert_array_equal(arrays.dose_amt[1], [50.0, 50.0, 80.0, 0.0])
    np.testing.assert_array_equal(arrays.dose_rate[1], [25.0, 25.0, 0.0, 0.0])
    np.testing.assert_array_equal(arrays.dose_duration[1], [2.0, 2.0, 0.0, 0.0])
    np.testing.assert_array_equal(arrays.dose_ss[1], [1, 0, 0, 0])
    np.testing.assert_array_equal(arrays.dose_ii[1], [24.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(arrays.dose_until[2], [60.0, 60.0, 60.0, INF])
    assert arrays.dose_cmt.dtype == np.int64
    np.testing.assert_array_equal(arrays.obs_subject, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(arrays.obs_dv, [5.0, 3.0, 2.0, 2.0, 1.0, 0.5])
    assert arrays.obs_dvid.tolist() == ["conc"] * 6
    assert np.isnan(arrays.obs_lloq).all()
    assert not arrays.obs_blq.any()


def test_arrays_and_frames_cannot_change_the_table(schedule: EventTable) -> None:
    arrays = schedule.subject_arrays()
    with pytest.raises(ValueError, match="read-only"):
        arrays.dose_amt[0, 0] = 1.0
    frame = schedule.frame
    frame.loc[0, "AMT"] = 1e6
    frame["NEW"] = 1
    doses = schedule.doses
    doses.loc[0, "AMT"] = 1e6
    assert schedule.frame.loc[0, "AMT"] == 100.0
    assert "NEW" not in schedule.frame.columns
    assert schedule.doses.loc[0, "AMT"] == 100.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.units = schedule.units  # type: ignore[misc]


def test_nonmem_defaults_without_evid_mdv_cmt(tmp_path: Path) -> None:
    path = write(tmp_path, "id,time,amt,dv,mdv\n1,0,100,.,1\n1,1,0,4.5,0\n1,2,.,.,1\n1,3,0,3.5,0\n")
    frame = read_events(path).frame
    assert frame["EVID"].tolist() == [1, 0, 2, 0]  # AMT > 0 -> dose; MDV 1 -> other
    assert frame["CMT"].tolist() == [1, 0, 0, 0]  # doses to 1; the rest to the default
    assert frame["DVID"].tolist() == ["", "conc", "", "conc"]
    assert frame["AMT"].tolist() == [100.0, 0.0, 0.0, 0.0]


def test_dvid_codes_and_names_map_to_observation_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ID,TIME,EVID,AMT,DV,DVID\n1,0,1,5,.,.\n1,1,0,0,10,1\n1,1,0,0,150,PLT\n1,2,0,0,140,2.0\n",
    )
    events = read_events(path, units={"1": "ng/mL", "plt": "x10^9/L"})
    assert events.observations["DVID"].tolist() == ["conc", "plt", "plt"]
    assert events.units["conc"] == "ng/mL"
    assert events.units[2] == "10^9/L"
    plt = events.subject_arrays(dvid="plt")
    assert plt.obs_dv.tolist() == [150.0, 140.0]
    assert events.subject_arrays(dvid=1).obs_dv.tolist() == [10.0]


def test_blq_is_read_or_derived_from_lloq(tmp_path: Path) -> None:
    derived = write(
        tmp_path, "ID,TIME,EVID,AMT,DV,LLOQ\n1,0,1,5,.,.\n1,1,0,0,0.05,0.1\n1,2,0,0,2,0.1\n"
    )
    arrays = read_events(derived).subject_arrays()
    assert arrays.obs_blq.tolist() == [True, False]
    assert arrays.obs_lloq.tolist() == [0.1, 0.1]
    flagged = write(  # M3 style: DV may be missing on a BLQ record
        tmp_path, "ID,TIME,EVID,AMT,DV,LLOQ,BLQ\n1,0,1,5,.,.,0\n1,1,0,0,.,0.1,1\n", "m3.csv"
    )
    arrays = read_events(flagged).subject_arrays()
    assert arrays.obs_blq.tolist() == [True]
    assert np.isnan(arrays.obs_dv).all()


def test_agonists_case_insensitive_and_extendable(tmp_path: Path) -> None:
    text = "ID,TIME,EVID,AMT,DV,AGONIST\n1,0,0,0,2,.\n1,0,1,5,.,Eltrombopag\n1,1,0,0,3,.\n"
    events = read_events(write(tmp_path, text))
    assert events.frame["AGONIST"].fillna("-").tolist() == ["-", "eltrombopag", "-"]
    assert events.covariates["AGONIST"].tolist() == ["eltrombopag"]
    assert "agonists: eltrombopag\ncovariates: none" in events.describe()
    generic = write(tmp_path, text.replace("Eltrombopag", "Warfarin"), "generic.csv")
    with pytest.raises(EventDataError, match="unknown-agonist"):
        read_events(generic)
    assert read_events(generic, agonists=["warfarin"]).frame["AGONIST"].iloc[1] == "warfarin"


def test_covariates_are_baseline_values_per_subject(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ID,TIME,EVID,AMT,DV,WT,DISEASE,FED\n"
        "7,0,1,5,.,.,ITP,1\n7,1,0,0,3,70,ITP,0\n7,2,0,0,2,72,ITP,0\n"
        "3,0,1,5,.,55,CLD,0\n3,1,0,0,3,56,CLD,0\n",
    )
    covariates = read_events(path).covariates
    assert covariates.index.tolist() == [7, 3]
    assert covariates["WT"].tolist() == [70.0, 55.0]  # first value given, not the first row
    assert covariates["DISEASE"].tolist() == ["ITP", "CLD"]
    assert covariates["FED"].tolist() == [1.0, 0.0]


def test_units_from_sidecar_aliases_and_explicit_override(tmp_path: Path) -> None:
    path = write(tmp_path, "ID,TIME,EVID,AMT,DV,WT\n1,0,1,50,.,70\n1,1,0,0,3,70\n")
    (tmp_path / "data.units.toml").write_text('[units]\nAMT = "ug/kg"\nconc = "mcg/L"\n')
    events = read_events(path)
    assert (events.units["AMT"], events.units["conc"]) == ("µg/kg", "µg/L")
    assert events.units.dose_per_weight
    assert events.units.rate == "µg/kg/h"
    assert read_events(path, units={"TIME": "hr"}).units.as_dict()["AMT"] == "mg"


def test_steady_state_constant_infusion_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "ID,TIME,EVID,AMT,DV,RATE,II,SS\n1,0,1,0,.,10,0,1\n1,5,0,0,3,0,0,0\n")
    dose = read_events(path).doses.iloc[0]
    assert (dose["AMT"], dose["RATE"], dose["SS"], dose["DURATION"]) == (0.0, 10.0, 1, INF)


def test_to_xarray_has_subject_dose_obs_dims_and_units(schedule: EventTable) -> None:
    dataset = schedule.to_xarray()
    assert dict(dataset.sizes) == {"subject": 3, "dose": 4, "obs": 6}
    assert dataset["dose_time"].dims == ("subject", "dose")
    assert dataset["dose_rate"].attrs["units"] == "mg/h"
    assert dataset["obs_dv"].attrs == {"units_conc": "ng/mL"}
    assert dataset["subject"].values.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(dataset["dose_amt"].values, schedule.subject_arrays().dose_amt)


def test_describe_summarises_counts_span_and_units(schedule: EventTable) -> None:
    text = schedule.describe()
    assert "3 subjects, 11 doses (5 dose records, 1 steady state), 6 observations (conc 6)" in text
    assert "time 0 to 90 h; AMT in mg; DV in conc ng/mL" in text


def test_write_events_round_trips_frame_and_units(tmp_path: Path) -> None:
    source = write(tmp_path, "ID,TIME,EVID,AMT,DV,DVID,WT\n1,0,1,50,.,.,70\n1,1,0,0,3,plt,70\n")
    events = read_events(source, units={"AMT": "µg/kg", "plt": "10^3/µL"})
    target = tmp_path / "copy.csv"
    write_events(events, target)
    again = read_events(target)
    pd.testing.assert_frame_equal(again.frame, events.frame)
    assert again.units == events.units
    assert ".,plt" not in target.read_text()  # DV of the dose written as NONMEM's "."
    assert target.read_text().splitlines()[1].startswith("1,0.0,1,50.0,.,1,1,")


def test_named_response_needs_its_unit_and_round_trips(tmp_path: Path) -> None:
    text = "ID,TIME,EVID,AMT,DV,DVID,CMT\n1,0,1,5,.,.,1\n1,1,0,0,2,conc,2\n1,24,0,0,61,PCA,3\n"
    with pytest.raises(EventDataError, match="undeclared-response"):
        read_events(write(tmp_path, text))
    events = read_events(write(tmp_path, text), units={"conc": "mg/L", "pca": "%"})
    assert events.observations["DVID"].tolist() == ["conc", "pca"]
    assert (events.units["pca"], events.units["PCA"]) == ("%", "%")
    assert events.subject_arrays(dvid="pca").obs_dv.tolist() == [61.0]
    target = tmp_path / "copy.csv"
    write_events(events, target)
    again = read_events(target, require_units=True)
    assert again.units == events.units
    pd.testing.assert_frame_equal(again.frame, events.frame)


def test_write_events_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def fail(self: Path, other: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_events(pd.DataFrame({"ID": [1], "TIME": [0.0]}), target)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left behind
