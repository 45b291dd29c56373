"""Extreme rate constants, thousands of doses, padding, and user errors."""

from __future__ import annotations

import numpy as np
import pytest

from tpopk.errors import TpopkError
from tpopk.pk import PK_MODELS, concentration


def conc(name, params, doses, t):
    time, amt, rate, ss, ii = (np.array(c, dtype=float) for c in zip(*doses, strict=True))
    return concentration(PK_MODELS[name], params, time, amt, rate, ss, ii, np.asarray(t))


TIMES = np.array([0.0, 1e-6, 0.01, 0.5, 3.0, 24.0, 200.0, 5000.0])
ONE_DOSE = [(0.0, 100.0, 0.0, 0, 0.0)]


@pytest.mark.parametrize("ka", [1e6, 1e12, 1e200])
def test_instant_absorption_is_iv_bolus(ka):
    oral = conc(
        "oral_2cmt", {"ka": ka, "cl": 2.0, "v": 10.0, "q": 1.0, "v2": 20.0}, ONE_DOSE, TIMES[3:]
    )
    iv = conc("iv_2cmt", {"cl": 2.0, "v": 10.0, "q": 1.0, "v2": 20.0}, ONE_DOSE, TIMES[3:])
    np.testing.assert_allclose(oral, iv, rtol=1e-5)


@pytest.mark.parametrize("ka", [1e-12, 1e-300])
def test_negligible_absorption_is_linear_in_ka(ka):
    """For ka -> 0 the exact C(t) = D ka / (V (k - ka)) (exp(-ka t) - exp(-k t)) stays exact."""
    k, v = 0.2, 10.0
    value = conc("oral_1cmt", {"ka": ka, "cl": k * v, "v": v}, ONE_DOSE, TIMES[1:])
    t = TIMES[1:]
    expected = 100.0 * ka / (v * (k - ka)) * np.exp(-ka * t) * -np.expm1(-(k - ka) * t)
    np.testing.assert_allclose(value, expected, rtol=1e-9)


@pytest.mark.parametrize("cl", [1e-12, 1e8])
def test_extreme_elimination_stays_finite(cl):
    params = {"ka": 1.0, "cl": cl, "v": 10.0, "q": 1.0, "v2": 20.0, "q3": 0.5, "v3": 30.0}
    value = conc("oral_3cmt", params, [*ONE_DOSE, (1.0, 100.0, 50.0, 1, 12.0)], TIMES)
    assert np.all(np.isfinite(value))
    assert np.all(value >= 0.0)


def test_thousands_of_doses_reach_steady_state():
    """5000 doses every 12 h equal the closed-form steady state, without overflow."""
    params = {
        "ka1": 0.333,
        "ka2": 5.26,
        "mtime": 1.46,
        "cl": 0.95,
        "v": 9.75,
        "q": 0.63,
        "v2": 9.41,
        "tlag": 0.45,
    }  # Farrell 2014 eltrombopag
    tau, n = 12.0, 5000
    last = tau * (n - 1)
    times = last + np.linspace(0.0, tau, 13)[:-1]
    many = [(k * tau, 25.0, 0.0, 0, 0.0) for k in range(n)]
    steady = [(last, 25.0, 0.0, 1, tau)]
    value = conc("oral_dual_2cmt", params, many, times)
    np.testing.assert_allclose(value, conc("oral_dual_2cmt", params, steady, times), rtol=1e-9)


def test_padding_doses_change_nothing():
    params = {"ka": 0.7, "cl": 2.0, "v": 10.0, "tlag": 0.3}
    doses = [(0.0, 100.0, 0.0, 0, 0.0), (24.0, 100.0, 50.0, 1, 24.0)]
    padded = [*doses, (0.0, 0.0, 0.0, 0, 0.0), (1e9, 0.0, 0.0, 0, 0.0)]
    np.testing.assert_array_equal(
        conc("oral_1cmt", params, padded, TIMES), conc("oral_1cmt", params, doses, TIMES)
    )


