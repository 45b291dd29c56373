"""tpopk: Bayesian PK/PD of thrombopoietin-receptor agonists with PyMC and ArviZ."""

from importlib.metadata import PackageNotFoundError, version

from tpopk.errors import TpopkError, TpopkWarning

try:
    __version__ = version("tpopk")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["TpopkError", "TpopkWarning", "__version__"]
