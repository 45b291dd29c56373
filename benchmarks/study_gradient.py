"""Log density + gradient of the bundled ITP study model: lattice PK vs full superposition.

The study model's drive needs each agonist's concentration at every RK4 stage time. The
general closed form sums every dose at every stage (``S x 2K x D``); doses on a lattice
(daily, weekly) let ``tpopk.model.structural`` evaluate one unit dose at the distinct lags and
convolve it with the amounts. Both paths are built and timed in one process, on the same
model and point, and must agree.

Run: ``python -m benchmarks.study_gradient [AGONIST ...]`` (default: eltrombopag).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from tpopk import datasets
from tpopk.demo import MODELS, study_arms
from tpopk.model import build_model, load_card, predict


def main(agonists: tuple[str, ...]) -> None:
    events = study_arms(datasets.load_itp_study(), agonists)
    cards = [load_card(MODELS / "thrombopoiesis.toml")]
    cards += [load_card(MODELS / f"{a}.toml") for a in agonists]
    lattice = predict._lattice_superposition
    results = {}
    for label, shortcut in (("lattice", lattice), ("general", lambda *a, **k: None)):
        predict._lattice_superposition = shortcut
        try:
            model = build_model(cards, events)
        finally:
            predict._lattice_superposition = lattice
        start = time.perf_counter()
        logp, dlogp = model.compile_logp(), model.compile_dlogp()
        point = model.initial_point()
        logp(point), dlogp(point)
        compile_s = time.perf_counter() - start
        n = 20
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            logp(point), dlogp(point)
        wall_ms = (time.perf_counter() - start) / n * 1e3
        cpu_ms = (time.process_time() - cpu) / n * 1e3
        results[label] = (wall_ms, cpu_ms, logp(point), dlogp(point))
        print(
            f"{label}: {wall_ms:.1f} ms/eval wall, {cpu_ms:.1f} ms CPU, compile {compile_s:.0f} s",
            flush=True,
        )
    (w1, c1, l1, g1), (w2, c2, l2, g2) = results["lattice"], results["general"]
    rel = float(np.max(np.abs(g1 - g2) / (np.abs(g2) + 1e-8)))
    print(f"logp {l1:.6f} vs {l2:.6f}; gradient max rel. difference {rel:.1e}")
    print(f"ratio general / lattice: wall {w2 / w1:.1f}x, CPU {c2 / c1:.1f}x")


if __name__ == "__main__":
    main(tuple(sys.argv[1:]) or ("eltrombopag",))
