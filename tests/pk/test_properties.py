"""Invariants of linear PK (hypothesis) and exact references for the singular corners."""

from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tpopk.pk import PK_MODELS, concentration

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)
LINEAR_MODELS = ["iv_1cmt", "iv_3cmt", "oral_1cmt", "oral_2cmt", "oral_3cmt", "oral_dual_2cmt"]


def rate(low, high):
    """Log-uniform positive floats."""
    return st.floats(np.log(low), np.log(high)).map(np.exp)


@st.composite
def models_and_parameters(draw, models=LINEAR_MODELS, transit=False):
    name = draw(st.sampled_from(models + (["transit_1cmt", "transit_2cmt"] if transit else [])))
    params = {
        "cl": draw(rate(0.1, 20.0)),
        "v": draw(rate(1.0, 200.0)),
        "q": draw(rate(0.05, 10.0)),
        "v2": draw(rate(1.0, 200.0)),
        "q3": draw(rate(0.05, 10.0)),
        "v3": draw(rate(1.0, 200.0)),
        "ka": draw(rate(0.05, 10.0)),
        "ka1": draw(rate(0.05, 2.0)),
        "ka2": draw(rate(0.5, 10.0)),
        "mtime": draw(st.floats(0.0, 3.0)),
        "mtt": draw(rate(0.2, 5.0)),
        "n_transit": draw(st.integers(0, 12)),
        "f": draw(st.floats(0.1, 1.0)),
        "tlag": draw(st.floats(0.0, 2.0)),
    }
    names = PK_MODELS[name].parameter_names
    return name, {k: v for k, v in params.items() if k in names}


def conc(name, params, doses, t):
    """doses: rows (time, amt, rate, ss, ii)."""
    time, amt, rate_, ss, ii = (np.array(c, dtype=float) for c in zip(*doses, strict=True))
    return concentration(PK_MODELS[name], params, time, amt, rate_, ss, ii, np.asarray(t))


TIMES = np.linspace(0.0, 96.0, 49)
NODES, WEIGHTS = np.polynomial.legendre.leggauss(40)


def integral(name, params, doses, breakpoints):
    """Integral of the concentration by 40-point Gauss-Legendre on each piece (smooth inside)."""
    edges = np.unique(breakpoints)
    lo, hi = edges[:-1, None], edges[1:, None]
    t = (lo + hi) / 2 + (hi - lo) / 2 * NODES
    values = conc(name, params, doses, t.ravel()).reshape(t.shape)
    return float(np.sum((hi - lo) / 2 * WEIGHTS * values))


def slowest_rate(name, params):
    """Smallest eigenvalue of the whole linear system (absorption included), by numpy."""
    p = {"q": 0.0, "v2": 1.0, "q3": 0.0, "v3": 1.0, **params}
    k10, k12, k21, k13, k31 = (p["cl"] / p["v"], p["q"] / p["v"], p["q"] / p["v2"],
                               p["q3"] / p["v"], p["q3"] / p["v3"])  # fmt: skip
    matrix = np.array([[-k10 - k12 - k13, k21, k31], [k12, -k21, 0], [k13, 0, -k31]])
    n_cmt = PK_MODELS[name].n_compartments
    rates = list(-np.linalg.eigvals(matrix[:n_cmt, :n_cmt]).real)
    rates += [params[k] for k in ("ka", "ka1", "ka2") if k in params]
    return min(rates)


dose_rows = st.lists(
    st.tuples(st.floats(0.0, 72.0), st.floats(0.0, 500.0, allow_subnormal=False)),
    min_size=1,
    max_size=5,
).map(lambda rows: [(t, a, 0.0, 0, 0.0) for t, a in rows])


@SETTINGS
@given(models_and_parameters(transit=True), dose_rows, dose_rows)
def test_superposition(model, first, second):
    name, params = model
    together = conc(name, params, first + second, TIMES)
    apart = conc(name, params, first, TIMES) + conc(name, params, second, TIMES)
    np.testing.assert_allclose(together, apart, rtol=1e-12, atol=1e-300)


@SETTINGS
@given(models_and_parameters(transit=True), dose_rows, st.floats(0.01, 100.0))
def test_dose_proportionality(model, doses, factor):
    name, params = model
    scaled = [(t, a * factor, r, s, i) for t, a, r, s, i in doses]
    np.testing.assert_allclose(
        conc(name, params, scaled, TIMES),
        factor * conc(name, params, doses, TIMES),
        rtol=1e-12,
        atol=1e-300,
    )


