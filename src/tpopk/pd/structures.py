"""Thrombopoiesis model structures: declared parameters and their equations.

Each structure is written once, as numba kernels that serve both the PyMC graph (through
:mod:`tpopk.pd.solve`) and NumPy simulation. A structure provides four kernels, dispatched
on an integer id inside the compiled integrator so that everything caches on disk
(numba does not cache functions that receive other jitted functions as arguments):

``rhs``
    d(state)/dt given the state, the subject's parameter row and the drive ``m`` (the
    drug-effect multiplier at that instant).
``rhs_vjp``
    the vector-Jacobian product of ``rhs`` with a cotangent ``w``: returns ``w·∂f/∂m``,
    overwrites ``gy`` with ``w·∂f/∂y`` and adds ``w·∂f/∂p`` to ``gp``.
``init``
    the pre-treatment steady state in closed form from the baseline (never integrated to).
``init_vjp``
    adds ``g·∂y0/∂p`` to ``gp``.

The drive multiplies the rate the drug acts on: production for the transit, lifespan and
indirect-response types I/III, loss for indirect-response types II/IV. Stimulation
(TPO-RAs) is ``m > 1``, inhibition (cytotoxics) ``m < 1``; see :mod:`tpopk.pd.drug_effect`.

Units: time in h, platelets (or the response) in the unit of the baseline parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numba
import numpy as np
import numpy.typing as npt

from tpopk.errors import TpopkError


def njit[F: Callable[..., Any]](func: F) -> F:
    """Compile ``func`` with numba in nopython mode, cached on disk (``NUMBA_CACHE_DIR``)."""
    return cast(F, numba.njit(cache=True, fastmath=False)(func))


# Integer ids used by the compiled integrator to pick a structure's kernels.
FRIBERG = 0
INDIRECT_PRODUCTION = 1
INDIRECT_LOSS = 2
LIFESPAN = 3


@dataclass(frozen=True)
class PDParameter:
    """One declared parameter of a model structure.

    Parameters
    ----------
    name
        Name used in model cards and the posterior (``pop_<name>``, ``<name>``).
    unit
        Unit of the value the solver expects.
    description
        What it means, in the field's words.
    default
        Value a structure takes when a card does not estimate it (``None``: must be given).
    """

    name: str
    unit: str
    description: str
    default: float | None = None


@dataclass(frozen=True)
class PDModel:
    """A thrombopoiesis model structure the solver can integrate.

    Parameters
    ----------
    name
        Registry key.
    kernel_id
        Which compiled kernels integrate it (module constants ``FRIBERG`` ...).
    parameters
        Declared parameters, in the column order of the solver's parameter matrix.
    config
        Structural integers (number of transit or ageing compartments); they fix the
        number of states.
    drive
        Which rate the drug-effect multiplier acts on: ``"production"`` or ``"loss"``.
    observed
        Indices of the states whose sum is the observed response (the circulating count).
    description
        One line for model cards and reports.
    """

    name: str
    kernel_id: int
    parameters: tuple[PDParameter, ...]
    config: tuple[int, ...]
    drive: str
    observed: tuple[int, ...]
    description: str
    state_names: tuple[str, ...] = field(default=())

    @property
    def n_states(self) -> int:
        """Number of ODE states."""
        return len(self.state_names)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Declared parameter names, in solver column order."""
        return tuple(p.name for p in self.parameters)

    def config_array(self) -> npt.NDArray[np.int64]:
        """Structural integers as the array the kernels read."""
        return np.asarray(self.config, dtype=np.int64)


