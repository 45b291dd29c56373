"""Doses into any compartment (NONMEM CMT) against the solve_ivp reference."""

from __future__ import annotations

import numpy as np
import pytest
from accuracy_cases import LAG_F, TIMES, closed_form, parameters
from ode_reference import Dose, reference_concentration

from tpopk.errors import TpopkError
from tpopk.pk import PK_MODELS, concentration


def _cases() -> list[tuple[str, str, dict[str, float], tuple[Dose, ...]]]:
    cases = []
    for name, model in PK_MODELS.items():
        for cmt in model.dose_cmts:
            if cmt == model.dose_cmt:
                continue  # every dosing form into CMT 1: tests/pk/test_accuracy.py
            where = model.compartments[cmt - 1]
            forms = {
                "bolus + infusion": (Dose(0.0, 100.0, cmt=cmt), Dose(12.0, 60.0, 30.0, cmt=cmt)),
                "SS=1 infusion, then bolus": (
                    Dose(0.0, 100.0, 50.0, ss=1, ii=12.0, cmt=cmt),
                    Dose(24.0, 80.0, cmt=cmt),
                ),
                "SS=2 bolus on a bolus": (
                    Dose(0.0, 50.0, cmt=cmt),
                    Dose(12.0, 80.0, ss=2, ii=12.0, cmt=cmt),
                ),
            }
            for label, doses in forms.items():
                cases.append((name, f"{where} {label}", parameters(name, LAG_F), doses))
            # with the first route in one subject: f and tlag act on CMT 1 only
            mixed = (Dose(0.0, 100.0), Dose(6.0, 40.0, 20.0, cmt=cmt), Dose(24.0, 100.0))
            cases.append((name, f"CMT 1 and {where}, lag + F", parameters(name, LAG_F), mixed))
            # an SS=1 dose resets every compartment, whichever it is given into
            reset = (Dose(0.0, 100.0), Dose(12.0, 80.0, 40.0, ss=1, ii=12.0, cmt=cmt))
            reset += (Dose(30.0, 100.0),)
            cases.append((name, f"SS=1 into {where} resets CMT 1", parameters(name, LAG_F), reset))
            if model.absorption != "transit":  # no steady state through the chain
                train = (Dose(0.0, 50.0, cmt=cmt), Dose(12.0, 100.0, ss=1, ii=12.0))
                train += (Dose(30.0, 50.0, 25.0, cmt=cmt),)
                label = f"SS=1 into CMT 1 resets {where}, lag + F"
                cases.append((name, label, parameters(name, LAG_F), train))
    return cases


CASES = _cases()


@pytest.mark.parametrize(
    ("model_name", "label", "params", "doses"),
    CASES,
    ids=[f"{name}-{label}" for name, label, _, _ in CASES],
)
def test_dose_into_any_compartment_matches_ode_reference(model_name, label, params, doses):
    reference = reference_concentration(PK_MODELS[model_name], params, list(doses), TIMES)
    # absolute floor: a peripheral dose leaves the central compartment empty at its
    # time, where the modes' coefficients cancel to rounding rather than exactly
    np.testing.assert_allclose(closed_form(model_name, params, doses), reference, rtol=1e-6,
                               atol=1e-13 * reference.max())  # fmt: skip


@pytest.mark.parametrize("n_cmt", [1, 2, 3])
def test_dose_into_central_of_oral_model_is_the_iv_response(n_cmt):
    """Superposition: an oral model's CMT 2 dose is the IV model's CMT 1 dose without F."""
    oral, iv = PK_MODELS[f"oral_{n_cmt}cmt"], PK_MODELS[f"iv_{n_cmt}cmt"]
    disposition = parameters(iv.name, {})
    times = np.linspace(0.0, 48.0, 17)
    doses = ([0.0, 12.0], [100.0, 50.0], [0.0, 25.0], [0, 0], [0.0, 0.0])
    into_central = concentration(oral, {**disposition, "ka": 0.8, **LAG_F}, *doses, times,
                                 dose_cmt=[2, 2])  # fmt: skip
    np.testing.assert_allclose(into_central, concentration(iv, disposition, *doses, times),
                               rtol=1e-13)  # fmt: skip


def test_peripheral_input_starts_from_an_empty_central_compartment():
    """Coefficients of peripheral input sum to 0; the central amount rises at k_j1 per unit."""
    model = PK_MODELS["iv_3cmt"]
    p = parameters(model.name, {})
    early = concentration(model, p, [0.0, 0.0], [10.0, 10.0], [0.0] * 2, [0] * 2,
                          [0.0] * 2, [0.0, 1e-9], dose_cmt=[2, 3])  # fmt: skip
    k21, k31 = p["q"] / p["v2"], p["q3"] / p["v3"]
    assert abs(early[0]) < 1e-15
    np.testing.assert_allclose(early[1], 10.0 * (k21 + k31) * 1e-9 / p["v"], rtol=1e-5)


def test_compartment_the_model_lacks_is_refused_with_the_numbering():
    with pytest.raises(TpopkError, match=r"CMT 4.*1 depot, 2 central, 3 peripheral"):
        concentration(PK_MODELS["oral_2cmt"], parameters("oral_2cmt", {}), [0.0], [1.0],
                      [0.0], [0], [0.0], [1.0], dose_cmt=[4])  # fmt: skip


def test_transit_refuses_infusions_into_the_chain_only():
    model = PK_MODELS["transit_1cmt"]
    params = parameters(model.name, {})
    doses = ([0.0], [100.0], [50.0], [0], [0.0])
    with pytest.raises(TpopkError, match="depot"):
        concentration(model, params, *doses, [1.0], dose_cmt=[1])
    assert concentration(model, params, *doses, [1.0], dose_cmt=[2]) > 0.0
