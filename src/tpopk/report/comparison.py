"""Trial comparisons as tables, whatever endpoints and contrasts they hold, and a forest plot.

``tpopk.compare`` returns a tree of endpoint draws, their summaries per arm and
pairwise contrasts; other code may hand over any Dataset of endpoints. Both are laid
out here as plain tables (column headings, rows of numbers and labels) for a report.
"""

from __future__ import annotations

import itertools
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict

#: Rows shown of one comparison table; the rest are counted, not shown.
MAX_TABLE_ROWS = 500
#: Dimensions of posterior draws; a comparison variable carrying them is summarised.
SAMPLE_DIMS = ("chain", "draw", "sample")
#: Dimensions of summary statistics, laid out as columns of a comparison table.
COLUMN_DIMS = ("stat", "quantile")

Cell = str | float | int | None


class Table(BaseModel):
    """A titled table whose columns are only known at run time (trial comparisons)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""


def _cell(value: Any) -> Cell:
    """Convert a value to a table cell: Python numbers and strings (numpy scalars converted)."""
    item = value.item() if isinstance(value, np.generic) else value
    if isinstance(item, bool):
        return str(item)
    return item if isinstance(item, int | float | str) else str(item)


def _heading(name: str, array: xr.DataArray) -> str:
    units = array.attrs.get("units")
    return f"{name} ({units})" if units else name


def _labels(data: xr.Dataset, dims: tuple[str, ...]) -> tuple[list[str], list[tuple[Cell, ...]]]:
    """Row-label columns and values: each dim's own coordinates, or those laid along it.

    Contrasts index ordered pairs by a bare ``pair`` number and carry ``arm`` and
    ``versus`` along it; those two name the row better than the number.
    """
    columns: list[str] = []
    per_dim: list[list[tuple[Cell, ...]]] = []
    for dim in dims:
        along = [str(c) for c, v in data.coords.items() if v.dims == (dim,) and c != dim]
        names = along or [dim]
        columns += names
        values = [
            data[n].values.tolist() if n in data.coords else list(range(data.sizes[dim]))
            for n in names
        ]
        per_dim.append([tuple(_cell(v) for v in row) for row in zip(*values, strict=True)])
    rows = [tuple(itertools.chain(*key)) for key in itertools.product(*per_dim)]
    return columns, rows


def _spread(name: str, array: xr.DataArray, dims: tuple[str, ...]) -> dict[str, list[Cell]]:
    """Columns of one variable: one per summary statistic, or median and 90% of its draws."""
    heading = _heading(name, array)
    drawn = [d for d in array.dims if d in SAMPLE_DIMS]
    if drawn:
        array = array.quantile([0.5, 0.05, 0.95], dim=drawn).rename(quantile="stat")
        array = array.assign_coords(stat=["median", "5%", "95%"])
    statistics = [str(d) for d in array.dims if d in COLUMN_DIMS]
    keys = itertools.product(*(array[d].values.tolist() for d in statistics))
    columns = {}
    for key in keys:
        part = array.sel(dict(zip(statistics, key, strict=True)))
        label = " ".join([heading, *map(str, key)])
        columns[label] = [_cell(v) for v in np.ravel(part.transpose(*dims).values)]
    return columns


def _dataset_tables(data: xr.Dataset, title: str) -> list[Table]:
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, array in data.data_vars.items():
        dims = tuple(str(d) for d in array.dims if d not in (*SAMPLE_DIMS, *COLUMN_DIMS))
        groups.setdefault(dims, []).append(str(name))
    tables = []
    for dims, names in groups.items():
        label_columns, labels = _labels(data, dims)
        values: dict[str, list[Cell]] = {}
        for name in names:
            values |= _spread(name, data[name], dims)
        rows = [(*label, *(v[i] for v in values.values())) for i, label in enumerate(labels)]
        shown = rows[:MAX_TABLE_ROWS]
        hidden = len(rows) - len(shown)
        tables.append(
            Table(
                title=title + (f" by {' × '.join(dims)}" if dims else ""),
                columns=(*label_columns, *values),
                rows=tuple(shown),
                note=f"{hidden} more rows not shown" if hidden else "",
            )
        )
    return tables


def comparison_tables(comparison: xr.DataTree | xr.Dataset) -> tuple[Table, ...]:
    """Lay out every variable of a trial comparison, one table per set of dimensions.

    Variables sharing dimensions (endpoints on ``arm``, contrasts on ordered arm pairs)
    become columns of one table with a row per coordinate combination. A ``stat`` or
    ``quantile`` dimension (median, lower, upper) is spread into columns. A variable
    that still holds posterior draws (``chain``, ``draw`` or ``sample``) is shown as
    its median and equal-tailed 90% interval; in a tree from ``tpopk.compare``, a group
    holding only draws is left to the summaries beside it. Each group of a tree gives
    its own tables, titled by the group's path.
    """
    if isinstance(comparison, xr.Dataset):
        return tuple(_dataset_tables(comparison, "comparison"))
    tables = []
    for node in comparison.subtree:
        data = node.to_dataset(inherit=False)
        only_draws = all(
            any(d in SAMPLE_DIMS for d in array.dims) for array in data.data_vars.values()
        )
        if data.data_vars and not (only_draws and len(comparison.children) > 1):
            tables += _dataset_tables(data, node.path.strip("/") or "comparison")
    return tuple(tables)


def plot_contrasts(comparison: xr.DataTree) -> Figure | None:
    """Forest plot of a comparison's contrasts: one panel per endpoint, one row per arm pair.

    Each unordered pair of arms appears once (``A − B`` with ``A`` first in the trial's
    arm order): its posterior median difference as a point, its credible interval as a
    line, the line of no difference dashed, and ``P(A better)`` beside the row's label.
    The axis names the endpoint's unit.

    Returns
    -------
    matplotlib.figure.Figure or None
        ``None`` when the tree has no ``contrasts`` group or no pair of arms.
    """
    if "contrasts" not in comparison.children:
        return None
    contrasts = comparison["contrasts"].to_dataset()
    arms = [str(a) for a in contrasts["arm"].values]
    versus = [str(v) for v in contrasts["versus"].values]
    order = list(dict.fromkeys(arms))
    pairs = [i for i in range(len(arms)) if order.index(arms[i]) < order.index(versus[i])]
    names = [str(n).removeprefix("difference_") for n in contrasts.data_vars]
    endpoints = [n for n in names if f"difference_{n}" in contrasts]
    if not pairs or not endpoints:
        return None
    height = sum(0.35 * len(pairs) + 1.1 for _ in endpoints)
    figure, axes = plt.subplots(
        len(endpoints), 1, figsize=(9.0, height), layout="constrained", squeeze=False
    )
    for target, name in zip(axes[:, 0], endpoints, strict=True):
        difference = contrasts[f"difference_{name}"].isel(pair=pairs)
        median = difference.sel(stat="median").values
        lower, upper = difference.sel(stat="lower").values, difference.sel(stat="upper").values
        rows = np.arange(len(pairs))[::-1]  # first pair at the top
        target.hlines(rows, lower, upper, color="C0", linewidth=2)
        target.plot(median, rows, "o", color="C0")
        target.axvline(0.0, color="k", linewidth=1, linestyle="--")
        p_better = contrasts[f"p_better_{name}"].isel(pair=pairs).values
        labels = [
            f"{arms[i]} − {versus[i]}  (P better {p:.2f})"
            if np.isfinite(p)
            else f"{arms[i]} − {versus[i]}  (P better n/a)"
            for i, p in zip(pairs, p_better, strict=True)
        ]
        target.set_yticks(rows, labels)
        target.set_ylim(-0.7, len(pairs) - 0.3)
        units = difference.attrs.get("units") or _draw_units(comparison, name)
        target.set_xlabel(f"difference in {name}" + (f" ({units})" if units else ""))
    plt.close(figure)  # kept out of pyplot's registry; the caller saves it
    return figure


def _draw_units(comparison: xr.DataTree, name: str) -> str:
    """Return the unit of an endpoint as its draws or summary give it."""
    for group in ("draws", "summary"):
        if group in comparison.children and name in comparison[group].data_vars:
            return str(comparison[group][name].attrs.get("units", ""))
    return ""