def friberg(n_transit: int = 3) -> PDModel:
    """Friberg transit model: proliferating precursors → ``n_transit`` → circulating.

    ``dProl/dt = ktr·Prol·(m(t)·(circ0/Circ)^gamma - 1)``, ``dT_i/dt = ktr·(T_{i-1} - T_i)``,
    ``dCirc/dt = ktr·T_n - kel_ratio·ktr·Circ`` with ``ktr = (n_transit + 1)/mtt``
    (Friberg et al., J Clin Oncol 2002;20:4713; three transit compartments is the
    published default, four is used for platelets by Pérez-Ruixo 2012 and Petrov 2024).

    ``kel_ratio`` is the disease modifier for the circulating compartment: the loss rate of
    circulating cells relative to ``ktr`` (1 in Friberg's model; > 1 for the increased
    platelet destruction of ITP; splenectomy lowers it). The feedback is anchored at the
    subject's own baseline ``circ0``, so the steady state is ``Circ = circ0`` and
    ``Prol = T_i = kel_ratio·circ0`` whatever ``kel_ratio`` is; in this structure reduced
    production (liver disease) shows in the lower ``circ0`` itself.

    Parameters
    ----------
    n_transit
        Number of transit compartments between precursors and circulation (≥ 1).

    Returns
    -------
    PDModel
        The structure, with states ``prol, transit_1..n, circ``.
    """
    if n_transit < 1:
        raise TpopkError(f"friberg: n_transit must be at least 1, got {n_transit}")
    return PDModel(
        name="friberg" if n_transit == 3 else f"friberg_{n_transit}",
        kernel_id=FRIBERG,
        parameters=(
            PDParameter("circ0", "10^9/L", "baseline circulating count (steady state)"),
            PDParameter("mtt", "h", "mean transit time, precursors to circulation"),
            PDParameter("gamma", "1", "feedback exponent on (circ0/circ)"),
            PDParameter(
                "kel_ratio",
                "1",
                "loss rate of circulating cells relative to ktr (ITP > 1)",
                default=1.0,
            ),
        ),
        config=(n_transit,),
        drive="production",
        observed=(n_transit + 1,),
        description=f"Friberg transit model, {n_transit} transit compartments, feedback",
        state_names=("prol", *(f"transit_{i + 1}" for i in range(n_transit)), "circ"),
    )


def indirect_response(kind: int) -> PDModel:
    """Indirect-response (turnover) model type I-IV (Dayneka, Garg & Jusko 1993).

    ``dR/dt = kout·r0·m(t) - kout·R`` (types I and III: drug acts on production) or
    ``dR/dt = kout·r0 - kout·m(t)·R`` (types II and IV: drug acts on loss). Types I/II
    inhibit (``m = 1 - effect``), III/IV stimulate (``m = 1 + effect``); the sign lives in
    the drug-effect model, so I and III (II and IV) share their equation.

    Parameters
    ----------
    kind
        1, 2, 3 or 4.

    Returns
    -------
    PDModel
        The structure, with one state ``response``.
    """
    if kind not in (1, 2, 3, 4):
        raise TpopkError(f"indirect_response: kind must be 1, 2, 3 or 4, got {kind}")
    on_production = kind in (1, 3)
    acts = "inhibits" if kind in (1, 2) else "stimulates"
    rate = "production" if on_production else "loss"
    return PDModel(
        name=f"idr{kind}",
        kernel_id=INDIRECT_PRODUCTION if on_production else INDIRECT_LOSS,
        parameters=(
            PDParameter("r0", "response unit", "baseline response (steady state)"),
            PDParameter("kout", "1/h", "first-order loss rate constant of the response"),
        ),
        config=(),
        drive=rate,
        observed=(0,),
        description=f"indirect response type {kind}: drug {acts} {rate}",
        state_names=("response",),
    )


def lifespan(n_precursor: int = 10, n_platelet: int = 10) -> PDModel:
    """Lifespan model in transit form: precursor and platelet ageing compartments.

    Precursors enter at ``kin·m(t)`` with ``kin = plt0/tplt`` and age through
    ``n_precursor`` compartments at rate ``n_precursor/tp``; platelets age through
    ``n_platelet`` compartments at rate ``n_platelet/tplt``; the observed count is the sum
    of the platelet compartments. The chain is the gamma-distributed-lifespan form of the
    Krzyzanski cytokinetic model (Krzyzanski, J PKPD 2011;38:179); 10 + 10 compartments as
    in Wang et al., AAPS J 2010;12:729 (romiplostim).

    Parameters
    ----------
    n_precursor, n_platelet
        Numbers of precursor and platelet ageing compartments (≥ 1 each).

    Returns
    -------
    PDModel
        The structure, with states ``precursor_1..`` then ``platelet_1..``.
    """
    if n_precursor < 1 or n_platelet < 1:
        raise TpopkError("lifespan: need at least one precursor and one platelet compartment")
    return PDModel(
        name="lifespan",
        kernel_id=LIFESPAN,
        parameters=(
            PDParameter("plt0", "10^9/L", "baseline platelet count (steady state)"),
            PDParameter("tp", "h", "precursor lifespan (maturation time)"),
            PDParameter("tplt", "h", "platelet lifespan in circulation"),
        ),
        config=(n_precursor, n_platelet),
        drive="production",
        observed=tuple(range(n_precursor, n_precursor + n_platelet)),
        description=(
            f"lifespan model, {n_precursor} precursor and {n_platelet} platelet compartments"
        ),
        state_names=(
            *(f"precursor_{i + 1}" for i in range(n_precursor)),
            *(f"platelet_{i + 1}" for i in range(n_platelet)),
        ),
    )


