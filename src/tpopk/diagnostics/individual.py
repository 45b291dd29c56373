"""Individual fits: each subject's observations with its individual prediction and band.

At the observations the prediction is the posterior of ``ipred_<dvid>``. Joined by
straight lines those points misdraw a profile sampled sparsely (a weekly dose sampled
once a week draws a zigzag), so given ``predictions`` on a dense time grid from the same
posterior draws (:func:`tpopk.predict` with ``grid_points``) the curve is drawn through them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from arviz_plots import PlotCollection
from matplotlib.ticker import NullFormatter

from tpopk.diagnostics.observations import DiagnosticsError, observations


def individual_fits(
    tree: xr.DataTree,
    dvid: str,
    *,
    ci_prob: float = 0.9,
    subjects: Sequence[int] | None = None,
    predictions: xr.Dataset | None = None,
) -> xr.Dataset:
    """Observations and individual predictions per subject, padded to a common length.

    Parameters
    ----------
    tree
        Fit DataTree.
    dvid
        Observation type.
    ci_prob
        Probability of the equal-tailed credible band of IPRED.
    subjects
        Subject IDs to keep (default all, in data order).
    predictions
        A :func:`tpopk.predict` table of these subjects from the same fit, with
        ``grid_points`` and the same ``ci_prob``: its grid rows (``EVID`` 2) draw the
        IPRED curve; ``None``: the curve joins the observations.

    Returns
    -------
    xarray.Dataset
        Dims ``subject`` (IDs) and ``point`` (the subject's observations in time order;
        padding is ``nan``): ``time``, ``dv``, ``blq``, ``ipred_median``, ``ipred_lower``,
        ``ipred_upper``; with ``predictions``, on dims ``subject`` and ``grid`` also
        ``grid_time``, ``grid_median``, ``grid_lower``, ``grid_upper``. Attrs ``dvid``,
        ``ci_prob``, ``units``, ``time_units``.
    """
    data = observations(tree, dvid)
    ipred = tree["posterior"][f"ipred_{dvid}"]
    tails = [(1 - ci_prob) / 2, 0.5, (1 + ci_prob) / 2]
    band = ipred.quantile(tails, dim=("chain", "draw")).values  # (3, obs)
    subject = data["subject"].values
    chosen = list(subjects) if subjects is not None else list(dict.fromkeys(subject.tolist()))
    if unknown := sorted(set(chosen) - set(subject.tolist())):
        raise DiagnosticsError(f"subjects {unknown} have no '{dvid}' observations")
    rows = [np.flatnonzero(subject == who) for who in chosen]
    rows = [r[np.argsort(data["time"].values[r], kind="stable")] for r in rows]
    width = max(len(r) for r in rows)

    def padded(values: np.ndarray, fill: Any = np.nan) -> np.ndarray:
        out = np.full((len(rows), width), fill, dtype=np.asarray(values).dtype)
        for i, r in enumerate(rows):
            out[i, : len(r)] = values[r]
        return out

    dims = ("subject", "point")
    fits = xr.Dataset(
        {
            "time": (dims, padded(data["time"].values)),
            "dv": (dims, padded(data["dv"].values)),
            "blq": (dims, padded(data["blq"].values, fill=False)),
            "ipred_lower": (dims, padded(band[0])),
            "ipred_median": (dims, padded(band[1])),
            "ipred_upper": (dims, padded(band[2])),
        },
        coords={"subject": chosen, "point": np.arange(width)},
        attrs={"dvid": dvid, "ci_prob": ci_prob, **data.attrs},
    )
    if predictions is None:
        return fits
    return fits.merge(_grid_predictions(predictions, dvid, chosen, ci_prob))


def _grid_predictions(
    table: xr.Dataset, dvid: str, subjects: list[int], ci_prob: float
) -> xr.Dataset:
    """IPRED median and band of ``subjects`` on the table's grid (dims subject, grid)."""
    # imported here: tpopk.simulate imports the inference package, which imports diagnostics
    from tpopk.simulate.predict import GRID_EVID

    rows = (table["EVID"] == GRID_EVID) & (table["DVID"] == dvid) & table["ID"].isin(subjects)
    grid = table.where(rows, drop=True)
    counts = {who: int((grid["ID"] == who).sum()) for who in subjects}
    points = set(counts.values())
    if len(points) != 1 or 0 in points:
        raise DiagnosticsError(
            f"the predictions need the same number of '{dvid}' grid times for every subject "
            f"shown; they have {counts}"
        )
    (points_each,) = points
    order = np.argsort(
        [subjects.index(int(i)) for i in grid["ID"].values], kind="stable"
    )  # the panels' order
    lower, upper = (f"IPRED_Q{100 * q:.3g}" for q in ((1 - ci_prob) / 2, (1 + ci_prob) / 2))
    shape = (len(subjects), points_each)
    dims = ("subject", "grid")

    def block(name: str) -> np.ndarray:
        return np.asarray(grid[name].values[order], dtype=float).reshape(shape)

    return xr.Dataset(
        {
            "grid_time": (dims, block("TIME")),
            "grid_lower": (dims, block(lower)),
            "grid_median": (dims, block("IPRED")),
            "grid_upper": (dims, block(upper)),
        },
        coords={"subject": subjects, "grid": np.arange(points_each)},
    )


