"""Structures with ODE pharmacokinetics: which NONMEM CMT their doses may name."""

from __future__ import annotations

import numpy as np
import pytest

from tpopk.errors import TpopkError
from tpopk.pd import PD_MODELS

WITH_PK = sorted(name for name, model in PD_MODELS.items() if model.dose_state >= 0)


def test_the_structures_with_pharmacokinetics_are_the_known_ones() -> None:
    assert WITH_PK == ["pdmdd_lifespan", "qss_tmdd_lifespan", "tmdd_friberg"]


@pytest.mark.parametrize("name", WITH_PK)
def test_depot_doses_go_to_the_dose_state(name: str) -> None:
    model = PD_MODELS[name]
    assert model.dose_state_of(np.ones((2, 3), dtype=np.int64)) == model.dose_state
    assert model.state_names[model.dose_state] == model.pk_compartments[0]
    assert set(model.pk_compartments) <= set(model.state_names)


def test_iv_doses_into_the_central_state_are_refused_with_the_numbering() -> None:
    model = PD_MODELS["pdmdd_lifespan"]
    with pytest.raises(TpopkError, match=r"not CMT 2 \(its central\).*1 depot, 2 central, 3 per"):
        model.dose_state_of([1, 2])
    with pytest.raises(TpopkError, match=r"not CMT 7 \(a compartment it does not have\)"):
        model.dose_state_of([7])


def test_structures_without_pharmacokinetics_take_no_doses() -> None:
    with pytest.raises(TpopkError, match="no pharmacokinetic states"):
        PD_MODELS["friberg"].dose_state_of([1])
