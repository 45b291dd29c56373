"""Calibrate the library's exposure-response parameters on published arm-level results.

Each published arm result of ``trial_outcomes_training.csv`` is data given its trial
design and arm size:

- a response percentage is ``k = round(n * value / 100)`` responders out of ``n``,
  binomial with the probability that a new patient of the arm responds;
- a median count is the median of ``n`` patients: its log has a synthetic Gaussian
  likelihood whose mean and SD are those of medians of ``n`` virtual patients
  resampled from the simulated arm.

The calibrated parameter is one per agonist, the population value of its potency (the
``slope`` of a linear drug effect, the ``ec50`` of a sigmoid Emax): the parameter the
arm-level results inform. Doses, PK and the disease baselines are given by the designs
and the literature PK; the placebo arms carry the system's own variation; only how much
platelet production one unit of exposure drives is left open by the literature (the
cards' widest priors). An Emax and an EC50 cannot both be identified from one dose.

Method: Bayes on a grid with a Laplace summary. The log potency takes ``grid_size``
values over its literature prior (± ``span`` prior SDs); at each the designs are
simulated on the same virtual patients and the same draws of every other population
parameter from its prior (common random numbers: the likelihood is a smooth function of
the potency, not Monte-Carlo noise), and the outcome probability of an arm is pooled over
those draws and patients (the prior predictive of the other parameters, independent
between arms). The log posterior (literature prior plus log likelihood) is summarised
by a Normal on the log scale fitted to its top (Laplace approximation); the calibrated
card's prior is that LogNormal. One parameter per agonist makes a grid exact enough and
its cost known in advance; no importance weights can degenerate.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import NDArray
from scipy import stats

from tpopk.errors import TpopkError
from tpopk.model.card import ModelCard
from tpopk.simulate.design import TrialDesign
from tpopk.simulate.endpoints import ResponderAt, enrolled

FloatArray = NDArray[np.float64]

#: Trial designs (``models/trials``) of the training file's trials, by its ``trial`` column;
#: ADAPT-1 is one design per baseline cohort.
DESIGNS = {
    "TRA100773A (NCT00102739)": "eltrombopag_tra100773a_itp.toml",
    "ITP phase 2 (Bussel 2014)": "avatrombopag_itp_phase2.toml",
    "ADAPT-1 (NCT01972529) low": "avatrombopag_adapt1_low_cohort.toml",
    "ADAPT-1 (NCT01972529) high": "avatrombopag_adapt1_high_cohort.toml",
    "L-PLUS 1 (JapicCTI-132323)": "lusutrombopag_cld_lplus1.toml",
}

#: ADAPT-1 arm sizes per cohort are NOT FOUND (training file: 231 randomised 2:1 across
#: both cohorts): half the patients in each cohort, 2:1, is assumed.
ADAPT1_N = {"avatrombopag": 77, "placebo": 38}

#: The potency parameter calibrated for each drug-effect form.
POTENCY = {"linear": "slope", "sigmoid_emax": "ec50", "emax": "ec50"}

#: A simulated outcome probability is kept this far from 0 and 1: a few hundred virtual
#: patients cannot tell 0 from 0.1%, and a zero would make one arm decide the posterior.
P_FLOOR = 1e-3


class CalibrationError(TpopkError):
    """The training data, designs or cards cannot be calibrated as asked."""


@dataclass(frozen=True)
class Outcome:
    """One published arm result and where it is simulated."""

    row: int  # data row of the training file, 1-based
    agonist: str
    trial: str
    arm: str  # as the training file names it
    endpoint: str
    value: float
    unit: str
    n: int
    design: str  # file name under models/trials
    design_arm: str

    @property
    def is_median(self) -> bool:
        """A median count (10^9/L) rather than a response percentage."""
        return self.unit != "%"

    @property
    def responders(self) -> int:
        """Published responders out of ``n`` (percentages are rounded in the papers)."""
        return round(self.n * self.value / 100.0)


def read_training(path: str | Path, designs: Mapping[str, TrialDesign]) -> list[Outcome]:
    """Read the training file's rows as outcomes of the designs in ``designs`` (by file name)."""
    outcomes = []
    with Path(path).open(encoding="utf-8", newline="") as handle:
        for row, record in enumerate(csv.DictReader(handle), start=1):
            trial = record["trial"]
            if trial.startswith("ADAPT-1"):
                trial += " low" if "low cohort" in record["arm"] else " high"
            if trial not in DESIGNS:
                raise CalibrationError(f"training row {row}: no design for trial '{trial}'")
            name = DESIGNS[trial]
            if name not in designs:
                raise CalibrationError(f"training row {row}: design {name} not loaded")
            design = designs[name]
            arm = _design_arm(design, record["arm"])
            n_text = record["n"].strip()
            n = int(n_text) if n_text.isdigit() else ADAPT1_N.get(arm)
            if n is None:
                raise CalibrationError(f"training row {row}: arm size '{n_text}' is not a number")
            outcomes.append(
                Outcome(
                    row,
                    record["agonist"],
                    record["trial"],
                    record["arm"],
                    record["endpoint"],
                    float(record["value"]),
                    record["unit"],
                    n,
                    name,
                    arm,
                )
            )
    return outcomes


