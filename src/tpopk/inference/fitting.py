"""Fitting (NUTS, or a fast approximation) and the :class:`Fit` object: an ArviZ DataTree.

A fit file is the DataTree itself (netCDF ``.nc`` or ``.zarr``) with the ArviZ groups
(posterior, sample_stats, log_likelihood, posterior_predictive, observed_data,
constant_data, predictions), an ``events`` group holding the fitted data, and in the root
attrs the model card (JSON), the tpopk version, the file format, the run record (seed,
sampler settings, package versions, card and data hashes) and a SHA-256 hash of cards,
data, run record, posterior, sample stats and observed data. Every ``obs_<dvid>``
dimension carries the observations' subject, time, DVID, BLQ/LLOQ and covariates as
coordinates (:func:`tpopk.diagnostics.describe_observations`), and the posterior holds
PRED (``pred_<dvid>``, :func:`compute_pred`) beside IPRED (``ipred_<dvid>``), so the
diagnostics need the tree alone. :meth:`Fit.load` checks all of these and
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from pytensor.graph.replace import graph_replace

import tpopk
from tpopk.data import EventTable, read_events
from tpopk.diagnostics.convergence import parameter_summary
from tpopk.diagnostics.observations import describe_observations
from tpopk.errors import TpopkError
from tpopk.files import atomic_path
from tpopk.inference.nutpie_bridge import sample_nutpie, unconstrained_starts
from tpopk.model import ModelCard, build_model, load_card, population_variables
from tpopk.progress import quiet_pymc, step

#: Version of the fit-file layout; bump when a saved file can no longer be read as before.
#: 2: the hash covers the posterior and sample stats; run record.
#: 3: observation coordinates on every ``obs_<dvid>`` dim, ``pred_<dvid>`` in the
#: posterior, ``sigma_by`` attrs on level sigmas; the hash covers the observed data.
FIT_FORMAT = 3


def _is_approximate(tree: xr.DataTree) -> bool:
    return bool(int(tree.attrs.get("approximate", 0)))


def _hashed_groups(tree: xr.DataTree) -> tuple[str, ...]:
    """Return the groups a fit file must hold and its hash covers (approximations: no stats)."""
    return ("posterior",) if _is_approximate(tree) else ("posterior", "sample_stats")


def _data_groups(tree: xr.DataTree) -> tuple[str, ...]:
    """Return the groups the hash covers: the required ones and the observed data."""
    observed = ("observed_data",) if "observed_data" in tree.children else ()
    return (*_hashed_groups(tree), *observed)


Sampler = Literal["nutpie", "pymc"]
Method = Literal["nuts", "pathfinder", "laplace"]
#: Inference methods of :func:`fit`; all but NUTS are approximations.
METHODS: tuple[Method, ...] = ("nuts", "pathfinder", "laplace")
MassMatrix = Literal["diag", "draw_diag", "low_rank"]
#: nutpie's mass-matrix adaptations (its ``adaptation``): ``diag`` from draws and gradients
#: (nutpie's default), ``draw_diag`` from draws only (as Stan and PyMC), ``low_rank``
#: diagonal plus a low-rank part that follows the strongest posterior correlations.
MASS_MATRICES: tuple[MassMatrix, ...] = ("diag", "draw_diag", "low_rank")
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
    """SHA-256 of what a fit is: cards, data, run record, posterior, sample stats, observed data.

    Coordinates are hashed with the variables, and the ``sigma_by`` labels of level
    sigmas: the diagnostics read the observations' times, subjects and covariates, and
    which observations a level sigma scales, from them. Values are hashed as float64, which
    survives the netCDF round trip of every numeric and boolean variable, so an edited
    draw is caught however it was stored.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([c.to_toml_dict() for c in cards], sort_keys=True).encode())
    digest.update(_data_hash(events).encode())
    digest.update(str(tree.attrs.get("tpopk_run", "")).encode())
    digest.update(f"{tree.attrs.get('inference_method', 'nuts')}/{_is_approximate(tree)}".encode())
    for group in _data_groups(tree):
        data = tree[group].to_dataset()
        for name in sorted(map(str, data.variables)):
            values = data[name].values
            digest.update(f"{group}/{name}{values.shape}".encode())
            if "sigma_by" in data[name].attrs:  # which observations a level sigma scales
                digest.update(
                    f"{data[name].attrs['sigma_by']}={data[name].attrs['level']}".encode()
                )
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
        ``posterior_predictive``, ``observed_data``, ``constant_data``), its
        observations described by coordinates and PRED in the posterior (module
        docstring); what :mod:`tpopk.diagnostics` reads.
    cards
        The model card(s) that were fitted: one ``pk``/``pkpd`` card, or a system card
        and agonist cards.
    events
        The event table that was fitted.
    """

    tree: xr.DataTree
    cards: tuple[ModelCard, ...]
    events: EventTable

    #: The PyMC model, once built (by :func:`fit`, or on first use of :attr:`model`).
    _model: pm.Model | None = field(default=None, kw_only=True, repr=False, compare=False)

    @property
    def model(self) -> pm.Model:
        """The PyMC model, rebuilt from the card and the data in the coordinates sampled."""
        model = self._model
        if model is None:
            rotated = bool((self.run or {}).get("reparameterise", False))
            model = build_model(self.cards, self.events, reparameterise=rotated)
            # a cache, not state: set past the frozen __setattr__, as dataclass __init__ does
            object.__setattr__(self, "_model", model)
        return model

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

    def summary(self, ci_prob: float = 0.9) -> pd.DataFrame:
        """ArviZ's summary of the population parameters, with the posterior median.

        :func:`tpopk.diagnostics.parameter_summary`: ``mean``, ``sd``, the equal-tailed
        interval and ``median``, then ``ess_bulk``, ``ess_tail``, ``r_hat``, ``mcse_mean``,
        ``mcse_sd``; one row per element, named by its coordinates
        (``beta_cl_DISEASE[ITP]``). An approximate fit has no diagnostic columns: they
        measure how well Markov chains mixed, and its draws are no Markov chains.
        """
        return parameter_summary(self.tree, ci_prob=ci_prob, diagnostics=not self.approximate)

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
        with atomic_path(path) as staged:
            if path.suffix == ".nc":
                tree.to_netcdf(staged, engine="h5netcdf")
            else:
                tree.to_zarr(staged)
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
                f"format {FIT_FORMAT}: refit with this tpopk, or read it with the tpopk "
                "that wrote it"
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
                f"'{path}': the stored cards, data, run record, posterior, sample stats or "
                "observed data do not match the hash written with them (the file was "
                "modified after fitting)"
            )
        del tree["events"]
        for key in ("tpopk_version", "tpopk_fit_format", "tpopk_cards", "tpopk_hash"):
            tree.attrs.pop(key, None)
        fit = cls(tree=tree, cards=cards, events=events)
        expected = {v.name for v in fit.model.free_RVs} | {v.name for v in fit.model.deterministics}
        expected |= {f"pred_{v.name.removeprefix('y_')}" for v in fit.model.observed_RVs}
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
    mass_matrix: MassMatrix = "diag",
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
    mass_matrix
        How nutpie adapts its mass matrix (:data:`MASS_MATRICES`): ``"diag"`` (from draws
        and gradients, nutpie's default), ``"draw_diag"`` (from draws only, as Stan and
        PyMC) or ``"low_rank"`` (diagonal plus a low-rank part for correlated
        parameters; nutpie calls it experimental). The ``pymc`` sampler takes ``"diag"``
        only, meaning its own adaptation.
    progressbar
        Show sampling progress, and say on stderr when the model is being compiled.
    method
        ``"nuts"`` (MCMC; the default), or an approximation for iterating on a model:
        ``"pathfinder"`` (multi-path Pathfinder, importance-resampled) or ``"laplace"``
        (Gaussian at the posterior mode, on the unconstrained scale), both from
        pymc-extras. An approximate fit is labelled so in the fit file, the summary and
        the report. ``tune``, ``sampler``, ``target_accept``, ``max_treedepth``,
        ``mass_matrix`` and ``init`` are NUTS settings.
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
    if mass_matrix not in MASS_MATRICES:
        raise TpopkError(
            f"mass_matrix must be one of {', '.join(MASS_MATRICES)}, not '{mass_matrix}'"
        )
    if mass_matrix != "diag" and sampler != "nutpie":
        raise TpopkError(
            f"mass_matrix='{mass_matrix}' is a nutpie setting: it needs sampler='nutpie'"
        )
    if not 0 < target_accept < 1:
        raise TpopkError(f"target_accept must lie strictly between 0 and 1, not {target_accept}")
    if max_treedepth < 1:
        raise TpopkError(f"max_treedepth must be at least 1, not {max_treedepth}")
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
                adaptation=mass_matrix,
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
        with step("fit", "log-likelihood and predictive draws", progressbar), quiet_pymc():
            pm.compute_log_likelihood(tree, progressbar=False)
            pm.sample_posterior_predictive(
                tree, extend_inferencedata=True, random_seed=seed, progressbar=False
            )
            _simulate_new_subjects(tree, model, seed)
    with step("fit", "population prediction (PRED)", progressbar):
        posterior = tree["posterior"].to_dataset()
        posterior = posterior.assign(compute_pred(model, posterior))
    tree["posterior"] = xr.DataTree(_label_level_sigmas(posterior, loaded))
    tree = describe_observations(tree, events)
    tree.attrs |= {"inference_method": method, "approximate": int(method != "nuts")}
    settings: dict[str, object] = {"method": method, "init": init, "reparameterise": True}
    settings |= {"draws": draws, "tune": tune, "chains": chains, "cores": cores}
    settings |= {"target_accept": target_accept, "max_treedepth": max_treedepth}
    settings["mass_matrix"] = mass_matrix
    record = run_record(loaded, events, seed=seed, sampler=sampler, **settings)
    tree.attrs["tpopk_run"] = json.dumps(record)
    return Fit(tree=tree, cards=loaded, events=events, _model=model)


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


def compute_pred(model: pm.Model, posterior: xr.Dataset) -> xr.Dataset:
    """PRED: each observation's prediction for a typical subject (every η = 0), per draw.

    The subject-level deviates of ``model`` are set to zero and each ``ipred_<dvid>`` is
    evaluated at every draw of the population variables in ``posterior``: NONMEM's PRED
    (typical values with the subject's covariates and doses), with the posterior's
    uncertainty instead of at a point estimate.

    Returns
    -------
    xarray.Dataset
        ``pred_<dvid>`` on ``(chain, draw, obs_<dvid>)`` for each observation type.
    """
    dvids = [
        v.name.removeprefix("ipred_") for v in model.deterministics if v.name.startswith("ipred_")
    ]
    population = [model[name] for name in population_variables(model)]
    subject_level = [rv for rv in model.free_RVs if rv not in population]
    if missing := [rv.name for rv in population if rv.name not in posterior]:
        raise TpopkError(f"the posterior lacks the population variables {missing}")
    inputs = [rv.type(name=rv.name) for rv in population]
    replacements = dict(zip(population, inputs, strict=True))
    replacements |= {
        rv: pt.zeros(tuple(len(model.coords[d]) for d in model.named_vars_to_dims[rv.name]))
        for rv in subject_level
    }
    typical = graph_replace([model[f"ipred_{d}"] for d in dvids], replacements, strict=False)
    # numba, as the sampler: one evaluation per draw, ~20x faster than FAST_COMPILE's
    # Python ops on the study model (benchmarks/README.md, "PRED at fit time")
    evaluate = pytensor.function(inputs, typical, mode="NUMBA", on_unused_input="ignore")
    shape = (posterior.sizes["chain"], posterior.sizes["draw"])
    pred = {d: np.empty((*shape, len(model.coords[f"obs_{d}"]))) for d in dvids}
    draws = [posterior[rv.name].to_numpy() for rv in population]
    for index in np.ndindex(shape):
        for dvid, value in zip(dvids, evaluate(*(v[index] for v in draws)), strict=True):
            pred[dvid][index] = value
    return xr.Dataset(
        {f"pred_{d}": (("chain", "draw", f"obs_{d}"), pred[d]) for d in dvids},
        coords={"chain": posterior["chain"], "draw": posterior["draw"]}
        | {f"obs_{d}": np.asarray(model.coords[f"obs_{d}"]) for d in dvids},
    )


def _label_level_sigmas(posterior: xr.Dataset, cards: tuple[ModelCard, ...]) -> xr.Dataset:
    """Give each ``sigma_by`` level sigma attrs ``sigma_by`` (covariate) and ``level``.

    IWRES (:mod:`tpopk.diagnostics.goodness_of_fit`) reads from them which observations a
    level sigma applies to.
    """
    agonists = [str(c.agonist).lower() for c in cards if c.kind == "agonist"]
    labelled = posterior.copy()
    for card in cards:
        for dvid, spec in card.residual.items():
            if spec.sigma_by is None:
                continue
            for name in (dvid, *(f"{dvid}_{agonist}" for agonist in agonists)):
                for level, (variable, _) in spec.sigmas(name).items():
                    if level is not None and variable in labelled:
                        labelled[variable].attrs |= {
                            "sigma_by": spec.sigma_by.covariate,
                            "level": level,
                        }
    return labelled


def _simulate_new_subjects(tree: xr.DataTree, model: pm.Model, seed: int) -> None:
    """Add ``predictions``: observations of new subjects (fresh etas) at the data's design.

    This is what a classical VPC and NPDE compare the data with; ``posterior_predictive``
    instead reuses each subject's own etas.
    """
    keep = [name for name in population_variables(model) if name in tree["posterior"]]
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
