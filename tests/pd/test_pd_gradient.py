"""Gradients of the solver: discrete adjoint against central finite differences."""

import numba
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

from tpopk.pd import (
    PD_MODELS,
    SolverGrid,
    drug_concentration,
    drug_effect,
    kernels,
    observe,
    simulate,
    solve,
)
from tpopk.pd.kernels import rk4_adjoint, rk4_forward
from tpopk.pd.solve import (
    KERNEL_SIGNATURES,
    PDSolve,
    PDSolveVJP,
    _numba_pd_solve,
    _numba_pd_solve_vjp,
)
from tpopk.pd.structures import lifespan

from .ivp_reference import oral_1cmt

PARAMS = {
    "friberg": [[200.0, 150.0, 0.2, 1.0], [40.0, 120.0, 0.3, 3.0]],
    "friberg_4": [[200.0, 150.0, 0.2, 1.0], [40.0, 120.0, 0.3, 3.0]],
    "idr1": [[150.0, 0.01], [80.0, 0.05]],
    "idr2": [[150.0, 0.01], [80.0, 0.05]],
    # Feedback exponents as Pérez-Ruixo C 2016 (0.621) and Friberg 2002 (0.161).
    "lifespan": [[250.0, 142.0, 253.0, 0.621], [60.0, 100.0, 80.0, 0.161]],
    # ITP-short platelet lifespans, 4.3 h and 2.7 h: on 8 h steps k·h reaches 19 and 30, so
    # the integrator splits steps into substeps and the adjoint must follow them (lifespans
    # off round numbers: k·h an integer would put the finite differences on a switch of the
    # substep count).
    "lifespan_short": [[30.0, 142.0, 4.3, 0.621], [60.0, 100.0, 2.7, 0.161]],
    # Lifespans where RK4 would need more than kernels.MAX_SUBSTEPS (8) substeps, so steps
    # take SDIRK2: 0.09 h (k·h 889 on 8 h steps) throughout; 9.3 h (k·h 8.6) on full 8 h
    # steps only, shorter steps stay RK4, so one subject mixes both methods.
    "lifespan_stiff": [[30.0, 142.0, 0.09, 0.621], [60.0, 100.0, 9.3, 0.161]],
    # No feedback (the default), healthy and SDIRK2 lifespans: the gradient in gamma at 0.
    "lifespan_open_loop": [[250.0, 142.0, 253.0, 0.0], [30.0, 142.0, 0.09, 0.0]],
    # ITP lifespans of 22 h and 8 h with a 40 h maturation time, and precursors ageing at
    # exactly the platelets' rate (the exponential step's kp = kl branch).
    "lifespan_itp": [[30.0, 142.0, 22.0, 0.083], [15.0, 40.0, 8.0, 0.621]],
    "lifespan_equal_rates": [[60.0, 100.0, 100.0, 0.3], [20.0, 24.0, 24.0, 0.0]],
    # A 2 + 1 chain: fewer states than the stage tape keeps per stage (kernels.EXPO_TAPE).
    "lifespan_2_1": [[30.0, 142.0, 22.0, 0.3], [60.0, 40.0, 8.0, 0.621]],
    "endogenous_tpo": [
        [200.0, 120.0, 240.0, 1.4, 2.0, 0.03, 0.6, 0.33],
        [30.0, 170.0, 60.0, 0.78, 1.0, 0.05, 0.8, 0.7],
    ],
    "tmdd_friberg": [
        [0.3, 9.6, 0.038, 0.173, 0.131, 0.0215, 0.8, 0.5, 60.0, 170.0, 0.15],
        [0.5, 20.0, 0.02, 0.3, 1.0, 0.1, 2.0, 0.2, 150.0, 100.0, 0.3],
    ],
    # Wang 2010 romiplostim PDMDD with feedback (RK4 substeps: kint·h 1.4 on 8 h steps),
    # and an ITP-tail lifespan of 0.09 h, one-compartment, where SDIRK2 takes the drug rows
    # explicitly.
    "pdmdd_lifespan": [
        [
            250.0,
            142.0,
            253.0,
            0.621,
            0.0254,
            9.58,
            0.0382,
            0.173,
            0.131,
            0.0215,
            11.2,
            0.052,
            0.0806,
            0.0148,
        ],
        [30.0, 142.0, 0.09, 0.161, 0.05, 20.0, 0.02, 0.3, 1.0, 0.1, 2.0, 0.2, 0.0, 0.0],
    ],
    # QSS-TMDD with target turnover: hetrombopag-like (Vc/F 30 L, CL/F 7.66 L/h, kdeg
    # 0.693 /h) with feedback, target saturated by the 30-unit doses (RK4 substeps); and an
    # ITP-tail lifespan of 0.09 h (SDIRK2, drug rows explicit) with kint > kdeg.
    "qss_tmdd_lifespan": [
        [250.0, 142.0, 253.0, 0.621, 0.5, 0.2, 0.1, 30.0, 7.66, 0.05, 0.5, 0.693, 2.0, 0.3],
        [30.0, 142.0, 0.09, 0.161, 0.3, 0.1, 0.05, 20.0, 2.0, 0.4, 0.2, 0.1, 0.5, 0.8],
    ],
}
MODEL_OF = {
    f"lifespan_{case}": "lifespan" for case in ("short", "stiff", "open_loop", "itp", "equal_rates")
}
OTHER_MODELS = {"lifespan_2_1": lifespan(2, 1)}
DOSES = np.array([np.arange(10) * 24.0, np.r_[np.arange(5) * 48.0, [np.nan] * 5]])


