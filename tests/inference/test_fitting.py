"""Fitting, the Fit object and its file: validated against nlmixr2 on theophylline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import xarray as xr

from tpopk import datasets
from tpopk.cli import main
from tpopk.errors import TpopkError
from tpopk.inference import Fit, FitFileError
from tpopk.model import load_card

GENERIC = Path(__file__).parents[2] / "models" / "generic"

pytestmark = pytest.mark.xdist_group("fits")

# nlmixr2 FOCEi on theophylline (shared/data/README.md): typical values, residual SD and
# IIV SDs on the log scale (CV% 70.6/26.8/13.9 -> omega = sqrt(log(1 + CV^2))).
NLMIXR2_FOCEI = {"pop_ka": 1.59, "pop_cl": 2.75, "pop_v": 31.8, "sigma_add_conc": 0.693}
NLMIXR2_OMEGA = {
    f"omega_{p}": math.sqrt(math.log1p(cv**2))
    for p, cv in {"ka": 0.706, "cl": 0.268, "v": 0.139}.items()
}


def test_summary_names_elements_by_coordinate_and_keeps_population_rows() -> None:
    rng = np.random.default_rng(3)
    draws = {"chain": 2, "draw": 300}
    posterior = xr.Dataset(
        {
            "pop_tp_agonist": (("chain", "draw", "agonist"), rng.normal(5, 1, (2, 300, 2))),
            "tau_tp": (("chain", "draw"), rng.gamma(2, 0.1, (2, 300))),
            "beta_cl_DISEASE": (("chain", "draw", "disease_level"), rng.normal(0, 1, (2, 300, 2))),
            "z_tp_agonist": (("chain", "draw", "agonist"), rng.normal(0, 1, (2, 300, 2))),
            "cl": (("chain", "draw", "subject"), rng.lognormal(0, 1, (2, 300, 3))),
        },
        coords={
            "agonist": ["romiplostim", "lusutrombopag"],
            "disease_level": ["ITP", "CLD"],
            "subject": [1, 2, 3],
            **{dim: np.arange(n) for dim, n in draws.items()},
        },
    )
    tree = xr.DataTree.from_dict({"posterior": posterior})
    events = datasets.load_theophylline()
    fit = Fit(tree=tree, cards=(load_card(GENERIC / "oral_1cmt.toml"),), events=events)
    table = fit.summary(ci_prob=0.9)
    assert list(table.index) == [
        "pop_tp_agonist[romiplostim]",
        "pop_tp_agonist[lusutrombopag]",
        "tau_tp",
        "beta_cl_DISEASE[ITP]",
        "beta_cl_DISEASE[CLD]",
    ]
    chosen = posterior["beta_cl_DISEASE"].sel(disease_level="CLD")
    row = table.loc["beta_cl_DISEASE[CLD]"]
    assert row["mean"] == pytest.approx(float(chosen.mean()))
    assert row["q0.95"] == pytest.approx(float(chosen.quantile(0.95)))
    assert row["r_hat"] == pytest.approx(float(az.rhat(chosen)))


@pytest.mark.slow
def test_theophylline_matches_nlmixr2(theophylline_fit: Fit) -> None:
    median = theophylline_fit.posterior.median(("chain", "draw"))
    for name, reference in NLMIXR2_FOCEI.items():
        assert float(median[name]) == pytest.approx(reference, rel=0.05), name
    for name, reference in NLMIXR2_OMEGA.items():
        assert float(median[name]) == pytest.approx(reference, rel=0.25), name


@pytest.mark.slow
def test_theophylline_fit_converged(theophylline_fit: Fit) -> None:
    table = theophylline_fit.summary()
    assert theophylline_fit.divergences == 0
    assert (table["r_hat"] < 1.01).all(), table
    assert (table["ess_bulk"] > 200).all(), table


@pytest.mark.slow
def test_fit_tree_has_arviz_groups(theophylline_fit: Fit) -> None:
    groups = set(theophylline_fit.tree.children)
    assert {"posterior", "sample_stats", "log_likelihood", "posterior_predictive"} <= groups
    assert {"observed_data"} <= groups
    posterior = theophylline_fit.posterior
    assert posterior["cl"].dims == ("chain", "draw", "subject")
    assert posterior["ipred_conc"].sizes["obs_conc"] == 132
    assert theophylline_fit.tree["log_likelihood"]["y_conc"].sizes["obs_conc"] == 132


@pytest.mark.slow
def test_save_load_round_trip(theophylline_fit: Fit, tmp_path: Path) -> None:
    path = theophylline_fit.save(tmp_path / "theo.nc")
    loaded = Fit.load(path)
    xr.testing.assert_identical(loaded.posterior, theophylline_fit.posterior)
    assert loaded.card == theophylline_fit.card
    point = theophylline_fit.model.initial_point()
    point = {k: v + 0.1 for k, v in point.items()}
    assert loaded.log_density(point) == theophylline_fit.log_density(point)
    assert np.isfinite(loaded.log_density(point))


@pytest.mark.slow
def test_save_is_atomic_and_load_refuses_tampering(theophylline_fit: Fit, tmp_path: Path) -> None:
    path = theophylline_fit.save(tmp_path / "theo.nc")
    before = path.read_bytes()
    with pytest.raises(FitFileError, match=r"\.nc or \.zarr"):
        theophylline_fit.save(tmp_path / "theo.csv")
    assert path.read_bytes() == before
    tree = xr.open_datatree(path, engine="h5netcdf").load()
    tree.attrs["tpopk_hash"] = "0" * 64
    tree.to_netcdf(tmp_path / "tampered.nc", engine="h5netcdf")
    with pytest.raises(FitFileError, match="do not match the hash"):
        Fit.load(tmp_path / "tampered.nc")
    tree.attrs["tpopk_fit_format"] = 99
    tree.to_netcdf(tmp_path / "future.nc", engine="h5netcdf")
    with pytest.raises(FitFileError, match="fit format 99"):
        Fit.load(tmp_path / "future.nc")
    with pytest.raises(FitFileError, match="does not exist"):
        Fit.load(tmp_path / "missing.nc")


@pytest.mark.slow
def test_summary_cli_json(
    theophylline_fit: Fit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = theophylline_fit.save(tmp_path / "theo.nc")
    assert main(["summary", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "tpopk.summary/1"
    assert report["model"] == ["oral_1cmt"]
    assert report["divergences"] == 0
    cl = report["parameters"]["pop_cl"]
    assert cl["q5"] < cl["q50"] < cl["q95"]
    assert set(cl) == {"mean", "sd", "q5", "q50", "q95", "ess_bulk", "ess_tail", "r_hat"}
    assert main(["summary", str(path)]) == 0
    assert "pop_cl" in capsys.readouterr().out


@pytest.mark.slow
def test_population_prediction_is_the_typical_subject(theophylline_fit: Fit) -> None:
    pred = theophylline_fit.population_prediction("conc", draws=20)
    assert pred.dims == ("obs_conc",)
    # Independent reference: the 1-cmt oral closed form at each of the same 20 draws'
    # typical values (no eta), each subject's own dose, median over draws.
    flat = theophylline_fit.posterior.stack(sample=("chain", "draw"))
    chosen = np.linspace(0, flat.sizes["sample"] - 1, 20).round().astype(int)
    ka, cl, v = (flat[f"pop_{p}"].to_numpy()[chosen, None] for p in ("ka", "cl", "v"))
    arrays = theophylline_fit.events.subject_arrays()
    t = arrays.obs_time[None, :]
    dose = arrays.dose_amt[arrays.obs_subject, 0][None, :]
    k = cl / v
    closed = dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))
    np.testing.assert_allclose(pred.to_numpy(), np.median(closed, axis=0), rtol=1e-9)


@pytest.mark.slow
def test_new_subject_simulations(theophylline_fit: Fit) -> None:
    predictions = theophylline_fit.tree["predictions"]["y_conc"]
    assert predictions.sizes["obs_conc"] == 132
    # new subjects spread more than the fitted ones (their etas are not conditioned)
    spread_new = float(predictions.std(("chain", "draw")).median())
    spread_fitted = float(
        theophylline_fit.tree["posterior_predictive"]["y_conc"].std(("chain", "draw")).median()
    )
    assert spread_new > spread_fitted


@pytest.mark.slow
def test_max_treedepth_bounds_the_trajectories() -> None:
    from tpopk.datasets import load_theophylline
    from tpopk.inference import fit

    shallow = fit(
        Path(__file__).parents[2] / "models" / "generic" / "oral_1cmt.toml",
        load_theophylline(),
        draws=30,
        tune=30,
        chains=1,
        max_treedepth=2,
        progressbar=False,
    )
    depth = shallow.tree["sample_stats"]["depth"].to_numpy()
    assert depth.max() == 2  # reached and never exceeded
    assert shallow.method == "nuts"
    assert not shallow.approximate
    assert "r_hat" in shallow.summary().columns


def test_unknown_method_or_init_is_named() -> None:
    from tpopk.datasets import load_theophylline
    from tpopk.inference import fit

    card = GENERIC / "oral_1cmt.toml"
    with pytest.raises(TpopkError, match="method must be one of nuts, pathfinder, laplace"):
        fit(card, load_theophylline(), method="vi")  # type: ignore[arg-type]
    with pytest.raises(TpopkError, match="init must be one of support, pathfinder"):
        fit(card, load_theophylline(), init="map")  # type: ignore[arg-type]
    with pytest.raises(TpopkError, match="needs method='nuts'"):
        fit(card, load_theophylline(), method="laplace", init="pathfinder")


@pytest.fixture(scope="module", params=["pathfinder", "laplace"])
def approximate_fit(request: pytest.FixtureRequest) -> Fit:
    from tpopk.inference import fit

    return fit(
        GENERIC / "oral_1cmt.toml",
        datasets.load_theophylline(),
        method=request.param,
        draws=400,
        chains=4,
        seed=11,
        progressbar=False,
    )


@pytest.mark.slow
def test_approximations_land_near_the_typical_values(approximate_fit: Fit) -> None:
    """Typical values and residual SD near nlmixr2's (which NUTS matches within 5%).

    The IIV SDs are not checked: at the joint mode of a hierarchical model (Laplace) and
    in Pathfinder's Gaussian they are off by up to 2x (benchmarks/README.md).
    """
    median = approximate_fit.posterior.median(("chain", "draw"))
    for name, reference in NLMIXR2_FOCEI.items():
        assert float(median[name]) == pytest.approx(reference, rel=0.3), name


@pytest.mark.slow
def test_approximate_fit_file_is_labelled_and_reloads(approximate_fit: Fit, tmp_path: Path) -> None:
    path = approximate_fit.save(tmp_path / "approximate.nc")
    loaded = Fit.load(path)
    xr.testing.assert_identical(loaded.posterior, approximate_fit.posterior)
    assert loaded.method == approximate_fit.tree.attrs["inference_method"]
    assert loaded.approximate
    assert loaded.method in ("pathfinder", "laplace")
    posterior = loaded.posterior
    assert posterior.sizes["chain"] == 1
    assert posterior.sizes["draw"] == 400
    assert posterior["cl"].dims == ("chain", "draw", "subject")
    # a method's missing groups stay missing: no sampler statistics, no divergences
    assert "sample_stats" not in loaded.tree.children
    assert loaded.divergences is None
    assert {"log_likelihood", "posterior_predictive", "predictions"} <= set(loaded.tree.children)
    assert list(loaded.summary().columns) == ["mean", "sd", "q0.05", "q0.5", "q0.95"]


@pytest.mark.slow
def test_report_of_an_approximate_fit_says_so(approximate_fit: Fit, tmp_path: Path) -> None:
    from tpopk.report import build_payload, write_html

    payload = build_payload(approximate_fit, progress=False)
    assert payload.approximate
    assert payload.inference_method == approximate_fit.method
    assert payload.convergence.chains == ()
    (warning,) = payload.convergence.warnings
    assert "not from MCMC" in warning
    assert not payload.section_figures("convergence")  # no rank plots of one chain
    assert all(row.r_hat is None for row in payload.parameters.rows)
    page = write_html(payload, tmp_path / "report.html").read_text()
    assert "Approximate posterior" in page
    assert "R-hat</th>" not in page


def test_nuts_fit_is_not_labelled_approximate(tmp_path: Path) -> None:
    """A fit file without the label (written before it existed) reads as NUTS."""
    tree = xr.DataTree.from_dict(
        {"posterior": xr.Dataset({"pop_cl": (("chain", "draw"), [[1.0]])})}
    )
    fit = Fit(
        tree=tree,
        cards=(load_card(GENERIC / "oral_1cmt.toml"),),
        events=datasets.load_theophylline(),
    )
    assert fit.method == "nuts"
    assert not fit.approximate


@pytest.fixture(scope="module")
def saved_prior_fit(prior_fit: Fit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prior-draws fit with a run record, saved."""
    from tpopk.inference import run_record

    tree = prior_fit.tree.copy()
    tree.attrs["tpopk_run"] = json.dumps(
        run_record(prior_fit.cards, prior_fit.events, seed=3, sampler="prior", draws=40)
    )
    path = tmp_path_factory.mktemp("fits") / "prior.nc"
    return Fit(tree=tree, cards=prior_fit.cards, events=prior_fit.events).save(path)


