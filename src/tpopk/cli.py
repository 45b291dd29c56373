"""The ``tpopk`` command: a thin layer over the package's public functions.

Errors caused by the user's input (:class:`tpopk.TpopkError`) are printed to stderr
without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tpopk import __version__
from tpopk.errors import TpopkError

if TYPE_CHECKING:
    from tpopk.inference import Fit

# Exit codes: 0 success, 1 failure while working, 2 invalid input (data, card, usage).
EXIT_INVALID = 2


def _cmd_validate(args: argparse.Namespace) -> int:
    from tpopk.data import EventDataError, read_events

    try:
        events = read_events(args.data)
    except EventDataError as err:
        print(str(err), file=sys.stderr)
        return EXIT_INVALID
    print(events.describe())
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from tpopk.inference import fit

    result = fit(
        args.model,
        args.data,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        sampler=args.sampler,
        progressbar=not args.quiet,
    )
    path = result.save(args.out)
    print(f"wrote {path} ({result.divergences} divergent transitions)")
    return 0


def summary_json(fit: Fit) -> dict[str, Any]:
    """Return the stable JSON form of ``tpopk summary --json`` (schema in the README)."""
    table = fit.summary(ci_prob=0.9)
    return {
        "schema": "tpopk.summary/1",
        "tpopk_version": __version__,
        "model": [card.name for card in fit.cards],
        "chains": int(fit.posterior.sizes["chain"]),
        "draws": int(fit.posterior.sizes["draw"]),
        "divergences": fit.divergences,
        "parameters": {
            name: {
                "mean": row["mean"],
                "sd": row["sd"],
                "q5": row["q0.05"],
                "q50": row["q0.5"],
                "q95": row["q0.95"],
                "ess_bulk": row["ess_bulk"],
                "ess_tail": row["ess_tail"],
                "r_hat": row["r_hat"],
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
    with pd.option_context("display.width", 120, "display.max_rows", None):
        print(result.summary(ci_prob=0.9).round(4).to_string())
    print(f"divergent transitions: {result.divergences}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tpopk import datasets

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, load in datasets.CATALOGUE.items():
        events = load()
        print(f"== {name}\n{events.describe()}\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tpopk", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument("--sampler", choices=["nutpie", "pymc"], default="nutpie")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("summary", help="posterior summary of the population parameters")
    p.add_argument("fit", help="fit file (.nc or .zarr)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("demo", help="run the main job on the bundled data")
    p.add_argument("--quick", action="store_true", help="one-minute version")
    p.add_argument("--out", default="out/demo", help="output folder")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tpopk`` command line and return its exit code."""
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except TpopkError as err:
        if args.debug:
            raise
        print(f"tpopk {args.command}: {err}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
