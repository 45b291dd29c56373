"""Accuracy of the PD solver against solve_ivp (rtol 1e-10) on the default grid."""

import numpy as np
import pytest

from tpopk.pd import PD_MODELS, SolverGrid, drug_effect, friberg, observe, simulate

from .ivp_reference import (
    endogenous_tpo_rhs,
    endogenous_tpo_y0,
    friberg_rhs,
    friberg_y0,
    indirect_rhs,
    lifespan_rhs,
    lifespan_y0,
    oral_1cmt,
    solve_reference,
)

DAILY = np.arange(42) * 24.0  # daily oral dosing over 6 weeks
WEEKLY = np.arange(24) * 168.0  # weekly SC dosing over 24 weeks
# Observation times include troughs, absorption-phase peaks and off-grid times.
T_DAILY = np.array([0.0, 2.0, 74.5, 170.0, 339.0, 500.0, 674.25, 842.0, 1001.0, 1010.0])
T_WEEKLY = np.array([0.0, 50.0, 300.0, 810.5, 1300.0, 1700.0, 2200.0, 2700.0, 3300.0, 4000.0])
# Eltrombopag-like oral PK (dose mg, ka 1/h, CL L/h, V L) and romiplostim-like SC PK.
ORAL_PK = (50.0, 1.0, 0.8, 12.0)
SC_PK = (200.0, 0.02, 1.0, 100.0)


def tpopk_response(model, params, t_obs, dose_time, pk, effect):
    grid = SolverGrid.build(np.zeros(t_obs.size, int), t_obs, 1, breakpoints=dose_time[None])
    drive = effect(oral_1cmt(grid.stage_times, dose_time, *pk))
    states = simulate(model, np.atleast_2d(params), drive, grid)
    return observe(model, states, grid)


def reference_response(rhs, y0, observed, t_obs, dose_time, pk, effect):
    states = solve_reference(
        rhs, y0, lambda t: effect(oral_1cmt(t, dose_time, *pk)), t_obs, dose_time
    )
    return states[:, observed].sum(axis=1)


