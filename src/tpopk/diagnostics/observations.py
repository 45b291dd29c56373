"""The observations of a fit, aligned with its ``obs_<dvid>`` dimensions, and their simulations.

Every pharmacometric diagnostic needs, for each observation in the DataTree, the time,
subject, BLQ flag and covariates from the event table, and the simulated replicates of
that observation. The coordinate values of ``obs_<dvid>`` are positions into the event
table's flat observation arrays (:meth:`tpopk.data.EventTable.subject_arrays`), which is
how the two are joined here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt
import xarray as xr

from tpopk.data import EventTable
from tpopk.errors import TpopkError

if TYPE_CHECKING:
    from tpopk.model.card import ModelCard


class FitLike(Protocol):
    """What the diagnostics read from a fit: its DataTree, events and model cards.

    :class:`tpopk.Fit` is one; so is anything else carrying these two attributes.
    """

    @property
    def tree(self) -> xr.DataTree:
        """ArviZ DataTree of the fit."""
        ...

    @property
    def events(self) -> EventTable:
        """The fitted event table."""
        ...

    @property
    def cards(self) -> Sequence[ModelCard]:
        """The model cards fitted (their residual specs name the level sigmas)."""
        ...


class DiagnosticsError(TpopkError):
    """A diagnostic asked of a fit that lacks what it needs (group, DVID, predictions)."""


def observation_types(tree: xr.DataTree) -> list[str]:
    """Observation types (DVIDs) with observed data in ``tree``, e.g. ``["conc", "plt"]``."""
    if "observed_data" not in tree.children:
        raise DiagnosticsError("the fit has no observed_data group")
    names = [str(name) for name in tree["observed_data"].data_vars]
    return sorted(name.removeprefix("y_") for name in names if name.startswith("y_"))


def _check_dvid(tree: xr.DataTree, dvid: str) -> None:
    known = observation_types(tree)
    if dvid not in known:
        raise DiagnosticsError(f"no observations of type '{dvid}' in the fit (types: {known})")


def observations(fit: FitLike, dvid: str) -> xr.Dataset:
    """Observed values of one type with their time, subject, BLQ flag and covariates.

    Parameters
    ----------
    fit
        The fit.
    dvid
        Observation type, e.g. ``"conc"``.

    Returns
    -------
    xarray.Dataset
        On dim ``obs_<dvid>``: ``dv`` (observed value; the LLOQ on BLQ rows, as in the
        likelihood), ``time`` (TIME units), ``subject`` (subject ID), ``blq`` (bool),
        ``lloq`` (``nan`` where none) and one variable per baseline covariate
        (e.g. ``AGONIST``, ``WT``). Attrs ``units`` (of ``dv``) and ``time_units``.
    """
    _check_dvid(fit.tree, dvid)
    dim = f"obs_{dvid}"
    observed = fit.tree["observed_data"][f"y_{dvid}"]
    position = np.asarray(observed[dim].values, dtype=np.int64)
    arrays = fit.events.subject_arrays()
    subject_index = arrays.obs_subject[position]
    data = xr.Dataset(
        {
            "dv": (dim, np.asarray(observed.values, dtype=float)),
            "time": (dim, arrays.obs_time[position]),
            "subject": (dim, arrays.subject_ids[subject_index]),
            "blq": (dim, arrays.obs_blq[position]),
            "lloq": (dim, arrays.obs_lloq[position]),
        },
        coords={dim: position},
        attrs={"units": fit.events.units[dvid], "time_units": fit.events.units["TIME"]},
    )
    covariates = fit.events.covariates
    for column in covariates.columns:
        data[str(column)] = (dim, covariates[column].to_numpy()[subject_index])
    return data


def simulated_draws(
    tree: xr.DataTree,
    dvid: str,
    group: str = "posterior_predictive",
    num_draws: int | None = None,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """Return the simulated replicates of the ``dvid`` observations as ``(sample, obs)``.

    Parameters
    ----------
    tree
        Fit DataTree.
    dvid
        Observation type.
    group
        Group holding ``y_<dvid>`` with dims ``(chain, draw, obs_<dvid>)``.
    num_draws
        Keep this many draws, chosen at random without replacement (all if ``None``).
    seed
        Seed of that choice.
    """
    _check_dvid(tree, dvid)
    if group not in tree.children or f"y_{dvid}" not in tree[group].data_vars:
        raise DiagnosticsError(f"the fit has no '{group}' draws of y_{dvid}")
    draws = tree[group][f"y_{dvid}"].stack(sample=("chain", "draw"))
    values = np.asarray(draws.transpose("sample", f"obs_{dvid}").values, dtype=float)
    if num_draws is not None and num_draws < len(values):
        keep = np.random.default_rng(seed).choice(len(values), num_draws, replace=False)
        values = values[np.sort(keep)]
    return values


def aligned_prediction(
    pred: Mapping[str, npt.ArrayLike] | None, dvid: str, size: int
) -> npt.NDArray[np.float64] | None:
    """Return the population prediction (PRED) of ``dvid`` checked to have ``size`` values."""
    if pred is None or dvid not in pred:
        return None
    values = np.asarray(pred[dvid], dtype=float).ravel()
    if values.size != size:
        raise DiagnosticsError(
            f"PRED of '{dvid}' has {values.size} values but there are {size} '{dvid}' "
            "observations (give one value per obs_<dvid> position, in order)"
        )
    return values