def _design_arm(design: TrialDesign, arm: str) -> str:
    """Find the design's arm for a training-file arm: same name, placebo, or the one active."""
    names = [a.name for a in design.arms]
    if arm in names:
        return arm
    if arm.startswith("placebo"):
        return next(a.name for a in design.arms if a.placebo)
    active = [a.name for a in design.arms if not a.placebo]
    if len(active) != 1:
        raise CalibrationError(f"arm '{arm}' matches none of {design.name}'s arms {names}")
    return active[0]


# --- likelihood pieces ------------------------------------------------------------------


def binomial_loglik(k: int, n: int, p: float) -> float:
    """Log probability of ``k`` responders of ``n`` with response probability ``p``."""
    p = min(max(p, P_FLOOR), 1.0 - P_FLOOR)
    return float(stats.binom.logpmf(k, n, p))


def synthetic_loglik(value: float, simulated: FloatArray) -> float:
    """Gaussian log density of ``log(value)`` given simulated log medians (mean, SD)."""
    sd = float(np.std(simulated, ddof=1))
    if not sd > 0:
        raise CalibrationError("simulated medians do not vary: too few virtual patients")
    return float(stats.norm.logpdf(math.log(value), float(np.mean(simulated)), sd))


def laplace(grid: FloatArray, log_posterior: FloatArray, top: float = 6.0) -> tuple[float, float]:
    """Mean and SD of a Normal fitted to the log posterior on ``grid`` near its maximum.

    A quadratic is fitted by least squares to the points within ``top`` log units of the
    highest (at least three: the highest and its neighbours).
    """
    best = int(np.argmax(log_posterior))
    if best in (0, grid.size - 1):
        raise CalibrationError(
            f"the posterior is highest at the grid's edge ({grid[best]:.3g}): the data "
            "want a potency outside the literature prior's range"
        )
    near = log_posterior >= log_posterior[best] - top
    near[best - 1 : best + 2] = True
    a, b, _ = np.polyfit(grid[near], log_posterior[near], 2)
    if not a < 0:
        raise CalibrationError("the log posterior is not concave near its maximum")
    return float(-b / (2 * a)), float(math.sqrt(-1.0 / (2 * a)))


# --- simulation -------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmDraws:
    """One outcome's simulation: per draw, the response probability or the patients' counts."""

    probability: FloatArray  # [draw], responders among the arm's virtual patients
    counts: list[FloatArray]  # per draw, the enrolled patients' counts at the visit


