"""Compile time of the bundled ITP study model for nutpie, per component.

Prints, for the chosen agonist arms: model build; the PyTensor graph (raw logp + gradient
nodes, nodes after ``fast_run`` rewriting, fused composites and their scalar nodes,
rewrite time); ``nutpie.compile_pymc_model`` (numba); one logp + gradient evaluation.
Wall and CPU (``time.process_time``) seconds, with the load average, since the machine
may be shared.

Caches: by default a fresh PyTensor/numba cache directory (a cold compile); ``--cache DIR``
reuses one (run twice for a warm compile). ``--elementary`` swaps the decay divided
difference op (:mod:`tpopk.pk.decay_op`) back for the elementary PyTensor graph it
replaced, to time the difference in one tree.

Run: ``python -m benchmarks.study_compile [--elementary] [--cache DIR] [AGONIST ...]``
(default: eltrombopag).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any


def _elementary_decay_difference(xp: Any, a: Any, b: Any, t: Any) -> Any:
    """The elementary graph of ``exp[a, b](t)`` that :mod:`tpopk.pk.decay_op` replaced."""
    from tpopk.pk.divided import relexp

    gap = xp.abs(a - b)
    near_tie = gap <= 0.5 * xp.maximum(a, b)
    exponent = xp.where(near_tie, (gap - (a + b)) * t / 2.0, -xp.minimum(a, b) * t)
    return -t * xp.exp(exponent) * relexp(xp, gap * t)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> str:
    wall, cpu = _clock()
    return f"{wall - start[0]:.1f} s wall, {cpu - start[1]:.1f} s CPU"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agonists", nargs="*", default=["eltrombopag"])
    parser.add_argument("--cache", help="PyTensor/numba cache directory (default: fresh)")
    parser.add_argument("--elementary", action="store_true")
    args = parser.parse_args(argv)
    cache = args.cache or tempfile.mkdtemp(prefix="tpopk-compile-")
    # before PyTensor and numba are imported: they read these once
    os.environ["PYTENSOR_FLAGS"] = f"base_compiledir={cache}/pytensor"
    os.environ["NUMBA_CACHE_DIR"] = f"{cache}/numba"

    import numpy as np
    import nutpie
    import pytensor
    import pytensor.tensor as pt
    from pytensor.graph.traversal import ancestors, io_toposort

    from tpopk import datasets
    from tpopk.demo import MODELS, study_arms
    from tpopk.model import build_model, load_card
    from tpopk.pk import divided

    if args.elementary:
        divided._decay_difference = _elementary_decay_difference  # type: ignore[assignment]
    agonists = tuple(args.agonists)
    print(
        f"agonists {','.join(agonists)}; decay difference "
        f"{'elementary graph' if args.elementary else 'op'}; cache {cache}; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    start = _clock()
    events = study_arms(datasets.load_itp_study(), agonists)
    cards = [load_card(MODELS / "thrombopoiesis.toml")]
    cards += [load_card(MODELS / f"{a}.toml") for a in agonists]
    model = build_model(cards, events)
    print(f"build: {_since(start)}", flush=True)

    start = _clock()
    logp = model.logp()
    outputs = [logp, *pt.grad(logp, model.value_vars)]
    raw = io_toposort([v for v in ancestors(outputs) if v.owner is None], outputs)
    rewritten = pytensor.function(
        model.value_vars,
        outputs,
        mode=pytensor.compile.mode.Mode(linker="py", optimizer="fast_run"),
    ).maker.fgraph.apply_nodes
    sizes = sorted(
        len(node.op.scalar_op.fgraph.apply_nodes)
        for node in rewritten
        if hasattr(getattr(node.op, "scalar_op", None), "fgraph")
    )
    print(
        f"graph: {len(raw)} raw nodes, {len(rewritten)} rewritten, {len(sizes)} composites "
        f"of {sum(sizes)} scalar nodes (largest {sizes[-3:]}); gradient + rewrite "
        f"{_since(start)}",
        flush=True,
    )

    start = _clock()
    compiled = nutpie.compile_pymc_model(model)
    print(f"nutpie compile: {_since(start)}; load average {os.getloadavg()[0]:.1f}", flush=True)

    # nutpie's compiled logp + gradient function (numba), at the initial point
    point = model.initial_point()
    x = np.concatenate([np.ravel(point[v.name]) for v in model.value_vars])
    logp_fn = compiled.logp_func
    logp_fn(x)
    start, n = _clock(), 50
    for _ in range(n):
        logp_fn(x)
    wall, cpu = _clock()
    print(
        f"logp + gradient: {(wall - start[0]) / n * 1e3:.2f} ms wall, "
        f"{(cpu - start[1]) / n * 1e3:.2f} ms CPU"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