@pytest.fixture(scope="module")
def grid():
    # Two subjects with different observation counts, so the second grid is padded.
    t = np.array([0.0, 30.0, 100.0, 180.0, 250.0, 10.0, 90.0])
    return SolverGrid.build([0, 0, 0, 0, 0, 1, 1], t, 2, breakpoints=DOSES, max_step=8.0)


def drive_for(grid, slope=0.08):
    conc = np.stack(
        [
            oral_1cmt(grid.stage_times[s], d[np.isfinite(d)], 50.0, 1.0, 0.8, 12.0)
            for s, d in enumerate(DOSES)
        ]
    )
    return 1.0 + slope * conc


@pytest.mark.parametrize("name", PARAMS)
def test_adjoint_matches_finite_differences(name, grid):
    model = OTHER_MODELS.get(name) or PD_MODELS[MODEL_OF.get(name, name)]
    rng = np.random.default_rng(7)
    params = np.array(PARAMS[name])
    drive = drive_for(grid)
    weights = rng.normal(size=(grid.n_subjects, grid.n_nodes, model.n_states))

    doses = grid.dose_amounts(DOSES, 30.0) if model.dose_state >= 0 else None

    def loss(p, m):
        return float(np.sum(weights * simulate(model, p, m, grid, doses)))

    states, stages = rk4_forward(
        model.kernel_id,
        model.config_array(),
        params,
        drive,
        grid.steps,
        doses if doses is not None else np.zeros((grid.n_subjects, grid.n_nodes)),
        model.dose_state,
        model.n_states,
    )
    g_params, g_drive = rk4_adjoint(
        model.kernel_id, model.config_array(), params, drive, grid.steps, states, stages, weights
    )
    fd_params = np.zeros_like(params)
    for idx in np.ndindex(params.shape):
        eps = 1e-6 * (abs(params[idx]) or 1.0)  # a parameter at 0: absolute step
        up, down = params.copy(), params.copy()
        up[idx] += eps
        down[idx] -= eps
        fd_params[idx] = (loss(up, drive) - loss(down, drive)) / (2 * eps)
    np.testing.assert_allclose(g_params, fd_params, rtol=1e-5, atol=1e-8 * np.abs(fd_params).max())

    # The drive's cotangent, at nodes and midpoints, in both subjects (padding included).
    cols = rng.choice(drive.shape[1], size=8, replace=False)
    for s, c in zip([0, 1] * 4, cols, strict=True):
        up, down = drive.copy(), drive.copy()
        up[s, c] += 1e-6
        down[s, c] -= 1e-6
        fd = (loss(params, up) - loss(params, down)) / 2e-6
        assert g_drive[s, c] == pytest.approx(fd, rel=1e-5, abs=1e-6 * np.abs(g_drive).max())
    # Padding steps carry no drive: its cotangent there is exactly zero.
    padded = np.flatnonzero(grid.steps[1] == 0)
    assert padded.size > 0
    assert np.all(g_drive[1, 2 * padded + 1] == 0.0)


@pytest.mark.slow  # jits the wrappers with the kernels inlined, uncached: minutes
def test_numba_backend_wrappers_call_the_kernels_with_their_one_signature(grid):
    # Each distinct argument typing is another cold compile of minutes: the numba-backend
    # wrappers once passed Literal ints and read-only constants, one compile per PD model.
    model = PD_MODELS["lifespan"]
    args = [
        np.array(PARAMS["lifespan"]),
        drive_for(grid),
        grid.steps.copy(),
        np.zeros((grid.n_subjects, grid.n_nodes)),
    ]
    for a in args:
        a.flags.writeable = False  # as PyTensor passes graph constants
    forward = PDSolve(model.kernel_id, tuple(model.config_array()), model.n_states, -1)
    # PyTensor compiles its wrappers without a Python entry point: jit their bodies again
    states, stages = numba.njit(_numba_pd_solve(forward, None)[0].py_func)(*args)
    vjp = numba.njit(
        _numba_pd_solve_vjp(PDSolveVJP(model.kernel_id, forward.config), None)[0].py_func
    )
    vjp(*args[:3], states, stages, np.ones_like(states))
    for name, signature in KERNEL_SIGNATURES.items():
        assert getattr(kernels, name).signatures == [signature], name


