import numpy as np
import pytest
import xarray as xr

from tpopk.diagnostics import DiagnosticsError, observation_types, observations, simulated_draws

from .synthetic import PLT_TIMES, TIMES


def test_observations_are_read_from_the_coordinates(synthetic):
    assert observation_types(synthetic.tree) == ["conc", "plt"]
    plt = observations(synthetic.tree, "plt")
    # each subject has 9 conc then 2 plt records: plt positions 9, 10, 20, 21, ...
    np.testing.assert_array_equal(plt["obs_plt"].values[:4], [9, 10, 20, 21])
    np.testing.assert_array_equal(plt["time"].values[:4], np.tile(PLT_TIMES, 2))
    np.testing.assert_array_equal(plt["subject"].values[:4], [1, 1, 2, 2])
    conc = observations(synthetic.tree, "conc")
    np.testing.assert_array_equal(conc["time"].values[9:18], TIMES)
    assert set(conc["AGONIST"].values[conc["subject"].values == 2]) == {"avatrombopag"}
    np.testing.assert_array_equal(conc["dv"].values, synthetic.tree.observed_data.y_conc.values)
    assert conc.attrs["units"] == "mg/L"


def test_unknown_type_is_a_clear_error(synthetic):
    with pytest.raises(DiagnosticsError, match=r"no observations of type 'anc'.*conc"):
        observations(synthetic.tree, "anc")


def test_simulated_draws_flatten_and_subsample(synthetic):
    every = simulated_draws(synthetic.tree, "conc")
    assert every.shape == (500, 360)
    np.testing.assert_array_equal(
        every[251], synthetic.tree.posterior_predictive.y_conc.values[1, 1]
    )
    some = simulated_draws(synthetic.tree, "conc", num_draws=100, seed=3)
    assert some.shape == (100, 360)
    # a subset of the rows, without repeats
    matches = (some[:, None, :] == every[None, :, :]).all(axis=2)
    assert (matches.sum(axis=1) == 1).all()
    assert len(np.unique(matches.argmax(axis=1))) == 100


def test_every_obs_dim_is_described_by_nonmem_columns(synthetic, censored):
    tree = synthetic.tree
    for group in ("posterior", "posterior_predictive", "log_likelihood", "observed_data"):
        data = tree[group].to_dataset()
        for dvid in ("conc", "plt"):
            for column in ("ID", "TIME", "DVID", "record", "AGONIST", "WT"):
                coord = data[f"{column}_{dvid}"]
                assert coord.dims == (f"obs_{dvid}",)
                assert coord.attrs["column"] == column
    observed = tree["observed_data"].to_dataset()
    assert observed["TIME_conc"].attrs["units"] == "h"
    assert observed["WT_plt"].attrs["units"] == "kg"
    assert observed["y_conc"].attrs["units"] == "mg/L"
    assert set(observed["DVID_plt"].values) == {"plt"}
    # record_<dvid> is the row of the event table (the fit file's events group)
    frame = synthetic.events.frame
    rows = frame.iloc[observed["record_conc"].values]
    np.testing.assert_array_equal(rows["TIME"], observed["TIME_conc"])
    np.testing.assert_array_equal(rows["ID"], observed["ID_conc"])
    np.testing.assert_array_equal(rows["DV"], observed["y_conc"])
    # BLQ and LLOQ only where the data censor that type
    assert "BLQ_conc" not in observed.coords
    censored_data = censored.tree["observed_data"].to_dataset()
    assert censored_data["LLOQ_conc"].attrs["units"] == "mg/L"
    assert censored_data["BLQ_conc"].dtype == bool
    assert "BLQ_plt" not in censored_data.coords


def test_positions_must_be_observations_of_that_type(synthetic):
    from tpopk.diagnostics import observation_coords

    with pytest.raises(DiagnosticsError, match="not all 'conc' observations"):
        observation_coords(synthetic.events, "conc", [0, 9])
    with pytest.raises(DiagnosticsError, match="outside the event table"):
        observation_coords(synthetic.events, "conc", [10_000])


def test_a_tree_without_observation_coordinates_is_a_clear_error(synthetic):
    observed = synthetic.tree["observed_data"].to_dataset().reset_coords(drop=True)
    bare = synthetic.tree.copy()
    bare["observed_data"] = xr.DataTree(observed)
    with pytest.raises(DiagnosticsError, match="no ID_conc or TIME_conc coordinate"):
        observations(bare, "conc")
