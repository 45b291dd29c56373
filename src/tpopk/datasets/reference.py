"""Published estimates of the real datasets, and a fit's posterior set beside them.

``reference_estimates.toml`` holds, per reference fit, the values NONMEM or nlmixr2
published for a bundled dataset under the model of a card in ``models/``, named as the
tpopk fit variables they compare with. :func:`compare_with_reference` applies the
real-data criteria (#27):

- a typical value or residual SD agrees when its posterior median is within
  ``tolerance`` (10%) of the published value, or of the nearest edge of a band of
  published fits;
- an IIV is compared as %CV, ``100·sqrt(exp(ω²) − 1)``, the scale the tools print
  (tpopk's ``omega_P`` is the SD of log ``P``). It agrees when the published %CV (or
  band) meets the posterior's central ``ci_prob`` interval: an ω from a few dozen
  subjects is uncertain by tens of percent, so a fixed relative tolerance would be
  arbitrary.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from tpopk.data import EventTable, read_events
from tpopk.errors import TpopkError


def reference_estimates() -> dict[str, dict[str, Any]]:
    """Return the published estimates by reference fit (``theophylline``, ``phenobarbital``...).

    Each entry names its ``card`` (path under ``models/`` without ``.toml``), its
    ``dataset`` (a :data:`tpopk.datasets.CATALOGUE` name; ``observations`` the types
    fitted, when not all: :func:`reference_events`) and the ``reference`` fit;
    ``typical`` and ``residual`` map fit variables to the published value (natural scale,
    residual errors as SDs), ``omega_cv`` each parameter's IIV as %CV; ``range`` and
    ``range_omega_cv`` give ``[low, high]`` bands where several tools are the reference.
    """
    text = files(__package__).joinpath("reference_estimates.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def reference_events(name: str) -> EventTable:
    """Load the dataset of reference fit ``name``, only the observation types it fits.

    An entry's ``observations`` (e.g. ``["conc"]`` for a PK model fitted to a PK/PD
    dataset) keeps those; without it the whole dataset is returned.
    """
    from tpopk.datasets import CATALOGUE

    entry = _entry(name)
    events = CATALOGUE[entry["dataset"]]()
    if "observations" not in entry:
        return events
    frame = events.frame
    dropped = frame["DVID"].ne("") & ~frame["DVID"].isin(entry["observations"])
    gone = set(frame.loc[dropped, "DVID"])
    units = {key: unit for key, unit in events.units.as_dict().items() if key not in gone}
    return read_events(frame[~dropped].reset_index(drop=True), units=units)


def _entry(name: str) -> dict[str, Any]:
    references = reference_estimates()
    if name not in references:
        raise TpopkError(f"no reference fit '{name}'; expected one of {sorted(references)}")
    return references[name]


def omega_cv(omega: Any) -> Any:
    """%CV of a log-normal IIV with SD ``omega`` on the log scale: ``100·sqrt(exp(ω²) − 1)``."""
    return 100.0 * np.sqrt(np.expm1(np.square(omega)))


def compare_with_reference(
    posterior: xr.Dataset, name: str, *, tolerance: float = 0.10, ci_prob: float = 0.9
) -> pd.DataFrame:
    """Set a posterior beside the published estimates of reference fit ``name``.

    Parameters
    ----------
    posterior
        Posterior draws (dims ``chain``, ``draw``) of a fit of the reference's card.
    name
        Key of :func:`reference_estimates`.
    tolerance
        Largest relative distance of a typical value's or residual SD's median from the
        published value (or band).
    ci_prob
        Mass of the central interval an IIV's published %CV must meet.

    Returns
    -------
    pandas.DataFrame
        One row per published quantity, indexed by fit variable (``omega_cl`` for IIVs,
        compared as %CV): ``scale``, ``low``, ``high`` (equal for one published value),
        ``median``, ``lower``, ``upper`` (the interval), ``difference`` (relative distance
        of the median from the reference, 0 inside a band) and ``agrees``.
    """
    entry = _entry(name)
    bands: dict[str, tuple[str, float, float]] = {}
    for key in ("typical", "residual"):
        bands |= {v: ("natural", x, x) for v, x in entry.get(key, {}).items()}
    bands |= {v: ("natural", lo, hi) for v, (lo, hi) in entry.get("range", {}).items()}
    bands |= {f"omega_{p}": ("%CV", x, x) for p, x in entry.get("omega_cv", {}).items()}
    bands |= {
        f"omega_{p}": ("%CV", lo, hi) for p, (lo, hi) in entry.get("range_omega_cv", {}).items()
    }
    if missing := sorted(set(bands) - set(posterior.data_vars)):
        raise TpopkError(f"the posterior has no {missing}: is it a fit of card {entry['card']}?")
    tail = (1.0 - ci_prob) / 2.0
    rows = []
    for variable, (scale, low, high) in bands.items():
        draws = posterior[variable].to_numpy().ravel()
        if scale == "%CV":
            draws = omega_cv(draws)
        median = float(np.median(draws))
        lower, upper = (float(q) for q in np.quantile(draws, [tail, 1.0 - tail]))
        nearest = min(max(median, low), high)
        difference = (median - nearest) / nearest
        agrees = (
            abs(difference) <= tolerance if scale == "natural" else lower <= high and low <= upper
        )
        rows.append((variable, scale, low, high, median, lower, upper, difference, agrees))
    columns = ["scale", "low", "high", "median", "lower", "upper", "difference", "agrees"]
    return pd.DataFrame(rows, columns=["variable", *columns]).set_index("variable")
