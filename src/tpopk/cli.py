"""The ``tpopk`` command: a thin layer over the package's public functions.

Errors caused by the user's input (:class:`tpopk.TpopkError`) are printed to stderr
without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tpopk import __version__
from tpopk.errors import TpopkError

if TYPE_CHECKING:
    from tpopk.inference import Fit
    from tpopk.simulate import TrialDesign

# tpopk.inference's METHODS and INITS, repeated so that `tpopk --help` does not import PyMC
FIT_METHODS = ("nuts", "pathfinder", "laplace")
FIT_INITS = ("support", "pathfinder")
FIT_MASS_MATRICES = ("diag", "draw_diag", "low_rank")

# Exit codes: 0 success, 1 failure while working, 2 invalid input (data, card, usage),
# 130 interrupted (Ctrl-C), 141 output pipe closed (as for a process killed by SIGPIPE).
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


def _cmd_validate(args: argparse.Namespace) -> int:
    from tpopk.data import EventDataError, read_events

    try:
        events = read_events(args.data, require_units=True)
    except EventDataError as err:
        print(str(err), file=sys.stderr)
        return EXIT_INVALID
    print(events.describe())
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from tpopk.data import read_events
    from tpopk.inference import fit

    _check_out(args.out, (".nc", ".zarr"))
    result = fit(
        args.model,
        read_events(args.data, require_units=True),
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
        progressbar=not args.quiet,
        method=args.method,
        init=args.init,
        target_accept=args.target_accept,
        max_treedepth=args.max_treedepth,
        mass_matrix=args.mass_matrix,
    )
    path = result.save(args.out)
    print(f"wrote {path} ({_draws_origin(result)})")
    return 0


def _draws_origin(fit: Fit) -> str:
    """Say where the draws come from: divergences of NUTS, or that they are approximate."""
    if fit.approximate:
        return (
            f"{fit.method} approximation, not MCMC: no convergence diagnostics; "
            "confirm a final model with --method nuts"
        )
    return f"NUTS, {fit.divergences} divergent transitions"


def summary_json(fit: Fit) -> dict[str, Any]:
    """Return the stable JSON form of ``tpopk summary --json`` (schema in the README)."""
    from tpopk.model.parameters import population_unit

    table = fit.summary(ci_prob=0.9)
    lower, upper = (column for column in table.columns if str(column).startswith("eti"))
    return {
        "schema": "tpopk.summary/1",
        "tpopk_version": __version__,
        "model": [card.name for card in fit.cards],
        "chains": int(fit.posterior.sizes["chain"]),
        "draws": int(fit.posterior.sizes["draw"]),
        "method": fit.method,
        "approximate": fit.approximate,
        "divergences": fit.divergences,
        "run": fit.run,
        "parameters": {
            name: {
                "unit": population_unit(str(name), fit.cards, fit.events.units.as_dict()),
                "mean": row["mean"],
                "sd": row["sd"],
                "q5": row[lower],
                "q50": row["median"],
                "q95": row[upper],
                # null for approximate draws, where chain diagnostics do not apply
                "ess_bulk": row.get("ess_bulk"),
                "ess_tail": row.get("ess_tail"),
                "r_hat": row.get("r_hat"),
                "mcse_mean": row.get("mcse_mean"),
                "mcse_sd": row.get("mcse_sd"),
            }
            for name, row in table.iterrows()
        },
    }


def _cmd_summary(args: argparse.Namespace) -> int:
    from tpopk.inference import Fit

    result = Fit.load(args.fit)
    if args.json:
        print(json.dumps(summary_json(result), indent=2))
        return 0
    from tpopk.model.parameters import population_unit

    table = result.summary(ci_prob=0.9).round(4)
    units = [
        population_unit(str(n), result.cards, result.events.units.as_dict()) for n in table.index
    ]
    table.insert(0, "unit", units)
    with pd.option_context("display.width", 140, "display.max_rows", None):
        print(table.to_string())
    print(f"draws: {_draws_origin(result)}")
    return 0


def _load_cards(
    paths: Sequence[str] | None, fit_path: str | None, design: TrialDesign
) -> tuple[Fit | None, list[Any], str]:
    """Return the fit (if any), the cards to simulate ``design`` with, and their origin.

    ``--fit`` brings its cards and posterior; ``--model`` cards are simulated from their
    priors; with neither, the library's system card and its cards of the design's
    agonists are (``models/``).
    """
    from tpopk.inference import Fit
    from tpopk.model import load_card

    if fit_path is not None and paths:
        raise TpopkError("--fit brings its cards: give --fit or --model, not both")
    if fit_path is not None:
        fitted = Fit.load(fit_path)
        return fitted, list(fitted.cards), f"posterior predictive of {fit_path}"
    if paths:
        cards = [load_card(p) for p in paths]
        return None, cards, f"prior predictive of {', '.join(c.name for c in cards)}"
    cards = _library_cards(design)
    return None, cards, f"prior predictive of the library cards {', '.join(c.name for c in cards)}"


def _library_cards(design: TrialDesign) -> list[Any]:
    """Load the library's system card and its card of each agonist of ``design``'s arms."""
    from tpopk.demo import MODELS
    from tpopk.simulate.synthetic import library_cards

    agonists = list(dict.fromkeys(arm.agonist for arm in design.arms))
    wanted = ["thrombopoiesis", *agonists]
    if missing := [f"{name}.toml" for name in wanted if not (MODELS / f"{name}.toml").is_file()]:
        raise TpopkError(
            f"the model library {MODELS} has no card {', '.join(missing)} for trial "
            f"'{design.name}'; give --model CARD (repeat: system card and agonist cards)"
        )
    return list(library_cards(agonists, MODELS))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from tpopk.data import read_events, write_events
    from tpopk.progress import step
    from tpopk.simulate import load_trial, trial_events
    from tpopk.simulate.virtual import simulate_trial

    _check_out(args.out, (".csv",))
    design = load_trial(args.trial)
    fitted, cards, origin = _load_cards(args.model, args.fit, design)
    n_arms = len(design.arms)
    with step("simulate", f"{design.name}: {n_arms} arms x {args.n} patients", not args.quiet):
        trial = simulate_trial(
            cards,
            design,
            n_patients=args.n,
            seed=args.seed,
            posterior=None if fitted is None else fitted.posterior,
            agonists=() if fitted is None else list(fitted.model.coords.get("agonist", ())),
        )
    frame = trial_events(trial)
    events = read_events(frame, units=frame.attrs.get("units"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_events(events, out)
    print(f"wrote {out} ({origin}, one draw; {events.describe().splitlines()[0]})")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from tpopk.data import read_events
    from tpopk.inference import Fit
    from tpopk.simulate.predict import predict, write_predictions

    _check_out(args.out, (".csv",))
    if args.fit is not None and args.model:
        raise TpopkError("--fit brings its cards: give --fit or --model, not both")
    table = predict(
        read_events(args.data, require_units=True),
        args.model or (),
        params=args.params,
        fit=None if args.fit is None else Fit.load(args.fit),
        grid_step=args.grid,
        grid_points=args.grid_points,
        draws=args.draws,
    )
    path = write_predictions(table, args.out)
    predicted = int(table["PRED"].notnull().sum())
    print(f"wrote {path}: {predicted} predictions from {table.attrs['source']}")
    return 0


def _equivalence_pair(text: str) -> tuple[str, str]:
    """Parse ``REFERENCE:ARM`` (``--equivalence``)."""
    reference, colon, arm = text.partition(":")
    if not (colon and reference and arm):
        raise TpopkError(f"--equivalence takes REFERENCE_ARM:OTHER_ARM, got '{text}'")
    return reference, arm


def _cmd_compare(args: argparse.Namespace) -> int:
    from tpopk.simulate import load_trial
    from tpopk.simulate.comparison import compare, prior_compare
    from tpopk.simulate.comparison_json import Comparison

    pairs = [_equivalence_pair(text) for text in args.equivalence or ()]
    design = load_trial(args.trial)
    fitted, cards, origin = _load_cards(args.model, args.fit, design)
    run = partial(
        prior_compare if fitted is None else compare,
        trial=design,
        n_patients=args.n,
        draws=args.draws,
        seed=args.seed,
        scheduler=args.scheduler,
        progressbar=not args.json,
        equivalence=pairs,
    )
    result = run(cards) if fitted is None else run(fitted)
    report = Comparison.from_tree(result)
    if args.json:
        print(report.to_json())
        return 0
    level = round(100 * report.ci_prob)
    print(f"{design.name}: {origin}; {args.draws} draws x {args.n} patients per arm")
    for name, endpoint in report.endpoints.items():
        print(f"{name} (median, {level}% interval)")
        for arm, interval in endpoint.arms.items():
            print(f"  {arm:<24} {interval.text()}")
        for e in endpoint.equivalence:
            n = e.draws
            print(
                f"  dose of {e.arm} matching {e.reference}: {e.dose.text()} {e.dose_unit} "
                f"(draws below / above the grid / undefined: {n.below_grid:.0%} / "
                f"{n.above_grid:.0%} / {n.undefined:.0%})"
            )
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from tpopk.inference import Fit
    from tpopk.report import write_report

    _check_out(args.out, (".html",))
    path = write_report(Fit.load(args.fit), args.out, trial=args.trial, progress=not args.quiet)
    print(f"wrote {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tpopk.demo import run_demo

    _check_out(args.out, ())
    run_demo(Path(args.out), quick=args.quick)
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import time

    from tpopk.progress import step
    from tpopk.simulate import calibration

    _check_out(args.out, ())
    calibration.check_out(args.out)
    models = Path(args.models) if args.models else Path(__file__).parent / "models"
    settings = calibration.Settings(
        seed=args.seed,
        draws=args.draws,
        n_virtual=args.n,
        grid_size=args.grid,
        span=args.span,
        predictive_draws=args.predictive_draws,
        training=Path(args.training).name,
    )
    start = time.perf_counter()
    with step("calibrate", settings.command()):
        result = calibration.run(
            models,
            args.training,
            settings,
            progress=lambda text: print(f"tpopk calibrate: {text}", file=sys.stderr, flush=True),
        )
    out = calibration.write_library(models, args.out, result, time.perf_counter() - start)
    for c in result.calibrations.values():
        print(
            f"{c.agonist}: pop {c.parameter} {math.exp(c.prior_mu):.4g} -> {math.exp(c.mu):.4g} "
            f"(log SD {c.prior_sigma:.3g} -> {c.sigma:.3g})"
        )
    for agonist, why in result.failures.items():
        print(f"{agonist}: not calibrated: {why}")
    print(f"wrote {out} (cards and README.md)")
    return 0


def _check_out(out: str, suffixes: tuple[str, ...]) -> None:
    """Refuse an output path that could not be written, before any work is done.

    Sampling or simulating for minutes and then failing on a typo in ``--out`` loses
    the result; the suffix, an existing folder of that name and the nearest existing
    parent folder (created folders go there) are checked first.
    """
    path = Path(out)
    if not suffixes:  # a folder
        if path.exists() and not path.is_dir():
            raise TpopkError(f"--out '{out}' is a file; expected a folder")
    elif path.suffix not in suffixes:
        raise TpopkError(f"--out '{out}': expected a file ending in {' or '.join(suffixes)}")
    elif path.is_dir() and path.suffix != ".zarr":
        raise TpopkError(f"--out '{out}' is a folder; expected a file ending in {suffixes[0]}")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise TpopkError(f"--out '{out}': cannot write in '{parent}' (not a writable folder)")


def _at_least(minimum: int) -> Callable[[str], int]:
    """Return an argparse type: an integer ≥ ``minimum``, else a usage error saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer ≥ {minimum}, got {value}")
        return value

    return parse