@pytest.mark.parametrize("name", ["iv_1cmt", "oral_2cmt", "oral_dual_3cmt", "transit_2cmt"])
def test_nothing_before_the_dose_or_during_the_lag(name):
    params = {
        "cl": 2.0,
        "v": 10.0,
        "q": 1.0,
        "v2": 20.0,
        "q3": 0.5,
        "v3": 30.0,
        "ka": 1.0,
        "ka1": 0.3,
        "ka2": 3.0,
        "mtime": 1.5,
        "mtt": 1.0,
        "n_transit": 3,
        "tlag": 0.5,
    }
    params = {k: v for k, v in params.items() if k in PK_MODELS[name].parameter_names}
    times = np.array([0.0, 9.0, 10.0, 10.25, 10.5 - 1e-12])
    value = conc(name, params, [(10.0, 100.0, 0.0, 0, 0.0)], times)
    np.testing.assert_array_equal(value, 0.0)


def test_shapes_broadcast_per_observation_and_grid():
    """Model layer: t [N], doses [N, D]; PD grid: t [S, G], doses [S, 1, D]."""
    model = PK_MODELS["oral_1cmt"]
    dose_time = np.array([[0.0, 24.0], [0.0, 12.0]])
    zeros = np.zeros_like(dose_time)
    ka = np.array([0.5, 1.5])
    grid = np.linspace(0.0, 48.0, 7)
    on_grid = concentration(
        model,
        {"ka": ka[:, None], "cl": 2.0, "v": 10.0},
        dose_time[:, None, :],
        np.full((2, 1, 2), 100.0),
        zeros[:, None],
        zeros[:, None],
        zeros[:, None],
        np.stack([grid, grid]),
    )
    assert on_grid.shape == (2, 7)
    for s in range(2):
        per_obs = concentration(
            model,
            {"ka": np.full(7, ka[s]), "cl": 2.0, "v": 10.0},
            np.broadcast_to(dose_time[s], (7, 2)),
            np.full((7, 2), 100.0),
            np.zeros((7, 2)),
            np.zeros((7, 2)),
            np.zeros((7, 2)),
            grid,
        )
        np.testing.assert_array_equal(on_grid[s], per_obs)


def test_user_errors_are_tpopk_errors():
    model = PK_MODELS["oral_1cmt"]
    args = ([0.0], [100.0], [0.0], [0], [0.0], 1.0)
    with pytest.raises(TpopkError, match="needs parameter"):
        concentration(model, {"cl": 2.0, "v": 10.0}, *args)
    with pytest.raises(TpopkError, match="has no parameter"):
        concentration(model, {"ka": 1.0, "cl": 2.0, "v": 10.0, "vc": 3.0}, *args)
    transit = PK_MODELS["transit_1cmt"]
    params = {"ka": 1.0, "mtt": 1.0, "cl": 2.0, "v": 10.0}
    with pytest.raises(TpopkError, match="integer"):
        concentration(transit, {**params, "n_transit": 2.5}, *args)
    with pytest.raises(TpopkError, match="bolus doses only"):
        concentration(transit, {**params, "n_transit": 2}, [0.0], [100.0], [0.0], [1], [24.0], 1.0)


def test_registry_contract():
    for name in (
        "iv_1cmt",
        "iv_2cmt",
        "iv_3cmt",
        "oral_1cmt",
        "oral_2cmt",
        "oral_3cmt",
        "oral_dual_2cmt",
        "transit_1cmt",
    ):
        model = PK_MODELS[name]
        assert model.name == name
        assert (model.dose_cmt, model.obs_cmt) == ((1, 1) if name.startswith("iv") else (1, 2))
    oral = PK_MODELS["oral_1cmt"]
    assert oral.parameter_names == ("ka", "cl", "v", "f", "tlag")
    assert [p.default for p in oral.parameters] == [None, None, None, 1.0, 0.0]
    assert PK_MODELS["oral_3cmt"].parameter_names[:7] == ("ka", "cl", "v", "q", "v2", "q3", "v3")
