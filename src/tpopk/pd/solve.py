"""The platelet solver as PyTensor Ops, and the same kernels for NumPy simulation.

Method (:mod:`tpopk.pd.kernels`): fixed-step RK4, exponential steps for the lifespan
chain, on a per-subject grid whose nodes include the observation and dose times
(:class:`tpopk.pd.grid.SolverGrid`), compiled with numba and looping over all subjects in
one call; gradients by the discrete adjoint of the same map, so the gradient is exact for
the returned solution. The drug effect enters as a time course on
the RK4 stage instants, computed in the PyMC graph from closed-form PK, so gradients with
respect to PK and potency parameters flow through PyTensor's autodiff of that graph and
this Op's cotangent for the drive.

The Ops run through ``perform`` under the C/Python linkers and natively (no Python call)
under PyTensor's numba backend, which nutpie uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import (
    numba_njit,
    register_funcify_default_op_cache_key,
)

from tpopk.errors import TpopkError
from tpopk.pd import kernels
from tpopk.pd.grid import SolverGrid
from tpopk.pd.kernels import rk4_adjoint, rk4_forward
from tpopk.pd.structures import PDModel


def _kernel_array(x: Any) -> npt.NDArray[np.float64]:
    """``x`` as the kernels' one signature types it: float64, C-contiguous, writable."""
    return np.require(x, np.float64, ["C", "W"])


class PDSolve(Op):  # type: ignore[misc]
    """States ``[S, K + 1, n_states]`` at the grid nodes, and the RK4 stage inputs.

    Inputs are ``(params [S, P], drive [S, 2K + 1], steps [S, K], doses [S, K + 1])``;
    steps and doses are data. The second output ``[S, K, 3, ·]`` is the tape the
    gradient reads; it is not differentiable itself.
    """

    __props__ = ("kernel_id", "config", "n_states", "dose_state")

    def __init__(
        self, kernel_id: int, config: tuple[int, ...], n_states: int, dose_state: int
    ) -> None:
        self.kernel_id = kernel_id
        self.config = config
        self.n_states = n_states
        self.dose_state = dose_state

    def make_node(self, *inputs: Any) -> Apply[Any]:
        """Build the apply node from ``(params, drive, steps, doses)``, float64 matrices."""
        inputs = tuple(pt.cast(pt.as_tensor_variable(x), "float64") for x in inputs)
        if any(x.ndim != 2 for x in inputs):
            raise TpopkError("params, drive and steps must be matrices [subject, ·]")
        return Apply(self, inputs, [pt.tensor3(dtype="float64"), pt.tensor4(dtype="float64")])

    def perform(self, node: Apply[Any], inputs: Any, output_storage: Any) -> None:
        """Integrate with the compiled RK4 kernel."""
        params, drive, steps, doses = (_kernel_array(x) for x in inputs)
        output_storage[0][0], output_storage[1][0] = rk4_forward(
            self.kernel_id,
            np.asarray(self.config, dtype=np.int64),
            params,
            drive,
            steps,
            doses,
            self.dose_state,
            self.n_states,
        )

    def infer_shape(self, node: Apply[Any], shapes: Any) -> Any:
        """States have one row per subject and one slab per node."""
        (n_subj, _), _, (_, n_steps), _ = shapes
        width = kernels.stage_tape_width(self.kernel_id, self.n_states)
        return [(n_subj, n_steps + 1, self.n_states), (n_subj, n_steps, 3, width)]

    def pullback(self, inputs: Any, outputs: Any, cotangents: Any) -> list[Any]:
        """Cotangents of params and drive by the discrete adjoint; steps, doses are data."""
        params, drive, steps, doses = inputs
        if not isinstance(cotangents[1].type, DisconnectedType):
            raise TpopkError("the RK4 stage tape of PDSolve is not differentiable")
        vjp = PDSolveVJP(self.kernel_id, self.config)
        g_params, g_drive = vjp.make_node(
            params, drive, steps, outputs[0], outputs[1], cotangents[0]
        ).outputs
        return [
            g_params,
            g_drive,
            grad_undefined(self, 2, steps, "the grid is data"),
            grad_undefined(self, 3, doses, "doses are data"),
        ]


class PDSolveVJP(Op):  # type: ignore[misc]
    """Cotangents of ``(params, drive)`` for :class:`PDSolve` (discrete RK4 adjoint)."""

    __props__ = ("kernel_id", "config")

    def __init__(self, kernel_id: int, config: tuple[int, ...]) -> None:
        self.kernel_id = kernel_id
        self.config = config

    def make_node(self, *inputs: Any) -> Apply[Any]:
        """Build the apply node from ``(params, drive, steps, states, stages, g_states)``."""
        inputs = tuple(pt.cast(pt.as_tensor_variable(x), "float64") for x in inputs)
        return Apply(self, inputs, [inputs[0].type(), inputs[1].type()])

    def perform(self, node: Apply[Any], inputs: Any, output_storage: Any) -> None:
        """Run the reverse sweep."""
        params, drive, steps, states, stages, g_states = (_kernel_array(x) for x in inputs)
        g_params, g_drive = rk4_adjoint(
            self.kernel_id,
            np.asarray(self.config, dtype=np.int64),
            params,
            drive,
            steps,
            states,
            stages,
            g_states,
        )
        output_storage[0][0] = g_params
        output_storage[1][0] = g_drive

    def infer_shape(self, node: Apply[Any], shapes: Any) -> Any:
        """Cotangents have their primal's shape."""
        return [shapes[0], shapes[1]]


