"""Fitting (NUTS, or a fast approximation) and the :class:`Fit` object: an ArviZ DataTree.

A fit file is the DataTree itself (netCDF ``.nc`` or ``.zarr``) with the ArviZ groups
(posterior, sample_stats, log_likelihood, posterior_predictive, observed_data,
constant_data), an ``events`` group holding the fitted data, and in the root attrs the
model card (JSON), the tpopk version, the file format, the run record (seed, sampler
settings, package versions, card and data hashes) and a SHA-256 hash of cards, data,
run record, posterior and sample stats. :meth:`Fit.load` checks all of these and
rebuilds the PyMC model, so a fit can be extended (more predictions, diagnostics)
without the original files.

The root attrs ``inference_method`` (``nuts``, ``pathfinder`` or ``laplace``) and
``approximate`` (1 for the approximations) say where the draws came from. Pathfinder
(Zhang et al. 2022) and the Laplace approximation at the posterior mode are pymc-extras';
their draws are independent and sit in one chain; there is no ``sample_stats`` group,
and R-hat, ESS and divergences do not apply to them. They are for iterating on a model;
a final fit is NUTS.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from pytensor.graph.replace import graph_replace

import tpopk
from tpopk.data import EventTable, read_events
from tpopk.diagnostics.convergence import element_labels, population_variables
from tpopk.errors import TpopkError
from tpopk.inference.nutpie_bridge import sample_nutpie, unconstrained_starts
from tpopk.model import ModelCard, build_model, load_card
from tpopk.progress import step

#: Version of the fit-file layout; bump when a saved file can no longer be read as before.
#: 2: the hash covers the posterior and sample stats; run record.
FIT_FORMAT = 2


def _is_approximate(tree: xr.DataTree) -> bool:
    return bool(int(tree.attrs.get("approximate", 0)))


def _hashed_groups(tree: xr.DataTree) -> tuple[str, ...]:
    """Return the groups a fit file must hold and its hash covers (approximations: no stats)."""
    return ("posterior",) if _is_approximate(tree) else ("posterior", "sample_stats")


Sampler = Literal["nutpie", "pymc"]
Method = Literal["nuts", "pathfinder", "laplace"]
#: Inference methods of :func:`fit`; all but NUTS are approximations.
METHODS: tuple[Method, ...] = ("nuts", "pathfinder", "laplace")
Init = Literal["support", "pathfinder"]
#: Where NUTS chains start: PyMC's jittered support point, or Pathfinder draws.
INITS: tuple[Init, ...] = ("support", "pathfinder")
CardSource = ModelCard | str | Path


class FitFileError(TpopkError):
    """A fit file that is missing, unreadable, tampered with or from an incompatible version."""


def _card_hash(card: ModelCard) -> str:
    return hashlib.sha256(json.dumps(card.to_toml_dict(), sort_keys=True).encode()).hexdigest()


def _data_hash(events: EventTable) -> str:
    digest = hashlib.sha256(events.frame.to_csv(index=False).encode())
    digest.update(json.dumps(events.units.as_dict(), sort_keys=True).encode())
    return digest.hexdigest()


def _content_hash(cards: tuple[ModelCard, ...], events: EventTable, tree: xr.DataTree) -> str:
    """SHA-256 of what a fit is: cards, data, run record, posterior and sample stats.

    Values are hashed as float64, which survives the netCDF round trip of every numeric
    and boolean variable, so an edited draw is caught however it was stored.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([c.to_toml_dict() for c in cards], sort_keys=True).encode())
    digest.update(_data_hash(events).encode())
    digest.update(str(tree.attrs.get("tpopk_run", "")).encode())
    digest.update(f"{tree.attrs.get('inference_method', 'nuts')}/{_is_approximate(tree)}".encode())
    for group in _hashed_groups(tree):
        data = tree[group].to_dataset()
        for name in sorted(map(str, data.data_vars)):
            values = data[name].values
            digest.update(f"{group}/{name}{values.shape}".encode())
            if values.dtype.kind in "biuf":
                digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
            else:  # text (see _text_as_str)
                digest.update(repr(values.astype(str).tolist()).encode())
    return digest.hexdigest()


