"""The ``tpopk`` command: a thin layer over the package's public functions.

Errors caused by the user's input (:class:`tpopk.TpopkError`) are printed to stderr
without a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from tpopk.errors import TpopkError

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
