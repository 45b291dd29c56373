"""Cost per call of the PK closed-form ops and their gradients: a git revision vs this tree.

Two ops, each at the lags a study model evaluates (``_lattice_superposition``: a residue
within the day plus 0-48 whole days), compiled with PyTensor's numba backend (what
nutpie runs), as the value alone and as the value with the gradient of its sum with
respect to every input:

* ``transit``: one mode ``G[ka, lambda](s)`` of avatrombopag's 10-compartment chain
  (ktr 7.5 /h, ka 0.58 /h, lambda 0.038 /h, each with 50% log-normal spread);
* ``decay``: the first-order absorption core ``exp[ka, lambda](s)`` (ka 0.58 /h, lambda
  0.038 /h, same spread).

The baseline's modules are loaded from ``--baseline`` (``git show``), so both run side by
side in one process.

    python -m benchmarks.exposure_speed [--baseline 225740a] [--n 100000] [--op decay]
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import timeit
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).parents[1]
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={Path.home() / '.cache/tpopk/pytensor'}")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache/tpopk/numba"))

ORDER = 10  # avatrombopag: 9 transit compartments


def _module_at(revision: str, path: str, name: str, replace: tuple[str, str] = ("", "")) -> Any:
    """Import ``path`` as it was at ``revision`` under the module name ``name``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:{path}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.replace(*replace)
    module = types.ModuleType(name)
    module.__file__ = str(ROOT / path)  # the ops hash their own file for cache keys
    sys.modules[name] = module
    exec(compile(source, path, "exec"), module.__dict__)
    return module


def _graphs(revision: str) -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    """Per op: (baseline graph, this tree's graph), each from symbolic inputs."""
    import pytensor.tensor as pt

    from tpopk.pk.decay_op import decay_difference
    from tpopk.pk.transit_op import transit_mode

    _module_at(revision, "src/tpopk/pk/transit_op.py", "baseline_transit_op")
    old_transit = _module_at(
        revision,
        "src/tpopk/pk/transit.py",
        "baseline_transit",
        ("from tpopk.pk.transit_op import", "from baseline_transit_op import"),
    )
    old_decay = _module_at(revision, "src/tpopk/pk/decay_op.py", "baseline_decay_op")
    return {
        "transit": (
            lambda *x: old_transit._erlang_decay_difference(pt, ORDER, *x),
            lambda *x: transit_mode(ORDER)(*x)[0],
        ),
        "decay": (old_decay.decay_difference, decay_difference),
    }


def _inputs(op: str, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    spread = np.exp(0.5 * rng.standard_normal((3, n)))
    rates = [7.5 * spread[0], 0.58 * spread[1], 0.038 * spread[2]]
    s = rng.uniform(0.0, 24.0, n) + 24.0 * rng.integers(0, 49, n)
    return [*rates, s] if op == "transit" else [*rates[1:], s]


def _best_ns(function: Callable[[], object], n: int, repeat: int) -> float:
    number = max(1, int(0.2 / max(timeit.timeit(function, number=1), 1e-6)))
    return 1e9 * min(timeit.repeat(function, number=number, repeat=repeat)) / number / n


def main() -> None:
    """Print ns per element, value and value + gradient, baseline vs this tree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="225740a", help="git revision to compare with")
    parser.add_argument("--n", type=int, default=100_000, help="elements per call")
    parser.add_argument("--repeat", type=int, default=7, help="timings per figure (best)")
    parser.add_argument("--op", action="append", help="transit or decay (repeat); default both")
    parser.add_argument("--seed", type=int, default=24)
    args = parser.parse_args()

    import pytensor
    import pytensor.tensor as pt

    print(f"{args.n} lags per call; ns per element (best of {args.repeat})")
    print(f"| {'op':<8} | {'code':<17} | {'value':>8} | {'value + gradient':>16} |")
    print(f"|{'-' * 10}|{'-' * 19}|{'-' * 10}|{'-' * 18}|")
    for op, (old, new) in _graphs(args.baseline).items():
        if args.op and op not in args.op:
            continue
        data = _inputs(op, args.n, args.seed)
        inputs = [pt.dvector(f"x{i}") for i in range(len(data))]
        results = []
        for label, graph in ((f"baseline {args.baseline}", old), ("this tree", new)):
            value = graph(*inputs)
            value_fn = pytensor.function(inputs, value, mode="NUMBA")
            gradient = pytensor.grad(value.sum(), inputs)
            both_fn = pytensor.function(inputs, [value, *gradient], mode="NUMBA")
            results.append(both_fn(*data))
            ns_value = _best_ns(functools.partial(value_fn, *data), args.n, args.repeat)
            ns_both = _best_ns(functools.partial(both_fn, *data), args.n, args.repeat)
            print(f"| {op:<8} | {label:<17} | {ns_value:8.1f} | {ns_both:16.1f} |", flush=True)
        worst = max(
            float(np.abs(b - a).max() / np.abs(a).max()) for a, b in zip(*results, strict=True)
        )
        print(f"max |new - old| / max |old| over {op}'s value and gradient: {worst:.1e}")


if __name__ == "__main__":
    main()