@SETTINGS
@given(models_and_parameters(), st.sampled_from([12.0, 24.0]), st.booleans())
def test_auc_over_interval_at_steady_state(model, tau, infusion):
    """AUC(0, tau) at steady state = F * Dose / CL (lag, F and infusion included)."""
    name, params = model
    amount = 100.0
    rate_ = 2.0 * amount if infusion else 0.0  # lasts F * 0.5 h <= tau
    start, lag = 240.0, params.get("tlag", 0.0)
    switch = [start + max(params["mtime"], lag)] if "mtime" in params else []
    switch += [t + 0.5 * params.get("f", 1.0) for t in switch]  # delayed infusion ends
    pieces = [start, start + lag, start + lag + 0.5 * params.get("f", 1.0), *switch]
    pieces += list(start + np.linspace(lag, tau, 9))
    auc = integral(
        name, params, [(start, amount, rate_, 1, tau)], [p for p in pieces if p <= start + tau]
    )
    assert auc == pytest.approx(params.get("f", 1.0) * amount / params["cl"], rel=1e-9)


@SETTINGS
@given(models_and_parameters(transit=True))
def test_mass_balance_single_dose(model):
    """CL * AUC(0, inf) = F * Dose: every bioavailable mg is eliminated from the central."""
    name, params = model
    amount = 100.0
    horizon = 45.0 / slowest_rate(name, params)  # beyond it less than exp(-45) is left
    special = [params.get("tlag", 0.0), params.get("mtime", 0.0)]
    pieces = [0.0, *special, *np.geomspace(1e-3, horizon, 120)]
    auc = integral(name, params, [(0.0, amount, 0.0, 0, 0.0)], pieces)
    assert params["cl"] * auc == pytest.approx(params.get("f", 1.0) * amount, rel=1e-9)


@SETTINGS
@given(models_and_parameters(), st.sampled_from([8.0, 24.0]), st.booleans())
def test_steady_state_is_limit_of_many_doses(model, tau, infusion):
    name, params = model
    amount, rate_ = 50.0, (100.0 if infusion else 0.0)
    n_doses = int(np.ceil(40.0 / (slowest_rate(name, params) * tau)))
    assume(n_doses <= 20_000)
    t_ss = n_doses * tau
    times = t_ss + np.linspace(0.0, 2 * tau, 17)
    many = [(t_ss - k * tau, amount, rate_, 0, 0.0) for k in range(n_doses + 1)]
    steady = conc(name, params, [(t_ss, amount, rate_, 1, tau)], times)
    # beyond t_ss + tau the SS record alone stops; add the next dose to both
    following = [(t_ss + tau, amount, rate_, 0, 0.0)]
    np.testing.assert_allclose(
        conc(name, params, [(t_ss, amount, rate_, 1, tau), *following], times),
        conc(name, params, many + following, times),
        rtol=1e-9,
    )
    assert np.all(steady > 0)


def _oral_1cmt_exact(ka, k, t, dose=100.0, volume=10.0):
    """ka dose / (V (ka - k)) (exp(-k t) - exp(-ka t)) in 60-digit decimal arithmetic."""
    getcontext().prec = 60
    ka, k, t = Decimal(ka), Decimal(k), Decimal(t)
    if ka == k:
        value = Decimal(dose) * ka * t * (-k * t).exp() / Decimal(volume)
    else:
        value = (
            Decimal(dose) * ka / (Decimal(volume) * (ka - k)) * ((-k * t).exp() - (-ka * t).exp())
        )
    return float(value)


@pytest.mark.parametrize("relative_gap", [0.0, 1e-15, 1e-12, 1e-9, 1e-7, 1e-5, 1e-3, 0.3])
@pytest.mark.parametrize("k", [1e-4, 0.2, 30.0])
def test_ka_near_k_is_exact(relative_gap, k):
    ka = k * (1.0 + relative_gap)
    times = np.array([0.01, 0.5, 2.0, 10.0, 50.0]) / k
    value = conc("oral_1cmt", {"ka": ka, "cl": 10.0 * k, "v": 10.0}, [(0, 100, 0, 0, 0)], times)
    exact = [_oral_1cmt_exact(ka, k, t) for t in times]
    np.testing.assert_allclose(value, exact, rtol=1e-12)
