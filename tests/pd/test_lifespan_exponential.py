"""The lifespan chain's exponential step: its propagator against expm and quadrature.

Accuracy of whole courses against solve_ivp is in test_pd_accuracy.py and the exact
discrete adjoint in test_pd_gradient.py; here the pieces: exp(J h) and its rate
derivatives, the production responses and the platelet rows, on both sides of each
branch (series/recurrence for the cross block, Taylor/integration by parts for production).
"""

import numpy as np
import pytest
from scipy.integrate import quad_vec
from scipy.linalg import expm

from tpopk.pd import kernels

N_P, N_L = 10, 10
N = N_P + N_L

# (kp, kl, h): healthy (tp 142 h, tplt 253 h) on the first and the longest step, ITP
# (tplt 22 h, 3 h, 0.3 h, 0.01 h), equal and nearly equal rates, precursors faster than
# platelets, a tiny step, and |kp - kl|·h on both sides of CROSS_SERIES_MAX.
RATES = [
    (10 / 142, 10 / 253, 0.5),
    (10 / 142, 10 / 253, 12.0),
    (10 / 142, 10 / 22, 12.0),
    (10 / 142, 10 / 3, 12.0),
    (10 / 142, 10 / 0.3, 12.0),
    (10 / 142, 10 / 0.01, 12.0),
    (0.5, 0.5, 12.0),
    (0.5, 0.5 * (1 + 1e-7), 12.0),
    (10 / 5, 10 / 253, 12.0),
    (10 / 142, 10 / 25, 0.01),
    (1.0, 1.0 + 59.0 / 12, 12.0),
    (1.0, 1.0 + 61.0 / 12, 12.0),
]


def chain_matrix(kp, kl):
    a = np.zeros((N, N))
    for i in range(N):
        a[i, i] = -(kp if i < N_P else kl)
        if i > 0:
            a[i, i - 1] = kp if i <= N_P else kl
    return a


def rate_derivative(which):
    """dJ/dkp (``which`` 0) or dJ/dkl (1)."""
    d = np.zeros((N, N))
    for i in range(N):
        if (i < N_P) == (which == 0):
            d[i, i] = -1.0
        if i > 0 and ((i <= N_P) == (which == 0)):
            d[i, i - 1] = 1.0
    return d


def propagator(kp, kl, h, half=None):
    """The kernel's propagators; ``half`` an exp(J h/2) with derivatives to reuse."""
    e = np.empty((3, N, N))
    eh = np.empty((3, N, N)) if half is None else half.copy()
    phi = np.empty((3, 3, N))
    rho = np.empty((3, N))
    rho_half = np.empty((3, N))
    sigma = np.empty((3, 2))
    scratch = np.empty((N + 2, N + 2))
    kernels._lifespan_propagator(
        N_P,
        N_L,
        kp,
        kl,
        h,
        True,
        half is not None,
        scratch,
        scratch.copy(),
        eh,
        e,
        phi,
        rho,
        rho_half,
        sigma,
        np.empty((3, N)),
        np.empty(N),
    )
    return e, phi, rho, rho_half, sigma


def expm_and_derivatives(kp, kl, h):
    """exp(J h) and its d/dkp, d/dkl from the block-triangular exponential (Van Loan)."""
    a = chain_matrix(kp, kl) * h
    out = [expm(a)]
    for which in (0, 1):
        big = np.block([[a, rate_derivative(which) * h], [np.zeros((N, N)), a]])
        out.append(expm(big)[:N, N:])
    return out


@pytest.mark.parametrize(("kp", "kl", "h"), RATES)
def test_chain_exponential_and_rate_derivatives_match_expm(kp, kl, h):
    e, _, rho, rho_half, _ = propagator(kp, kl, h)
    ref = expm_and_derivatives(kp, kl, h)
    # The reference loses digits where the rates nearly coincide (a nearly defective J).
    for got, want in zip(e, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.abs(want).max() + 1e-300)
    half = expm_and_derivatives(kp, kl, 0.5 * h)
    for w in range(3):
        np.testing.assert_allclose(rho[w], ref[w][N_P:].sum(axis=0), rtol=0, atol=1e-10)
        np.testing.assert_allclose(rho_half[w], half[w][N_P:].sum(axis=0), rtol=0, atol=1e-10)


@pytest.mark.parametrize(("kp", "kl", "h"), RATES)
def test_a_known_half_step_exponential_gives_the_same_propagators(kp, kl, h):
    # The kernels pass a step's exp(J h/2) from the step of length h/2 where there is one.
    fresh = propagator(kp, kl, h)
    reused = propagator(kp, kl, h, half=propagator(kp, kl, 0.5 * h)[0])
    for got, want in zip(reused, fresh, strict=True):
        np.testing.assert_array_equal(got, want)


BASIS = [
    lambda u: 2 * (u - 0.5) * (u - 1),
    lambda u: -4 * u * (u - 1),
    lambda u: 2 * u * (u - 0.5),
]


# Both branches of each: Taylor series (healthy first step, tiny step) and integration by
# parts (ITP, fast precursors), recurrence (tplt 0.3 h) and series for the cross block.
@pytest.mark.parametrize(("kp", "kl", "h"), [RATES[i] for i in (0, 2, 4, 7, 8, 9)])
def test_production_responses_match_quadrature(kp, kl, h):
    """phi_r = int_0^h exp(J (h - s)) e0 w_r(s/h) ds, w_r the quadratic Lagrange basis."""
    _, phi, _, _, sigma = propagator(kp, kl, h)

    def integrand(s):
        columns = np.stack([m[:, 0] for m in expm_and_derivatives(kp, kl, h - s)])
        return np.stack([columns * basis(s / h) for basis in BASIS], axis=1)

    want = quad_vec(integrand, 0.0, h, epsabs=1e-15, epsrel=1e-11)[0]
    for which in range(3):
        scale = np.abs(want[which]).max() + (h if which == 0 else h * h) * 1e-3
        np.testing.assert_allclose(phi[which], want[which], rtol=0, atol=1e-9 * scale)

    # The feedback's predictor: platelets added by unit constant production over h/2, h.
    def platelets_of_unit_production(t):
        return np.array([m[N_P:, 0].sum() for m in expm_and_derivatives(kp, kl, t)])

    # Over h/2 the sum is one substitution, J^-1 (E(h/2) e0 - e0), not the basis responses:
    # its cancellation costs absolute digits, here held to 1e-9 of the natural scale of
    # platelets per unit production (h, and h^2 for the rate derivatives).
    for col, end in enumerate((0.5 * h, h)):
        want_sigma = quad_vec(platelets_of_unit_production, 0.0, end, epsabs=1e-15, epsrel=1e-11)[0]
        for which in range(3):
            scale = np.abs(want_sigma).max() + h * h * 1e-3
            if col == 0:
                scale = np.abs(want_sigma).max() + (h if which == 0 else h * h)
            assert abs(sigma[which, col] - want_sigma[which]) <= 1e-9 * scale
