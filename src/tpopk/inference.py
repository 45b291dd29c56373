"""Fitting with NUTS and the :class:`Fit` object: an ArviZ DataTree you can save and reload.

A fit file is the DataTree itself (netCDF ``.nc`` or ``.zarr``) with the ArviZ groups
(posterior, sample_stats, log_likelihood, posterior_predictive, observed_data,
constant_data), an ``events`` group holding the fitted data, and in the root attrs the
model card (JSON), the tpopk version, the file format and a SHA-256 hash of card and
data. :meth:`Fit.load` checks all of these and rebuilds the PyMC model, so a fit can be
extended (more predictions, diagnostics) without the original files.
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
from tpopk.model import ModelCard, build_model, load_card
from tpopk.nutpie_model import sample_nutpie

#: Version of the fit-file layout; bump when a saved file can no longer be read as before.
FIT_FORMAT = 1

Sampler = Literal["nutpie", "pymc"]
CardSource = ModelCard | str | Path


class FitFileError(TpopkError):
    """A fit file that is missing, unreadable, tampered with or from an incompatible version."""


def _content_hash(cards: tuple[ModelCard, ...], events: EventTable) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([c.to_toml_dict() for c in cards], sort_keys=True).encode())
    digest.update(events.frame.to_csv(index=False).encode())
    digest.update(json.dumps(events.units.as_dict(), sort_keys=True).encode())
    return digest.hexdigest()


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
        """The PyMC model, rebuilt from the card and the data."""
        return build_model(self.cards, self.events)

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
    def divergences(self) -> int:
        """Number of divergent transitions after warm-up."""
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
        tree = self.tree.copy()
        tree["events"] = xr.DataTree(_events_dataset(self.events))
        tree.attrs |= {
            "tpopk_version": tpopk.__version__,
            "tpopk_fit_format": FIT_FORMAT,
            "tpopk_cards": json.dumps([c.to_toml_dict() for c in self.cards]),
            "tpopk_hash": _content_hash(self.cards, self.events),
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
        cards = tuple(load_card(c) for c in json.loads(str(attrs["tpopk_cards"])))
        events = _events_from_dataset(tree["events"].to_dataset())
        if _content_hash(cards, events) != attrs["tpopk_hash"]:
            raise FitFileError(
                f"'{path}': the stored card or data do not match the hash written with them "
                "(the file was modified after fitting)"
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
        if absent := {v.name for v in fit.model.free_RVs} - set(map(str, fit.posterior.data_vars)):
            raise FitFileError(
                f"'{path}': the model rebuilt from its card samples {sorted(absent)}, which "
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
) -> Fit:
    """Fit a model card to an event dataset with NUTS.

    Parameters
    ----------
    cards
        Model card (or the path of its TOML file), or a system card with agonist cards.
    events
        Event table, or the path of a NONMEM-style CSV.
    draws, tune, chains, cores
        Sampler settings (``cores`` defaults to ``min(chains, CPU count)``).
    seed
        Random seed; the same seed on the same machine gives the same draws.
    sampler
        ``"nutpie"`` (default; the model compiled through numba, cached on disk: see
        :mod:`tpopk.nutpie_model`) or ``"pymc"``.
    target_accept
        NUTS target acceptance rate; raise it if divergences appear.
    max_treedepth
        Largest NUTS tree depth (at most ``2**max_treedepth`` leapfrog steps per draw).
        Lowering it bounds the cost of a smoke run on a hard posterior; draws that hit
        it are flagged in ``sample_stats`` and mean the sampler did not explore freely.
    progressbar
        Show sampling progress.

    Returns
    -------
    Fit
        Posterior with log-likelihood and posterior predictive draws.
    """
    given = [cards] if isinstance(cards, ModelCard | str | Path) else list(cards)
    loaded = tuple(c if isinstance(c, ModelCard) else load_card(c) for c in given)
    events = events if isinstance(events, EventTable) else read_events(events)
    model = build_model(loaded, events)
    with model:
        if sampler == "nutpie":
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
    result = Fit(tree=tree, cards=loaded, events=events)
    result.__dict__["model"] = model  # reuse the compiled-once model instead of rebuilding
    return result


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
