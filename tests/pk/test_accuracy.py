"""Closed forms against the solve_ivp reference, every model x dosing combination."""

from __future__ import annotations

import pytest
from accuracy_cases import all_cases, max_relative_error

CASES = all_cases()


@pytest.mark.parametrize(
    ("model_name", "label", "params", "doses"),
    CASES,
    ids=[f"{name}-{label}" for name, label, _, _ in CASES],
)
def test_matches_ode_reference(model_name, label, params, doses):
    assert max_relative_error(model_name, params, doses) <= 1e-6
