"""Fitting cards to event data: NUTS through nutpie, or a fast approximation.

:mod:`tpopk.inference.fitting` holds :func:`fit` and the :class:`Fit` (an ArviZ DataTree
with its cards and data); :mod:`tpopk.inference.nutpie_bridge` runs nutpie on PyTensor's
cached numba functions.
"""

from tpopk.inference.fitting import (
    FIT_FORMAT,
    INITS,
    MASS_MATRICES,
    METHODS,
    Fit,
    FitFileError,
    compute_pred,
    fit,
    run_record,
)

__all__ = [
    "FIT_FORMAT",
    "INITS",
    "MASS_MATRICES",
    "METHODS",
    "Fit",
    "FitFileError",
    "compute_pred",
    "fit",
    "run_record",
]
