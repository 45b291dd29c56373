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


def test_summary_is_arviz_summary_of_the_population_rows() -> None:
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
    assert list(table.index) == [  # every element without a subject dimension
        "pop_tp_agonist[romiplostim]",
        "pop_tp_agonist[lusutrombopag]",
        "tau_tp",
        "beta_cl_DISEASE[ITP]",
        "beta_cl_DISEASE[CLD]",
        "z_tp_agonist[romiplostim]",
        "z_tp_agonist[lusutrombopag]",
    ]
    assert list(table.columns) == [
        *("mean", "sd", "eti90_lb", "median", "eti90_ub"),
        *("ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"),
    ]
    chosen = posterior["beta_cl_DISEASE"].sel(disease_level="CLD")
    row = table.loc["beta_cl_DISEASE[CLD]"]
    assert row["mean"] == pytest.approx(float(chosen.mean()))
    assert row["median"] == pytest.approx(float(chosen.median()))
    assert row["eti90_ub"] == pytest.approx(float(chosen.quantile(0.95)))
    assert row["r_hat"] == pytest.approx(float(az.rhat(chosen)))
    assert row["mcse_mean"] == pytest.approx(float(az.mcse(chosen, method="mean")))


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
    # every group's observations carry their subject, time and covariates
    frame = theophylline_fit.events.frame
    for group in ("posterior", "log_likelihood", "posterior_predictive", "predictions"):
        y = theophylline_fit.tree[group].to_dataset()
        rows = frame.iloc[y["record_conc"].values]
        np.testing.assert_array_equal(y["TIME_conc"], rows["TIME"])
        np.testing.assert_array_equal(y["ID_conc"], rows["ID"])
        np.testing.assert_array_equal(y["WT_conc"], rows["WT"])
    observed = theophylline_fit.tree["observed_data"]
    np.testing.assert_array_equal(observed["y_conc"], rows["DV"])
    assert observed["TIME_conc"].attrs["units"] == "h"


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
    assert set(cl) == {
        "unit",
        "mean",
        "sd",
        "q5",
        "q50",
        "q95",
        "ess_bulk",
        "ess_tail",
        "r_hat",
    } | {
        "mcse_mean",
        "mcse_sd",
    }
    assert main(["summary", str(path)]) == 0
    assert "pop_cl" in capsys.readouterr().out


@pytest.mark.slow
def test_population_prediction_is_the_typical_subject(theophylline_fit: Fit) -> None:
    pred = theophylline_fit.posterior["pred_conc"]
    assert pred.dims == ("chain", "draw", "obs_conc")
    # Independent reference: the 1-cmt oral closed form at each draw's typical values
    # (no eta), each subject's own dose.
    ka, cl, v = (
        theophylline_fit.posterior[f"pop_{p}"].to_numpy()[..., None] for p in ["ka", "cl", "v"]
    )
    arrays = theophylline_fit.events.subject_arrays()
    t = arrays.obs_time
    dose = arrays.dose_amt[arrays.obs_subject, 0]
    k = cl / v
    closed = dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))
    np.testing.assert_allclose(pred.to_numpy(), closed, rtol=1e-9)


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


