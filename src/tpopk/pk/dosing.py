"""NONMEM dosing semantics in closed form: lag, bioavailability, infusions, steady state.

Each dose row contributes the response of a linear system, so a concentration is the
sum over doses (superposition). Per dose, with ``s`` the time since the input started
(after the lag and any absorption delay), ``T`` the infusion duration and ``tau`` the
dosing interval, the central amount carried by a mode of rate constant ``x`` is a
multiple of

``f(x) = exp(-x max(s - T, 0)) * (min(s, T) / T) * g(x min(s, T))
       + SS * exp(-x (s + tau - T)) * g(x T) / (1 - exp(-x tau))``

with ``g(y) = (1 - exp(-y)) / y``. The first line is the current dose (a bolus is
``T = 0``, where the fraction infused is 1); the second is the closed-form sum of the
infinitely many identical doses before it (the geometric series of NONMEM ``SS``).
Written this way bolus, infusion, lag and steady state are one formula, so their corners
cannot drift apart.

Semantics (NONMEM): bioavailability ``F`` scales the amount; an infusion keeps its
``RATE`` and lasts ``F * AMT / RATE``; the lag delays the start of absorption or
infusion, also at steady state (the profile wraps around the interval); ``SS = 1``
resets the system, so doses before it no longer count from its time on (doses at the
same time still do); ``SS = 2`` adds the steady-state profile without a reset.
Steady-state infusions must not outlast the interval (``T <= II``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from tpopk.pk.divided import NodeFunction, decay, geometric, relexp_at
from tpopk.pk.namespace import Array

__all__ = ["DoseSchedule", "dose_response", "dose_schedule", "input_elapsed"]

_LONG_AGO = -np.inf  # reset time when no SS=1 dose has been given (compared, never added)


@dataclass(frozen=True)
class DoseSchedule:
    """Per-(observation, dose) timing, shape ``B + (D,)``.

    Attributes
    ----------
    since_dose : Array
        Time from the dose record to the observation [h].
    counts : Array
        Boolean: the dose was given by then and no later ``SS = 1`` dose reset it.
    duration : Array
        Infusion duration ``F * AMT / RATE`` [h], 0 for a bolus.
    tau : Array
        Dosing interval for steady-state doses [h]; 1 for others (unused, kept finite).
    steady_state : Array
        1.0 for ``SS`` in {1, 2}, else 0.0.
    any_infusion : bool
        False when the records are data without infusions: the infusion factors, which
        are then identically 1, are left out of the graph.
    any_steady_state : bool
        False when the records are data without steady-state doses: the steady-state
        term, then identically 0, is left out of the graph.
    """

    since_dose: Array
    counts: Array
    duration: Array
    tau: Array
    steady_state: Array
    any_infusion: bool = True
    any_steady_state: bool = True


def dose_schedule(
    xp: ModuleType,
    bioavailability: Array,
    dose_time: Array,
    dose_amt: Array,
    dose_rate: Array,
    dose_ss: Array,
    dose_ii: Array,
    t: Array,
) -> DoseSchedule:
    """Combine observation times with dose records.

    Parameters
    ----------
    xp : module
        Array namespace.
    bioavailability : Array
        ``F`` [-], shape broadcastable to ``B + (1,)``.
    dose_time, dose_amt, dose_rate, dose_ss, dose_ii : Array
        Dose records, shape ``B + (D,)``: time [h], amount, rate [amount/h] (0 for a
        bolus), NONMEM ``SS`` flag (0, 1, 2), interval ``II`` [h].
    t : Array
        Observation times [h], shape ``B + (1,)``.

    Returns
    -------
    DoseSchedule
        Timing of every dose relative to every observation.
    """
    since_dose = t - dose_time
    given = since_dose >= 0.0
    resets = xp.equal(dose_ss, 1) & (dose_amt > 0) & given
    reset_time = xp.max(xp.where(resets, dose_time, _LONG_AGO), axis=-1)
    counts = given & (dose_time >= reset_time[..., None])
    infused = dose_rate > 0
    safe_rate = xp.where(infused, dose_rate, 1.0)
    duration = xp.where(infused, bioavailability * dose_amt / safe_rate, 0.0)
    at_steady_state = dose_ss > 0
    tau = xp.where(at_steady_state, dose_ii, 1.0)
    steady_state = xp.where(at_steady_state, 1.0, 0.0)
    return DoseSchedule(
        since_dose,
        counts,
        duration,
        tau,
        steady_state,
        any_infusion=_may_be_nonzero(dose_rate),
        any_steady_state=_may_be_nonzero(dose_ss),
    )


def _may_be_nonzero(value: Array) -> bool:
    """Return False only if ``value`` is data (not a symbolic input) and all zero."""
    data = getattr(value, "data", value)  # PyTensor constants hold their value in .data
    if not isinstance(data, np.ndarray | float | int):
        return True
    return bool(np.any(np.asarray(data) != 0))


def input_elapsed(xp: ModuleType, schedule: DoseSchedule, delay: Array) -> tuple[Array, Array]:
    """Return the time since the input of each dose started, and whether it has.

    Parameters
    ----------
    xp : module
        Array namespace.
    schedule : DoseSchedule
        Dose timing.
    delay : Array
        Time from the dose record to the start of the input [h] (lag, plus the switch
        time of a sequential absorption phase).

    Returns
    -------
    elapsed : Array
        Time since the input started [h]; for steady-state doses still inside the
        delay, the time since the previous dose's input started (the periodic profile
        wraps). 0 where the dose does not act.
    acting : Array
        Boolean mask of doses that act.
    """
    elapsed = schedule.since_dose - delay
    periods_back = xp.ceil(xp.maximum(-elapsed, 0.0) / schedule.tau) * schedule.steady_state
    elapsed = elapsed + periods_back * schedule.tau
    acting = schedule.counts & (elapsed >= 0.0)
    return xp.where(acting, elapsed, 0.0), acting


def dose_response(
    xp: ModuleType, a: Array | None, b: Array, elapsed: Array, schedule: DoseSchedule
) -> NodeFunction:
    """Return ``f`` of the module docstring at rate nodes ``a`` (absorption) and ``b``.

    Parameters
    ----------
    xp : module
        Array namespace.
    a : Array or None
        Absorption rate constant [1/h], or ``None`` for input into the central
        compartment.
    b : Array
        Disposition eigenvalue [1/h].
    elapsed : Array
        Time since the input started [h], non-negative.
    schedule : DoseSchedule
        Dose timing (infusion duration, interval, SS flag).

    Returns
    -------
    NodeFunction
        ``f(b)``, and ``f(a)``, ``f[a, b]`` when ``a`` is given; per unit amount.
    """
    if not schedule.any_infusion:
        current = decay(xp, a, b, elapsed)
        if not schedule.any_steady_state:
            return current
        previous = decay(xp, a, b, elapsed + schedule.tau) * geometric(xp, a, b, schedule.tau)
        return current + previous.scaled(schedule.steady_state)
    duration = schedule.duration
    infusing = xp.minimum(elapsed, duration)
    safe_duration = xp.where(duration > 0.0, duration, 1.0)
    fraction = xp.where(duration > 0.0, infusing / safe_duration, 1.0)
    current = decay(xp, a, b, xp.maximum(elapsed - duration, 0.0)) * relexp_at(xp, a, b, infusing)
    current = current.scaled(fraction)
    if not schedule.any_steady_state:
        return current
    # Earlier doses of the steady-state train; elapsed + tau - T >= 0 since T <= tau.
    previous = (
        decay(xp, a, b, xp.maximum(elapsed + schedule.tau - duration, 0.0))
        * relexp_at(xp, a, b, duration)
        * geometric(xp, a, b, schedule.tau)
    )
    return current + previous.scaled(schedule.steady_state)
