from pathlib import Path

import numpy as np
import xarray as xr

from tpopk.datasets import load_itp_study
from tpopk.demo import study_arms
from tpopk.model import build_model, load_card, population_variables
from tpopk.model.levels import is_population_level

MODELS = Path(__file__).parents[2] / "models"


def test_subject_and_observation_dimensions_are_individual() -> None:
    assert is_population_level(())
    assert is_population_level(("agonist",))
    assert is_population_level(("disease_level",))
    assert not is_population_level(("subject",))
    assert not is_population_level(("subject_romiplostim",))
    assert not is_population_level(("obs_plt",))


def test_model_and_its_posterior_agree_on_the_population_variables() -> None:
    cards = [load_card(MODELS / f"{name}.toml") for name in ("thrombopoiesis", "romiplostim")]
    model = build_model(cards, study_arms(load_itp_study(), ("romiplostim",)))
    free = population_variables(model)
    # the pooled deviates and per-subject parameterisations are classified by dims, not names
    assert "z_tp_agonist" in free
    assert "pop_plt0" in free
    assert not any(name.startswith(("eta_", "z_plt0", "cl_")) for name in free)
    assert set(free) == {
        rv.name
        for rv in model.free_RVs
        if "subject" not in str(model.named_vars_to_dims.get(rv.name))
    }
    # a posterior of the same variables: the free ones plus the population deterministics
    stored = [*free, "pop_tp_agonist", "cl_romiplostim", "ipred_plt"]
    dims = {name: model.named_vars_to_dims.get(name, ()) for name in stored}
    posterior = xr.Dataset(
        {
            name: (
                ("chain", "draw", *dims[name]),
                np.zeros([1, 1, *(len(model.coords[d]) for d in dims[name])]),
            )
            for name in stored
        }
    )
    tree = xr.DataTree.from_dict({"posterior": posterior})
    assert population_variables(tree) == [*free, "pop_tp_agonist"]
    assert population_variables(posterior) == population_variables(tree)
