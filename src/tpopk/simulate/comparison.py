"""Cross-agonist comparison: a trial design simulated from the posterior, endpoint by endpoint.

Each posterior draw runs the whole trial in closed loop on new virtual patients, so an
endpoint (responders at week 6, overshoot above 400 ×10^9/L, ...) becomes a posterior
distribution per arm. Arms are then contrasted pairwise: the difference ``A − B`` and
the probability that ``A`` is better than ``B`` (higher for responder fractions and
time in range, lower for overshoot and time to response). On request, pairs of arms are
also put on a common dose scale: the dose of one arm's agonist that matches another
arm's endpoint (:mod:`tpopk.simulate.equivalence`).

Draws are simulated in chunks, so memory stays bounded by the chunk size; the chunks
run locally, or on a Dask cluster when a scheduler is given
(:func:`tpopk.parallel.run_tasks`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from itertools import permutations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from tpopk.errors import TpopkError
from tpopk.model.card import ModelCard
from tpopk.parallel import run_tasks
from tpopk.simulate.design import TrialDesign, load_trial
from tpopk.simulate.endpoints import evaluate_endpoints
from tpopk.simulate.equivalence import DoseGrid, stack_curves, summarise_equivalence
from tpopk.simulate.virtual import simulate_trial

if TYPE_CHECKING:
    from tpopk.inference import Fit

#: Endpoint kinds for which a lower value is better.
LOWER_IS_BETTER = frozenset({"overshoot", "time_to_response", "time_to_peak"})


def _endpoints(
    cards: Sequence[ModelCard],
    design: TrialDesign,
    posterior: xr.Dataset | None,
    agonists: Sequence[str],
    n_patients: int,
    seed: int,
    same_patients: bool = False,
    draws: int = 1,
) -> xr.Dataset:
    """Endpoints ``(arm, draw)`` of one chunk of posterior draws (one draw per sample).

    Without ``posterior``, of ``draws`` draws from the cards' priors.
    """
    if posterior is not None:
        draws = posterior.stack(sample=("chain", "draw")).sizes["sample"]
    trial = simulate_trial(
        cards,
        design,
        n_patients=n_patients,
        seed=seed,
        posterior=posterior,
        agonists=agonists,
        draws=draws,
        same_patients=same_patients,
    )
    if "draw" not in trial.dims:
        trial = trial.expand_dims(draw=1)
    return evaluate_endpoints(trial, design.endpoints)


def _chunk_endpoints(
    cards: Sequence[ModelCard],
    design: TrialDesign,
    posterior: xr.Dataset | None,
    agonists: Sequence[str],
    n_patients: int,
    seed: int,
    grids: Sequence[DoseGrid],
    draws: int = 1,
) -> tuple[xr.Dataset, xr.Dataset | None]:
    """One chunk of posterior (or ``draws`` prior) draws: endpoints and each grid's curves.

    Each dose grid runs on its own virtual patients, shared by its reference arm and all
    its doses (the trial's arms keep their own patients).
    """
    values = _endpoints(cards, design, posterior, agonists, n_patients, seed, draws=draws)
    if not grids:
        return values, None
    curves = [
        grid.curves(
            _endpoints(cards, grid.design, posterior, agonists, n_patients, seed, True, draws)
        )
        for grid in grids
    ]
    return values, stack_curves(curves)


def _chunks(posterior: xr.Dataset, draws: int, chunk: int) -> list[xr.Dataset]:
    flat = posterior.stack(sample=("chain", "draw"))
    chosen = np.linspace(0, flat.sizes["sample"] - 1, draws).round().astype(int)
    parts = []
    for start in range(0, draws, chunk):
        picked = flat.isel(sample=chosen[start : start + chunk]).drop_vars(
            ["sample", "chain", "draw"]
        )
        parts.append(
            picked.rename(sample="draw").expand_dims(chain=1).transpose("chain", "draw", ...)
        )
    return parts


def _concat_draws(chunks: Sequence[xr.Dataset], **concat: Any) -> xr.Dataset:
    """Join chunks over ``draw``, numbered 0, 1, ... over all of them.

    A one-draw chunk has a ``draw`` dimension without coordinate, the others have one:
    each chunk's own numbering is dropped before joining.
    """
    joined = xr.concat([c.drop_vars("draw", errors="ignore") for c in chunks], dim="draw", **concat)
    return joined.assign_coords(draw=np.arange(joined.sizes["draw"]))


def _run_chunks(
    arguments: list[tuple[Any, ...]],
    design: TrialDesign,
    cards: Sequence[ModelCard],
    grids: list[DoseGrid],
    *,
    n_patients: int,
    ci_prob: float,
    scheduler: str | None,
    progressbar: bool,
    desc: str,
) -> xr.DataTree:
    """Simulate the chunks and join them into the comparison tree.

    Each ``arguments`` tuple is one :func:`_chunk_endpoints` call; ``/equivalence`` is
    added where there are ``grids``.
    """
    results = run_tasks(
        _chunk_endpoints, arguments, scheduler=scheduler, progressbar=progressbar, desc=desc
    )
    values = _concat_draws([v for v, _ in results])
    tree = _comparison_tree(values, design, cards, ci_prob, n_patients)
    if grids:
        curves = _concat_draws(
            [c for _, c in results if c is not None], coords="minimal", join="exact"
        )
        tree["equivalence"] = summarise_equivalence(curves, grids, ci_prob)
    return tree


def _design_and_grids(
    trial: TrialDesign | str | Path, ci_prob: float, equivalence: Sequence[tuple[str, str]]
) -> tuple[TrialDesign, list[DoseGrid]]:
    """Load the trial and make a dose grid per equivalence pair, before any simulation."""
    design = trial if isinstance(trial, TrialDesign) else load_trial(trial)
    if not 0 < ci_prob < 1:
        raise TpopkError(f"ci_prob must be in (0, 1), got {ci_prob}")
    return design, [DoseGrid.of(design, reference, arm) for reference, arm in equivalence]


def compare(
    fit: Fit,
    trial: TrialDesign | str | Path,
    *,
    n_patients: int = 100,
    draws: int = 100,
    ci_prob: float = 0.9,
    seed: int = 0,
    chunk: int = 25,
    scheduler: str | None = None,
    progressbar: bool = True,
    equivalence: Sequence[tuple[str, str]] = (),
) -> xr.DataTree:
    """Posterior predictive comparison of a trial's arms.

    Parameters
    ----------
    fit
        A fit whose cards cover every arm's agonist.
    trial
        Trial design, or the path of its TOML file.
    n_patients
        Virtual patients per arm and posterior draw.
    draws
        Posterior draws (evenly thinned over chains and draws).
    ci_prob
        Probability mass of the equal-tailed credible intervals.
    seed
        Seed of the virtual populations (chunk ``i`` uses ``seed + i``).
    chunk
        Draws simulated together; bounds memory.
    scheduler
        Where the chunks run (:func:`tpopk.parallel.run_tasks`): ``None`` here,
        ``"local"`` on a local Dask cluster, else a Dask scheduler's address
        (``tcp://host:8786``).
    progressbar
        Show progress over chunks.
    equivalence
        ``(reference, arm)`` pairs of arm names: for each, the dose of ``arm`` (at fixed
        doses over its titration's levels, on the same virtual patients as a re-run of
        ``reference``) whose endpoint equals ``reference``'s, per endpoint and draw
        (:mod:`tpopk.simulate.equivalence`). Costs one more trial per pair, with
        ``1 + levels`` arms.

    Returns
    -------
    xarray.DataTree
        ``/draws``: every endpoint per ``arm, draw``; ``/summary``: per endpoint and arm
        the posterior median and interval (dim ``stat``: median, lower, upper);
        ``/contrasts``: per endpoint and ordered arm pair (``arm``, ``versus``) the
        difference's median and interval and ``p_better_<endpoint>``; with
        ``equivalence``, ``/equivalence`` (and its ``draws``) as
        :func:`tpopk.simulate.equivalence.summarise_equivalence` returns it.

    Raises
    ------
    TpopkError
        If ``ci_prob`` is outside (0, 1) or an equivalence pair names an arm the trial
        lacks, a placebo arm as ``arm``, or one whose levels do not increase in dose.
    """
    design, grids = _design_and_grids(trial, ci_prob, equivalence)
    agonists = [str(a) for a in fit.model.coords.get("agonist", ())]
    parts = _chunks(fit.posterior, draws, chunk)
    arguments = [
        (fit.cards, design, part, agonists, n_patients, seed + i, grids)
        for i, part in enumerate(parts)
    ]
    return _run_chunks(
        arguments,
        design,
        fit.cards,
        grids,
        n_patients=n_patients,
        ci_prob=ci_prob,
        scheduler=scheduler,
        progressbar=progressbar,
        desc="trial draws",
    )


def prior_compare(
    cards: Sequence[ModelCard],
    trial: TrialDesign | str | Path,
    *,
    n_patients: int = 20,
    draws: int = 10,
    ci_prob: float = 0.9,
    seed: int = 0,
    chunk: int = 25,
    scheduler: str | None = None,
    progressbar: bool = False,
    equivalence: Sequence[tuple[str, str]] = (),
) -> xr.DataTree:
    """Prior predictive comparison of a trial's arms, straight from model cards.

    The same tree as :func:`compare`, with population values drawn from the cards'
    priors instead of a posterior (what the literature alone predicts); ``equivalence``
    as there, each dose grid on its own prior draws. Draws are simulated ``chunk`` at a
    time (chunk ``i`` draws its worlds and patients from ``seed + i``), where
    ``scheduler`` says, as for :func:`compare`.
    """
    design, grids = _design_and_grids(trial, ci_prob, equivalence)
    sizes = [min(chunk, draws - start) for start in range(0, draws, chunk)]
    arguments = [
        (cards, design, None, (), n_patients, seed + i, grids, size) for i, size in enumerate(sizes)
    ]
    return _run_chunks(
        arguments,
        design,
        cards,
        grids,
        n_patients=n_patients,
        ci_prob=ci_prob,
        scheduler=scheduler,
        progressbar=progressbar,
        desc="prior draws",
    )


def _comparison_tree(
    values: xr.Dataset,
    design: TrialDesign,
    cards: Sequence[ModelCard],
    ci_prob: float,
    n_patients: int,
) -> xr.DataTree:
    kinds = {e.name: e.kind for e in design.endpoints}
    tree = xr.DataTree.from_dict(
        {
            "draws": values,
            "summary": summarise(values, ci_prob),
            "contrasts": contrasts(values, kinds, ci_prob),
        }
    )
    tree.attrs |= {
        "trial": design.name,
        "ci_prob": ci_prob,
        "n_patients": n_patients,
        "draws": values.sizes["draw"],
        "cards": [c.name for c in cards],
    }
    return tree


def summarise(values: xr.Dataset, ci_prob: float) -> xr.Dataset:
    """Posterior median and equal-tailed interval over ``draw`` (dim ``stat``)."""
    tail = (1 - ci_prob) / 2
    with warnings.catch_warnings():
        # an endpoint undefined in every draw (time to response without responders) is
        # expected and summarised as NaN, reported n/a
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        q = values.quantile([0.5, tail, 1 - tail], dim="draw")
    return q.rename(quantile="stat").assign_coords(stat=["median", "lower", "upper"])


def contrasts(values: xr.Dataset, kinds: Mapping[str, str], ci_prob: float) -> xr.Dataset:
    """Pairwise differences between arms and the probability each arm is better.

    ``p_better_<endpoint>`` is the fraction of draws, among those where both arms'
    endpoints are defined, in which the first arm is better; NaN when none is.
    """
    arms = [str(a) for a in values["arm"].to_numpy()]
    pairs = list(permutations(arms, 2))
    first = [a for a, _ in pairs]
    second = [b for _, b in pairs]
    out = {}
    for name, data in values.data_vars.items():
        a = data.sel(arm=first).rename(arm="pair")
        b = data.sel(arm=second).rename(arm="pair")
        difference = a.to_numpy() - b.to_numpy()
        diff = xr.DataArray(difference, dims=a.dims).assign_coords(pair=np.arange(len(pairs)))
        better = diff < 0 if kinds.get(str(name)) in LOWER_IS_BETTER else diff > 0
        # A draw where either arm's endpoint is undefined (time to response in an arm
        # without responders) says nothing about which is better: P(better) is over the
        # draws where both are defined, and NaN (reported n/a) when there are none.
        defined = diff.notnull()
        n_defined = defined.sum("draw")
        if pairs:
            out[f"difference_{name}"] = summarise(diff.to_dataset(name="d"), ci_prob)["d"]
        else:  # a one-arm trial: no pairs, and xarray's quantile fails on an empty dim
            stats = ["median", "lower", "upper"]
            out[f"difference_{name}"] = diff.isel(draw=0, drop=True).expand_dims(stat=stats)
        out[f"p_better_{name}"] = (better & defined).sum("draw") / n_defined.where(n_defined > 0)
        # a difference has its endpoint's unit; P(better) is a probability
        out[f"difference_{name}"].attrs["units"] = data.attrs.get("units", "")
        out[f"p_better_{name}"].attrs["units"] = "probability"
    return xr.Dataset(out).assign_coords(arm=("pair", first), versus=("pair", second))