PD_MODELS: dict[str, PDModel] = {
    model.name: model
    for model in (
        friberg(3),
        friberg(4),
        *(indirect_response(k) for k in (1, 2, 3, 4)),
        lifespan(10, 10),
    )
}


# ---------------------------------------------------------------------------------------
# Kernels. Arguments: cfg (structural ints), p (parameter row), y (state), m (drive).
# ---------------------------------------------------------------------------------------


@njit
def _feedback_circ(circ: float, circ0: float) -> float:
    # A trial RK stage may overshoot below zero on a coarse step; the power needs circ > 0.
    return max(circ, 1e-9 * circ0)


@njit
def _friberg_rhs(cfg: Any, p: Any, y: Any, m: float, dy: Any) -> None:
    n = cfg[0]
    circ0, mtt, gamma, kel = p[0], p[1], p[2], p[3]
    ktr = (n + 1) / mtt
    fb = (circ0 / _feedback_circ(y[n + 1], circ0)) ** gamma
    dy[0] = ktr * y[0] * (m * fb - 1.0)
    for i in range(1, n + 1):
        dy[i] = ktr * (y[i - 1] - y[i])
    dy[n + 1] = ktr * (y[n] - kel * y[n + 1])


@njit
def _friberg_rhs_vjp(cfg: Any, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any) -> float:
    n = cfg[0]
    circ0, mtt, gamma, kel = p[0], p[1], p[2], p[3]
    ktr = (n + 1) / mtt
    c = _feedback_circ(y[n + 1], circ0)
    fb = (circ0 / c) ** gamma
    prol = y[0]
    g_ktr = w[0] * prol * (m * fb - 1.0)
    # ∂/∂fb of dy[0] times w[0], then chained into circ, circ0 and gamma.
    g_fb = w[0] * ktr * prol * m
    gy[0] = w[0] * ktr * (m * fb - 1.0)
    for i in range(1, n + 1):
        gy[i] = 0.0
    for i in range(1, n + 1):
        gy[i - 1] += w[i] * ktr
        gy[i] -= w[i] * ktr
        g_ktr += w[i] * (y[i - 1] - y[i])
    gy[n] += w[n + 1] * ktr
    gy[n + 1] = -w[n + 1] * ktr * kel
    if y[n + 1] > 1e-9 * circ0:
        gy[n + 1] += -g_fb * gamma * fb / c
    g_ktr += w[n + 1] * (y[n] - kel * y[n + 1])
    gp[0] += g_fb * gamma * fb / circ0
    gp[1] += -g_ktr * ktr / mtt
    gp[2] += g_fb * fb * np.log(circ0 / c)
    gp[3] += -w[n + 1] * ktr * y[n + 1]
    return w[0] * ktr * prol * fb  # type: ignore[no-any-return]


@njit
def _friberg_init(cfg: Any, p: Any, y0: Any) -> None:
    n = cfg[0]
    for i in range(n + 1):
        y0[i] = p[3] * p[0]
    y0[n + 1] = p[0]


@njit
def _friberg_init_vjp(cfg: Any, p: Any, g: Any, gp: Any) -> None:
    n = cfg[0]
    total = 0.0
    for i in range(n + 1):
        total += g[i]
    gp[0] += p[3] * total + g[n + 1]
    gp[3] += p[0] * total


@njit
def _indirect_rhs(on_production: bool, p: Any, y: Any, m: float, dy: Any) -> None:
    r0, kout = p[0], p[1]
    if on_production:
        dy[0] = kout * (r0 * m - y[0])
    else:
        dy[0] = kout * (r0 - m * y[0])


@njit
def _indirect_rhs_vjp(
    on_production: bool, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any
) -> float:
    r0, kout = p[0], p[1]
    if on_production:
        gy[0] = -kout * w[0]
        gp[0] += kout * m * w[0]
        gp[1] += (r0 * m - y[0]) * w[0]
        return kout * r0 * w[0]  # type: ignore[no-any-return]
    gy[0] = -kout * m * w[0]
    gp[0] += kout * w[0]
    gp[1] += (r0 - m * y[0]) * w[0]
    return -kout * y[0] * w[0]  # type: ignore[no-any-return]


@njit
def _lifespan_rhs(cfg: Any, p: Any, y: Any, m: float, dy: Any) -> None:
    n_p, n_l = cfg[0], cfg[1]
    plt0, tp, tplt = p[0], p[1], p[2]
    kp = n_p / tp
    kl = n_l / tplt
    dy[0] = plt0 / tplt * m - kp * y[0]
    for i in range(1, n_p):
        dy[i] = kp * (y[i - 1] - y[i])
    dy[n_p] = kp * y[n_p - 1] - kl * y[n_p]
    for j in range(n_p + 1, n_p + n_l):
        dy[j] = kl * (y[j - 1] - y[j])