def _text_as_str(tree: xr.DataTree) -> xr.DataTree:
    """Store object variables (nutpie's ``divergence_message``, None or text) as text.

    netCDF would write an all-None object array as float NaN, so the values hashed at
    save would not be the values read back.
    """
    for group in _hashed_groups(tree):
        data = tree[group].to_dataset()
        text = [name for name in data.data_vars if data[name].dtype == object]
        if text:
            tree[group] = xr.DataTree(data.assign({n: data[n].astype(str) for n in text}))
    return tree


def run_record(
    cards: tuple[ModelCard, ...], events: EventTable, **settings: object
) -> dict[str, object]:
    """Return what reproduces a fit: settings and seed, package versions, input hashes."""
    from importlib.metadata import PackageNotFoundError, version

    packages: dict[str, str | None] = {}
    for package in ("tpopk", "pymc", "pytensor", "nutpie", "numpy", "arviz", "numba"):
        try:
            packages[package] = version(package)
        except PackageNotFoundError:
            packages[package] = None
    return {
        **settings,
        "packages": packages,
        "data_sha256": _data_hash(events),
        "cards_sha256": {card.name: _card_hash(card) for card in cards},
    }


def _events_dataset(events: EventTable) -> xr.Dataset:
    frame = events.frame.reset_index(drop=True)
    data = xr.Dataset.from_dataframe(frame.rename_axis("record"))
    for name in data.data_vars:
        if data[name].dtype == object:
            data[name] = data[name].astype(str)
    data.attrs["units"] = json.dumps(events.units.as_dict())
    return data


def _events_from_dataset(data: xr.Dataset) -> EventTable:
    frame = data.to_dataframe().reset_index(drop=True)
    return read_events(frame, units=json.loads(str(data.attrs["units"])))