@pytest.mark.parametrize("linker", ["numba", "py"])
def test_pytensor_gradient_through_drug_effect(linker, grid):
    """d(log-likelihood-like)/d(system and potency parameters) through the Op in a graph."""
    model = PD_MODELS["friberg"]
    conc = drive_for(grid, slope=1.0) - 1.0
    params = pt.matrix("params")
    log_emax, log_ec50 = pt.scalar("log_emax"), pt.scalar("log_ec50")
    drive = drug_effect.emax(pt.constant(conc), pt.exp(log_emax), pt.exp(log_ec50))
    plt = observe(model, solve(model, params, drive, grid), grid)
    target = np.linspace(150.0, 260.0, grid.obs_index.size)
    loss = pt.sum((pt.log(plt) - np.log(target)) ** 2)
    f = pytensor.function(
        [params, log_emax, log_ec50],
        [loss, *pt.grad(loss, [params, log_emax, log_ec50])],
        mode=Mode(linker=linker, optimizer="fast_run"),
    )

    def numpy_loss(p, le, lc):
        m = drug_effect.emax(conc, np.exp(le), np.exp(lc))
        y = observe(model, simulate(model, p, m, grid), grid)
        return np.sum((np.log(y) - np.log(target)) ** 2)

    p0 = np.array(PARAMS["friberg"])
    value, g_p, g_le, g_lc = f(p0, np.log(0.8), np.log(3.0))
    assert value == pytest.approx(numpy_loss(p0, np.log(0.8), np.log(3.0)), rel=1e-12)
    h = 1e-6
    fd_le = (
        numpy_loss(p0, np.log(0.8) + h, np.log(3.0)) - numpy_loss(p0, np.log(0.8) - h, np.log(3.0))
    ) / (2 * h)
    fd_lc = (
        numpy_loss(p0, np.log(0.8), np.log(3.0) + h) - numpy_loss(p0, np.log(0.8), np.log(3.0) - h)
    ) / (2 * h)
    assert g_le == pytest.approx(fd_le, rel=1e-5)
    assert g_lc == pytest.approx(fd_lc, rel=1e-5)
    up, down = p0.copy(), p0.copy()
    up[0, 1] *= 1 + h
    down[0, 1] *= 1 - h
    fd_mtt = (
        numpy_loss(up, np.log(0.8), np.log(3.0)) - numpy_loss(down, np.log(0.8), np.log(3.0))
    ) / (2 * h * p0[0, 1])
    assert g_p[0, 1] == pytest.approx(fd_mtt, rel=1e-5)


def test_pytensor_gradient_through_drug_concentration(grid):
    """Free concentration from the ODE's central state, observed in a graph: value and
    gradient in the PK and system parameters against the NumPy solver's differences."""
    model = PD_MODELS["qss_tmdd_lifespan"]
    doses = grid.dose_amounts(DOSES, 30.0)
    ones = np.ones(grid.stage_times.shape)
    params = pt.matrix("params")
    states = solve(model, params, ones, grid, doses)
    conc = drug_concentration(model, params, states, pt).reshape((-1,))[grid.obs_index]
    plt = observe(model, states, grid)
    loss = pt.sum(pt.log(conc + 0.01) ** 2) + pt.sum(pt.log(plt) ** 2)
    # The py linker: the numba backend's wrappers are the Op's, covered above.
    f = pytensor.function(
        [params], [loss, pt.grad(loss, params)], mode=Mode(linker="py", optimizer="fast_run")
    )

    def numpy_loss(p):
        y = simulate(model, p, ones, grid, doses)
        c = drug_concentration(model, p, y).reshape(-1)[grid.obs_index]
        return np.sum(np.log(c + 0.01) ** 2) + np.sum(np.log(observe(model, y, grid)) ** 2)

    p0 = np.array(PARAMS["qss_tmdd_lifespan"])
    value, g = f(p0)
    assert value == pytest.approx(numpy_loss(p0), rel=1e-12)
    # v, kss, rtot0 (first subject), cl, kint, kdeg (the SDIRK2 one), slope
    for idx in [(0, 7), (0, 10), (0, 12), (1, 8), (1, 9), (1, 11), (0, 13)]:
        h = 1e-6 * p0[idx]
        up, down = p0.copy(), p0.copy()
        up[idx] += h
        down[idx] -= h
        assert g[idx] == pytest.approx((numpy_loss(up) - numpy_loss(down)) / (2 * h), rel=1e-5)