def simulate_arms(
    cards: Sequence[ModelCard],
    designs: Mapping[str, TrialDesign],
    outcomes: Sequence[Outcome],
    population: xr.Dataset,
    *,
    n_virtual: int,
    seed: int,
) -> dict[int, ArmDraws]:
    """Simulate every outcome's arm from ``population`` draws, by training row.

    Every design runs with the same ``seed`` (same virtual patients whatever the
    population values) and the first response endpoint's visit and threshold.
    """
    from tpopk.simulate.virtual import simulate_trial

    draws = population.sizes["draw"]
    out: dict[int, ArmDraws] = {}
    for name in dict.fromkeys(o.design for o in outcomes):
        design = designs[name]
        endpoint = next((e for e in design.endpoints if isinstance(e, ResponderAt)), None)
        if endpoint is None:
            raise CalibrationError(f"{name} has no responder_at endpoint to calibrate on")
        agonist = design.arms[0].agonist
        trial = simulate_trial(
            cards,
            design,
            n_patients=n_virtual,
            seed=seed,
            posterior=population,
            agonists=[agonist],
            draws=draws,
        )
        if draws == 1:
            trial = trial.expand_dims(draw=1)
        fraction = endpoint.evaluate(trial)
        visit = int(np.flatnonzero(np.isclose(trial["time"].to_numpy(), endpoint.at))[0])
        counts = trial["platelets"].isel(visit=visit).where(enrolled(trial))
        for o in (o for o in outcomes if o.design == name):
            per_draw = counts.sel(arm=o.design_arm).transpose("draw", "patient").to_numpy()
            out[o.row] = ArmDraws(
                np.asarray(fraction.sel(arm=o.design_arm).transpose("draw").to_numpy(), float),
                [row[np.isfinite(row)] for row in per_draw],
            )
    return out


def resampled_log_medians(counts: Sequence[FloatArray], n: int, reps: int, seed: int) -> FloatArray:
    """Log medians of ``n`` patients resampled from each draw's counts, ``reps`` per draw."""
    rng = np.random.default_rng(seed)
    medians = [
        np.median(rng.choice(draw, size=(reps, n), replace=True), axis=1)
        for draw in counts
        if draw.size
    ]
    return np.log(np.maximum(np.concatenate(medians), 1e-3))


def outcome_loglik(outcome: Outcome, arm: ArmDraws, seed: int) -> float:
    """Log likelihood of a published result given its simulated arm."""
    if outcome.is_median:
        return synthetic_loglik(
            outcome.value, resampled_log_medians(arm.counts, outcome.n, 200, seed)
        )
    return binomial_loglik(outcome.responders, outcome.n, float(np.mean(arm.probability)))


def predictive_interval(
    outcome: Outcome, arm: ArmDraws, seed: int, prob: float = 0.9
) -> tuple[float, float, float]:
    """Median and equal-tailed interval of the published statistic of an ``n``-patient arm."""
    rng = np.random.default_rng(seed)
    if outcome.is_median:
        values = np.exp(resampled_log_medians(arm.counts, outcome.n, 200, seed))
    else:
        p = np.clip(arm.probability, 0.0, 1.0)
        values = 100.0 * rng.binomial(outcome.n, np.repeat(p, 200)) / outcome.n
    tail = (1 - prob) / 2
    low, median, high = np.quantile(values, [tail, 0.5, 1 - tail])
    return float(median), float(low), float(high)


# --- calibration ------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """Grid posterior of one agonist's log potency and its Laplace summary."""

    agonist: str
    parameter: str
    prior_mu: float
    prior_sigma: float
    grid: FloatArray  # log potency
    loglik: FloatArray  # [grid], summed over the agonist's outcomes
    mu: float
    sigma: float
    rows: tuple[int, ...]


def grid_posterior(
    prior_mu: float,
    prior_sigma: float,
    loglik: Callable[[float], float],
    *,
    grid_size: int,
    span: float,
) -> tuple[FloatArray, FloatArray, float, float]:
    """Log likelihood on a grid over a Normal prior of a log parameter, and the Laplace fit.

    Returns the grid, the log likelihood on it and the posterior mean and SD.
    """
    grid = prior_mu + prior_sigma * np.linspace(-span, span, grid_size)
    values = np.array([loglik(float(x)) for x in grid])
    log_post = values + stats.norm.logpdf(grid, prior_mu, prior_sigma)
    mu, sigma = laplace(grid, log_post)
    return grid, values, mu, sigma


