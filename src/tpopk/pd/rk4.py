"""Fixed-step RK4 over all subjects and its discrete adjoint (exact gradient).

Both kernels loop over subjects and over the steps of each subject's grid
(:class:`tpopk.pd.grid.SolverGrid`). The drive (drug-effect multiplier) is sampled at every
node and every step midpoint, ``drive[s, 2k]`` at node ``k`` and ``drive[s, 2k + 1]`` at
the midpoint of step ``k``: exactly the instants classical RK4 evaluates, so a drive
computed in a PyMC graph from closed-form PK is used without interpolation.

The adjoint differentiates the discrete RK4 map itself, not the continuous ODE: the
gradient is exact for the numbers the forward pass returns, so NUTS sees a log density
and a gradient that agree to rounding whatever the step. Zero-length (padding) steps are
identities in both directions. Cost is linear in subjects x steps x states.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tpopk.pd.structures import init, init_vjp, njit, rhs, rhs_vjp


@njit
def rk4_forward(kernel_id: int, cfg: Any, params: Any, drive: Any, h: Any, n_states: int) -> Any:
    """Integrate every subject and return the states at every grid node.

    Parameters
    ----------
    kernel_id, cfg
        Structure id and structural integers (:class:`tpopk.pd.structures.PDModel`).
    params
        ``[S, P]`` parameter rows.
    drive
        ``[S, 2K + 1]`` drug-effect multiplier at nodes and step midpoints.
    h
        ``[S, K]`` step lengths in h (zero for padding).
    n_states
        Number of ODE states.

    Returns
    -------
    numpy.ndarray
        ``[S, K + 1, n_states]`` states at the nodes; node 0 is the steady state.
    """
    n_subj, n_steps = h.shape
    out = np.empty((n_subj, n_steps + 1, n_states))
    k1 = np.empty(n_states)
    k2 = np.empty(n_states)
    k3 = np.empty(n_states)
    k4 = np.empty(n_states)
    z = np.empty(n_states)
    for s in range(n_subj):
        p = params[s]
        y = out[s, 0]
        init(kernel_id, cfg, p, y)
        for k in range(n_steps):
            hk = h[s, k]
            y_next = out[s, k + 1]
            if hk == 0.0:
                y_next[:] = y
                y = y_next
                continue
            rhs(kernel_id, cfg, p, y, drive[s, 2 * k], k1)
            for i in range(n_states):
                z[i] = y[i] + 0.5 * hk * k1[i]
            rhs(kernel_id, cfg, p, z, drive[s, 2 * k + 1], k2)
            for i in range(n_states):
                z[i] = y[i] + 0.5 * hk * k2[i]
            rhs(kernel_id, cfg, p, z, drive[s, 2 * k + 1], k3)
            for i in range(n_states):
                z[i] = y[i] + hk * k3[i]
            rhs(kernel_id, cfg, p, z, drive[s, 2 * k + 2], k4)
            for i in range(n_states):
                y_next[i] = y[i] + hk / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])
            y = y_next
    return out


@njit
def rk4_adjoint(
    kernel_id: int, cfg: Any, params: Any, drive: Any, h: Any, states: Any, g_states: Any
) -> Any:
    """Vector-Jacobian product of :func:`rk4_forward` by reverse sweep through the steps.

    Parameters
    ----------
    kernel_id, cfg, params, drive, h
        As for :func:`rk4_forward`.
    states
        ``[S, K + 1, n_states]`` output of :func:`rk4_forward` for the same inputs.
    g_states
        ``[S, K + 1, n_states]`` cotangent of that output.

    Returns
    -------
    tuple of numpy.ndarray
        Cotangents of ``params`` ``[S, P]`` and of ``drive`` ``[S, 2K + 1]``.
    """
    n_subj, n_steps = h.shape
    n_states = states.shape[2]
    g_params = np.zeros(params.shape)
    g_drive = np.zeros(drive.shape)
    lam = np.empty(n_states)
    k1 = np.empty(n_states)
    k2 = np.empty(n_states)
    k3 = np.empty(n_states)
    z2 = np.empty(n_states)
    z3 = np.empty(n_states)
    z4 = np.empty(n_states)
    a = np.empty(n_states)
    gz = np.empty(n_states)
    for s in range(n_subj):
        p = params[s]
        gp = g_params[s]
        lam[:] = g_states[s, n_steps]
        for k in range(n_steps - 1, -1, -1):
            hk = h[s, k]
            if hk != 0.0:
                y = states[s, k]
                ma, mb, mc = drive[s, 2 * k], drive[s, 2 * k + 1], drive[s, 2 * k + 2]
                # Recompute the stage inputs of this step (only the node states are stored).
                rhs(kernel_id, cfg, p, y, ma, k1)
                for i in range(n_states):
                    z2[i] = y[i] + 0.5 * hk * k1[i]
                rhs(kernel_id, cfg, p, z2, mb, k2)
                for i in range(n_states):
                    z3[i] = y[i] + 0.5 * hk * k2[i]
                rhs(kernel_id, cfg, p, z3, mb, k3)
                for i in range(n_states):
                    z4[i] = y[i] + hk * k3[i]
                # Stage 4: y' depends on k4 with weight h/6.
                for i in range(n_states):
                    a[i] = hk / 6.0 * lam[i]
                g_drive[s, 2 * k + 2] += rhs_vjp(kernel_id, cfg, p, z4, mc, a, gz, gp)
                acc = gz.copy()  # ∂L/∂y through the stage inputs, summed
                # Stage 3: weight h/3 on y', plus h·(∂L/∂z4) through z4 = y + h·k3.
                for i in range(n_states):
                    a[i] = hk / 3.0 * lam[i] + hk * gz[i]
                g_drive[s, 2 * k + 1] += rhs_vjp(kernel_id, cfg, p, z3, mb, a, gz, gp)
                acc += gz
                # Stage 2: z3 = y + h/2·k2.
                for i in range(n_states):
                    a[i] = hk / 3.0 * lam[i] + 0.5 * hk * gz[i]
                g_drive[s, 2 * k + 1] += rhs_vjp(kernel_id, cfg, p, z2, mb, a, gz, gp)
                acc += gz
                # Stage 1: z2 = y + h/2·k1.
                for i in range(n_states):
                    a[i] = hk / 6.0 * lam[i] + 0.5 * hk * gz[i]
                g_drive[s, 2 * k] += rhs_vjp(kernel_id, cfg, p, y, ma, a, gz, gp)
                acc += gz
                lam += acc
            lam += g_states[s, k]
        init_vjp(kernel_id, cfg, p, lam, gp)
    return g_params, g_drive
