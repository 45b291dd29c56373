"""The observations of a fit: the coordinates that describe them, and their simulations.

Each observation type ``<dvid>`` has its own dimension ``obs_<dvid>`` in the fit's
DataTree, whose index values are positions in the event table's flat observation list
(:meth:`tpopk.data.EventTable.subject_arrays`). :func:`describe_observations` gives every
``obs_<dvid>`` dimension non-index coordinates named ``<COLUMN>_<dvid>``, after the
NONMEM columns they come from (attrs ``column`` and, where known, ``units``):
``ID_<dvid>`` (subject), ``TIME_<dvid>``, ``DVID_<dvid>``, ``record_<dvid>`` (row of the
``events`` group of a fit file), ``BLQ_<dvid>``/``LLOQ_<dvid>`` where the data censor
that type, and one per baseline covariate (``WT_conc``, ``AGONIST_plt``). The suffix is
needed because one group holds several ``obs_<dvid>`` dims and xarray names coordinates
per dataset. The diagnostics read only these coordinates, so a fit file is all they need.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import xarray as xr

from tpopk.data import EventTable
from tpopk.errors import TpopkError

#: The coordinates of :func:`observation_coords` that are not covariates.
_RECORD_COLUMNS = ("ID", "TIME", "DVID", "record", "BLQ", "LLOQ")


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


def observation_coords(events: EventTable, dvid: str, positions: npt.ArrayLike) -> xr.Coordinates:
    """Return the coordinates that describe the ``dvid`` observations at ``positions``.

    Parameters
    ----------
    events
        The fitted event table.
    dvid
        Observation type.
    positions
        Index values of ``obs_<dvid>``: positions in ``events.subject_arrays()``.
    """
    dim = f"obs_{dvid}"
    position = np.asarray(positions, dtype=np.int64)
    arrays = events.subject_arrays()
    if position.size and (position.min() < 0 or position.max() >= arrays.obs_dvid.size):
        raise DiagnosticsError(f"{dim} positions lie outside the event table's observations")
    if (arrays.obs_dvid[position] != dvid).any():
        raise DiagnosticsError(f"{dim} positions are not all '{dvid}' observations")
    subject = arrays.obs_subject[position]
    units = events.units.as_dict()
    frame = events.frame
    record = frame.index.get_indexer(events.observations.index)[position]
    columns: dict[str, tuple[npt.NDArray[np.generic], str | None]] = {
        "ID": (arrays.subject_ids[subject], None),
        "TIME": (arrays.obs_time[position], units["TIME"]),
        "DVID": (arrays.obs_dvid[position].astype(str), None),
        "record": (record.astype(np.int64), None),
    }
    blq, lloq = arrays.obs_blq[position], arrays.obs_lloq[position]
    if blq.any() or np.isfinite(lloq).any():
        columns |= {"BLQ": (blq, None), "LLOQ": (lloq, units.get(dvid))}
    covariates = events.covariates
    for column in map(str, covariates.columns):
        values = covariates[column].to_numpy()[subject]
        if values.dtype == object:  # text (AGONIST, DISEASE); netCDF stores str, not object
            values = values.astype(str)
        columns[column] = (values, units.get(column))
    coords = {
        f"{column}_{dvid}": xr.Variable(
            dim, values, {"column": column} | ({"units": unit} if unit else {})
        )
        for column, (values, unit) in columns.items()
    }
    return xr.Coordinates({dim: position, **coords})


def describe_observations(tree: xr.DataTree, events: EventTable) -> xr.DataTree:
    """Return ``tree`` with every ``obs_<dvid>`` dim described (:func:`observation_coords`).

    Every group with such a dim gets the coordinates; ``y_<dvid>``, ``ipred_<dvid>`` and
    ``pred_<dvid>`` get the observation's ``units`` attribute.
    """
    units = events.units.as_dict()
    described = tree.copy()
    for name, node in tree.children.items():
        data = node.to_dataset()
        dims = [str(d) for d in data.dims if str(d).startswith("obs_")]
        if not dims:
            continue
        for dim in dims:
            dvid = dim.removeprefix("obs_")
            data = data.assign_coords(observation_coords(events, dvid, data[dim].values))
            for variable in (f"y_{dvid}", f"ipred_{dvid}", f"pred_{dvid}"):
                if variable in data.data_vars and dvid in units:
                    data[variable].attrs["units"] = units[dvid]
        described[name] = xr.DataTree(data)
    return described


def observations(tree: xr.DataTree, dvid: str) -> xr.Dataset:
    """Observed values of one type with their time, subject, BLQ flag and covariates.

    Parameters
    ----------
    tree
        Fit DataTree whose ``observed_data`` is described by :func:`describe_observations`.
    dvid
        Observation type, e.g. ``"conc"``.

    Returns
    -------
    xarray.Dataset
        On dim ``obs_<dvid>``: ``dv`` (observed value; the LLOQ on BLQ rows, as in the
        likelihood), ``time``, ``subject`` (subject ID), ``blq`` (bool; all false where
        the data censor nothing), ``lloq`` (``nan`` where none) and one variable per
        baseline covariate (e.g. ``AGONIST``, ``WT``). Attrs ``units`` (of ``dv``) and
        ``time_units``.
    """
    _check_dvid(tree, dvid)
    dim = f"obs_{dvid}"
    observed = tree["observed_data"].to_dataset()[f"y_{dvid}"]
    described = {
        str(coord.attrs["column"]): coord
        for coord in observed.coords.values()
        if coord.dims == (dim,) and "column" in coord.attrs
    }
    if missing := [c for c in ("ID", "TIME") if c not in described]:
        raise DiagnosticsError(
            f"the observed {dvid} have no {' or '.join(f'{c}_{dvid}' for c in missing)} "
            "coordinate (a fit from tpopk.fit has them; see describe_observations)"
        )
    n = observed.sizes[dim]
    data = xr.Dataset(
        {
            "dv": (dim, np.asarray(observed.values, dtype=float)),
            "time": (dim, np.asarray(described["TIME"].values, dtype=float)),
            "subject": (dim, described["ID"].values),
            "blq": (dim, np.zeros(n, dtype=bool)),
            "lloq": (dim, np.full(n, np.nan)),
        },
        coords={dim: observed[dim].values},
        attrs={
            "units": observed.attrs.get("units", ""),
            "time_units": described["TIME"].attrs.get("units", ""),
        },
    )
    for column in ("BLQ", "LLOQ"):
        if column in described:
            name = column.lower()
            data[name] = (dim, described[column].values.astype(data[name].dtype))
    for column, coord in described.items():
        if column not in _RECORD_COLUMNS:
            data[column] = (dim, coord.values)
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


def population_prediction(tree: xr.DataTree, dvid: str) -> npt.NDArray[np.float64] | None:
    """PRED of the ``dvid`` observations: posterior median of ``pred_<dvid>``; None if absent.

    :func:`tpopk.inference.fit` stores ``pred_<dvid>`` (every η = 0, at each draw)
    beside ``ipred_<dvid>`` in the posterior.
    """
    _check_dvid(tree, dvid)
    name = f"pred_{dvid}"
    if "posterior" not in tree.children or name not in tree["posterior"].data_vars:
        return None
    values = tree["posterior"][name].median(("chain", "draw"))
    return np.asarray(values.transpose(f"obs_{dvid}").values, dtype=float)