def potency_prior(card: ModelCard) -> tuple[str, float, float]:
    """Return an agonist card's potency parameter and its LogNormal prior's mu and sigma."""
    form = str(card.structure.drug_effect)
    if form not in POTENCY:
        raise CalibrationError(f"{card.name}: no potency to calibrate for drug effect '{form}'")
    name = POTENCY[form]
    prior = card.parameters[name].prior
    if prior is None or prior.distribution != "LogNormal":
        raise CalibrationError(f"{card.name}.{name}: a LogNormal prior is needed")
    return name, float(prior.parameters["mu"]), float(prior.parameters["sigma"])


def with_potency(population: xr.Dataset, variable: str, values: FloatArray | float) -> xr.Dataset:
    """Return ``population`` with ``variable`` set to ``values`` (per draw, or one for all)."""
    out = population.copy()
    shape = out[variable].shape
    out[variable] = (out[variable].dims, np.broadcast_to(values, shape).copy())
    return out


def prior_draws(cards: Sequence[ModelCard], agonist: str, draws: int, seed: int) -> xr.Dataset:
    """Draw the population values of the system and ``agonist`` cards from their priors."""
    from tpopk.simulate.virtual import prior_population

    frame = pd.DataFrame({"WT": [70.0], "EAST_ASIAN": [0], "SPLENECTOMY": [0], "DISEASE": ["ITP"]})
    return prior_population(cards, {agonist: frame}, agonists=[agonist], draws=draws, seed=seed)


def calibrate_agonist(
    cards: Sequence[ModelCard],
    agonist_card: ModelCard,
    designs: Mapping[str, TrialDesign],
    outcomes: Sequence[Outcome],
    *,
    draws: int,
    n_virtual: int,
    grid_size: int,
    span: float,
    seed: int,
    progress: Callable[[str], None] = lambda _: None,
) -> Calibration:
    """Grid posterior of one agonist's population potency given its published outcomes."""
    agonist = str(agonist_card.agonist)
    parameter, prior_mu, prior_sigma = potency_prior(agonist_card)
    variable = f"pop_{parameter}_{agonist}"
    population = prior_draws(cards, agonist, draws, seed)

    def loglik(log_potency: float) -> float:
        progress(f"{agonist}: {parameter} = {math.exp(log_potency):.4g}")
        arms = simulate_arms(
            cards,
            designs,
            outcomes,
            with_potency(population, variable, math.exp(log_potency)),
            n_virtual=n_virtual,
            seed=seed,
        )
        return sum(outcome_loglik(o, arms[o.row], seed) for o in outcomes)

    grid, values, mu, sigma = grid_posterior(
        prior_mu, prior_sigma, loglik, grid_size=grid_size, span=span
    )
    return Calibration(
        agonist,
        parameter,
        prior_mu,
        prior_sigma,
        grid,
        values,
        mu,
        sigma,
        tuple(o.row for o in outcomes),
    )


# --- calibrated cards -------------------------------------------------------------------


def calibrated_card_text(text: str, calibration: Calibration, run: str) -> str:
    """Card TOML ``text`` with the potency prior replaced by the calibrated LogNormal.

    The parameter's ``source`` starts with the calibration (run, training rows, the
    literature prior it replaces); the literature source follows it.
    """
    header = f"[parameters.{calibration.parameter}]"
    start = text.find(header + "\n")
    if start < 0:
        raise CalibrationError(f"card has no {header} section")
    end = text.find("\n[", start + len(header))
    end = len(text) if end < 0 else end
    section = text[start:end]
    prior = (
        f'prior = {{ dist = "LogNormal", mu = {calibration.mu:.6f}, '
        f"sigma = {calibration.sigma:.6f} }}"
    )
    section, found = re.subn(r"(?m)^prior = \{[^\n]*\}$", prior, section, count=1)
    rows = ", ".join(str(r) for r in calibration.rows)
    note = (
        f"calibrated: {run} on trial_outcomes_training.csv rows {rows} (grid posterior, "
        f"Laplace); literature prior LogNormal(mu {calibration.prior_mu:.6f}, sigma "
        f"{calibration.prior_sigma:.6f}): "
    )
    section, noted = re.subn(r'(?m)^source = "', 'source = "' + note, section, count=1)
    if not (found and noted):
        raise CalibrationError(f"{header}: no one-line prior or source to replace")
    return text[:start] + section + text[end:]


