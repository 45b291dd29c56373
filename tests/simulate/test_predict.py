"""tpopk.predict and `tpopk predict`: PRED/IPRED against solve_ivp and the fitted graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp

from tpopk.cli import main
from tpopk.data import read_events
from tpopk.errors import TpopkError
from tpopk.inference import Fit, compute_pred
from tpopk.model import CardError
from tpopk.simulate.predict import GRID_EVID, PredictionError, predict

GENERIC = Path(__file__).parents[2] / "models" / "generic"
UNITS = {"TIME": "h", "AMT": "mg", "conc": "mg/L", "plt": "10^9/L", "WT": "kg"}


def _records(rows: list[tuple[int, float, int, float, int, str]]) -> pd.DataFrame:
    """Records from ``(ID, TIME, EVID, AMT or RATE-less amount, CMT, DVID)`` tuples."""
    frame = pd.DataFrame(rows, columns=["ID", "TIME", "EVID", "AMT", "CMT", "DVID"])
    frame["DV"] = np.where(frame["EVID"] == 0, 1.0, np.nan)
    return frame.sort_values(["ID", "TIME"], kind="stable").reset_index(drop=True)


def _piecewise(rhs, y0, times, events):  # type: ignore[no-untyped-def]
    """Integrate ``rhs`` at rtol 1e-10, adding bolus ``events`` ``(time, state, amount)``."""
    y = np.asarray(y0, dtype=float)
    t, out = 0.0, {}
    stops = sorted({*(e[0] for e in events), *times})
    for stop in stops:
        if stop > t:
            sol = solve_ivp(rhs, (t, stop), y, method="LSODA", rtol=1e-10, atol=1e-12)
            y, t = sol.y[:, -1], stop
        out[stop] = y.copy()  # observed before a dose at the same time (NONMEM row order)
        for when, state, amount in events:
            if when == stop:
                y[state] += amount
    return np.array([out[s] for s in times])


def test_oral_two_compartment_matches_solve_ivp() -> None:
    # two subjects, repeated oral doses with a lag, parameters from a file of typical values
    rows = [(1, 0.0, 1, 100.0, 1, ""), (1, 12.0, 1, 50.0, 1, "")]
    times = [0.25, 0.5, 1.0, 2.0, 6.0, 12.0, 12.3, 14.0, 24.0, 48.0]
    rows += [(1, t, 0, 0.0, 2, "conc") for t in times]
    rows += [(2, 0.0, 1, 80.0, 1, "")] + [(2, t, 0, 0.0, 2, "conc") for t in (1.0, 3.0, 30.0)]
    frame = _records(rows)
    params = {
        "ka": {"value": 1.3, "unit": "1/h"},
        "cl": {"value": 4.0, "unit": "L/h"},
        "v": {"value": 30.0, "unit": "L"},
        "q": {"value": 2.0, "unit": "L/h"},
        "v2": {"value": 60.0, "unit": "L"},
        "tlag": {"value": 0.4, "unit": "h"},
    }
    table = predict(read_events(frame, units=UNITS), GENERIC / "oral_2cmt.toml", params=params)
    ka, cl, v, q, v2, tlag = (params[k]["value"] for k in ("ka", "cl", "v", "q", "v2", "tlag"))

    def rhs(t: float, y: np.ndarray) -> list[float]:
        depot, central, peripheral = y
        return [
            -ka * depot,
            ka * depot - (cl + q) / v * central + q / v2 * peripheral,
            q / v * central - q / v2 * peripheral,
        ]

    for subject, doses in ((1, [(0.0, 100.0), (12.0, 50.0)]), (2, [(0.0, 80.0)])):
        mine = (table["ID"] == subject) & (table["EVID"] == 0)
        obs = table["TIME"].values[mine.values]
        events = [(t + tlag, 0, amount) for t, amount in doses]
        reference = _piecewise(rhs, [0.0, 0.0, 0.0], list(obs), events)[:, 1] / v
        np.testing.assert_allclose(table["PRED"].values[mine.values], reference, rtol=1e-7)
        np.testing.assert_array_equal(table["IPRED"].values, table["PRED"].values)
    assert np.isnan(table["PRED"].values[table["EVID"].values == 1]).all()
    assert table.attrs["source"] == "parameter values"


def test_iv_one_compartment_bolus_and_infusion_at_the_cards_typical_values() -> None:
    frame = _records(
        [(1, 0.0, 1, 200.0, 1, "")]
        + [(1, t, 0, 0.0, 1, "conc") for t in (0.5, 4.0, 10.0)]
        + [(2, 0.0, 1, 120.0, 1, "")]
        + [(2, t, 0, 0.0, 1, "conc") for t in (0.5, 2.0, 3.0, 10.0)]
    )
    frame["RATE"] = np.where((frame["ID"] == 2) & (frame["EVID"] == 1), 40.0, 0.0)  # 3 h
    table = predict(read_events(frame, units=UNITS), GENERIC / "iv_1cmt.toml")
    cl, v = np.exp(1.6), np.exp(3.9)  # the card's prior medians
    k = cl / v
    bolus = 200.0 / v * np.exp(-k * np.array([0.5, 4.0, 10.0]))

    def infusion(t: float, y: np.ndarray) -> list[float]:
        return [(40.0 if t < 3.0 else 0.0) - k * y[0]]

    during = solve_ivp(infusion, (0, 3.0), [0.0], rtol=1e-11, atol=1e-12, t_eval=[0.5, 2.0, 3.0])
    after = solve_ivp(infusion, (3.0, 10.0), during.y[:, -1], rtol=1e-11, atol=1e-12)
    reference = np.r_[bolus, during.y[0] / v, after.y[0, -1] / v]
    observed = table["EVID"].values == 0
    np.testing.assert_allclose(table["PRED"].values[observed], reference, rtol=1e-7)
    assert table.attrs["source"] == "card typical values"


def test_pkpd_response_matches_solve_ivp_on_a_dense_grid() -> None:
    rows = [(1, 0.0, 1, 50.0, 1, ""), (1, 24.0, 1, 50.0, 1, "")]
    rows += [(1, t, 0, 0.0, 2, "conc") for t in (2.0, 26.0)]
    rows += [(1, t, 0, 0.0, 3, "plt") for t in (0.0, 24.0, 72.0, 168.0)]
    params = {
        "ka": {"value": 0.8, "unit": "1/h"},
        "cl": {"value": 5.0, "unit": "L/h"},
        "v": {"value": 40.0, "unit": "L"},
        "r0": {"value": 150.0, "unit": "10^9/L"},
        "kout": {"value": 0.02, "unit": "1/h"},
        "emax": 2.0,
        "ec50": {"value": 0.5, "unit": "mg/L"},
    }
    table = predict(
        read_events(_records(rows), units=UNITS),
        GENERIC / "oral_1cmt_idr.toml",
        params=params,
        grid_step=6.0,
    )
    ka, k, v, r0, kout, emax, ec50 = 0.8, 5.0 / 40.0, 40.0, 150.0, 0.02, 2.0, 0.5

    def rhs(t: float, y: np.ndarray) -> list[float]:
        depot, amount, response = y
        conc = amount / v
        return [
            -ka * depot,
            ka * depot - k * amount,
            kout * r0 * (1 + emax * conc / (ec50 + conc)) - kout * response,
        ]

    for dvid, state, scale, rtol in (("conc", 1, 1 / v, 1e-7), ("plt", 2, 1.0, 1e-3)):
        mine = (table["DVID"] == dvid).values
        times = sorted(set(table["TIME"].values[mine]))
        solved = _piecewise(rhs, [0.0, 0.0, r0], times, [(0.0, 0, 50.0), (24.0, 0, 50.0)])
        reference = dict(zip(times, solved[:, state] * scale, strict=True))
        expected = [reference[t] for t in table["TIME"].values[mine]]
        np.testing.assert_allclose(table["PRED"].values[mine], expected, rtol=rtol, atol=1e-12)
    # the grid: every 6 h from the first to the last record, for each modelled DVID
    grid = table["EVID"].values == GRID_EVID
    for dvid in ("conc", "plt"):
        times = table["TIME"].values[grid & (table["DVID"] == dvid).values]
        np.testing.assert_array_equal(times, np.arange(0.0, 168.0 + 1, 6.0))
    assert (table["MDV"].values[grid] == 1).all()
    assert np.isnan(table["DV"].values[grid]).all()


def _oral(rows: int = 3) -> pd.DataFrame:
    return _records(
        [(1, 0.0, 1, 100.0, 1, "")] + [(1, 4.0 * (i + 1), 0, 0.0, 2, "conc") for i in range(rows)]
    )


def test_grid_points_span_each_subjects_records() -> None:
    frame = pd.concat([_oral(), _oral(2).assign(ID=2)], ignore_index=True)
    table = predict(read_events(frame, units=UNITS), GENERIC / "oral_1cmt.toml", grid_points=5)
    grid = table.where(table["EVID"] == GRID_EVID, drop=True)
    np.testing.assert_array_equal(grid["TIME"].values, [0, 3, 6, 9, 12, 0, 2, 4, 6, 8])
    assert (table["ID"].values == [1] * 9 + [2] * 8).all()  # subjects stay in their order
    assert np.isfinite(grid["PRED"].values).all()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"cl": 3.0}, "'cl' needs its unit: cl = { value = 3.0, unit = \"L/h\" }"),
        (
            {"cl": {"value": 3.0, "unit": "mL/min"}},
            "'cl' is in 'mL/min'; card 'oral_1cmt' expects 'L/h'",
        ),
        ({"clearance": 3.0}, "'clearance' is neither a card parameter nor a population variable"),
        ({"cl": {"value": -1.0, "unit": "L/h"}}, "'cl' is a typical value and must be positive"),
        ({"cl": {"value": "fast", "unit": "L/h"}}, "'cl' must be a finite number"),
        ({"cl": {"value": 1.0}}, "'cl' takes { value = ..., unit = ... }"),
    ],
)
def test_bad_parameter_values_are_named(params: dict[str, object], message: str) -> None:
    events = read_events(_oral(), units=UNITS)
    with pytest.raises(PredictionError, match=r"^params: ") as raised:
        predict(events, GENERIC / "oral_1cmt.toml", params=params)
    assert message in str(raised.value)


def test_population_variables_can_be_set_by_name() -> None:
    events = read_events(_oral(), units=UNITS)
    base = predict(events, GENERIC / "oral_1cmt.toml", params={"cl": {"value": 5.0, "unit": "L/h"}})
    same = predict(events, GENERIC / "oral_1cmt.toml", params={"pop_cl": 5.0})
    np.testing.assert_allclose(same["PRED"].values, base["PRED"].values)


def test_bad_requests_are_refused() -> None:
    events = read_events(_oral(), units=UNITS)
    card = GENERIC / "oral_1cmt.toml"
    with pytest.raises(PredictionError, match="not both"):
        predict(events, card, grid_step=1.0, grid_points=10)
    with pytest.raises(PredictionError, match="positive number of hours"):
        predict(events, card, grid_step=0.0)
    with pytest.raises(PredictionError, match="at least 2 points"):
        predict(events, card, grid_points=1)
    with pytest.raises(PredictionError, match="give the model cards"):
        predict(events)
    in_days = read_events(_oral(), units=UNITS | {"TIME": "d"})
    with pytest.raises(PredictionError, match=r"TIME in h .* the data declare 'd'"):
        predict(in_days, card)


def test_mixed_iv_and_oral_two_compartment_matches_solve_ivp(tmp_path: Path) -> None:
    # absolute bioavailability: oral doses into the depot (CMT 1, F and lag), an IV
    # infusion and an IV bolus into the central compartment (CMT 2) of the same subject
    rows = [(1, 0.0, 1, 100.0, 1, ""), (1, 48.0, 1, 20.0, 2, ""), (1, 60.0, 1, 10.0, 2, "")]
    rows += [(1, 72.0, 1, 100.0, 1, "")]
    times = [0.5, 1.0, 3.0, 12.0, 48.0, 48.2, 48.5, 49.0, 60.0, 61.0, 72.0, 72.5, 80.0, 96.0]
    rows += [(1, t, 0, 0.0, 2, "conc") for t in times]
    rows += [(2, 0.0, 1, 30.0, 2, "")] + [(2, t, 0, 0.0, 2, "conc") for t in (0.0, 2.0, 30.0)]
    frame = _records(rows)
    frame["RATE"] = np.where((frame["TIME"] == 48.0) & (frame["EVID"] == 1), 40.0, 0.0)
    card = tmp_path / "oral_2cmt_f.toml"
    card.write_text(
        (GENERIC / "oral_2cmt.toml").read_text()
        + '\n[parameters.f]\nunit = "-"\nprior = { dist = "LogNormal", mu = -0.5, sigma = 0.2 }'
        + '\nsource = "test: absolute bioavailability"\n'
    )
    values = {"ka": 1.3, "cl": 4.0, "v": 30.0, "q": 2.0, "v2": 60.0, "tlag": 0.4, "f": 0.6}
    units = {"ka": "1/h", "cl": "L/h", "v": "L", "q": "L/h", "v2": "L", "tlag": "h", "f": "-"}
    params = {k: {"value": x, "unit": units[k]} for k, x in values.items()}
    table = predict(read_events(frame, units=UNITS), card, params=params)
    ka, cl, v, q, v2, tlag, f = values.values()

    def rhs(y: np.ndarray, inflow: float) -> list[float]:
        depot, central, peripheral = y
        return [
            -ka * depot,
            ka * depot - (cl + q) / v * central + q / v2 * peripheral + inflow,
            q / v * central - q / v2 * peripheral,
        ]

    doses = {
        1: [(tlag, 0, f * 100.0), (60.0, 1, 10.0), (72.0 + tlag, 0, f * 100.0)],
        2: [(0.0, 1, 30.0)],
    }
    infusions = {1: [(48.0, 48.5, 40.0)], 2: []}  # 20 mg at 40 mg/h into CMT 2: no F
    for subject in (1, 2):
        mine = ((table["ID"] == subject) & (table["EVID"] == 0)).values
        obs = list(table["TIME"].values[mine])
        edges = [e for start, end, _ in infusions[subject] for e in (start, end)]
        y, t, found = np.zeros(3), 0.0, {}
        for stop in sorted({*obs, *edges, *(e[0] for e in doses[subject])}):
            if stop > t:
                middle = (t + stop) / 2.0
                inflow = sum(r for a, b, r in infusions[subject] if a <= middle < b)
                y = solve_ivp(lambda _, u, i=inflow: rhs(u, i), (t, stop), y, method="DOP853",
                              rtol=1e-11, atol=1e-14).y[:, -1]  # fmt: skip
                t = stop
            for when, state, amount in doses[subject]:
                if when == stop:
                    y[state] += amount  # the dose record comes before the observation
            found[stop] = y[1] / v
        reference = np.array([found[o] for o in obs])
        np.testing.assert_allclose(table["PRED"].values[mine], reference, rtol=1e-7)


def test_dose_into_a_compartment_the_model_lacks_names_row_and_cmts() -> None:
    frame = _records([(1, 0.0, 1, 100.0, 1, ""), (1, 1.0, 0, 0.0, 2, "conc")])
    frame = pd.concat([frame, frame.assign(ID=2, CMT=[4, 2])], ignore_index=True)
    with pytest.raises(CardError, match=r"row 4, column CMT: found 4 \(ID 2, 1 dose.*"
                       r"CMT 1 depot, 2 central, 3 peripheral"):  # fmt: skip
        predict(read_events(frame, units=UNITS), GENERIC / "oral_2cmt.toml")


def graph_pred(fit: Fit, dvid: str) -> np.ndarray:
    """PRED of ``dvid`` through the PyMC graph (:func:`tpopk.inference.compute_pred`)."""
    pred = compute_pred(fit.model, fit.posterior)[f"pred_{dvid}"]
    return np.asarray(pred.median(("chain", "draw")).values)


@pytest.mark.xdist_group("fits")
def test_fit_predictions_match_the_fitted_graph(prior_fit: Fit) -> None:
    table = predict(prior_fit.events, fit=prior_fit, draws=40)
    observed = (table["EVID"] == 0).values
    for dvid in ("conc", "plt"):
        mine = observed & (table["DVID"] == dvid).values
        # PRED: the typical subject through the PyMC graph, as stored at fit time
        typical = graph_pred(prior_fit, dvid)
        np.testing.assert_allclose(table["PRED"].values[mine], typical, rtol=2e-3, atol=1e-9)
        # IPRED: each subject's own values, as the model's ipred_<dvid> draws
        ipred = prior_fit.posterior[f"ipred_{dvid}"].median(("chain", "draw")).values
        np.testing.assert_allclose(table["IPRED"].values[mine], ipred, rtol=2e-3, atol=1e-9)
        lower, upper = table["IPRED_Q5"].values[mine], table["IPRED_Q95"].values[mine]
        assert (lower <= table["IPRED"].values[mine]).all()
        assert (table["IPRED"].values[mine] <= upper).all()
    assert table.attrs["draws"] == 40


@pytest.mark.xdist_group("fits")
def test_subjects_the_fit_lacks_get_pred_but_no_ipred(prior_fit: Fit) -> None:
    frame = prior_fit.events.frame
    frame = pd.concat([frame, frame.assign(ID=frame["ID"] + 100)], ignore_index=True)
    events = read_events(frame, units=prior_fit.events.units.as_dict())
    table = predict(events, fit=prior_fit, draws=10).to_dataframe()
    new = (table["ID"] > 100) & (table["EVID"] == 0)
    assert table.loc[new, "IPRED"].isna().all()
    old = (table["ID"] < 100) & (table["EVID"] == 0)
    np.testing.assert_allclose(table.loc[new, "PRED"].values, table.loc[old, "PRED"].values)
    with pytest.raises(PredictionError, match="not both"):
        predict(events, GENERIC / "oral_1cmt_idr.toml", fit=prior_fit)


def test_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.csv"
    _oral().to_csv(data, index=False)
    (tmp_path / "data.units.toml").write_text('TIME = "h"\nAMT = "mg"\nconc = "mg/L"\n')
    params = tmp_path / "params.toml"
    params.write_text('cl = { value = 3.0, unit = "L/h" }\nv = { value = 20.0, unit = "L" }\n')
    out = tmp_path / "pred.csv"
    card = str(GENERIC / "oral_1cmt.toml")
    args = ["predict", str(data), "--model", card, "--params", str(params), "--out", str(out)]
    assert main([*args, "--grid", "2"]) == 0
    assert "predictions from parameters" in capsys.readouterr().out
    written = pd.read_csv(out, na_values=".")
    expected = predict(read_events(data), card, params=params, grid_step=2.0)
    np.testing.assert_allclose(written["PRED"], expected["PRED"].values, rtol=1e-12)
    assert (tmp_path / "pred.units.toml").read_text().count('conc = "mg/L"') == 1
    # errors name what was expected, before any work
    assert main([*args[:-1], str(tmp_path / "pred.txt")]) == 2
    assert "expected a file ending in .csv" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("cl = 3.0\n")
    assert (
        main(["predict", str(data), "--model", card, "--params", str(bad), "--out", str(out)]) == 2
    )
    assert 'cl = { value = 3.0, unit = "L/h" }' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--fit", "fit.nc"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_needs_cards_or_a_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.csv"
    _oral().to_csv(data, index=False)
    (tmp_path / "data.units.toml").write_text('TIME = "h"\nAMT = "mg"\nconc = "mg/L"\n')
    assert main(["predict", str(data), "--out", str(tmp_path / "p.csv")]) == 2
    assert "give the model cards (or a fit)" in capsys.readouterr().err
    assert isinstance(PredictionError("x"), TpopkError)


def test_cross_agonist_study_matches_the_fitted_graph() -> None:
    # system card + agonist cards: suffixed parameters, the agonist coordinate, one solver
    from tpopk.model import build_model
    from tpopk.simulate import synthetic

    agonists = ["eltrombopag", "romiplostim"]
    cards = synthetic.library_cards(agonists, Path(__file__).parents[2] / "models")
    design = synthetic.design_itp_study(agonists, 1, seed=1)
    events = read_events(design, units=synthetic.UNITS)
    table = predict(events, cards)
    values = synthetic.prior_quantile(build_model(cards, events))
    typical = synthetic.known_fit(cards, events, values)
    for dvid in ("conc", "plt"):
        mine = ((table["EVID"] == 0) & (table["DVID"] == dvid)).values
        graph = graph_pred(typical, dvid)
        np.testing.assert_allclose(table["PRED"].values[mine], graph, rtol=1e-9)


def test_observation_records_without_dv_are_predicted_too() -> None:
    frame = _oral()
    frame["MDV"] = np.where(frame["EVID"] == 1, 1, 0)
    frame.loc[2, ["DV", "MDV"]] = [np.nan, 1]  # a sampling time to predict, not observed
    table = predict(read_events(frame, units=UNITS), GENERIC / "oral_1cmt.toml")
    assert np.isfinite(table["PRED"].values[1:]).all()
    assert np.isnan(table["PRED"].values[0])  # the dose record


def test_dvids_and_pred_narrow_what_is_evaluated(prior_fit: Fit) -> None:
    table = predict(prior_fit.events, fit=prior_fit, draws=5, dvids=["plt"], pred=False)
    assert "PRED" not in table
    assert "IPRED_Q95" in table
    assert np.isnan(table["IPRED"].values[(table["DVID"] == "conc").values]).all()
    assert np.isfinite(table["IPRED"].values[(table["DVID"] == "plt").values]).all()
    with pytest.raises(PredictionError, match=r"do not predict \['tpo'\] \(they predict"):
        predict(prior_fit.events, fit=prior_fit, dvids=["tpo"])


def test_a_fit_without_the_records_agonist_is_refused() -> None:
    from tpopk.model import build_model
    from tpopk.simulate import synthetic

    models = Path(__file__).parents[2] / "models"
    cards = synthetic.library_cards(["eltrombopag", "romiplostim"], models)
    design = synthetic.design_itp_study(["eltrombopag", "romiplostim"], 1, seed=1)
    one = read_events(design[design["AGONIST"] == "eltrombopag"], units=synthetic.UNITS)
    fitted_cards = cards[:2]  # the system card and eltrombopag's
    values = synthetic.prior_quantile(build_model(fitted_cards, one))
    fitted = synthetic.known_fit(fitted_cards, one, values)
    fitted = Fit(tree=fitted.tree, cards=tuple(cards), events=one)  # cards of both agonists
    with pytest.raises(PredictionError, match=r"posterior lacks population variables \['pop_ka_r"):
        predict(read_events(design, units=synthetic.UNITS), fit=fitted)