def test_sampler_settings_reach_nutpie_and_the_run_record(monkeypatch: pytest.MonkeyPatch) -> None:
    import tpopk.inference.fitting as fitting
    from tpopk.datasets import load_theophylline

    seen: dict[str, object] = {}

    def stop(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise RuntimeError("stop before sampling")

    monkeypatch.setattr(fitting, "sample_nutpie", stop)
    with pytest.raises(RuntimeError, match="stop before sampling"):
        fitting.fit(
            GENERIC / "oral_1cmt.toml",
            load_theophylline(),
            target_accept=0.97,
            max_treedepth=7,
            mass_matrix="low_rank",
        )
    assert (seen["target_accept"], seen["maxdepth"], seen["adaptation"]) == (0.97, 7, "low_rank")


def test_bad_sampler_settings_are_named() -> None:
    from tpopk.datasets import load_theophylline
    from tpopk.inference import fit

    card, data = GENERIC / "oral_1cmt.toml", load_theophylline()
    with pytest.raises(TpopkError, match="mass_matrix must be one of diag, draw_diag, low_rank"):
        fit(card, data, mass_matrix="dense")  # type: ignore[arg-type]
    with pytest.raises(TpopkError, match="needs sampler='nutpie'"):
        fit(card, data, sampler="pymc", mass_matrix="low_rank")
    with pytest.raises(TpopkError, match="target_accept must lie strictly between 0 and 1"):
        fit(card, data, target_accept=1.0)
    with pytest.raises(TpopkError, match="max_treedepth must be at least 1"):
        fit(card, data, max_treedepth=0)


@pytest.mark.slow
def test_low_rank_mass_matrix_samples_and_is_recorded() -> None:
    from tpopk.datasets import load_theophylline
    from tpopk.inference import fit

    result = fit(
        GENERIC / "oral_1cmt.toml",
        load_theophylline(),
        draws=30,
        tune=50,
        chains=1,
        mass_matrix="low_rank",
        target_accept=0.95,
        progressbar=False,
    )
    run = result.run
    assert run is not None
    settings = (run["mass_matrix"], run["target_accept"], run["max_treedepth"])
    assert settings == ("low_rank", 0.95, 10)
    assert result.posterior.sizes["draw"] == 30


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
    assert list(loaded.summary().columns) == ["mean", "sd", "eti90_lb", "median", "eti90_ub"]


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
    """The prior-draws fit with a run record, observed data and PRED, saved."""
    return described_prior_fit(prior_fit).save(tmp_path_factory.mktemp("fits") / "prior.nc")


def described_prior_fit(prior_fit: Fit) -> Fit:
    """The prior-draws fit as :func:`fit` writes one: run record, described observations, PRED."""
    from tpopk.diagnostics import describe_observations
    from tpopk.inference import compute_pred, run_record

    tree = prior_fit.tree.copy()
    tree.attrs["tpopk_run"] = json.dumps(
        run_record(prior_fit.cards, prior_fit.events, seed=3, sampler="prior", draws=40)
    )
    model, arrays = prior_fit.model, prior_fit.events.subject_arrays()
    tree["observed_data"] = xr.DataTree(
        xr.Dataset(
            {
                f"y_{dvid}": (f"obs_{dvid}", arrays.obs_dv[np.asarray(model.coords[f"obs_{dvid}"])])
                for dvid in ("conc", "plt")
            },
            coords={f"obs_{d}": np.asarray(model.coords[f"obs_{d}"]) for d in ("conc", "plt")},
        )
    )
    posterior = tree["posterior"].to_dataset()
    tree["posterior"] = xr.DataTree(posterior.assign(compute_pred(model, posterior)))
    tree = describe_observations(tree, prior_fit.events)
    return Fit(tree=tree, cards=prior_fit.cards, events=prior_fit.events)


def test_edited_draws_are_refused_on_load(saved_prior_fit: Path, tmp_path: Path) -> None:
    tree = xr.open_datatree(saved_prior_fit, engine="h5netcdf").load()
    Fit.load(saved_prior_fit)  # untouched: loads
    posterior = tree["posterior"].to_dataset()
    posterior["pop_cl"][0, 0] = posterior["pop_cl"][0, 0] * 1.01
    tree["posterior"] = xr.DataTree(posterior)
    tree.to_netcdf(tmp_path / "edited.nc", engine="h5netcdf")
    with pytest.raises(
        FitFileError, match="posterior, sample stats or observed data do not match the hash"
    ):
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


def test_pred_is_the_typical_subject_at_every_draw(prior_fit: Fit) -> None:
    """PRED of a PK/PD card against closed-form PK and a scipy solve of the turnover ODE."""
    from scipy.integrate import solve_ivp

    from tpopk.inference import compute_pred

    # typical values near the card's prior medians: the prior's tails reach turnover
    # rates the solver is not built for, and PRED only evaluates the model's prediction
    medians = {"ka": 1.0, "cl": 5.0, "v": 50.0, "r0": 100.0, "kout": 0.02, "emax": 1.0}
    medians["ec50"] = 0.05
    rng = np.random.default_rng(5)
    posterior = prior_fit.posterior.assign(
        {
            f"pop_{p}": (("chain", "draw"), m * np.exp(0.3 * rng.standard_normal((1, 40))))
            for p, m in medians.items()
        }
    )
    pred = compute_pred(prior_fit.model, posterior)
    typical = {p: posterior[f"pop_{p}"].to_numpy().ravel() for p in medians}
    dose = 5.0  # mg at time 0, both subjects; conc at 2 h and the response at 48 h

    def conc(i: int, t: float) -> float:
        ka, k, v = typical["ka"][i], typical["cl"][i] / typical["v"][i], typical["v"][i]
        return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))

    def response(i: int) -> float:
        kout, r0, emax, ec50 = (typical[p][i] for p in ("kout", "r0", "emax", "ec50"))

        def rhs(t: float, r: np.ndarray) -> np.ndarray:
            c = conc(i, t)
            return kout * r0 * (1 + emax * c / (ec50 + c)) - kout * r

        solution = solve_ivp(rhs, (0, 48), [r0], method="LSODA", rtol=1e-10, atol=1e-10)
        return float(solution.y[0, -1])

    draws = posterior.sizes["draw"]
    np.testing.assert_allclose(
        pred["pred_conc"].values[0], [[conc(i, 2.0)] * 2 for i in range(draws)], rtol=1e-9
    )
    np.testing.assert_allclose(
        pred["pred_plt"].values[0], [[response(i)] * 2 for i in range(draws)], rtol=1e-4
    )


