import json

import numpy as np
import pytest
import xarray as xr

from tpopk.simulate.comparison_json import Comparison

STATS = ["median", "lower", "upper"]
OUTCOMES = ["matched", "below_grid", "above_grid", "undefined"]


def comparison_tree(*, equivalence: bool) -> xr.DataTree:
    """The layout of tpopk.compare's tree: two arms, one endpoint, one dose-equivalence pair."""
    summary = xr.Dataset(
        {"responders": (("arm", "stat"), [[0.5, 0.3, 0.7], [0.2, 0.1, np.nan]])},
        coords={"arm": ["A", "B"], "stat": STATS},
    )
    contrasts = xr.Dataset(
        {
            "difference_responders": (("pair", "stat"), [[0.3, 0.1, 0.5], [-0.3, -0.5, -0.1]]),
            "p_better_responders": ("pair", [0.99, 0.01]),
        },
        coords={"arm": ("pair", ["A", "B"]), "versus": ("pair", ["B", "A"]), "stat": STATS},
    )
    groups = {"summary": summary, "contrasts": contrasts}
    if equivalence:
        groups["equivalence"] = xr.Dataset(
            {
                "dose_responders": (("pair", "stat"), [[4.1, 2.9, np.inf]]),
                "fraction_responders": (("pair", "outcome"), [[0.9, 0.02, 0.08, 0.0]]),
                "reference": ("pair", ["A"]),
                "arm": ("pair", ["B"]),
                "dose_unit": ("pair", ["mg"]),
            },
            coords={"stat": STATS, "outcome": OUTCOMES},
        )
    tree = xr.DataTree.from_dict(groups)
    tree.attrs |= {"trial": "t", "ci_prob": 0.9, "n_patients": 3, "draws": 2}
    return tree


def test_comparison_json_is_strict_and_reads_back() -> None:
    table = Comparison.from_tree(comparison_tree(equivalence=True))

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON (RFC 8259): undefined must be null")

    document = json.loads(table.to_json(), parse_constant=strict)
    assert list(document)[:2] == ["schema", "tpopk_version"]
    assert document["schema"] == "tpopk.compare/1"
    responders = document["endpoints"]["responders"]
    assert responders["arms"]["B"] == {"median": 0.2, "lower": 0.1, "upper": None}
    assert responders["contrasts"][1] == {
        "arm": "B",
        "versus": "A",
        "difference": {"median": -0.3, "lower": -0.5, "upper": -0.1},
        "p_better": 0.01,
    }
    (entry,) = responders["equivalence"]
    assert entry["dose"] == {"median": 4.1, "lower": 2.9, "upper": None}  # beyond the grid
    assert entry["draws"] == dict(zip(OUTCOMES, [0.9, 0.02, 0.08, 0.0], strict=True))
    assert Comparison.model_validate(document) == table


def test_without_equivalence_each_endpoint_has_an_empty_list() -> None:
    document = json.loads(Comparison.from_tree(comparison_tree(equivalence=False)).to_json())
    assert document["endpoints"]["responders"]["equivalence"] == []
    assert document["draws"] == 2


def test_text_form_says_na_for_undefined() -> None:
    table = Comparison.from_tree(comparison_tree(equivalence=False))
    assert table.endpoints["responders"].arms["B"].text() == "0.2 [0.1, n/a]"
    with pytest.raises(ValueError, match="schema"):
        Comparison.model_validate({**json.loads(table.to_json()), "schema": "tpopk.compare/2"})