# PyTensor caches compiled graphs by Op props; salting the key with the kernels' source
# and this file's (the wrappers below) keeps a cache from an older tpopk from being reused.
_SOURCES = Path(kernels.__file__).read_bytes() + Path(__file__).read_bytes()
_KERNEL_SALT = int(hashlib.sha256(_SOURCES).hexdigest()[:15], 16)

# The argument types every caller passes the RK4 kernels, so each compiles once: numba
# compiles anew for each distinct typing, and a cold compile of rk4_adjoint takes minutes.
# Python callers pass int and writable C-contiguous float64 (_kernel_array); the
# numba-backend wrappers below cast and copy to match.
_I8, _CFG = numba.types.int64, numba.types.int64[::1]
_F2, _F3, _F4 = (numba.types.Array(numba.types.float64, n, "C") for n in (2, 3, 4))
KERNEL_SIGNATURES = {
    "rk4_forward": (_I8, _CFG, _F2, _F2, _F2, _F2, _I8, _I8),
    "rk4_adjoint": (_I8, _CFG, _F2, _F2, _F2, _F3, _F4, _F3),
}


def _compile(name: str) -> str:
    getattr(kernels, name).compile(KERNEL_SIGNATURES[name])
    return name


def precompile() -> None:
    """Compile (or load from numba's disk cache) the RK4 forward pass and its adjoint.

    In two processes at once, so that a cold cache costs the longer of the two compiles
    rather than their sum, and parallel test workers then load one compile instead of
    each repeating it (``make test`` runs this first).
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        for name in pool.map(_compile, KERNEL_SIGNATURES):
            logging.getLogger(__name__).info("compiled %s", name)


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of handing it back (glibc only).

    glibc serves each allocation above its mmap threshold (at most 32 MB) by a fresh
    ``mmap`` and unmaps it on free, so once the states pass 32 MB (~700 subjects on a
    300-step grid) every log density + gradient faults in and zeroes its states, stage
    tape and cotangents anew: at 2 000 subjects the lifespan kernels then cost 1.1-1.4x
    per subject what they cost at 200 (benchmarks/README.md, "The reference gradient by
    component; propagator builds; freed memory kept"). With mmap and trimming off, the
    next call reuses the freed blocks; the process keeps its peak heap. The fitting path
    calls this; returns whether the allocator took the settings (False off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


# In jitted code int64(x) of a constant is a runtime int64, where the constant itself would
# type as Literal[int] (a compile per value).
_runtime_int: Any = numba.int64


def _numba_pd_solve(op: PDSolve, node: Apply[Any], **kwargs: Any) -> tuple[Any, int]:
    kernel_id, n_states, dose_state = op.kernel_id, op.n_states, op.dose_state
    config = np.asarray(op.config, dtype=np.int64)

    def pd_solve(params: Any, drive: Any, steps: Any, doses: Any) -> Any:
        # Closure constants would type as Literal[int] and constant inputs as read-only
        # arrays, each combination a separate compile of the kernels (minutes each): pass
        # the one signature every caller uses (KERNEL_SIGNATURES). The [subject, ·]
        # inputs are copied, the larger computed ones (states, stages) are not.
        return rk4_forward(
            _runtime_int(kernel_id),
            config.copy(),
            params.copy(),
            drive.copy(),
            steps.copy(),
            doses.copy(),
            _runtime_int(dose_state),
            _runtime_int(n_states),
        )

    return numba_njit(pd_solve), _KERNEL_SALT


def _numba_pd_solve_vjp(op: PDSolveVJP, node: Apply[Any], **kwargs: Any) -> tuple[Any, int]:
    kernel_id = op.kernel_id
    config = np.asarray(op.config, dtype=np.int64)

    def pd_solve_vjp(
        params: Any, drive: Any, steps: Any, states: Any, stages: Any, g_states: Any
    ) -> Any:
        return rk4_adjoint(
            _runtime_int(kernel_id),
            config.copy(),
            params.copy(),
            drive.copy(),
            steps.copy(),
            states,
            stages,
            g_states,
        )

    return numba_njit(pd_solve_vjp), _KERNEL_SALT


# Under PyTensor's numba backend (nutpie) the kernels are called natively, not via perform.
register_funcify_default_op_cache_key(PDSolve)(_numba_pd_solve)
register_funcify_default_op_cache_key(PDSolveVJP)(_numba_pd_solve_vjp)


def _check_shapes(model: PDModel, grid: SolverGrid, n_params: int, drive_cols: int) -> None:
    if n_params != len(model.parameters):
        raise TpopkError(
            f"{model.name} takes {len(model.parameters)} parameter columns "
            f"{model.parameter_names}, got {n_params}"
        )
    if drive_cols != grid.stage_times.shape[1]:
        raise TpopkError(
            f"drive must be given at grid.stage_times ({grid.stage_times.shape[1]} columns), "
            f"got {drive_cols}"
        )


def _doses(
    model: PDModel, grid: SolverGrid, doses: npt.ArrayLike | None
) -> npt.NDArray[np.float64]:
    shape = (grid.n_subjects, grid.n_nodes)
    if doses is None:
        if model.dose_state >= 0:
            raise TpopkError(f"{model.name} takes its doses in the ODE: pass doses=")
        return np.zeros(shape)
    if model.dose_state < 0:
        raise TpopkError(f"{model.name} has no dosed state; its drug enters through drive")
    out = np.asarray(doses, dtype=np.float64)
    if out.shape != shape:
        raise TpopkError(f"doses must have shape {shape} (SolverGrid.dose_amounts)")
    return out


def solve(
    model: PDModel,
    params: Any,
    drive: Any,
    grid: SolverGrid,
    doses: npt.ArrayLike | None = None,
) -> Any:
    """Symbolic states of ``model`` at every grid node, for a PyMC/PyTensor graph.

    Parameters
    ----------
    model
        The structure (:data:`tpopk.pd.PD_MODELS`).
    params
        ``[S, P]`` tensor, columns in ``model.parameter_names`` order, natural units.
    drive
        ``[S, 2K + 1]`` tensor, the drug-effect multiplier at ``grid.stage_times``
        (ones for no drug); see :mod:`tpopk.pd.drug_effect`.
    grid
        The integration grid.
    doses
        ``[S, K + 1]`` bolus amounts per node (:meth:`SolverGrid.dose_amounts`), for
        structures with a ``dose_state``; data, not differentiated.

    Returns
    -------
    TensorVariable
        ``[S, K + 1, n_states]`` states at ``grid.times``.
    """
    params = pt.as_tensor_variable(params)
    drive = pt.as_tensor_variable(drive)
    n_params = params.type.shape[1]
    drive_cols = drive.type.shape[1]
    _check_shapes(
        model,
        grid,
        len(model.parameters) if n_params is None else n_params,
        grid.stage_times.shape[1] if drive_cols is None else drive_cols,
    )
    op = PDSolve(model.kernel_id, model.config, model.n_states, model.dose_state)
    states, _ = op(params, drive, pt.constant(grid.steps), pt.constant(_doses(model, grid, doses)))
    return states


def observe(model: PDModel, states: Any, grid: SolverGrid) -> Any:
    """Read the observed response (e.g. circulating platelets) at each observation.

    Parameters
    ----------
    model
        The structure that produced ``states``.
    states
        ``[S, K + 1, n_states]`` from :func:`solve` (tensor) or :func:`simulate` (array).
    grid
        The grid they were solved on.

    Returns
    -------
    TensorVariable or numpy.ndarray
        ``[N]`` the sum of ``model.observed`` states, in observation order.
    """
    flat = states.reshape((grid.n_subjects * grid.n_nodes, model.n_states))[grid.obs_index]
    return flat[:, list(model.observed)].sum(axis=1)


def simulate(
    model: PDModel,
    params: npt.ArrayLike,
    drive: npt.ArrayLike,
    grid: SolverGrid,
    doses: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64]:
    """Numerical states of ``model`` at every grid node (same kernel as :func:`solve`).

    Parameters
    ----------
    model, grid
        As for :func:`solve`.
    params
        ``[S, P]`` parameter rows.
    drive
        ``[S, 2K + 1]`` drug-effect multiplier at ``grid.stage_times``.
    doses
        As for :func:`solve`.

    Returns
    -------
    numpy.ndarray
        ``[S, K + 1, n_states]`` states at ``grid.times``.
    """
    p = np.ascontiguousarray(params, dtype=np.float64)
    m = np.ascontiguousarray(drive, dtype=np.float64)
    if p.ndim != 2 or m.ndim != 2:
        raise TpopkError("params and drive must be 2-D arrays [subject, ·]")
    _check_shapes(model, grid, p.shape[1], m.shape[1])
    out: npt.NDArray[np.float64]
    out, _ = rk4_forward(
        model.kernel_id,
        model.config_array(),
        p,
        m,
        _kernel_array(grid.steps),
        _kernel_array(_doses(model, grid, doses)),
        model.dose_state,
        model.n_states,
    )
    return out