@dataclass(frozen=True)
class Fit:
    """A fitted model: the posterior DataTree with the card and data that produced it.

    Attributes
    ----------
    tree
        ArviZ DataTree (``posterior``, ``sample_stats``, ``log_likelihood``,
        ``posterior_predictive``, ``observed_data``, ``constant_data``).
    cards
        The model card(s) that were fitted: one ``pk``/``pkpd`` card, or a system card
        and agonist cards.
    events
        The event table that was fitted.
    """

    tree: xr.DataTree
    cards: tuple[ModelCard, ...]
    events: EventTable

    @cached_property
    def model(self) -> pm.Model:
        """The PyMC model, rebuilt from the card and the data in the coordinates sampled."""
        rotated = bool((self.run or {}).get("reparameterise", False))
        return build_model(self.cards, self.events, reparameterise=rotated)

    @property
    def card(self) -> ModelCard:
        """The model card of a single-card fit."""
        if len(self.cards) != 1:
            raise TpopkError(
                f"this fit is a study of {len(self.cards)} cards; use Fit.cards to pick one"
            )
        return self.cards[0]

    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws (dims ``chain``, ``draw``, ...)."""
        return self.tree["posterior"].to_dataset()

    @property
    def run(self) -> dict[str, object] | None:
        """Run record: seed, sampler settings, package versions, card and data hashes."""
        text = self.tree.attrs.get("tpopk_run")
        return None if text is None else dict(json.loads(str(text)))

    @property
    def method(self) -> str:
        """The inference method that made the draws (``nuts`` for fits saved before it was kept)."""
        return str(self.tree.attrs.get("inference_method", "nuts"))

    @property
    def approximate(self) -> bool:
        """Whether the draws come from an approximation (Pathfinder, Laplace), not MCMC."""
        return _is_approximate(self.tree)

    @property
    def divergences(self) -> int | None:
        """Number of divergent transitions after warm-up; ``None`` without a sampler."""
        if "sample_stats" not in self.tree.children:
            return None
        return int(self.tree["sample_stats"]["diverging"].sum())

    def population_parameters(self) -> list[str]:
        """Names of the population-level variables.

        Typical values, IIV, covariates, residuals and between-agonist SDs
        (:data:`tpopk.diagnostics.convergence.POPULATION_PREFIXES`).
        """
        return population_variables(self.tree)

    def summary(self, ci_prob: float = 0.9) -> pd.DataFrame:
        """Mean, SD, 5/50/95% quantiles, ESS (bulk, tail) and R-hat per population parameter.

        One row per element, named by its coordinates (``beta_cl_DISEASE[ITP]``,
        ``pop_tp_agonist[romiplostim]``) as in :func:`tpopk.diagnostics.convergence`.
        An approximate fit has no ESS and R-hat columns: they measure how well Markov
        chains mixed, and its draws are no Markov chains.
        """
        posterior = self.posterior[self.population_parameters()]
        lower, upper = (1 - ci_prob) / 2, 1 - (1 - ci_prob) / 2
        sample = ("chain", "draw")
        columns = {
            "mean": posterior.mean(sample),
            "sd": posterior.std(sample),
            f"q{lower:.3g}": posterior.quantile(lower, dim=sample),
            "q0.5": posterior.quantile(0.5, dim=sample),
            f"q{upper:.3g}": posterior.quantile(upper, dim=sample),
        }
        if not self.approximate:
            columns |= {
                "ess_bulk": az.ess(posterior, method="bulk"),
                "ess_tail": az.ess(posterior, method="tail"),
                "r_hat": az.rhat(posterior),
            }
        index = pd.Index(element_labels(posterior.isel(chain=0, draw=0)), name="parameter")
        return pd.DataFrame(
            {
                column: np.concatenate(
                    [np.ravel(result[name].values) for name in posterior.data_vars]
                )
                for column, result in columns.items()
            },
            index=index,
        )

    def population_prediction(self, dvid: str, draws: int = 200) -> xr.DataArray:
        """PRED: the prediction for a typical subject (every eta = 0), per observation.

        Subject-level deviates are set to zero and the prediction is evaluated at up to
        ``draws`` posterior draws (evenly thinned) of the population parameters; the
        median over draws is returned, aligned with ``obs_<dvid>``.
        """
        model = self.model
        name = f"ipred_{dvid}"
        if name not in model.named_vars:
            raise TpopkError(f"the model has no '{dvid}' observations")
        subject_level = [rv for rv in model.free_RVs if _is_subject_level(model, rv.name)]
        population = [rv for rv in model.free_RVs if rv not in subject_level]
        inputs = [rv.type(name=rv.name) for rv in population]
        replacements = dict(zip(population, inputs, strict=True))
        replacements |= {
            rv: pt.zeros(tuple(len(model.coords[d]) for d in model.named_vars_to_dims[rv.name]))
            for rv in subject_level
        }
        (typical,) = graph_replace([model[name]], replacements, strict=False)
        evaluate = pytensor.function(inputs, typical, mode="FAST_COMPILE", on_unused_input="ignore")
        flat = self.posterior[[rv.name for rv in population]].stack(sample=("chain", "draw"))
        chosen = np.linspace(0, flat.sizes["sample"] - 1, min(draws, flat.sizes["sample"]))
        values = [
            evaluate(*(flat[rv.name].isel(sample=int(i)).to_numpy() for rv in population))
            for i in chosen.round()
        ]
        dim = f"obs_{dvid}"
        return xr.DataArray(
            np.median(values, axis=0),
            dims=dim,
            coords={dim: np.asarray(model.coords[dim])},
            name=f"pred_{dvid}",
        )

    def log_density(self, point: dict[str, np.ndarray]) -> float:
        """Joint log-density of the rebuilt model at ``point`` (unconstrained value vars)."""
        return float(self.model.compile_logp()(point))

    def save(self, path: str | Path) -> Path:
        """Write the fit atomically as netCDF (``.nc``) or zarr (``.zarr``).

        The file is written next to its destination and moved into place at the end,
        so an interrupted save leaves any earlier file at ``path`` intact.
        """
        path = Path(path)
        if path.suffix not in (".nc", ".zarr"):
            raise FitFileError(f"fit files end in .nc or .zarr, not '{path.suffix}'")
        groups = _hashed_groups(self.tree)
        if absent := [g for g in groups if g not in self.tree.children]:
            raise FitFileError(f"a fit file holds {' and '.join(groups)}; no {absent}")
        tree = _text_as_str(self.tree.copy())
        tree["events"] = xr.DataTree(_events_dataset(self.events))
        tree.attrs |= {
            "tpopk_version": tpopk.__version__,
            "tpopk_fit_format": FIT_FORMAT,
            "tpopk_cards": json.dumps([c.to_toml_dict() for c in self.cards]),
            "tpopk_hash": _content_hash(self.cards, self.events, tree),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        try:
            staged = tmp / path.name
            if path.suffix == ".nc":
                tree.to_netcdf(staged, engine="h5netcdf")
                staged.replace(path)
            else:
                tree.to_zarr(staged)
                backup = tmp / "previous"
                if path.exists():
                    path.rename(backup)
                staged.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Fit:
        """Read a fit file written by :meth:`save`, checking format, version and hash."""
        path = Path(path)
        if not path.exists():
            raise FitFileError(f"fit file '{path}' does not exist")
        try:
            if path.suffix == ".zarr":
                tree = xr.open_datatree(path, engine="zarr").load()
            else:
                with xr.open_datatree(path, engine="h5netcdf") as opened:
                    tree = opened.load()
        except (OSError, ValueError) as err:
            raise FitFileError(f"'{path}' is not a readable fit file: {err}") from None
        attrs = tree.attrs
        if "tpopk_fit_format" not in attrs or "events" not in tree.children:
            raise FitFileError(f"'{path}' was not written by tpopk (no card, data or format)")
        if int(attrs["tpopk_fit_format"]) != FIT_FORMAT:
            raise FitFileError(
                f"'{path}' has fit format {attrs['tpopk_fit_format']} (tpopk "
                f"{attrs.get('tpopk_version')}); this tpopk {tpopk.__version__} reads "
                f"format {FIT_FORMAT}"
            )
        groups = _hashed_groups(tree)
        if absent := [g for g in groups if g not in tree.children]:
            raise FitFileError(
                f"'{path}' has no {' or '.join(absent)} group; a fit file holds "
                f"{' and '.join(groups)}"
            )
        cards = tuple(load_card(c) for c in json.loads(str(attrs["tpopk_cards"])))
        events = _events_from_dataset(tree["events"].to_dataset())
        if _content_hash(cards, events, tree) != attrs["tpopk_hash"]:
            raise FitFileError(
                f"'{path}': the stored cards, data, run record, posterior or sample stats do "
                "not match the hash written with them (the file was modified after fitting)"
            )
        del tree["events"]
        for key in ("tpopk_version", "tpopk_fit_format", "tpopk_cards", "tpopk_hash"):
            tree.attrs.pop(key, None)
        fit = cls(tree=tree, cards=cards, events=events)
        expected = {v.name for v in fit.model.free_RVs} | {v.name for v in fit.model.deterministics}
        if missing := set(map(str, fit.posterior.data_vars)) - expected:
            raise FitFileError(
                f"'{path}': posterior variables {sorted(missing)} do not exist in the model "
                "rebuilt from its card"
            )
        sampled = {v.name for v in fit.model.free_RVs}
        if unsampled := sampled - set(map(str, fit.posterior.data_vars)):
            raise FitFileError(
                f"'{path}': the model rebuilt from its card samples {sorted(unsampled)}, which "
                "the posterior lacks (written by a tpopk that sampled other coordinates; "
                "refit it)"
            )
        return fit


def fit(
    cards: CardSource | Sequence[CardSource],
    events: EventTable | str | Path,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    seed: int = 20261122,
    sampler: Sampler = "nutpie",
    target_accept: float = 0.9,
    max_treedepth: int = 10,
    progressbar: bool = True,
    method: Method = "nuts",
    init: Init = "support",
) -> Fit:
    """Fit a model card to an event dataset with NUTS, or approximate its posterior fast.

    Parameters
    ----------
    cards
        Model card (or the path of its TOML file), or a system card with agonist cards.
    events
        Event table, or the path of a NONMEM-style CSV.
    draws, tune, chains, cores
        Sampler settings (``cores`` defaults to ``min(chains, CPU count)``). For
        Pathfinder, ``chains`` is the number of paths and ``draws`` the total number of
        draws (importance-resampled over the paths); for Laplace, ``draws`` is the number
        of draws from the Gaussian at the mode. Both store their draws as one chain.
    seed
        Random seed; the same seed on the same machine gives the same draws.
    sampler
        ``"nutpie"`` (default; the model compiled through numba, cached on disk: see
        :mod:`tpopk.inference.nutpie_bridge`) or ``"pymc"``.
    target_accept
        NUTS target acceptance rate; raise it if divergences appear.
    max_treedepth
        Largest NUTS tree depth (at most ``2**max_treedepth`` leapfrog steps per draw).
        Lowering it bounds the cost of a smoke run on a hard posterior; draws that hit
        it are flagged in ``sample_stats`` and mean the sampler did not explore freely.
    progressbar
        Show sampling progress, and say on stderr when the model is being compiled.
    method
        ``"nuts"`` (MCMC; the default), or an approximation for iterating on a model:
        ``"pathfinder"`` (multi-path Pathfinder, importance-resampled) or ``"laplace"``
        (Gaussian at the posterior mode, on the unconstrained scale), both from
        pymc-extras. An approximate fit is labelled so in the fit file, the summary and
        the report. ``tune``, ``sampler``, ``target_accept``, ``max_treedepth`` and
        ``init`` are NUTS settings.
    init
        Where NUTS chains start: ``"support"`` (PyMC's support point, jittered) or
        ``"pathfinder"`` (a random Pathfinder draw per chain; Pathfinder runs first).
        Only the ``nutpie`` sampler takes ``"pathfinder"``.

    Returns
    -------
    Fit
        Posterior with log-likelihood and posterior predictive draws.
    """
    if method not in METHODS:
        raise TpopkError(f"method must be one of {', '.join(METHODS)}, not '{method}'")
    if init not in INITS:
        raise TpopkError(f"init must be one of {', '.join(INITS)}, not '{init}'")
    if init == "pathfinder" and (method != "nuts" or sampler != "nutpie"):
        raise TpopkError(
            "init='pathfinder' starts NUTS chains: it needs method='nuts', sampler='nutpie'"
        )
    given = [cards] if isinstance(cards, ModelCard | str | Path) else list(cards)
    loaded = tuple(c if isinstance(c, ModelCard) else load_card(c) for c in given)
    events = events if isinstance(events, EventTable) else read_events(events)
    # the typical values the data inform, not the card's reference x effect (same posterior)
    model = build_model(loaded, events, reparameterise=True)
    with model:
        if method != "nuts":
            tree = _approximate(
                model, method, draws=draws, paths=chains, seed=seed, progress=progressbar
            )
        elif sampler == "nutpie":
            starts = None
            if init == "pathfinder":
                start_tree = _approximate(
                    model, "pathfinder", draws=1000, paths=chains, seed=seed, progress=progressbar
                )
                starts = unconstrained_starts(
                    model, start_tree["posterior"].to_dataset(), chains, seed
                )
            tree = sample_nutpie(
                model,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                seed=seed,
                progressbar=progressbar,
                target_accept=target_accept,
                maxdepth=max_treedepth,
                starts=starts,
            )
        else:
            tree = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                random_seed=seed,
                nuts={"target_accept": target_accept, "max_treedepth": max_treedepth},
                progressbar=progressbar,
            )
        pm.compute_log_likelihood(tree, progressbar=False)
        pm.sample_posterior_predictive(
            tree, extend_inferencedata=True, random_seed=seed, progressbar=False
        )
        _simulate_new_subjects(tree, model, seed)
    tree.attrs |= {"inference_method": method, "approximate": int(method != "nuts")}
    settings: dict[str, object] = {"method": method, "init": init, "reparameterise": True}
    settings |= {"draws": draws, "tune": tune, "chains": chains, "cores": cores}
    settings |= {"target_accept": target_accept, "max_treedepth": max_treedepth}
    record = run_record(loaded, events, seed=seed, sampler=sampler, **settings)
    tree.attrs["tpopk_run"] = json.dumps(record)
    result = Fit(tree=tree, cards=loaded, events=events)
    result.__dict__["model"] = model  # reuse the compiled-once model instead of rebuilding
    return result


#: The groups of pymc-extras' output that tpopk keeps: the draws, the data, and each
#: method's own diagnostics (Pathfinder's per-path ELBO and Pareto k, L-BFGS iterations;
#: Laplace's mode and covariance, the optimiser's result).
_APPROXIMATION_GROUPS = {
    "pathfinder": ("pathfinder", "lbfgs"),
    "laplace": ("fit", "optimizer_result"),
}


def _approximate(
    model: pm.Model, method: Method, *, draws: int, paths: int, seed: int, progress: bool
) -> xr.DataTree:
    """Run pymc-extras' Pathfinder or Laplace approximation; the draws as one chain."""
    from pymc_extras.inference import fit_laplace, fit_pathfinder

    label = f"{method} approximation (compiles the model first: minutes for a new model)"
    with step("fit", label, progress):
        if method == "pathfinder":
            result = fit_pathfinder(
                model=model,
                num_paths=paths,
                num_draws=draws,
                random_seed=seed,
                progressbar=progress,
            )
        else:
            result = fit_laplace(model=model, draws=draws, random_seed=seed, progressbar=progress)
    keep = ("observed_data", "constant_data", *_APPROXIMATION_GROUPS[method])
    groups = {name: result[name].to_dataset() for name in keep if name in result.children}
    # variables in the model's order, as NUTS stores them
    posterior = result["posterior"].to_dataset()
    ordered = [v.name for v in (*model.free_RVs, *model.deterministics) if v.name in posterior]
    return xr.DataTree.from_dict({"posterior": posterior[ordered], **groups})


def _is_subject_level(model: pm.Model, name: str) -> bool:
    return any(str(d).startswith("subject") for d in model.named_vars_to_dims.get(name, ()))


def _simulate_new_subjects(tree: xr.DataTree, model: pm.Model, seed: int) -> None:
    """Add ``predictions``: observations of new subjects (fresh etas) at the data's design.

    This is what a classical VPC and NPDE compare the data with; ``posterior_predictive``
    instead reuses each subject's own etas.
    """
    keep = [
        rv.name
        for rv in model.free_RVs
        if not _is_subject_level(model, rv.name) and rv.name in tree["posterior"]
    ]
    population = xr.DataTree.from_dict({"posterior": tree["posterior"].to_dataset()[keep]})
    observed = [rv.name for rv in model.observed_RVs]
    new = pm.sample_posterior_predictive(
        population,
        model=model,
        var_names=observed,
        predictions=True,
        random_seed=seed + 1,
        progressbar=False,
    )
    tree["predictions"] = new["predictions"]
