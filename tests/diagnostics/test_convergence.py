import numpy as np
import xarray as xr

from tpopk.diagnostics import convergence, convergence_warnings, plot_convergence

CHAINS, DRAWS = 4, 500


def sampled_tree(*, healthy: bool) -> xr.DataTree:
    """Four chains: iid draws when healthy; else stuck chains, a sticky AR(1), divergences."""
    rng = np.random.default_rng(11)
    shape = (CHAINS, DRAWS)
    iid = rng.standard_normal(shape)
    offset = np.array([0.0, 0.0, 3.0, 3.0])[:, None]  # two pairs of chains in different modes
    sticky = np.zeros(shape)
    for t in range(1, DRAWS):  # AR(1) with rho 0.99: a few effective draws per chain
        sticky[:, t] = 0.99 * sticky[:, t - 1] + rng.standard_normal(CHAINS) * 0.14
    energy = rng.standard_normal(shape)
    diverging = np.zeros(shape, dtype=bool)
    if not healthy:
        energy[1] = np.cumsum(rng.standard_normal(DRAWS)) * 0.2  # random walk: BFMI << 0.3
        diverging[1, [10, 20, 30]] = True
    posterior = {
        "pop_cl": (("chain", "draw"), iid),
        "omega_cl": (("chain", "draw"), rng.standard_normal(shape) + (0 if healthy else offset)),
        "sigma_add_conc": (("chain", "draw"), rng.standard_normal(shape) if healthy else sticky),
        "beta_cl_DISEASE": (
            ("chain", "draw", "disease_level"),
            rng.standard_normal((*shape, 2)),
        ),
        "cl": (("chain", "draw", "subject"), rng.standard_normal((*shape, 3))),
    }
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(
                posterior, coords={"disease_level": ["itp", "cld"], "subject": [101, 102, 103]}
            ),
            "sample_stats": xr.Dataset(
                {"energy": (("chain", "draw"), energy), "diverging": (("chain", "draw"), diverging)}
            ),
        }
    )


def test_table_has_one_row_per_population_parameter_element():
    table = convergence(sampled_tree(healthy=True))
    assert list(table["parameter"].values) == [
        "pop_cl",
        "omega_cl",
        "sigma_add_conc",
        "beta_cl_DISEASE[itp]",
        "beta_cl_DISEASE[cld]",
    ]
    assert (table["r_hat"] < 1.01).all()
    # 2000 independent draws: ESS near 2000
    assert ((table["ess_bulk"] > 1500) & (table["ess_bulk"] < 2600)).all()
    np.testing.assert_array_equal(table["divergences"], [0, 0, 0, 0])
    # MCSE of the mean of iid standard normals: near 1 / sqrt(2000)
    np.testing.assert_allclose(table["mcse_mean"], 1 / np.sqrt(CHAINS * DRAWS), rtol=0.25)
    assert convergence_warnings(table) == []


def test_var_names_selects_individual_parameters():
    table = convergence(sampled_tree(healthy=True), var_names=["cl"])
    assert list(table["parameter"].values) == ["cl[101]", "cl[102]", "cl[103]"]
    chosen = convergence(sampled_tree(healthy=True), var_names=["cl"], coords={"subject": [103]})
    assert list(chosen["parameter"].values) == ["cl[103]"]
    assert chosen["r_hat"].item() == table["r_hat"].sel(parameter="cl[103]").item()


def test_bfmi_matches_its_definition():
    tree = sampled_tree(healthy=False)
    energy = tree.sample_stats.energy.values
    # Betancourt (2016) eq. 3: sum of squared energy steps over the sum of squared deviations
    centred = energy - energy.mean(axis=1, keepdims=True)
    expected = np.sum(np.diff(energy, axis=1) ** 2, axis=1) / np.sum(centred**2, axis=1)
    np.testing.assert_allclose(convergence(tree)["bfmi"].values, expected, rtol=1e-10)


def test_problems_are_named_in_plain_words():
    table = convergence(sampled_tree(healthy=False))
    assert float(table["r_hat"].sel(parameter="omega_cl")) > 1.5
    assert float(table["ess_bulk"].sel(parameter="sigma_add_conc")) < 400
    np.testing.assert_array_equal(table["divergences"], [0, 3, 0, 0])
    messages = convergence_warnings(table)
    assert len(messages) == 5
    rhat, bulk, tail, divergent, bfmi = messages
    assert rhat.startswith("R-hat is above 1.01 for 2 parameter(s): omega_cl")
    assert "sigma_add_conc" in rhat
    assert bulk.startswith("The bulk effective sample size is below 400")
    assert "sigma_add_conc" in bulk
    assert tail.startswith("The tail effective sample size")
    assert divergent.startswith("3 of 2000 draws (0.15%) ended in a divergence")
    assert bfmi.startswith("E-BFMI is below 0.3 in chain(s) 1 (")


def test_plot_convergence_draws_rank_and_density_per_parameter():
    pc = plot_convergence(sampled_tree(healthy=True), var_names=["pop_cl", "omega_cl"])
    figure = pc.viz["figure"].item()
    assert len(figure.axes) == 4


def test_plot_convergence_is_not_limited_to_arviz_default_panel_count():
    """A two-agonist study has ~40 population elements, 80+ panels; ArviZ stops at 40."""
    rng = np.random.default_rng(3)
    posterior = {
        f"pop_p{i}": (("chain", "draw"), rng.standard_normal((CHAINS, DRAWS))) for i in range(22)
    }
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset(posterior)})
    pc = plot_convergence(tree, var_names=sorted(posterior))
    assert len(pc.viz["figure"].item().axes) == 44