def test_edited_draws_are_refused_on_load(saved_prior_fit: Path, tmp_path: Path) -> None:
    tree = xr.open_datatree(saved_prior_fit, engine="h5netcdf").load()
    Fit.load(saved_prior_fit)  # untouched: loads
    posterior = tree["posterior"].to_dataset()
    posterior["pop_cl"][0, 0] = posterior["pop_cl"][0, 0] * 1.01
    tree["posterior"] = xr.DataTree(posterior)
    tree.to_netcdf(tmp_path / "edited.nc", engine="h5netcdf")
    with pytest.raises(FitFileError, match="posterior or sample stats do not match the hash"):
        Fit.load(tmp_path / "edited.nc")


@pytest.mark.parametrize("group", ["posterior", "sample_stats"])
def test_fit_file_without_a_required_group_is_a_fit_file_error(
    group: str, saved_prior_fit: Path, tmp_path: Path
) -> None:
    tree = xr.open_datatree(saved_prior_fit, engine="h5netcdf").load()
    del tree[group]
    tree.to_netcdf(tmp_path / "partial.nc", engine="h5netcdf")
    with pytest.raises(FitFileError, match=f"has no {group} group"):
        Fit.load(tmp_path / "partial.nc")


def test_run_record_is_in_the_fit_file_and_summary_json(
    saved_prior_fit: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pymc

    run = Fit.load(saved_prior_fit).run
    assert run is not None
    assert run["seed"] == 3
    assert run["packages"]["pymc"] == pymc.__version__
    assert set(run["cards_sha256"]) == {"oral_1cmt_idr"}
    assert len(run["data_sha256"]) == 64
    assert main(["summary", str(saved_prior_fit), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"] == run


@pytest.mark.parametrize("reparameterise", [True, False, None])
def test_model_is_rebuilt_in_the_coordinates_the_fit_sampled(reparameterise: bool | None) -> None:
    """A fit records its coordinates; a file without the record sampled the card's form."""
    from tpopk.demo import MODELS, study_arms

    record = {} if reparameterise is None else {"reparameterise": reparameterise}
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset()})
    tree.attrs["tpopk_run"] = json.dumps(record)
    cards = (load_card(MODELS / "thrombopoiesis.toml"), load_card(MODELS / "romiplostim.toml"))
    events = study_arms(datasets.load_itp_study(), ("romiplostim",))
    free = {v.name for v in Fit(tree=tree, cards=cards, events=events).model.free_RVs}
    # every study subject has ITP: the rotated model samples the ITP baseline itself
    assert ("log_pop_plt0_DISEASE" in free) is bool(reparameterise)
    assert ("pop_plt0" in free) is not bool(reparameterise)
