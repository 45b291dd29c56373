"""Independent reference: the equivalent linear ODE integrated with scipy's solve_ivp.

Nothing here reuses tpopk's closed forms. Each model is written as its compartments
(transit chain, depot(s), central, peripherals) and integrated piecewise between dose
events with DOP853 at rtol 1e-10. Steady state is found as the fixed point of the ODE's
own one-interval map (NONMEM's approach), not by a geometric series. Dual sequential
absorption moves what is left in the ka1 depot to the ka2 depot at the switch time,
which is exact while a dose's depot is empty of other doses at its switch (true for
the schedules used in the tests). A dose's ``cmt`` (NONMEM numbering: depot 1, central 2,
peripherals 3-4 for extravascular models; central 1, peripherals 2-3 for IV models) puts
it into that state; ``f`` and ``tlag`` act on CMT 1 only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

from tpopk.pk import PKModel

RTOL = 1e-10
ATOL = 1e-20  # amounts; tiny so that late, low concentrations are still relative-accurate


@dataclass(frozen=True)
class Dose:
    time: float
    amt: float
    rate: float = 0.0
    ss: int = 0
    ii: float = 0.0
    cmt: int = 1


@dataclass(frozen=True)
class System:
    matrix: np.ndarray  # dx/dt = matrix @ x (+ infusions)
    dose_state: int
    central: int
    switch_from: int | None = None  # dual absorption: ka1 depot
    switch_to: int | None = None  # dual absorption: ka2 depot


def build_system(model: PKModel, params: dict[str, float]) -> System:
    p = {"f": 1.0, "tlag": 0.0, **params}
    n_cmt = model.n_compartments
    k10 = p["cl"] / p["v"]
    micro = []
    if n_cmt >= 2:
        micro.append((p["q"] / p["v"], p["q"] / p["v2"]))
    if n_cmt == 3:
        micro.append((p["q3"] / p["v"], p["q3"] / p["v3"]))
    if model.absorption == "iv":
        chain: list[float] = []
    elif model.absorption == "first_order":
        chain = [p["ka"]]
    elif model.absorption == "dual":
        chain = [p["ka1"], p["ka2"]]  # two parallel depots, handled below
    else:
        m = int(p["n_transit"]) + 1
        chain = [m / p["mtt"]] * m + [p["ka"]]
    n_absorption = len(chain)
    central = n_absorption
    size = n_absorption + 1 + len(micro)
    K = np.zeros((size, size))
    if model.absorption == "dual":
        for i, rate in enumerate(chain):
            K[i, i] = -rate
            K[central, i] = rate
    else:
        for i, rate in enumerate(chain):
            K[i, i] = -rate
            K[i + 1, i] = rate
    K[central, central] = -k10
    for j, (k_out, k_back) in enumerate(micro):
        peripheral = central + 1 + j
        K[central, central] -= k_out
        K[peripheral, central] = k_out
        K[peripheral, peripheral] = -k_back
        K[central, peripheral] = k_back
    if model.absorption == "dual":
        return System(K, 0, central, switch_from=0, switch_to=1)
    return System(K, 0, central)


def state_of(model: PKModel, system: System, cmt: int) -> int:
    """State index of NONMEM compartment `cmt` (the transit chain's entry for CMT 1)."""
    if model.absorption == "iv":
        return cmt - 1
    return system.dose_state if cmt == 1 else system.central + cmt - 2


def _integrate(system: System, events: list[tuple[float, str, float, int]], x0, t0, t_obs):
    """Integrate from t0 with state x0 through events (time, kind, value, state); x at t_obs.

    Observations at an event time see the state after the event (the dose record
    comes first), the convention of tpopk.pk.
    """
    K = system.matrix
    t_obs = np.asarray(t_obs, dtype=float)
    out = np.zeros((t_obs.size, K.shape[0]))
    x = np.array(x0, dtype=float)
    infusion = np.zeros(K.shape[0])
    t = t0
    out[t_obs < t0] = x  # before the first event nothing has happened yet
    if t_obs.size == 0:
        return out
    end = t_obs.max()
    stops = sorted({e[0] for e in events if t0 < e[0] < end} | {max(end, t0)})
    for stop in sorted({t0, *stops}):
        if stop > t:
            inside = (t_obs > t) & (t_obs < stop)
            inflow = infusion.copy()

            def rhs(_, y, inflow=inflow):
                return K @ y + inflow

            t_eval = np.unique(np.append(t_obs[inside], stop))
            sol = solve_ivp(rhs, (t, stop), x, method="DOP853", rtol=RTOL, atol=ATOL, t_eval=t_eval)
            for k in np.flatnonzero(inside):
                out[k] = sol.y[:, np.searchsorted(t_eval, t_obs[k])]
            x = sol.y[:, -1]
            t = stop
        for time, kind, value, state in events:
            if time != stop:
                continue
            if kind == "bolus":
                x[state] += value
            elif kind == "rate":
                infusion[state] += value
            elif kind == "switch":
                x[system.switch_to] += x[system.switch_from]
                x[system.switch_from] = 0.0
        out[t_obs == stop] = x
    return out


def _lag(params, dose: Dose) -> float:
    return params.get("tlag", 0.0) if dose.cmt == 1 else 0.0


def _dose_events(model, params, dose: Dose, start: float) -> list[tuple[float, str, float, int]]:
    """Events of one dose whose input starts at `start`."""
    f = params.get("f", 1.0) if dose.cmt == 1 else 1.0
    state = state_of(model, build_system(model, params), dose.cmt)
    events: list[tuple[float, str, float, int]] = []
    if dose.rate > 0:
        duration = f * dose.amt / dose.rate
        events += [
            (start, "rate", dose.rate, state),
            (start + duration, "rate", -dose.rate, state),
        ]
    else:
        events.append((start, "bolus", f * dose.amt, state))
    if model.absorption == "dual" and dose.cmt == 1:
        switch = max(start, start - params.get("tlag", 0.0) + params["mtime"])
        events.append((switch, "switch", 0.0, 0))
    return events


def _steady_state_trough(model, params, system, dose: Dose) -> np.ndarray:
    """State just before an input start of the periodic regimen (fixed point of one interval)."""
    size = system.matrix.shape[0]
    events = _dose_events(model, params, dose, 0.0)
    free = np.column_stack(
        [
            _integrate(
                system, [e for e in events if e[1] == "switch"], np.eye(size)[i], 0.0, [dose.ii]
            )[0]
            for i in range(size)
        ]
    )
    forced = _integrate(system, events, np.zeros(size), 0.0, [dose.ii])[0]
    return np.linalg.solve(np.eye(size) - free, forced)


def _amounts(model, params, system, doses: list[Dose], times: np.ndarray) -> np.ndarray:
    """Central amount at `times` (all >= every dose time of an SS dose) from `doses`."""
    size = system.matrix.shape[0]
    total = np.zeros(times.size)
    plain = [d for d in doses if d.ss == 0 and d.amt > 0]
    trains = [d for d in doses if d.ss != 0 and d.amt > 0]
    if plain:
        events = [
            e for d in plain for e in _dose_events(model, params, d, d.time + _lag(params, d))
        ]
        t0 = min(d.time for d in plain)
        total += _integrate(system, events, np.zeros(size), t0, times)[:, system.central]
    for d in trains:
        trough = _steady_state_trough(model, params, system, d)
        start = d.time + _lag(params, d) - d.ii  # the input of the previous dose of the train
        events = _dose_events(model, params, d, start) + _dose_events(
            model, params, d, d.time + _lag(params, d)
        )
        after = times >= d.time
        total[after] += _integrate(system, events, trough, start, times[after])[:, system.central]
    return total


def reference_concentration(
    model: PKModel, params: dict[str, float], doses: list[Dose], times
) -> np.ndarray:
    """Central concentration at `times` by ODE integration (NONMEM semantics)."""
    times = np.asarray(times, dtype=float)
    system = build_system(model, params)
    result = np.zeros(times.size)
    # Group observations by the latest SS=1 reset before them.
    resets = sorted(d.time for d in doses if d.ss == 1 and d.amt > 0)
    bounds = [-np.inf, *resets, np.inf]
    for lo, hi in itertools.pairwise(bounds):
        group = (times >= lo) & (times < hi)
        if group.any():
            active = [d for d in doses if d.time >= lo]
            result[group] = _amounts(model, params, system, active, times[group])
    return result / params["v"]
