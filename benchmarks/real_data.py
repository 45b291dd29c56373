"""Real-data validation: fit each bundled real dataset and set it beside the published fits.

For every reference fit in ``tpopk/datasets/reference_estimates.toml`` (theophylline,
phenobarbital without and with covariates, warfarin PK/PCA) the reference model's card is
fitted with nutpie and :func:`tpopk.datasets.compare_with_reference` sets its posterior
median (and 90% interval) beside the NONMEM / nlmixr2 estimates: typical values and
residual SDs within 10%, IIV as %CV with the published value inside the interval. Prints,
per fit, the wall time, divergences, the largest R-hat and smallest ESS_bulk over the
population parameters, and the comparison as a Markdown table (the README's real-data
table is this output).

    python benchmarks/real_data.py [--fits theophylline phenobarbital ...] [--draws 2000]
        [--tune 1000] [--chains 4] [--seed 20261207]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).parents[1]
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={Path.home() / '.cache/tpopk/pytensor'}")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache/tpopk/numba"))


def markdown(table: pd.DataFrame) -> str:
    """The comparison as Markdown rows: variable, scale, published, tpopk median (90% CI)."""
    lines = ["| variable | scale | published | tpopk median (90% CI) | difference | agrees |"]
    lines.append("|---|---|---|---|---|---|")
    for variable, row in table.iterrows():
        published = (
            f"{row['low']:.4g}"
            if row["low"] == row["high"]
            else (f"{row['low']:.4g}–{row['high']:.4g}")
        )
        estimate = f"{row['median']:.4g} ({row['lower']:.4g}–{row['upper']:.4g})"
        lines.append(
            f"| {variable} | {row['scale']} | {published} | {estimate} | "
            f"{100 * row['difference']:+.1f}% | {'yes' if row['agrees'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> None:
    from tpopk.datasets import compare_with_reference, reference_estimates, reference_events
    from tpopk.inference import fit

    references = reference_estimates()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", nargs="+", choices=sorted(references), default=list(references))
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20261207)
    args = parser.parse_args()
    for name in args.fits:
        entry = references[name]
        events = reference_events(name)
        start = time.perf_counter()
        result = fit(
            ROOT / "models" / f"{entry['card']}.toml",
            events,
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            seed=args.seed,
            progressbar=False,
        )
        wall = time.perf_counter() - start
        summary = result.summary()
        table = compare_with_reference(result.posterior, name)
        print(f"\n## {name}: card {entry['card']}, reference {entry['reference']}")
        print(
            f"{args.chains} x ({args.tune} + {args.draws}) draws, seed {args.seed}: "
            f"{wall:.0f} s wall (compile + sample), {result.divergences} divergences, "
            f"max R-hat {summary['r_hat'].max():.3f}, min ESS_bulk {summary['ess_bulk'].min():.0f}"
        )
        print(markdown(table))
        print(f"all agree: {bool(table['agrees'].all())}")


if __name__ == "__main__":
    main()
