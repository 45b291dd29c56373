"""Predictive check of the bundled trial designs against their published results.

    python benchmarks/predictive_check.py [--draws 100] [--seed 20261207] [--write]

Each design of ``models/trials/`` with a published result in
``benchmarks/predictive_check_published.csv`` is simulated ``--draws`` times from the
library's literature cards (prior predictive: the system card and the design's agonist
cards, no fit), every draw a trial of each arm's own ``n`` patients (``DEFAULT_N`` where
the design gives none). The table gives, per endpoint and arm, the published value beside
the predicted median and 90% interval, whether it lies inside, and the median 90%
interval width of the response-rate endpoints (fractions of patients). ``--write`` puts
the table into ``models/trials/README.md`` between its ``predictive-check`` markers.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from tpopk.files import atomic_write
from tpopk.simulate import TrialDesign, evaluate_endpoints, load_trial
from tpopk.simulate.synthetic import library_cards
from tpopk.simulate.virtual import simulate_trial

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
PUBLISHED = Path(__file__).with_name("predictive_check_published.csv")
README = MODELS / "trials" / "README.md"
BEGIN, END = "<!-- predictive-check:begin -->", "<!-- predictive-check:end -->"
#: Patients per arm where a design gives no ``n``.
DEFAULT_N = 100
#: Prior draws simulated together (bounds memory).
CHUNK = 20
CI_PROB = 0.9
RATE_UNIT = "fraction of patients"


@dataclass(frozen=True)
class Row:
    """One published result beside its prediction."""

    design: str
    endpoint: str
    arm: str
    n: int
    unit: str
    published: str
    median: float
    lower: float
    upper: float
    inside: bool
    source: str


def predicted_draws(design: TrialDesign, draws: int, seed: int) -> xr.Dataset:
    """Endpoints ``(arm, draw)``, each arm a trial of its own ``n`` patients per draw."""
    agonists = list(dict.fromkeys(arm.agonist for arm in design.arms))
    cards = library_cards(agonists, MODELS)
    sizes = {arm.name: arm.n or DEFAULT_N for arm in design.arms}
    chunks = []
    for i, start in enumerate(range(0, draws, CHUNK)):
        size = min(CHUNK, draws - start)
        trial = simulate_trial(
            cards, design, n_patients=max(sizes.values()), seed=seed + i, draws=size
        )
        if "draw" not in trial.dims:
            trial = trial.expand_dims(draw=1)
        # patients of an arm are exchangeable: its first n are a trial of n patients
        per_arm = [
            evaluate_endpoints(trial.isel(patient=slice(0, n)), design.endpoints).sel(arm=[arm])
            for arm, n in sizes.items()
        ]
        chunks.append(xr.concat(per_arm, dim="arm"))
    return xr.concat(chunks, dim="draw")


def _published(row: pd.Series) -> tuple[str, float, float]:
    """Text of the published value and the range it stands for (a point: both ends)."""
    if not math.isnan(row["published"]):
        value = float(row["published"])
        return f"{value:.3g}", value, value
    low = -math.inf if math.isnan(row["low"]) else float(row["low"])
    high = math.inf if math.isnan(row["high"]) else float(row["high"])
    text = f"≥ {low:.3g}" if math.isinf(high) else f"{low:.3g}–{high:.3g}"
    return text, low, high


def check(published: pd.DataFrame, draws: int, seed: int) -> list[Row]:
    """Simulate every design named in ``published`` and set each result beside its prediction."""
    rows = []
    tail = (1 - CI_PROB) / 2
    for name, results in published.groupby("design", sort=False):
        start = time.perf_counter()
        design = load_trial(MODELS / "trials" / f"{name}.toml")
        # only the arms with a published result are simulated (healthy volunteers: 2 of 5)
        published_arms = set(results["arm"])
        arms = tuple(arm for arm in design.arms if arm.name in published_arms)
        design = design.model_copy(update={"arms": arms})
        values = predicted_draws(design, draws, seed)
        sizes = {arm.name: arm.n or DEFAULT_N for arm in design.arms}
        for _, result in results.iterrows():
            data = values[result["endpoint"]].sel(arm=result["arm"]).to_numpy()
            low, median, high = np.nanquantile(data, [tail, 0.5, 1 - tail])
            text, first, last = _published(result)
            rows.append(
                Row(
                    design=str(name),
                    endpoint=str(result["endpoint"]),
                    arm=str(result["arm"]),
                    n=sizes[result["arm"]],
                    unit=str(values[result["endpoint"]].attrs.get("units", "")),
                    published=text,
                    median=float(median),
                    lower=float(low),
                    upper=float(high),
                    inside=bool(first <= high and last >= low),
                    source=str(result["source"]),
                )
            )
        elapsed = time.perf_counter() - start
        print(f"{name}: {draws} draws in {elapsed:.0f} s", file=sys.stderr, flush=True)
    return rows


def rate_widths(rows: list[Row]) -> list[float]:
    """90% interval widths (percentage points) of the response-rate rows."""
    return [100 * (r.upper - r.lower) for r in rows if r.unit == RATE_UNIT]


def table(rows: list[Row], draws: int, seed: int) -> str:
    """The check as Markdown: heading, how it was made, the table and its summary."""
    command = f"python benchmarks/predictive_check.py --draws {draws} --seed {seed} --write"
    intro = (
        "Published arm-level results beside what the library predicts **from its literature "
        "priors alone** (no fit, no calibration on these results): per endpoint and arm, the "
        f"median and the {round(100 * CI_PROB)}% interval over {draws} prior draws, each a "
        f"trial of the arm's published `n` patients ({DEFAULT_N} where the design gives "
        "none). Rates are fractions of patients. The published values and their sources are "
        "in `benchmarks/predictive_check_published.csv`. Made by, from the repository root "
        "with `src` on `PYTHONPATH`:"
    )
    lines = [
        "## Predictive check: prior predictive of the literature cards",
        "",
        *textwrap.wrap(intro, width=88, break_on_hyphens=False),
        "",
        "```",
        command,
        "```",
        "",
        "| design | endpoint | arm | n | published | predicted median [90% interval] | inside |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        predicted = f"{r.median:.3g} [{r.lower:.3g}, {r.upper:.3g}]"
        mark = "yes" if r.inside else "**no**"
        lines.append(
            f"| `{r.design}` | {r.endpoint} | {r.arm} | {r.n} | {r.published} | "
            f"{predicted} | {mark} |"
        )
    widths = rate_widths(rows)
    inside = sum(r.inside for r in rows)
    rates_inside = sum(r.inside for r in rows if r.unit == RATE_UNIT)
    summary = (
        f"Inside the 90% interval: {inside} of {len(rows)} results ({rates_inside} of "
        f"{len(widths)} response rates). Median 90% interval width of the response-rate "
        f"endpoints: **{np.median(widths):.0f} percentage points** (range "
        f"{min(widths):.0f}–{max(widths):.0f}; issue #25 asks for ≤ 30)."
    )
    notes = (
        "Where a published endpoint differs from the simulated one: the ADAPT-1 rows publish "
        "'no transfusion or rescue to 7 days after the procedure' and predict 'count ≥ 50 on "
        "the procedure day'; the healthy-volunteer rows publish group-mean courses and "
        "predict the median over volunteers. Designs without a published result in the "
        "literature folder (`eltrombopag_itp` on RAISE, `avatrombopag_itp` on Jurczak 2018, "
        "`avatrombopag_cld_adapt`, `lusutrombopag_cld_lplus2`, `itp_label_comparison`) are "
        "not in the table."
    )
    for paragraph in (summary, notes):
        lines += ["", *textwrap.wrap(paragraph, width=88, break_on_hyphens=False)]
    return "\n".join(lines) + "\n"


def write_readme(text: str) -> None:
    """Put ``text`` between the markers of the trials README (appended if it has none)."""
    readme = README.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{text}{END}\n"
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        readme = head + block + tail
    else:
        readme = readme.rstrip("\n") + "\n\n" + block
    atomic_write(README, readme)


def main(argv: list[str] | None = None) -> int:
    """Run the check, print the table, and with ``--write`` update the trials README."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=100, help="prior draws per design")
    parser.add_argument("--seed", type=int, default=20261207, help="random seed")
    parser.add_argument("--design", action="append", help="only these designs (repeat)")
    parser.add_argument("--write", action="store_true", help="update models/trials/README.md")
    args = parser.parse_args(argv)
    published = pd.read_csv(PUBLISHED)
    if args.design:
        published = published[published["design"].isin(args.design)]
    text = table(check(published, args.draws, args.seed), args.draws, args.seed)
    print(text)
    if args.write:
        write_readme(text)
        print(f"wrote {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
