"""tpopk: Bayesian PK/PD of thrombopoietin-receptor agonists with PyMC and ArviZ.

The public API: :func:`fit` model cards to event data, getting a :class:`Fit` (an ArviZ
DataTree with its cards and data) that can be saved, reloaded and summarised, and
:func:`compare` the arms of a trial design simulated from its posterior; :func:`predict`
PRED and IPRED for event records from a fit, typical values or the cards.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from tpopk.errors import TpopkError, TpopkWarning

if TYPE_CHECKING:
    from tpopk.inference import Fit, fit
    from tpopk.simulate.comparison import compare
    from tpopk.simulate.predict import predict

try:
    __version__ = version("tpopk")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["Fit", "TpopkError", "TpopkWarning", "__version__", "compare", "fit", "predict"]


def __getattr__(name: str) -> Any:
    # PyMC takes seconds to import: load it on first use, not for `tpopk validate`.
    if name in ("Fit", "fit"):
        from tpopk import inference

        return getattr(inference, name)
    if name == "compare":
        from tpopk.simulate import comparison

        return comparison.compare
    if name == "predict":
        from tpopk.simulate import predict

        return predict.predict
    raise AttributeError(f"module 'tpopk' has no attribute {name!r}")
