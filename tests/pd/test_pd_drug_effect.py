"""Drug-effect models: one definition for NumPy and PyTensor."""

import numpy as np
import pytensor.tensor as pt
import pytest

from tpopk.errors import TpopkError
from tpopk.pd import drug_effect

CONC = np.array([0.0, 0.1, 2.0, 5.0, 40.0])


def test_emax_and_sigmoid_values():
    np.testing.assert_allclose(drug_effect.emax(CONC, 2.0, 5.0), 1 + 2.0 * CONC / (5.0 + CONC))
    hill = drug_effect.sigmoid_emax(CONC, 2.0, 5.0, 3.0)
    np.testing.assert_allclose(hill, 1 + 2.0 * CONC**3 / (5.0**3 + CONC**3), rtol=1e-14)
    assert drug_effect.sigmoid_emax(5.0, 2.0, 5.0, 3.0) == pytest.approx(2.0)
    np.testing.assert_allclose(drug_effect.linear(CONC, 0.1, "inhibit"), 1 - 0.1 * CONC)


def test_pytensor_matches_numpy_and_gradient_is_finite_at_zero():
    c = pt.vector("c")
    hill = pt.scalar("hill")
    out = drug_effect.sigmoid_emax(c, 2.0, 5.0, hill, "inhibit", xp=pt)
    grad = pt.grad(out.sum(), hill)
    value, g = (x.eval({c: CONC, hill: 1.5}) for x in (out, grad))
    np.testing.assert_allclose(value, drug_effect.sigmoid_emax(CONC, 2.0, 5.0, 1.5, "inhibit"))
    assert np.isfinite(g)


def test_unknown_direction_is_refused():
    with pytest.raises(TpopkError, match="direction"):
        drug_effect.emax(CONC, 1.0, 1.0, "up")