CASES = {
    # Friberg, 3 transit, Emax stimulation, daily oral: ~2.5-fold platelet rise.
    "friberg_daily_emax": (
        3,
        (200.0, 150.0, 0.2, 1.0),
        DAILY,
        T_DAILY,
        ORAL_PK,
        lambda c: drug_effect.emax(c, 0.5, 5.0),
    ),
    # Friberg, 4 transit, ITP destruction (kel_ratio 3), sigmoid Emax, weekly SC: ~10-fold.
    "friberg_weekly_sigmoid_itp": (
        4,
        (30.0, 170.0, 0.15, 3.0),
        WEEKLY,
        T_WEEKLY,
        SC_PK,
        lambda c: drug_effect.sigmoid_emax(c, 0.5, 0.5, 1.5),
    ),
    # Friberg, linear inhibition (myelosuppression, the WBC case), daily oral.
    "friberg_daily_linear_inhibit": (
        3,
        (7.2, 124.0, 0.24, 1.0),
        DAILY,
        T_DAILY,
        ORAL_PK,
        lambda c: drug_effect.linear(c, 0.1, "inhibit"),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_friberg_matches_solve_ivp(case):
    n, params, dose_time, t_obs, pk, effect = CASES[case]
    got = tpopk_response(friberg(n), params, t_obs, dose_time, pk, effect)
    ref = reference_response(
        friberg_rhs(n, *params),
        friberg_y0(n, params[0], params[3]),
        [n + 1],
        t_obs,
        dose_time,
        pk,
        effect,
    )
    assert np.ptp(ref) / ref.min() > 0.3  # the drug moved the response
    np.testing.assert_allclose(got, ref, rtol=1e-3)


@pytest.mark.parametrize("kind", [1, 2, 3, 4])
@pytest.mark.parametrize("schedule", ["daily", "weekly"])
def test_indirect_response_matches_solve_ivp(kind, schedule):
    dose_time, t_obs, pk = (
        (DAILY, T_DAILY, ORAL_PK) if schedule == "daily" else (WEEKLY, T_WEEKLY, SC_PK)
    )
    direction = "inhibit" if kind in (1, 2) else "stimulate"
    effect = lambda c: drug_effect.emax(c, 0.6, 2.0, direction)  # noqa: E731
    params = (150.0, 0.01)
    got = tpopk_response(PD_MODELS[f"idr{kind}"], params, t_obs, dose_time, pk, effect)
    ref = reference_response(
        indirect_rhs(kind, *params), [params[0]], [0], t_obs, dose_time, pk, effect
    )
    # Types I/III lower/raise the response through production, II/IV through loss.
    assert (ref[-1] > params[0]) == (kind in (2, 3))
    np.testing.assert_allclose(got, ref, rtol=1e-3)


@pytest.mark.parametrize("schedule", ["daily", "weekly"])
def test_lifespan_matches_solve_ivp(schedule):
    dose_time, t_obs, pk = (
        (DAILY, T_DAILY, ORAL_PK) if schedule == "daily" else (WEEKLY, T_WEEKLY, SC_PK)
    )
    # Wang 2010 romiplostim structure: 10 + 10 ageing compartments, TP 142 h, TPLT 253 h.
    params = (250.0, 142.0, 253.0)
    effect = lambda c: drug_effect.sigmoid_emax(c, 3.0, 1.0, 1.2)  # noqa: E731
    got = tpopk_response(PD_MODELS["lifespan"], params, t_obs, dose_time, pk, effect)
    ref = reference_response(
        lifespan_rhs(10, 10, *params),
        lifespan_y0(10, 10, *params),
        list(range(10, 20)),
        t_obs,
        dose_time,
        pk,
        effect,
    )
    assert ref.max() > 1.5 * params[0]
    np.testing.assert_allclose(got, ref, rtol=1e-3)


# Healthy-like platelets and TPO (1.4 pM, Shimizu 2021), a third of platelets pooled.
TPO_PARAMS = (200.0, 120.0, 240.0, 1.4, 2.0, 0.03, 0.6, 1.0 / 3.0)


@pytest.mark.parametrize("schedule", ["daily", "weekly"])
def test_endogenous_tpo_matches_solve_ivp_and_feedback_emerges(schedule):
    dose_time, t_obs, pk = (
        (DAILY, T_DAILY, ORAL_PK) if schedule == "daily" else (WEEKLY, T_WEEKLY, SC_PK)
    )
    model = PD_MODELS["endogenous_tpo"]
    effect = lambda c: drug_effect.linear(c, 1.0 / 8.0)  # noqa: E731  (agonist EC50 8 mg/L)
    grid = SolverGrid.build(np.zeros(t_obs.size, int), t_obs, 1, breakpoints=dose_time[None])
    states = simulate(
        model, [TPO_PARAMS], effect(oral_1cmt(grid.stage_times, dose_time, *pk)), grid
    )
    got = states.reshape(-1, model.n_states)[grid.obs_index]
    ref = solve_reference(
        endogenous_tpo_rhs(3, *TPO_PARAMS),
        endogenous_tpo_y0(3, *TPO_PARAMS),
        lambda t: effect(oral_1cmt(t, dose_time, *pk)),
        t_obs,
        dose_time,
    )
    np.testing.assert_allclose(got[:, [0, -1]], ref[:, [0, -1]], rtol=1e-3)
    np.testing.assert_allclose(observe(model, states, grid), ref[:, -1], rtol=1e-3)
    # The feedback is a consequence: more platelets clear more TPO, which falls below baseline.
    peak = np.argmax(ref[:, -1])
    assert ref[peak, -1] > 1.3 * TPO_PARAMS[0]
    assert ref[peak, 0] < 0.9 * TPO_PARAMS[3]


@pytest.mark.parametrize("name", PD_MODELS)
def test_steady_state_is_kept_without_drug(name):
    model = PD_MODELS[name]
    params = {
        "friberg": (200.0, 150.0, 0.2, 2.0),
        "friberg_4": (20.0, 170.0, 0.1, 5.0),
        "lifespan": (250.0, 142.0, 253.0),
        "endogenous_tpo": TPO_PARAMS,
    }.get(name, (150.0, 0.01))
    grid = SolverGrid.build([0, 0], [100.0, 2000.0], 1)
    states = simulate(model, [params], np.ones((1, grid.stage_times.shape[1])), grid)
    np.testing.assert_allclose(
        states[0], np.broadcast_to(states[0, 0], states[0].shape), rtol=1e-13
    )
    np.testing.assert_allclose(observe(model, states, grid), params[0], rtol=1e-13)


def test_subjects_are_independent_of_batch_padding():
    """A subject solved alone equals the same subject inside a padded batch."""
    rng = np.random.default_rng(1)
    model = friberg(3)
    t_obs = [np.sort(rng.uniform(0, 1000, 10)), np.sort(rng.uniform(0, 400, 4))]
    subj = np.repeat([0, 1], [10, 4])
    params = np.array([[200.0, 150.0, 0.2, 1.0], [50.0, 100.0, 0.3, 2.0]])
    doses = np.array([DAILY, np.r_[DAILY[:20], np.full(22, np.nan)]])

    def run(rows, sub, t):
        grid = SolverGrid.build(sub, t, len(rows), breakpoints=doses[rows])
        conc = np.stack(
            [
                oral_1cmt(grid.stage_times[i], doses[r][np.isfinite(doses[r])], *ORAL_PK)
                for i, r in enumerate(rows)
            ]
        )
        return observe(model, simulate(model, params[rows], 1 + 0.05 * conc, grid), grid)

    batch = run([0, 1], subj, np.concatenate(t_obs))
    np.testing.assert_allclose(batch[:10], run([0], np.zeros(10, int), t_obs[0]), rtol=1e-14)
    np.testing.assert_allclose(batch[10:], run([1], np.zeros(4, int), t_obs[1]), rtol=1e-14)
