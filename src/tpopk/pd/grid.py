"""Per-subject integration grids: observation times and dose times are nodes.

Every subject starts at steady state at ``t0`` and is integrated over its own grid, whose
nodes include each of its observation times (so values are read off nodes, never
interpolated) and each breakpoint (dose times, where the drive has a kink). After each
breakpoint the steps start short and double, because that is where an absorption peak
makes the drive change fastest; remaining gaps are cut into equal steps no longer than
``max_step``. Quadrature of the drive, not the platelet dynamics, limits the accuracy:
the response amplifies a relative error in the drive by about ``1/gamma``. Grids of
all subjects are padded to one length with zero-length steps, which the integrator
treats as identities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tpopk.errors import TpopkError

#: Default longest RK4 step (h) and first step after each breakpoint (h); steps double from
#: the first to the longest. Chosen on accuracy against solve_ivp (rtol 1e-11, DOP853,
#: ``tests/pd/test_accuracy.py``): with a Friberg model and daily oral dosing over 6 weeks
#: (2.5-fold platelet rise) the largest relative error at observation times was 1.2e-4 on
#: these defaults (261 nodes) against 5.0e-3 on a uniform 4 h grid (260 nodes); weekly SC dosing
#: over 24 weeks (10-fold rise) 8e-6. Halve both to buy about one more digit.
DEFAULT_MAX_STEP = 12.0
DEFAULT_FIRST_STEP = 0.5


@dataclass(frozen=True)
class SolverGrid:
    """Integration grid for all subjects.

    Attributes
    ----------
    times
        ``[S, K + 1]`` node times (h); padding repeats the last node.
    steps
        ``[S, K]`` step lengths (h); zero for padding.
    stage_times
        ``[S, 2K + 1]`` the instants where the drive must be given: node ``k`` at column
        ``2k``, midpoint of step ``k`` at ``2k + 1``.
    obs_index
        ``[N]`` position of each observation in the states flattened over
        ``(subject, node)``: ``states.reshape(S * (K + 1), n_states)[obs_index]``.
    """

    times: npt.NDArray[np.float64]
    steps: npt.NDArray[np.float64]
    stage_times: npt.NDArray[np.float64]
    obs_index: npt.NDArray[np.int64]

    @property
    def n_subjects(self) -> int:
        """Number of subjects S."""
        return int(self.times.shape[0])

    @property
    def n_nodes(self) -> int:
        """Nodes per subject, K + 1, padding included."""
        return int(self.times.shape[1])

    @classmethod
    def build(
        cls,
        obs_subject: npt.ArrayLike,
        obs_time: npt.ArrayLike,
        n_subjects: int,
        *,
        breakpoints: npt.ArrayLike | None = None,
        max_step: float | npt.ArrayLike = DEFAULT_MAX_STEP,
        first_step: float = DEFAULT_FIRST_STEP,
        t0: float = 0.0,
        t_end: float | None = None,
    ) -> SolverGrid:
        """Build the grid from flat observations and optional per-subject breakpoints.

        Parameters
        ----------
        obs_subject
            ``[N]`` subject index (0 ... S - 1) of each observation.
        obs_time
            ``[N]`` observation times (h), ≥ ``t0``.
        n_subjects
            Number of subjects S.
        breakpoints
            ``[S, D]`` times where the drive has a kink (dose times, end of infusions), NaN
            for padding; breakpoints outside ``[t0, last time]`` are ignored.
        max_step
            Longest step (h), or ``[S]`` one per subject (e.g. bounded by each subject's
            fastest rate constant, where explicit RK4 would otherwise be unstable).
        first_step
            First step after each breakpoint (h); the following steps double until they
            reach ``max_step``.
        t0
            Time at which every subject is at steady state (h), before the first dose.
        t_end
            Integrate every subject at least to this time (h), for simulation.

        Returns
        -------
        SolverGrid
            The grid.
        """
        subj = np.asarray(obs_subject, dtype=np.int64)
        t_obs = np.asarray(obs_time, dtype=np.float64)
        if subj.shape != t_obs.shape or subj.ndim != 1:
            raise TpopkError("obs_subject and obs_time must be 1-D arrays of equal length")
        longest = np.broadcast_to(np.asarray(max_step, dtype=np.float64), (n_subjects,))
        if not np.all(longest > 0):
            raise TpopkError(f"max_step must be positive, got {max_step!r}")
        if subj.size and (subj.min() < 0 or subj.max() >= n_subjects):
            raise TpopkError(f"obs_subject must lie in 0..{n_subjects - 1}")
        if np.any(~np.isfinite(t_obs)) or np.any(t_obs < t0):
            bad = np.flatnonzero(~np.isfinite(t_obs) | (t_obs < t0))
            raise TpopkError(
                f"observation times must be finite and >= t0={t0} h; "
                f"offending observations: {bad[:10].tolist()}"
            )
        bp = None if breakpoints is None else np.atleast_2d(np.asarray(breakpoints, float))
        if bp is not None and bp.shape[0] != n_subjects:
            raise TpopkError(f"breakpoints must have {n_subjects} rows, got {bp.shape[0]}")

        if np.ndim(max_step) == 0 and not 0 < first_step <= float(np.asarray(max_step)):
            raise TpopkError(f"first_step must lie in (0, max_step], got {first_step}")
        if not first_step > 0:
            raise TpopkError(f"first_step must be positive, got {first_step}")
        per_subject: list[npt.NDArray[np.float64]] = []
        for s in range(n_subjects):
            # Offsets after a breakpoint: steps first_step, 2·first_step, 4·first_step, ...
            # up to max_step, where the drive changes fastest (absorption, end of infusion).
            first, top = min(first_step, longest[s]), longest[s]
            widths = first * 2.0 ** np.arange(int(np.ceil(np.log2(top / first))))
            grading = np.cumsum(widths[widths < top])
            own = t_obs[subj == s]
            last = max(own.max(initial=t0), t0 if t_end is None else t_end)
            knots = [np.array([t0, last]), own]
            if bp is not None:
                row = bp[s][np.isfinite(bp[s])]
                row = row[(row >= t0) & (row < last)]
                knots.extend((row, (row[:, None] + grading[None, :]).ravel()))
            knot = np.unique(np.concatenate(knots))
            knot = knot[(knot >= t0) & (knot <= last)]
            n_sub = np.maximum(np.ceil(np.diff(knot) / top - 1e-12), 1).astype(np.int64)
            nodes = [knot[:1]]
            for a, b, n in zip(knot[:-1], knot[1:], n_sub, strict=True):
                # Interior points, then the knot itself, so observation times are exact nodes.
                nodes.extend((a + (b - a) * np.arange(1, n) / n, np.array([b])))
            per_subject.append(np.concatenate(nodes))

        n_nodes = max(len(t) for t in per_subject)
        times = np.empty((n_subjects, n_nodes))
        for s, t in enumerate(per_subject):
            times[s, : len(t)] = t
            times[s, len(t) :] = t[-1]
        steps = np.diff(times, axis=1)
        stage_times = np.empty((n_subjects, 2 * n_nodes - 1))
        stage_times[:, 0::2] = times
        stage_times[:, 1::2] = times[:, :-1] + 0.5 * steps

        node = np.empty(subj.size, dtype=np.int64)
        for s, t in enumerate(per_subject):
            mine = np.flatnonzero(subj == s)
            node[mine] = np.searchsorted(t, t_obs[mine])
        return cls(times, steps, stage_times, subj * n_nodes + node)

    def dose_amounts(
        self, dose_time: npt.ArrayLike, dose_amt: npt.ArrayLike
    ) -> npt.NDArray[np.float64]:
        """Bolus amounts per node, for structures that take doses into an ODE state.

        Parameters
        ----------
        dose_time
            ``[S, D]`` dose times (h), NaN for padding; each must be a node (pass them as
            ``breakpoints`` to :meth:`build`); doses after a subject's last node are
            ignored.
        dose_amt
            ``[S, D]`` amounts (the unit of the structure's concentration times L).

        Returns
        -------
        numpy.ndarray
            ``[S, K + 1]`` amount given at each node (several doses at one time add up).
        """
        times = np.atleast_2d(np.asarray(dose_time, dtype=np.float64))
        amts = np.broadcast_to(np.asarray(dose_amt, dtype=np.float64), times.shape)
        if times.shape[0] != self.n_subjects:
            raise TpopkError(f"dose_time must have {self.n_subjects} rows")
        out = np.zeros((self.n_subjects, self.n_nodes))
        for s in range(self.n_subjects):
            # Doses after the last node cannot affect any observation.
            given = np.isfinite(times[s]) & (amts[s] != 0) & (times[s] <= self.times[s, -1])
            node = np.searchsorted(self.times[s], times[s][given])
            node = np.minimum(node, self.n_nodes - 1)
            if not np.array_equal(self.times[s][node], times[s][given]):
                raise TpopkError(
                    f"subject {s}: dose times must be grid nodes; build the grid with "
                    "breakpoints=dose_time"
                )
            np.add.at(out[s], node, amts[s][given])
        return out