@njit
def _lifespan_rhs_vjp(cfg: Any, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any) -> float:
    n_p, n_l = cfg[0], cfg[1]
    plt0, tp, tplt = p[0], p[1], p[2]
    kp = n_p / tp
    kl = n_l / tplt
    kin = plt0 / tplt
    g_kp = -w[0] * y[0]
    g_kl = 0.0
    for k in range(n_p + n_l):
        gy[k] = 0.0
    gy[0] -= w[0] * kp
    for i in range(1, n_p):
        gy[i - 1] += w[i] * kp
        gy[i] -= w[i] * kp
        g_kp += w[i] * (y[i - 1] - y[i])
    gy[n_p - 1] += w[n_p] * kp
    gy[n_p] -= w[n_p] * kl
    g_kp += w[n_p] * y[n_p - 1]
    g_kl -= w[n_p] * y[n_p]
    for j in range(n_p + 1, n_p + n_l):
        gy[j - 1] += w[j] * kl
        gy[j] -= w[j] * kl
        g_kl += w[j] * (y[j - 1] - y[j])
    g_kin = w[0] * m
    gp[0] += g_kin / tplt
    gp[1] += -g_kp * kp / tp
    gp[2] += -g_kin * kin / tplt - g_kl * kl / tplt
    return w[0] * kin  # type: ignore[no-any-return]


@njit
def _lifespan_init(cfg: Any, p: Any, y0: Any) -> None:
    n_p, n_l = cfg[0], cfg[1]
    plt0, tp, tplt = p[0], p[1], p[2]
    for i in range(n_p):
        y0[i] = plt0 * tp / (tplt * n_p)
    for j in range(n_p, n_p + n_l):
        y0[j] = plt0 / n_l


@njit
def _lifespan_init_vjp(cfg: Any, p: Any, g: Any, gp: Any) -> None:
    n_p, n_l = cfg[0], cfg[1]
    plt0, tp, tplt = p[0], p[1], p[2]
    g_prec = 0.0
    for i in range(n_p):
        g_prec += g[i]
    g_plt = 0.0
    for j in range(n_p, n_p + n_l):
        g_plt += g[j]
    gp[0] += g_prec * tp / (tplt * n_p) + g_plt / n_l
    gp[1] += g_prec * plt0 / (tplt * n_p)
    gp[2] += -g_prec * plt0 * tp / (tplt * tplt * n_p)


@njit
def rhs(kernel_id: int, cfg: Any, p: Any, y: Any, m: float, dy: Any) -> None:
    """Dispatch to the right-hand side of structure ``kernel_id``."""
    if kernel_id == FRIBERG:
        _friberg_rhs(cfg, p, y, m, dy)
    elif kernel_id == LIFESPAN:
        _lifespan_rhs(cfg, p, y, m, dy)
    else:
        _indirect_rhs(kernel_id == INDIRECT_PRODUCTION, p, y, m, dy)


@njit
def rhs_vjp(kernel_id: int, cfg: Any, p: Any, y: Any, m: float, w: Any, gy: Any, gp: Any) -> float:
    """Dispatch to the vector-Jacobian product of structure ``kernel_id``."""
    if kernel_id == FRIBERG:
        return _friberg_rhs_vjp(cfg, p, y, m, w, gy, gp)
    if kernel_id == LIFESPAN:
        return _lifespan_rhs_vjp(cfg, p, y, m, w, gy, gp)
    return _indirect_rhs_vjp(kernel_id == INDIRECT_PRODUCTION, p, y, m, w, gy, gp)


@njit
def init(kernel_id: int, cfg: Any, p: Any, y0: Any) -> None:
    """Dispatch to the closed-form steady state of structure ``kernel_id``."""
    if kernel_id == FRIBERG:
        _friberg_init(cfg, p, y0)
    elif kernel_id == LIFESPAN:
        _lifespan_init(cfg, p, y0)
    else:
        y0[0] = p[0]


@njit
def init_vjp(kernel_id: int, cfg: Any, p: Any, g: Any, gp: Any) -> None:
    """Dispatch to the vector-Jacobian product of the steady state of ``kernel_id``."""
    if kernel_id == FRIBERG:
        _friberg_init_vjp(cfg, p, g, gp)
    elif kernel_id == LIFESPAN:
        _lifespan_init_vjp(cfg, p, g, gp)
    else:
        gp[0] += g[0]
