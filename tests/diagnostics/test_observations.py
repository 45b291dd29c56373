import numpy as np
import pytest

from tpopk.diagnostics import DiagnosticsError, observation_types, observations, simulated_draws

from .synthetic import PLT_TIMES, TIMES


def test_observations_join_the_event_table_by_position(synthetic):
    assert observation_types(synthetic.fit.tree) == ["conc", "plt"]
    plt = observations(synthetic.fit, "plt")
    # each subject has 9 conc then 2 plt records: plt positions 9, 10, 20, 21, ...
    np.testing.assert_array_equal(plt["obs_plt"].values[:4], [9, 10, 20, 21])
    np.testing.assert_array_equal(plt["time"].values[:4], np.tile(PLT_TIMES, 2))
    np.testing.assert_array_equal(plt["subject"].values[:4], [1, 1, 2, 2])
    conc = observations(synthetic.fit, "conc")
    np.testing.assert_array_equal(conc["time"].values[9:18], TIMES)
    assert set(conc["AGONIST"].values[conc["subject"].values == 2]) == {"avatrombopag"}
    np.testing.assert_array_equal(conc["dv"].values, synthetic.fit.tree.observed_data.y_conc.values)
    assert conc.attrs["units"] == "mg/L"


def test_unknown_type_is_a_clear_error(synthetic):
    with pytest.raises(DiagnosticsError, match=r"no observations of type 'anc'.*conc"):
        observations(synthetic.fit, "anc")


def test_simulated_draws_flatten_and_subsample(synthetic):
    every = simulated_draws(synthetic.fit.tree, "conc")
    assert every.shape == (500, 360)
    np.testing.assert_array_equal(
        every[251], synthetic.fit.tree.posterior_predictive.y_conc.values[1, 1]
    )
    some = simulated_draws(synthetic.fit.tree, "conc", num_draws=100, seed=3)
    assert some.shape == (100, 360)
    # a subset of the rows, without repeats
    matches = (some[:, None, :] == every[None, :, :]).all(axis=2)
    assert (matches.sum(axis=1) == 1).all()
    assert len(np.unique(matches.argmax(axis=1))) == 100