def _number(expected: str, valid: Callable[[float], bool]) -> Callable[[str], float]:
    """Argparse type: a number ``valid`` accepts, else a usage error naming ``expected``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


_positive = _number("a positive number", lambda v: math.isfinite(v) and v > 0)
_fraction = _number("a number between 0 and 1", lambda v: 0 < v < 1)


class _HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        shown = action.default not in (None, False, argparse.SUPPRESS)
        if text and action.option_strings and shown and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """Argument parser (and, as their class, subcommand parsers) with :class:`_HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tpopk", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"tpopk {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="`tpopk COMMAND --help` for more"
    )

    p = sub.add_parser("validate", help="check a NONMEM-style event dataset")
    p.add_argument("data", help="event dataset (CSV)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("fit", help="fit a model card to an event dataset")
    p.add_argument("data", help="event dataset (CSV)")
    p.add_argument(
        "--model",
        required=True,
        action="append",
        help="model card (TOML); repeat for a study: the system card and each agonist card",
    )
    p.add_argument("--out", required=True, help="fit file to write (.nc or .zarr)")
    p.add_argument(
        "--draws",
        type=_at_least(1),
        default=1000,
        help="posterior draws kept per chain (pathfinder: draws in all)",
    )
    p.add_argument(
        "--tune", type=_at_least(0), default=1000, help="warm-up draws per chain (discarded)"
    )
    p.add_argument(
        "--chains", type=_at_least(1), default=4, help="independent chains (pathfinder: paths)"
    )
    p.add_argument("--seed", type=_at_least(0), default=20261122, help="random seed")
    p.add_argument(
        "--sampler", choices=["nutpie", "pymc"], default="nutpie", help="NUTS implementation"
    )
    p.add_argument(
        "--method",
        choices=FIT_METHODS,
        default="nuts",
        help="nuts (MCMC), or a fast approximation for model building: pathfinder "
        "(--chains paths, --draws draws in all) or laplace (Gaussian at the mode); "
        "approximate fits are labelled so and have no convergence diagnostics",
    )
    p.add_argument(
        "--init",
        choices=FIT_INITS,
        default="support",
        help="where NUTS chains start: support (PyMC's jittered support point) or "
        "pathfinder (a Pathfinder draw per chain; runs Pathfinder first)",
    )
    p.add_argument(
        "--target-accept",
        type=_fraction,
        default=0.9,
        help="NUTS target acceptance rate, in (0, 1); raise it (0.95, 0.99) if there are "
        "divergences: smaller steps, more of them",
    )
    p.add_argument(
        "--max-treedepth",
        type=_at_least(1),
        default=10,
        help="largest NUTS tree depth: at most 2^depth leapfrog steps per draw",
    )
    p.add_argument(
        "--mass-matrix",
        choices=FIT_MASS_MATRICES,
        default="diag",
        help="nutpie's mass-matrix adaptation: diag (from draws and gradients), draw_diag "
        "(from draws only, as Stan and PyMC) or low_rank (diagonal plus a low-rank part "
        "for correlated parameters; experimental in nutpie); --sampler pymc takes diag only",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("summary", help="posterior summary of the population parameters")
    p.add_argument("fit", help="fit file (.nc or .zarr)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser(
        "simulate", help="simulate one trial of a design (prior or posterior predictive)"
    )
    p.add_argument(
        "--model",
        action="append",
        help="model card(s), simulated from their priors; default: the library's cards of "
        "the design's agonists",
    )
    p.add_argument("--fit", help="fit file: simulate from its posterior")
    p.add_argument("--trial", required=True, help="trial design (TOML)")
    p.add_argument("--n", type=_at_least(1), default=100, help="virtual patients per arm")
    p.add_argument("--seed", type=_at_least(0), default=0, help="random seed")
    p.add_argument(
        "--out",
        required=True,
        help="event dataset to write (CSV; doses in mg, µg/kg ones times WT where arms mix both)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "predict",
        help="PRED and IPRED for every observation record (and a dense grid), from a fit, "
        "a file of typical values or the cards' own",
    )
    p.add_argument("data", help="event dataset (CSV with its units sidecar)")
    p.add_argument("--model", action="append", help="model card(s); or --fit")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--params",
        help='typical values (TOML: cl = { value = 2.5, unit = "L/h" }); '
        "default: the cards' own (each prior's median)",
    )
    source.add_argument(
        "--fit",
        help="fit file: its posterior's median prediction and 5%%/95%% quantiles; IPRED "
        "from each fitted subject's deviates (by ID)",
    )
    grid = p.add_mutually_exclusive_group()
    grid.add_argument(
        "--grid", type=_positive, metavar="HOURS", help="also predict every HOURS (EVID 2 rows)"
    )
    grid.add_argument(
        "--grid-points",
        type=_at_least(2),
        metavar="N",
        help="also predict at N evenly spaced times per subject (EVID 2 rows)",
    )
    p.add_argument(
        "--draws", type=_at_least(1), default=200, help="posterior draws used with --fit"
    )
    p.add_argument("--out", required=True, help="predictions to write (CSV)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "compare",
        help="compare the arms of a trial: from a fit's posterior, or from cards' priors",
    )
    p.add_argument(
        "fit", nargs="?", help="fit file (.nc or .zarr); without it, the prior predictive"
    )
    p.add_argument(
        "--model",
        action="append",
        help="model card(s) whose priors to simulate, instead of a fit; default: the "
        "library's cards of the design's agonists",
    )
    p.add_argument("--trial", required=True, help="trial design (TOML)")
    p.add_argument("--n", type=_at_least(1), default=100, help="virtual patients per arm and draw")
    p.add_argument("--draws", type=_at_least(1), default=100, help="posterior or prior draws")
    p.add_argument("--seed", type=_at_least(0), default=0, help="random seed")
    p.add_argument(
        "--scheduler",
        help="run the draws on Dask: 'local' (a LocalCluster, one worker per core) or a "
        "scheduler address (default: in this process)",
    )
    p.add_argument(
        "--equivalence",
        action="append",
        metavar="REFERENCE_ARM:OTHER_ARM",
        help="also the dose of OTHER_ARM (fixed, over its titration levels) matching "
        "REFERENCE_ARM's endpoints; repeatable",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("report", help="self-contained HTML report of a fit")
    p.add_argument("fit", help="fit file (.nc or .zarr)")
    p.add_argument("--trial", help="trial design (TOML) whose arms the report compares")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "calibrate", help="calibrate the library's potencies on published arm-level results"
    )
    p.add_argument("--training", required=True, help="trial_outcomes_training.csv")
    p.add_argument("--models", help="library folder (cards, trials/); default: the bundled one")
    p.add_argument("--out", default="models/calibrated", help="output folder")
    p.add_argument("--seed", type=_at_least(0), default=20261207, help="random seed")
    p.add_argument("--draws", type=_at_least(1), default=6, help="prior draws per grid point")
    p.add_argument("--n", type=_at_least(10), default=60, help="virtual patients per arm, draw")
    p.add_argument("--grid", type=_at_least(5), default=9, help="grid points per potency")
    p.add_argument("--span", type=_positive, default=3.5, help="grid half-width, prior SDs")
    p.add_argument(
        "--predictive-draws", type=_at_least(2), default=12, help="draws for the intervals"
    )
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("demo", help="run the main job on the bundled data")
    p.add_argument(
        "--quick", action="store_true", help="every step on smoke-run settings (a few minutes)"
    )
    p.add_argument("--out", default="out/demo", help="output folder")
    p.set_defaults(func=_cmd_demo)
    return parser


class Interrupted(BaseException):
    """Ctrl-C, raised in place of KeyboardInterrupt.

    Samplers catch KeyboardInterrupt and go on with a partial trace (nutpie returns the
    draws so far); this exception passes through them and ends the command.
    """


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tpopk`` command line and return its exit code."""
    try:
        code = _run(_parser().parse_args(argv))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # the reader went away (`tpopk summary --json | head`): stop quietly, and point
        # stdout at /dev/null so that the interpreter's final flush fails no more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _run(args: argparse.Namespace) -> int:
    func: Callable[[argparse.Namespace], int] = args.func
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _interrupt) if in_main_thread else None
    try:
        return func(args)
    except TpopkError as err:
        if args.debug:
            raise
        print(f"tpopk {args.command}: {err}", file=sys.stderr)
        return EXIT_INVALID
    except (Interrupted, KeyboardInterrupt):
        # outputs are written atomically at the end: an interrupted command left none
        print(f"\ntpopk {args.command}: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