def _draw_subject(
    da: xr.DataArray,
    target: Any,
    *,
    time: xr.DataArray,
    blq: xr.DataArray,
    curve_time: xr.DataArray,
    lower: xr.DataArray,
    median: xr.DataArray,
    upper: xr.DataArray,
    log_y: bool,
) -> list[Any]:
    """Band and median of IPRED, observed points, BLQ points (at the LLOQ) hollow."""
    t, y, censored = time.values, da.values, blq.values.astype(bool)
    curves = [np.asarray(c.values, dtype=float) for c in (lower, median, upper)]
    if log_y:  # a zero (before the first dose) has no place on a log axis
        curves = [np.where(c > 0, c, np.nan) for c in curves]
    artists: list[Any] = [
        target.fill_between(
            curve_time.values, curves[0], curves[2], alpha=0.3, color="C0", linewidth=0
        )
    ]
    artists += target.plot(curve_time.values, curves[1], color="C0")
    artists.append(target.scatter(t[~censored], y[~censored], s=12, color="k", zorder=3))
    if censored.any():
        artists.append(
            target.scatter(t[censored], y[censored], s=12, facecolors="none", edgecolors="C3")
        )
    target.set_title(f"ID {da['subject'].item()}")
    return artists


def plot_individual_fits(
    fits_data: xr.Dataset, *, col_wrap: int = 4, log_y: bool = False
) -> PlotCollection:
    """Draw one panel per subject: observations, IPRED median and credible band.

    Parameters
    ----------
    fits_data
        Output of :func:`individual_fits` (select subjects there to keep the grid small);
        its dense grid, when it has one, draws the median and band.
    col_wrap
        Panels per row.
    log_y
        Logarithmic y axis (semi-log, as PK profiles are read: log-linear phases are
        straight).

    Returns
    -------
    arviz_plots.PlotCollection
        Matplotlib backend; figure ``pc.viz["figure"].item()``.
    """
    n = fits_data.sizes["subject"]
    n_rows = -(-n // col_wrap)
    pc = PlotCollection.wrap(
        fits_data[["dv"]],
        cols=["subject"],
        col_wrap=col_wrap,
        backend="matplotlib",
        figure_kwargs={
            "figsize": (3.0 * min(n, col_wrap), 2.5 * n_rows),
            "layout": "constrained",
            "sharex": True,
        },
    )
    curve = "grid" if "grid_time" in fits_data else "ipred"
    pc.map(
        _draw_subject,
        "individual",
        time=fits_data["time"],
        blq=fits_data["blq"],
        curve_time=fits_data["grid_time" if curve == "grid" else "time"],
        lower=fits_data[f"{curve}_lower"],
        median=fits_data[f"{curve}_median"],
        upper=fits_data[f"{curve}_upper"],
        log_y=log_y,
        store_artist=False,
    )
    label = f"{fits_data.attrs['dvid']} ({fits_data.attrs['units']})"
    pc.add_title(
        f"{label}: observed and individual prediction "
        f"(median, {100 * fits_data.attrs['ci_prob']:g}% band) vs time "
        f"({fits_data.attrs['time_units']})"
    )
    if log_y:
        for axes in pc.viz["plot"].values.ravel():
            axes.set_yscale("log")
            # a panel spanning less than a decade labels its minor ticks, which collide
            axes.yaxis.set_minor_formatter(NullFormatter())
    return pc
