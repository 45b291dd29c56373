"""The per-subject integration grid."""

import numpy as np
import pytest

from tpopk.errors import TpopkError
from tpopk.pd import SolverGrid


def test_observations_and_doses_are_exact_nodes():
    t_obs = np.array([0.0, 7.3, 100.0, 1.0 / 3.0, 50.0])
    doses = np.array([[0.0, 24.0, 48.0], [5.0, np.nan, np.nan]])
    grid = SolverGrid.build([0, 0, 0, 1, 1], t_obs, 2, breakpoints=doses, max_step=10.0)
    assert np.array_equal(grid.times.ravel()[grid.obs_index], t_obs)
    for s, row in enumerate(doses):
        assert np.isin(row[np.isfinite(row)], grid.times[s]).all()
    # Steps never exceed max_step; padding is zero-length at the end of the shorter grid.
    assert grid.steps.max() <= 10.0 + 1e-12
    assert (grid.steps[1, -3:] == 0).all()
    assert (np.diff(grid.times, axis=1) >= 0).all()
    assert np.allclose(grid.stage_times[:, 1::2], 0.5 * (grid.times[:, :-1] + grid.times[:, 1:]))


def test_steps_double_after_each_dose():
    grid = SolverGrid.build([0], [48.0], 1, breakpoints=[[0.0, 24.0]], max_step=8.0, first_step=0.5)
    after = grid.times[0][(grid.times[0] > 24.0) & (grid.times[0] < 48.0)] - 24.0
    np.testing.assert_allclose(after[:4], [0.5, 1.5, 3.5, 7.5])
    assert np.diff(np.r_[0.0, after, 24.0]).max() <= 8.0 + 1e-12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"obs_time": [-1.0]}, "t0"),
        ({"obs_subject": [3]}, "obs_subject"),
        ({"max_step": 0.0}, "max_step"),
        ({"first_step": 20.0}, "first_step"),
        ({"breakpoints": [[0.0], [1.0]]}, "breakpoints"),
    ],
)
def test_bad_input_is_refused(kwargs, message):
    args = {"obs_subject": [0], "obs_time": [10.0], "n_subjects": 1} | kwargs
    with pytest.raises(TpopkError, match=message):
        SolverGrid.build(**args)


def test_max_step_may_differ_between_subjects():
    grid = SolverGrid.build(
        [0, 1], [48.0, 48.0], 2, breakpoints=[[0.0], [0.0]], max_step=[12.0, 2.0]
    )
    assert 8.0 < grid.steps[0].max() <= 12.0 + 1e-12
    assert grid.steps[1].max() <= 2.0 + 1e-12
    with pytest.raises(TpopkError, match="max_step"):
        SolverGrid.build([0, 1], [1.0, 1.0], 2, max_step=[1.0, 0.0])
