"""Array namespaces: every closed form is written once and evaluated by NumPy or PyTensor.

A formula in :mod:`tpopk.pk` receives ``xp`` and calls only names that NumPy and
``pytensor.tensor`` spell the same way (``exp``, ``expm1``, ``where``, ``maximum``,
``sum`` ...). The single name they spell differently, array construction, is
:func:`as_array`. That way the PyMC graph and fast NumPy simulation share one source
of truth per equation and cannot drift apart.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from tpopk.errors import TpopkError

__all__ = ["REQUIRED_NAMES", "Array", "as_array", "is_numpy", "resolve_namespace"]

Array = Any
"""A NumPy array or a PyTensor tensor variable (the namespaces are duck-typed)."""

REQUIRED_NAMES = (
    "abs",
    "arccos",
    "ceil",
    "cos",
    "equal",
    "exp",
    "expm1",
    "log",
    "maximum",
    "minimum",
    "sqrt",
    "sum",
    "where",
)
"""Functions a namespace must provide, with NumPy's meaning, for the PK closed forms."""


def resolve_namespace(xp: ModuleType) -> ModuleType:
    """Check that ``xp`` can evaluate the PK closed forms and return it.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``pytensor.tensor``.

    Returns
    -------
    module
        ``xp`` itself.

    Raises
    ------
    TpopkError
        If ``xp`` lacks one of :data:`REQUIRED_NAMES`.
    """
    missing = [name for name in REQUIRED_NAMES if not hasattr(xp, name)]
    if missing:
        raise TpopkError(
            f"array namespace {getattr(xp, '__name__', xp)!r} lacks {missing}; "
            "pass numpy or pytensor.tensor"
        )
    return xp


def is_numpy(xp: ModuleType) -> bool:
    """Return whether ``xp`` is NumPy (eager evaluation, concrete values)."""
    return xp is np


def as_array(xp: ModuleType, value: object) -> Array:
    """Convert ``value`` to an array of ``xp`` (floats become float64 under NumPy).

    Parameters
    ----------
    xp : module
        ``numpy`` or ``pytensor.tensor``.
    value : array_like or tensor
        Value to convert; PyTensor variables pass through unchanged.

    Returns
    -------
    Array
        ``numpy.ndarray`` or PyTensor ``TensorVariable``.
    """
    if is_numpy(xp):
        array = np.asarray(value)
        return array.astype(np.float64) if array.dtype.kind in "biu" else array
    return xp.as_tensor_variable(value)