# --- the whole run ------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """An outcome's predictive median and 90% interval, literature and calibrated library."""

    outcome: Outcome
    prior: tuple[float, float, float]
    calibrated: tuple[float, float, float]


def predict(
    cards: Sequence[ModelCard],
    designs: Mapping[str, TrialDesign],
    outcomes: Sequence[Outcome],
    calibration: Calibration,
    *,
    draws: int,
    n_virtual: int,
    seed: int,
) -> list[Prediction]:
    """Predictive intervals of ``outcomes`` from the literature and the calibrated potency.

    Both use the same draws of the other population parameters and the same patients; the
    potency is drawn from the literature prior in one, from the calibrated one in the other.
    """
    variable = f"pop_{calibration.parameter}_{calibration.agonist}"
    population = prior_draws(cards, calibration.agonist, draws, seed)
    z = np.random.default_rng(seed).standard_normal(draws)
    results = {}
    for label, mu, sigma in (
        ("prior", calibration.prior_mu, calibration.prior_sigma),
        ("calibrated", calibration.mu, calibration.sigma),
    ):
        potency = np.exp(mu + sigma * z)
        arms = simulate_arms(
            cards,
            designs,
            outcomes,
            with_potency(population, variable, potency),
            n_virtual=n_virtual,
            seed=seed,
        )
        results[label] = {o.row: predictive_interval(o, arms[o.row], seed) for o in outcomes}
    return [Prediction(o, results["prior"][o.row], results["calibrated"][o.row]) for o in outcomes]


#: Cards of the library, in the order a study lists them.
LIBRARY = (
    "thrombopoiesis",
    "eltrombopag",
    "avatrombopag",
    "lusutrombopag",
    "hetrombopag",
    "romiplostim",
)


@dataclass(frozen=True)
class Settings:
    """Monte Carlo sizes and seed of a calibration run."""

    seed: int = 20261207
    draws: int = 6  # draws of the other population parameters at each grid point
    n_virtual: int = 60  # virtual patients per arm and draw
    grid_size: int = 9
    span: float = 3.5  # grid half-width in literature prior SDs
    predictive_draws: int = 12
    training: str = "trial_outcomes_training.csv"  # file name, as the cards cite it

    def command(self) -> str:
        """Return the command line that repeats the run."""
        return (
            f"tpopk calibrate --training {self.training} --seed {self.seed} "
            f"--draws {self.draws} --n {self.n_virtual} "
            f"--grid {self.grid_size} --span {self.span:g} --predictive-draws "
            f"{self.predictive_draws}"
        )


@dataclass(frozen=True)
class Result:
    """A calibration run: per agonist, its calibration (or why there is none) and predictions."""

    settings: Settings
    calibrations: dict[str, Calibration]
    failures: dict[str, str]
    predictions: list[Prediction]


def run(
    models: str | Path,
    training: str | Path,
    settings: Settings,
    progress: Callable[[str], None] = lambda _: None,
) -> Result:
    """Calibrate every agonist of the training file on the library under ``models``."""
    from tpopk.model import load_card
    from tpopk.simulate import load_trial

    models = Path(models)
    designs = {name: load_trial(models / "trials" / name) for name in DESIGNS.values()}
    outcomes = read_training(training, designs)
    system = load_card(models / "thrombopoiesis.toml")
    calibrations: dict[str, Calibration] = {}
    failures: dict[str, str] = {}
    predictions: list[Prediction] = []
    for agonist in dict.fromkeys(o.agonist for o in outcomes):
        card = load_card(models / f"{agonist}.toml")
        cards = [system, card]
        mine = [o for o in outcomes if o.agonist == agonist]
        try:
            calibration = calibrate_agonist(
                cards,
                card,
                designs,
                mine,
                draws=settings.draws,
                n_virtual=settings.n_virtual,
                grid_size=settings.grid_size,
                span=settings.span,
                seed=settings.seed,
                progress=progress,
            )
        except CalibrationError as error:
            failures[agonist] = str(error)
            progress(f"{agonist}: not calibrated ({error})")
            continue
        calibrations[agonist] = calibration
        progress(f"{agonist}: predictive intervals")
        predictions += predict(
            cards,
            designs,
            mine,
            calibration,
            draws=settings.predictive_draws,
            n_virtual=settings.n_virtual,
            seed=settings.seed,
        )
    return Result(settings, calibrations, failures, predictions)


