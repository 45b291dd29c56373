"""Visit noise: the persistent fluctuation's SD and lag correlation by Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest

from tpopk.simulate.visit_noise import VisitNoise

N = 40000
WEEK = 168.0


def correlation(half_life: float, share: float, lag: float) -> float:
    """Closed form: correlation of two log counts ``lag`` apart."""
    return share * 2.0 ** (-lag / half_life)


def noise(share: float, half_life: float, seed: int = 1) -> VisitNoise:
    return VisitNoise(np.full(N, 0.6), share, half_life, np.random.default_rng(seed))


def test_one_request_has_the_stationary_sd_and_lag_correlations() -> None:
    visits = np.array([0.0, 24.0, WEEK, 2 * WEEK, 5 * WEEK])
    deviation = noise(0.8, 60.0).draw(np.tile(visits, (N, 1)))
    np.testing.assert_allclose(deviation.std(axis=0), 0.6, rtol=0.02)
    corr = np.corrcoef(deviation, rowvar=False)
    for i in range(visits.size):
        for j in range(i + 1, visits.size):
            expected = correlation(60.0, 0.8, visits[j] - visits[i])
            assert abs(corr[i, j] - expected) < 0.02, (visits[i], visits[j], corr[i, j])


def test_requests_in_any_order_see_one_path() -> None:
    """The trial asks for visit 0 alone, then re-simulates courses: later, earlier and
    in-between times are drawn conditional on those already drawn (OU bridge)."""
    source = noise(1.0, 100.0)  # share 1: no white error, so equal times give equal values
    late = source.draw(np.full((N, 1), 3 * WEEK))[:, 0]
    first = source.draw(np.zeros((N, 1)))[:, 0]
    half = source.subset(np.arange(N // 2))  # a re-simulation of some patients only
    middle = half.draw(np.tile([WEEK, 3 * WEEK], (N // 2, 1)))
    np.testing.assert_array_equal(middle[:, 1], late[: N // 2])
    rest = source.draw(np.tile([0.0, WEEK, 2 * WEEK, 3 * WEEK], (N, 1)))
    np.testing.assert_array_equal(rest[:, 0], first)
    np.testing.assert_array_equal(rest[: N // 2, 1], middle[:, 0])
    np.testing.assert_allclose(rest.std(axis=0), 0.6, rtol=0.02)
    corr = np.corrcoef(rest, rowvar=False)
    times = np.array([0.0, WEEK, 2 * WEEK, 3 * WEEK])
    for i in range(4):
        for j in range(i + 1, 4):
            expected = correlation(100.0, 1.0, times[j] - times[i])
            assert abs(corr[i, j] - expected) < 0.02, (times[i], times[j], corr[i, j])


def test_without_a_fluctuation_the_noise_is_the_white_error_stream() -> None:
    times = np.tile([0.0, WEEK], (5, 1))
    sd = np.linspace(0.1, 0.5, 5)
    drawn = VisitNoise(sd, 0.0, 1.0, np.random.default_rng(9)).draw(times)
    expected = np.random.default_rng(9).standard_normal(times.shape) * sd[:, None]
    np.testing.assert_array_equal(drawn, expected)


@pytest.mark.parametrize(
    ("share", "half_life", "message"),
    [(1.2, 10.0, r"share of the variance must lie in \[0, 1\]"), (0.5, 0.0, "half-life")],
)
def test_bad_fluctuation_parameters_are_refused(
    share: float, half_life: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        VisitNoise(np.ones(3), share, half_life, np.random.default_rng(0))
