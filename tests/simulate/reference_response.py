"""Deterministic toy response models, simple enough to check the rule engine by hand."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class LastDoseResponse:
    """Count = baseline + gain x (amount of the latest dosing slot strictly before t).

    Held or undecided slots have amount 0, so a held week gives the baseline back.
    """

    def __init__(self, baseline: npt.ArrayLike, gain: npt.ArrayLike) -> None:
        self.baseline = np.asarray(baseline, dtype=float)
        self.gain = np.broadcast_to(np.asarray(gain, dtype=float), self.baseline.shape)
        self.calls: list[tuple[FloatArray, FloatArray, FloatArray]] = []

    @property
    def n_patients(self) -> int:
        return int(self.baseline.size)

    def platelets(
        self, dose_time: FloatArray, dose_amount: FloatArray, times: FloatArray
    ) -> FloatArray:
        self.calls.append((dose_time.copy(), dose_amount.copy(), times.copy()))
        before = dose_time[:, None, :] < times[:, :, None]  # [P, T, D]
        # index of the latest slot before each time (slots are sorted in time)
        latest = np.where(before.any(-1), before.sum(-1) - 1, -1)
        amount = np.where(
            latest >= 0,
            np.take_along_axis(dose_amount[:, None, :], np.maximum(latest, 0)[..., None], -1)[
                ..., 0
            ],
            0.0,
        )
        return self.baseline[:, None] + self.gain[:, None] * amount


class EmaxDelayResponse:
    """Count = baseline x (1 + emax E / (E + ec50)), E = sum_k a_k exp(-(t - t_k - delay)/tau).

    Each dose acts after ``delay`` h and wanes with time constant ``tau`` h: a linear
    dose -> exposure superposition with a delayed, saturable platelet effect.
    """

    def __init__(
        self,
        baseline: npt.ArrayLike,
        emax: float = 8.0,
        ec50: npt.ArrayLike = 5.0,
        delay: float = 120.0,
        tau: float = 96.0,
    ) -> None:
        self.baseline = np.asarray(baseline, dtype=float)
        self.ec50 = np.broadcast_to(np.asarray(ec50, dtype=float), self.baseline.shape)
        self.emax, self.delay, self.tau = emax, delay, tau

    @property
    def n_patients(self) -> int:
        return int(self.baseline.size)

    def platelets(
        self, dose_time: FloatArray, dose_amount: FloatArray, times: FloatArray
    ) -> FloatArray:
        lag = times[:, :, None] - np.nan_to_num(dose_time)[:, None, :] - self.delay  # [P, T, D]
        active = lag > 0
        exposure = np.sum(
            np.where(
                active,
                dose_amount[:, None, :] * np.exp(-np.where(active, lag, 0.0) / self.tau),
                0.0,
            ),
            axis=-1,
        )
        return self.baseline[:, None] * (
            1.0 + self.emax * exposure / (exposure + self.ec50[:, None])
        )


class DriftResponse(LastDoseResponse):
    """:class:`LastDoseResponse` plus ``slope`` x t: counts that differ from visit to visit.

    Screening counts come from the trial's first, dose-free call (times from 0), so a
    slope gives each screening count its own, hand-computable value.
    """

    def __init__(self, baseline: npt.ArrayLike, slope: npt.ArrayLike, gain: npt.ArrayLike = 0.0):
        super().__init__(baseline, gain)
        self.slope = np.broadcast_to(np.asarray(slope, dtype=float), self.baseline.shape)

    def platelets(
        self, dose_time: FloatArray, dose_amount: FloatArray, times: FloatArray
    ) -> FloatArray:
        return super().platelets(dose_time, dose_amount, times) + self.slope[:, None] * times


class NoisyLevelResponse:
    """A steady true level times independent log-normal noise at every count (no drug)."""

    def __init__(self, level: npt.ArrayLike, sd_log: float, seed: int) -> None:
        self.level = np.asarray(level, dtype=float)
        self.sd_log = sd_log
        self.rng = np.random.default_rng(seed)

    @property
    def n_patients(self) -> int:
        return int(self.level.size)

    def platelets(
        self, dose_time: FloatArray, dose_amount: FloatArray, times: FloatArray
    ) -> FloatArray:
        noise = self.sd_log * self.rng.standard_normal(times.shape)
        return np.asarray(self.level[:, None] * np.exp(noise), dtype=float)
