"""Trial comparisons are laid out as tables whatever variables they hold."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tpopk.report.payload import MAX_TABLE_ROWS, comparison_tables

from .conftest import comparison_dataset


def test_variables_sharing_dims_share_a_table() -> None:
    tables = {t.title: t for t in comparison_tables(comparison_dataset())}
    by_arm = tables[
        "responders_week6_median, responders_week6_lower, responders_week6_upper, "
        "time_to_response by arm"
    ]
    assert by_arm.columns == (
        "arm",
        "responders_week6_median (fraction)",
        "responders_week6_lower (fraction)",
        "responders_week6_upper (fraction)",
        "time_to_response (d) median",
        "time_to_response (d) 5%",
        "time_to_response (d) 95%",
    )
    assert [row[0] for row in by_arm.rows] == ["eltrombopag", "avatrombopag", "romiplostim"]
    assert by_arm.rows[1][1:4] == (0.72, 0.63, 0.80)
    draws = comparison_dataset()["time_to_response"].values
    for i, row in enumerate(by_arm.rows):
        assert row[4] == pytest.approx(np.median(draws[i]))
        assert row[5] == pytest.approx(np.quantile(draws[i], 0.05))
        assert row[6] == pytest.approx(np.quantile(draws[i], 0.95))


def test_pairwise_contrasts_one_row_per_pair() -> None:
    data = comparison_dataset()
    tables = {t.title: t for t in comparison_tables(data)}
    pairs = tables["p_better by arm × comparator"]
    assert pairs.columns == ("arm", "comparator", "p_better")
    assert len(pairs.rows) == 9
    for arm, comparator, value in pairs.rows:
        assert value == data["p_better"].sel(arm=arm, comparator=comparator).item()
    scalar = tables["n_patients"]
    assert scalar.columns == ("n_patients",)
    assert scalar.rows == ((200,),)


def test_long_tables_are_cut_with_a_note() -> None:
    n = MAX_TABLE_ROWS + 7
    tables = comparison_tables(xr.Dataset({"x": ("patient", np.arange(n))}))
    (table,) = tables
    assert len(table.rows) == MAX_TABLE_ROWS
    assert table.rows[0] == (0, 0)
    assert table.note == "7 more rows not shown"
