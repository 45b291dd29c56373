"""Visit-to-visit noise of simulated counts: a persistent fluctuation plus assay error.

A virtual patient's log count is the model's log prediction plus a deviation with the
card's residual split (:class:`tpopk.model.card.Fluctuation`): a stationary
Ornstein-Uhlenbeck path of SD ``sqrt(share) * sd``, which is the patient's own and
carries over from visit to visit, and white error of SD ``sqrt(1 - share) * sd``, new
with every count. Without a fluctuation (``share`` 0) the noise is white, as before.

The trial simulator asks for counts more than once at the same visit (it re-simulates a
patient's course when a titration decision changes it). Each patient's path is therefore
drawn once per time and kept: a time asked for later is drawn conditional on the
patient's nearest earlier and later drawn times (the process is Markov), so every
request sees one path, whatever the order of the requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tpopk.model.likelihood import ou_correlation

FloatArray = NDArray[np.float64]


@dataclass
class _Paths:
    """Unit-variance OU values drawn so far, ``values[patient, k]`` at ``times[k]`` (NaN: none)."""

    n_patients: int
    times: FloatArray = field(default_factory=lambda: np.empty(0))
    values: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.values = np.empty((self.n_patients, 0))

    def column(self, time: float) -> int:
        """Index of ``time``, adding an undrawn column at its sorted place if new."""
        k = int(np.searchsorted(self.times, time))
        if k == self.times.size or self.times[k] != time:
            self.times = np.insert(self.times, k, time)
            self.values = np.insert(self.values, k, np.nan, axis=1)
        return k


class VisitNoise:
    """Log-scale noise of each patient's counts (module doc).

    Parameters
    ----------
    sd
        ``[P]`` total single-count log SD (the residual's ``sigma_log``).
    share
        ``[P]`` share of its variance that is the persistent fluctuation (0: white).
    half_life
        ``[P]`` half-life of the fluctuation's correlation (h).
    rng
        Generator of the path and the assay errors.
    """

    def __init__(
        self,
        sd: FloatArray | float,
        share: FloatArray | float,
        half_life: FloatArray | float,
        rng: np.random.Generator,
    ) -> None:
        """Hold the patients' SDs; no path is drawn until counts are asked for."""
        self.sd, self.share, self.half_life = np.broadcast_arrays(
            *(np.atleast_1d(np.asarray(v, dtype=float)) for v in (sd, share, half_life))
        )
        if ((self.share < 0) | (self.share > 1)).any():
            raise ValueError("a fluctuation's share of the variance must lie in [0, 1]")
        if (self.half_life <= 0).any():
            raise ValueError("a fluctuation's half-life must be > 0 h")
        self.rng = rng
        self._paths = _Paths(self.sd.size)
        self._rows = np.arange(self.sd.size)

    def subset(self, patients: NDArray[np.int64]) -> VisitNoise:
        """Restrict to ``patients``, sharing their paths and the generator."""
        part = VisitNoise.__new__(VisitNoise)
        part.sd, part.share, part.half_life = (
            self.sd[patients],
            self.share[patients],
            self.half_life[patients],
        )
        part.rng, part._paths, part._rows = self.rng, self._paths, self._rows[patients]
        return part

    def draw(self, times: FloatArray) -> FloatArray:
        """Log-scale deviations ``[P, T]`` of the counts at ``times`` ``[P, T]`` (h)."""
        times = np.asarray(times, dtype=float)
        if times.shape[0] != self.sd.size:
            raise ValueError(
                f"times are for {times.shape[0]} patients, the noise for {self.sd.size}"
            )
        white = self.rng.standard_normal(times.shape)
        if not self.share.any():
            return np.asarray(white * self.sd[:, None])
        path = np.empty(times.shape)
        for time in np.unique(times):
            patient, slot = np.nonzero(times == time)
            path[patient, slot] = self._path_at(float(time), patient)
        persistent = np.sqrt(self.share)[:, None] * path
        return np.asarray(
            (persistent + np.sqrt(1 - self.share)[:, None] * white) * self.sd[:, None]
        )

    def _path_at(self, time: float, patient: NDArray[np.int64]) -> FloatArray:
        """Return the paths of ``patient`` (positions here) at ``time``, drawing new ones."""
        paths = self._paths
        k = paths.column(time)
        rows = self._rows[patient]
        new = np.isnan(paths.values[rows, k])
        if new.any():
            rows_new, half_life = rows[new], self.half_life[patient[new]]
            known = ~np.isnan(paths.values[rows_new])
            columns = np.arange(paths.times.size)
            before = np.where(known & (columns < k), columns, -1).max(axis=1)
            after = np.where(known & (columns > k), columns, columns.size).min(axis=1)
            # conditional on the nearest drawn neighbours; a missing one has correlation 0
            rho_a, x_a = self._neighbour(rows_new, before, before >= 0, time, half_life)
            rho_b, x_b = self._neighbour(rows_new, after, after < columns.size, time, half_life)
            precision = 1 / (1 - rho_a**2) + rho_b**2 / (1 - rho_b**2)
            mean = (rho_a * x_a / (1 - rho_a**2) + rho_b * x_b / (1 - rho_b**2)) / precision
            drawn = mean + self.rng.standard_normal(mean.size) / np.sqrt(precision)
            paths.values[rows_new, k] = drawn
        return np.asarray(paths.values[rows, k])

    def _neighbour(
        self,
        rows: NDArray[np.int64],
        column: NDArray[np.int64],
        present: NDArray[np.bool_],
        time: float,
        half_life: FloatArray,
    ) -> tuple[FloatArray, FloatArray]:
        """Correlation with, and value of, each row's neighbour column (0, 0 if absent)."""
        safe = np.where(present, column, 0)
        lag = np.abs(self._paths.times[safe] - time)
        rho = np.where(present, ou_correlation(lag, half_life), 0.0)
        return rho, np.where(present, self._paths.values[rows, safe], 0.0)
