"""Individual fits: each subject's observations with its individual prediction and band.

The prediction is the posterior of ``ipred_<dvid>``, which the model evaluates at the
observation times only, so the band joins those times with straight lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from arviz_plots import PlotCollection

from tpopk.diagnostics.observations import DiagnosticsError, observations


def individual_fits(
    tree: xr.DataTree,
    dvid: str,
    *,
    ci_prob: float = 0.9,
    subjects: Sequence[int] | None = None,
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

    Returns
    -------
    xarray.Dataset
        Dims ``subject`` (IDs) and ``point`` (the subject's observations in time order;
        padding is ``nan``): ``time``, ``dv``, ``blq``, ``ipred_median``, ``ipred_lower``,
        ``ipred_upper``. Attrs ``dvid``, ``ci_prob``, ``units``, ``time_units``.
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
    return xr.Dataset(
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


def _draw_subject(
    da: xr.DataArray,
    target: Any,
    *,
    time: xr.DataArray,
    blq: xr.DataArray,
    lower: xr.DataArray,
    median: xr.DataArray,
    upper: xr.DataArray,
) -> list[Any]:
    """Band and median of IPRED, observed points, BLQ points (at the LLOQ) hollow."""
    t, y, censored = time.values, da.values, blq.values.astype(bool)
    artists: list[Any] = [
        target.fill_between(t, lower.values, upper.values, alpha=0.3, color="C0", linewidth=0)
    ]
    artists += target.plot(t, median.values, color="C0")
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
        Output of :func:`individual_fits` (select subjects there to keep the grid small).
    col_wrap
        Panels per row.
    log_y
        Logarithmic y axis.

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
    pc.map(
        _draw_subject,
        "individual",
        time=fits_data["time"],
        blq=fits_data["blq"],
        lower=fits_data["ipred_lower"],
        median=fits_data["ipred_median"],
        upper=fits_data["ipred_upper"],
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
    return pc