TITLE = "# Calibrated library"


def _interval(values: tuple[float, float, float]) -> str:
    median, low, high = values
    return f"{median:.0f} ({low:.0f}–{high:.0f})"


def report(result: Result, wall_s: float) -> str:
    """Markdown: the calibrated parameters and every training result against both libraries."""
    lines = [
        TITLE,
        "",
        "Written by `tpopk calibrate` (`src/tpopk/simulate/calibration.py`, whose docstring",
        "states the method): the library cards of `models/`, each agonist's potency prior",
        "replaced by its posterior given the published arm-level results of",
        "`shared/literature/trial_outcomes_training.csv` (rows numbered from 1 after the header).",
        "Simulate from it with `--model models/calibrated/thrombopoiesis.toml --model",
        "models/calibrated/<agonist>.toml`; the literature priors stay in `models/`.",
        "",
        f"Run: `{result.settings.command()}`, {wall_s / 60:.1f} min wall time (shared machine).",
        "",
        "| agonist | parameter | literature prior (median ×/÷ SD) | calibrated | training rows |",
        "|---|---|---|---|---|",
    ]
    for c in result.calibrations.values():
        lines.append(
            f"| {c.agonist} | pop {c.parameter} | {math.exp(c.prior_mu):.4g} ×/÷ "
            f"{math.exp(c.prior_sigma):.2f} | {math.exp(c.mu):.4g} ×/÷ {math.exp(c.sigma):.2f} "
            f"| {', '.join(map(str, c.rows))} |"
        )
    for agonist, why in result.failures.items():
        lines.append(f"| {agonist} | not calibrated | | {why} | |")
    lines += [
        "",
        "Every training result: published value against the predictive median and 90%",
        "interval of that statistic in a trial arm of the published size (response in %,",
        "median counts in 10^9/L), from the literature priors and from the calibrated library.",
        "",
        "| row | trial | arm | endpoint | n | published | literature priors | calibrated "
        "| in calibrated 90% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result.predictions:
        o = p.outcome
        inside = p.calibrated[1] <= o.value <= p.calibrated[2]
        lines.append(
            f"| {o.row} | {o.trial} | {o.arm} | {o.endpoint} | {o.n} | {o.value:g} | "
            f"{_interval(p.prior)} | {_interval(p.calibrated)} | {'yes' if inside else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def check_out(out: str | Path) -> None:
    """Refuse an output folder that holds anything but an earlier calibrated library."""
    readme = Path(out) / "README.md"
    earlier = readme.is_file() and readme.read_text(encoding="utf-8").startswith(TITLE)
    if Path(out).is_dir() and any(Path(out).iterdir()) and not earlier:
        raise CalibrationError(
            f"--out '{out}' holds files that are not a calibrated library; it would be "
            "replaced as a whole: give a new folder"
        )


def write_library(models: str | Path, out: str | Path, result: Result, wall_s: float) -> Path:
    """Write the calibrated library (cards, README.md) to the folder ``out``, atomically.

    ``out`` is replaced as a whole, so it must be new, empty or an earlier calibrated library.
    """
    from tpopk.files import atomic_path

    models = Path(models)
    check_out(out)
    with atomic_path(out) as staged:
        staged.mkdir()
        for name in LIBRARY:
            text = (models / f"{name}.toml").read_text(encoding="utf-8")
            if name in result.calibrations:
                text = calibrated_card_text(
                    text, result.calibrations[name], f"`{result.settings.command()}`"
                )
            (staged / f"{name}.toml").write_text(text, encoding="utf-8")
        (staged / "README.md").write_text(report(result, wall_s), encoding="utf-8")
    return Path(out)
