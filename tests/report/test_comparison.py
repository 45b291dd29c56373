"""Trial comparisons are laid out as tables whatever variables they hold."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from tpopk.report.comparison import MAX_TABLE_ROWS, comparison_tables

from .conftest import comparison_dataset, comparison_draws, comparison_tree


def test_compare_tree_gives_summary_and_contrast_tables() -> None:
    draws = comparison_draws()
    tables = {t.title: t for t in comparison_tables(comparison_tree())}
    assert list(tables) == ["summary by arm", "contrasts by pair"]  # draws left to summaries
    summary = tables["summary by arm"]
    assert summary.columns == (
        "arm",
        "responder_week_6 (fraction of patients) median",
        "responder_week_6 (fraction of patients) lower",
        "responder_week_6 (fraction of patients) upper",
        "time_to_response (d) median",
        "time_to_response (d) lower",
        "time_to_response (d) upper",
    )
    for row in summary.rows:
        for offset, name in ((1, "responder_week_6"), (4, "time_to_response")):
            values = draws[name].sel(arm=row[0]).values
            expected = np.quantile(values, [0.5, 0.05, 0.95])
            assert row[offset : offset + 3] == pytest.approx(expected)
    pairs = tables["contrasts by pair"]
    assert pairs.columns[:2] == ("arm", "versus")
    assert [row[:2] for row in pairs.rows] == [
        ("eltrombopag", "placebo"),
        ("placebo", "eltrombopag"),
    ]
    p_column = pairs.columns.index("p_better_time_to_response (probability)")
    for row in pairs.rows:
        a = draws["time_to_response"].sel(arm=row[0]).values
        b = draws["time_to_response"].sel(arm=row[1]).values
        assert row[p_column] == pytest.approx(np.mean(a < b))  # shorter time is better
        d_column = pairs.columns.index("difference_responder_week_6 (fraction of patients) median")
        difference = draws["responder_week_6"].sel(arm=row[0]) - draws["responder_week_6"].sel(
            arm=row[1]
        )
        assert row[d_column] == pytest.approx(float(np.median(difference)))


def test_dataset_variables_sharing_dims_share_a_table() -> None:
    tables = {t.title: t for t in comparison_tables(comparison_dataset())}
    by_arm = tables["comparison by arm"]
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
        assert row[4:] == pytest.approx(np.quantile(draws[i], [0.5, 0.05, 0.95]))


def test_pairwise_dims_one_row_per_pair() -> None:
    data = comparison_dataset()
    tables = {t.title: t for t in comparison_tables(data)}
    pairs = tables["comparison by arm × comparator"]
    assert pairs.columns == ("arm", "comparator", "p_better")
    assert len(pairs.rows) == 9
    for arm, comparator, value in pairs.rows:
        assert value == data["p_better"].sel(arm=arm, comparator=comparator).item()
    scalar = tables["comparison"]
    assert scalar.columns == ("n_patients",)
    assert scalar.rows == ((200,),)


def test_long_tables_are_cut_with_a_note() -> None:
    n = MAX_TABLE_ROWS + 7
    (table,) = comparison_tables(xr.Dataset({"x": ("patient", np.arange(n))}))
    assert len(table.rows) == MAX_TABLE_ROWS
    assert table.rows[0] == (0, 0)
    assert table.note == "7 more rows not shown"
