"""Drug-effect models: concentration → multiplier of the rate the drug acts on.

Written once with plain arithmetic and ``xp.power`` so the same function runs on NumPy
arrays (simulation) and PyTensor tensors (the PyMC graph): pass ``xp=numpy`` or
``xp=pytensor.tensor``. A stimulating effect (TPO-receptor agonists) gives ``1 + E(C)``,
an inhibiting one (cytotoxics, indirect-response types I/II) ``1 - E(C)``. The result is
the solver's ``drive``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from tpopk.errors import TpopkError


def _signed(effect: Any, direction: str) -> Any:
    if direction == "stimulate":
        return 1.0 + effect
    if direction == "inhibit":
        return 1.0 - effect
    raise TpopkError(f"direction must be 'stimulate' or 'inhibit', got {direction!r}")


def linear(conc: Any, slope: Any, direction: str = "stimulate") -> Any:
    """Linear effect ``1 ± slope·C``.

    Parameters
    ----------
    conc
        Concentration (any unit; ``slope`` in its reciprocal).
    slope
        Effect per unit concentration.
    direction
        ``"stimulate"`` or ``"inhibit"``.

    Returns
    -------
    array or tensor
        The multiplier, broadcast over ``conc`` and ``slope``.
    """
    return _signed(slope * conc, direction)


def emax(conc: Any, emax: Any, ec50: Any, direction: str = "stimulate") -> Any:
    """Emax effect ``1 ± emax·C/(ec50 + C)``.

    Parameters
    ----------
    conc
        Concentration.
    emax
        Maximal effect (fraction of baseline rate, ≥ 0).
    ec50
        Concentration at half-maximal effect, unit of ``conc``.
    direction
        ``"stimulate"`` or ``"inhibit"``.

    Returns
    -------
    array or tensor
        The multiplier.
    """
    return _signed(emax * conc / (ec50 + conc), direction)


def sigmoid_emax(
    conc: Any, emax: Any, ec50: Any, hill: Any, direction: str = "stimulate", xp: ModuleType = np
) -> Any:
    """Sigmoid Emax effect ``1 ± emax·C^hill/(ec50^hill + C^hill)``.

    Written as ``emax/(1 + (ec50/C)^hill)``, with ``C`` floored at ``1e-12·ec50``, so
    the value and the gradient with respect to ``hill`` stay finite where ``C = 0``.

    Parameters
    ----------
    conc
        Concentration.
    emax
        Maximal effect.
    ec50
        Concentration at half-maximal effect, unit of ``conc``.
    hill
        Hill coefficient (steepness).
    direction
        ``"stimulate"`` or ``"inhibit"``.
    xp
        ``numpy`` or ``pytensor.tensor``.

    Returns
    -------
    array or tensor
        The multiplier.
    """
    ratio = ec50 / xp.maximum(conc, 1e-12 * ec50)
    return _signed(emax / (1.0 + xp.power(ratio, hill)), direction)


#: Drug-effect models by name, for model cards.
DRUG_EFFECTS = {"linear": linear, "emax": emax, "sigmoid_emax": sigmoid_emax}