def test_fit_file_keeps_the_observation_coordinates_and_hashes_them(
    saved_prior_fit: Path, tmp_path: Path
) -> None:
    loaded = Fit.load(saved_prior_fit)
    observed = loaded.tree["observed_data"].to_dataset()
    np.testing.assert_array_equal(observed["TIME_plt"], [48.0, 48.0])
    np.testing.assert_array_equal(observed["ID_conc"], [1, 2])
    assert observed["TIME_plt"].attrs == {"column": "TIME", "units": "h"}
    assert loaded.posterior["pred_plt"].dims == ("chain", "draw", "obs_plt")
    assert "TIME_plt" in loaded.posterior.coords
    as_zarr = Fit.load(loaded.save(tmp_path / "prior.zarr"))
    xr.testing.assert_identical(as_zarr.tree["observed_data"], loaded.tree["observed_data"])
    tree = xr.open_datatree(saved_prior_fit, engine="h5netcdf").load()
    edited = tree["observed_data"].to_dataset()
    edited = edited.assign_coords(TIME_plt=edited["TIME_plt"] + 1.0)
    tree["observed_data"] = xr.DataTree(edited)
    tree.to_netcdf(tmp_path / "edited.nc", engine="h5netcdf")
    with pytest.raises(FitFileError, match="do not match the hash"):
        Fit.load(tmp_path / "edited.nc")


def test_a_fit_file_of_an_older_format_is_refused_with_a_hint(
    saved_prior_fit: Path, tmp_path: Path
) -> None:
    tree = xr.open_datatree(saved_prior_fit, engine="h5netcdf").load()
    tree.attrs["tpopk_fit_format"] = 2
    tree.to_netcdf(tmp_path / "old.nc", engine="h5netcdf")
    with pytest.raises(FitFileError, match=r"has fit format 2 .* reads format 3: refit"):
        Fit.load(tmp_path / "old.nc")


def test_a_relabelled_level_sigma_is_refused_on_load(prior_fit: Fit, tmp_path: Path) -> None:
    fit = described_prior_fit(prior_fit)
    posterior = fit.posterior.copy()
    posterior["sigma_log_plt"].attrs = {"sigma_by": "DISEASE", "level": "ITP"}
    fit.tree["posterior"] = xr.DataTree(posterior)
    path = fit.save(tmp_path / "labelled.nc")
    assert Fit.load(path).posterior["sigma_log_plt"].attrs["level"] == "ITP"
    tree = xr.open_datatree(path, engine="h5netcdf").load()
    tree["posterior"]["sigma_log_plt"].attrs["level"] = "CLD"
    tree.to_netcdf(tmp_path / "relabelled.nc", engine="h5netcdf")
    with pytest.raises(FitFileError, match="do not match the hash"):
        Fit.load(tmp_path / "relabelled.nc")


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
