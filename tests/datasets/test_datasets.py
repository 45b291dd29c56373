"""Bundled datasets: counts from the data README, rxode2 codes mapped to NONMEM."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tpopk.data import AGONISTS, EventDataError, EventTable
from tpopk.datasets import (
    CATALOGUE,
    doses_from_amt,
    infusions_from_start_stop,
    itp_study_values,
    load_itp_study,
    load_phenobarbital,
    load_theophylline,
    load_warfarin,
    load_wbc_sim,
)
from tpopk.model import build_model, population_variables
from tpopk.simulate.synthetic import ITP_STUDY_ARMS, design_itp_study, library_cards

MODELS = Path(__file__).parents[2] / "models"


def bundled(name: str) -> pd.DataFrame:
    with files("tpopk.datasets").joinpath(name).open("r", encoding="utf-8") as stream:
        return pd.read_csv(stream)


def test_theophylline_counts_codes_and_units() -> None:
    events = load_theophylline()
    raw = bundled("theo_sd.csv")
    assert len(events.subjects) == 12
    assert len(events.observations) == 132
    doses = events.doses
    assert len(doses) == 12
    assert set(doses["EVID"]) == {1}
    assert set(doses["CMT"]) == {1}
    assert set(events.observations["CMT"]) == {2}
    np.testing.assert_allclose(doses["AMT"], raw.loc[raw["EVID"] == 101, "AMT"])
    assert (events.frame["TIME"].min(), events.frame["TIME"].max()) == (0.0, 24.65)
    assert (events.units["AMT"], events.units["conc"], events.units["TIME"]) == ("mg", "mg/L", "h")
    np.testing.assert_allclose(events.covariates["WT"], raw.groupby("ID")["WT"].first())


def test_wbc_sim_pairs_become_one_infusion_each() -> None:
    events = load_wbc_sim()
    raw = bundled("wbcSim.csv")
    infusion = raw[raw["EVID"] == 10101]
    starts, stops = infusion[infusion["RATE"] > 0], infusion[infusion["RATE"] < 0]
    assert (len(infusion), len(starts)) == (104, 52)
    np.testing.assert_array_equal(stops["RATE"].to_numpy(), -starts["RATE"].to_numpy())
    doses = events.doses
    assert len(doses) == 52
    assert len(events.subjects) == 45
    assert len(events.observations) == 176
    assert set(events.observations["DVID"]) == {"wbc"}
    assert set(events.observations["CMT"]) == {3}
    duration = stops["TIME"].to_numpy() - starts["TIME"].to_numpy()
    np.testing.assert_allclose(doses["DURATION"], duration, rtol=1e-12)
    np.testing.assert_allclose(doses["RATE"], starts["RATE"])
    np.testing.assert_allclose(doses["AMT"], starts["RATE"].to_numpy() * duration, rtol=1e-12)
    assert doses["AMT"].iloc[0] == pytest.approx(410.0, abs=1e-6)  # 137 µmol/h for 2.993 h
    assert (events.units["AMT"], events.units["wbc"], events.units["CLI"]) == (
        "µmol",
        "10^9/L",
        "L/h",
    )
    first = raw.groupby("ID")[["CLI", "V1I", "V2I"]].first()
    pd.testing.assert_frame_equal(
        events.covariates[["CLI", "V1I", "V2I"]], first.astype(float), check_names=False
    )


def test_phenobarbital_doses_are_the_records_with_amt() -> None:
    events = load_phenobarbital()
    with files("tpopk.datasets").joinpath("pheno.dta").open("r", encoding="utf-8") as stream:
        raw = pd.read_csv(stream, sep=r"\s+")
    assert len(raw) == 744
    assert len(events.subjects) == 59
    assert len(events.observations) == 155
    doses = events.doses
    assert len(doses) == 589
    assert set(doses["EVID"]) == {1}
    assert set(events.frame["CMT"]) == {1}
    np.testing.assert_allclose(doses["AMT"], raw.loc[raw["AMT"] > 0, "AMT"])
    np.testing.assert_allclose(events.observations["DV"], raw.loc[raw["AMT"] == 0, "DV"])
    assert set(events.observations["DVID"]) == {"conc"}
    np.testing.assert_allclose(events.covariates["WT"], raw.groupby("ID")["WGT"].first())
    np.testing.assert_allclose(events.covariates["APGR"], raw.groupby("ID")["APGR"].first())
    assert "FA1" not in events.frame.columns
    assert (events.units["AMT"], events.units["conc"], events.units["WT"]) == ("mg", "mg/L", "kg")
    assert int((events.covariates["APGR"] < 5).sum()) == 10  # subjects with the V effect


def test_nonmem_records_with_evid_are_not_reinterpreted() -> None:
    frame = pd.DataFrame({"ID": [1], "TIME": [0.0], "AMT": [1.0], "DV": [0.0], "EVID": [1]})
    with pytest.raises(EventDataError, match="evid-given"):
        doses_from_amt(frame)


def test_warfarin_keeps_pca_as_a_named_response() -> None:
    events = load_warfarin()
    raw = bundled("warfarin.csv")
    assert len(raw) == 515
    assert len(events.subjects) == 32
    counts = events.observations.groupby(["DVID", "CMT"]).size().to_dict()
    assert counts == {("conc", 2): 251, ("pca", 3): 232}
    doses = events.doses
    assert (len(doses), set(doses["CMT"]), set(doses["AMT"] > 0)) == (32, {1}, {True})
    np.testing.assert_allclose(doses["AMT"], raw.loc[raw["evid"] == 1, "amt"])
    pca = events.observations[events.observations["DVID"] == "pca"]
    np.testing.assert_allclose(pca["DV"], raw.loc[raw["dvid"] == "pca", "dv"])
    assert (events.units["conc"], events.units["pca"], events.units["AMT"]) == ("mg/L", "%", "mg")
    first = raw.groupby("id")["sex"].first()
    np.testing.assert_array_equal(events.covariates["SEX"], (first == "female").astype(float))


def test_unpaired_infusion_is_refused() -> None:
    raw = bundled("wbcSim.csv")
    first_stop = raw.index[(raw["EVID"] == 10101) & (raw["RATE"] < 0)][0]
    with pytest.raises(EventDataError, match="unpaired-infusion") as caught:
        infusions_from_start_stop(raw.drop(index=first_stop - 2), 10101)
    assert caught.value.violations[0].rule == "unpaired-infusion"


def test_catalogue_lists_every_loader_and_provenance_is_bundled() -> None:
    assert list(CATALOGUE.items()) == [
        ("theophylline", load_theophylline),
        ("wbc_sim", load_wbc_sim),
        ("itp_study", load_itp_study),
        ("phenobarbital", load_phenobarbital),
        ("warfarin", load_warfarin),
    ]
    assert all(isinstance(load(), EventTable) for load in CATALOGUE.values())
    provenance = files("tpopk.datasets").joinpath("PROVENANCE.md").read_text(encoding="utf-8")
    for needle in (
        "theo_sd.csv",
        "wbcSim.csv",
        "pheno.dta",
        "warfarin.csv",
        "GPL",
        "LGPL",
        "nlmixr2data",
        "pharmpy",
        "EVID 10101",
    ):
        assert needle in provenance
    assert "itp_study.csv` — multi-agonist ITP study (SYNTHETIC)" in provenance
    assert "python -m tpopk.simulate.synthetic --out src/tpopk/datasets/itp_study.csv" in provenance


def test_itp_study_is_the_stated_design_for_all_five_agonists() -> None:
    events = load_itp_study()
    assert len(events.subjects) == 30
    assert events.observations.groupby("DVID").size().to_dict() == {"conc": 180, "plt": 270}
    assert set(events.covariates["AGONIST"]) == set(AGONISTS)
    assert set(events.covariates["DISEASE"]) == {"ITP"}
    assert (events.units["AMT"], events.units["conc"], events.units["plt"]) == (
        "mg",
        "ng/mL",
        "10^9/L",
    )
    assert (events.observations["DV"] > 0).all()
    # everything but DV is what the documented design function writes with its seed
    design = design_itp_study(ITP_STUDY_ARMS, 6, seed=20261201)
    raw = bundled("itp_study.csv").fillna({"DVID": ""})
    pd.testing.assert_frame_equal(
        raw.drop(columns="DV"), design.drop(columns="DV"), check_dtype=False
    )


def test_itp_study_values_name_every_population_variable_of_the_library_model() -> None:
    record = itp_study_values()
    assert record["synthetic"] is True
    assert record["cards"] == ["thrombopoiesis", *ITP_STUDY_ARMS]
    model = build_model(library_cards(ITP_STUDY_ARMS, MODELS), load_itp_study())
    assert sorted(record["population"]) == sorted(population_variables(model))
    # prior medians: LogNormal typical values at exp(mu) of their card prior
    assert record["population"]["pop_plt0"] == pytest.approx(np.exp(5.46806))
    assert record["population"]["pop_tplt"] == pytest.approx(np.exp(5.533389))
    assert record["population"]["z_tp_agonist"] == [0.0] * 5
