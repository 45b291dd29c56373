"""Measured accuracy of tpopk.pk against the solve_ivp reference, per model x dosing case.

Run from the repository root::

    .venv/bin/python benchmarks/pk_accuracy.py

Prints one row per case: the maximum relative error of the closed form over the
observation grid of ``tests/pk/accuracy_cases.py`` (0.2-72 h, including times inside
the lag, at infusion ends and at dose times), against DOP853 at rtol 1e-10. Times at
which the reference is exactly zero (before any dose acts) must be exactly zero too,
else the row reads ``inf``. The same cases are asserted (<= 1e-6) by
``tests/pk/test_accuracy.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "pk"))

from accuracy_cases import all_cases, max_relative_error


def main() -> None:
    start = time.perf_counter()
    rows = [(name, label, max_relative_error(name, p, d)) for name, label, p, d in all_cases()]
    width = max(len(label) for _, label, _ in rows)
    print(f"| {'model':<15} | {'dosing':<{width}} | max rel. error |")
    print(f"|{'-' * 17}|{'-' * (width + 2)}|----------------|")
    for name, label, error in rows:
        print(f"| {name:<15} | {label:<{width}} | {error:14.1e} |")
    worst = max(error for _, _, error in rows)
    print(f"\n{len(rows)} cases, worst {worst:.1e}, {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
