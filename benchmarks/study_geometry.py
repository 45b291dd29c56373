"""Sampler geometry of the full demo's study fit: steps per draw, step size, R-hat, ESS.

Builds the study exactly as ``tpopk demo`` does (the bundled ITP study's
:data:`tpopk.demo.STUDY_AGONISTS` arms, the thrombopoiesis card with those agonist cards)
and fits it with the demo's :data:`tpopk.demo.FULL` study settings and seed, then prints
the figures of benchmarks/README.md ("Study posterior geometry"). ``--out FIT.nc`` keeps
the fit.

    python benchmarks/study_geometry.py [--draws N] [--tune N] [--centered P ...]
        [--card-form] [--target-accept A] [--out FIT.nc]

``--centered P`` samples parameter ``P``'s IIV centred (the card's ``centered = true``):
``tp`` names a thrombopoiesis parameter, ``cl_lusutrombopag`` an agonist card's.
``--card-form`` samples the cards' own coordinates (``build_model(reparameterise=False)``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tpopk import datasets
from tpopk.demo import FULL, MODELS, STUDY_AGONISTS, study_arms
from tpopk.diagnostics.convergence import convergence
from tpopk.inference import fit, fitting
from tpopk.model import build_model, load_card, population_variables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="save the fit here")
    parser.add_argument("--draws", type=int, default=FULL.study_fit["draws"])
    parser.add_argument("--tune", type=int, default=FULL.study_fit["tune"])
    parser.add_argument("--centered", nargs="*", default=[], help="P or P_<agonist>")
    parser.add_argument("--card-form", action="store_true", help="reparameterise=False")
    parser.add_argument("--target-accept", type=float, default=0.9)
    parser.add_argument("--noncentered", nargs="*", default=[], help="P or P_<agonist>")
    args = parser.parse_args()
    events = study_arms(datasets.load_itp_study(), STUDY_AGONISTS)
    tables = {"": load_card(MODELS / "thrombopoiesis.toml").to_toml_dict()}
    tables |= {f"_{a}": load_card(MODELS / f"{a}.toml").to_toml_dict() for a in STUDY_AGONISTS}
    for names, centered in ((args.centered, True), (args.noncentered, False)):
        for name in names:
            suffix = next((s for s in tables if s and name.endswith(s)), "")
            tables[suffix]["parameters"][name.removesuffix(suffix)]["centered"] = centered
    cards = [load_card(table) for table in tables.values()]
    rotated = not args.card_form
    fitting.build_model = lambda cards, events, **_: build_model(  # type: ignore[attr-defined]
        cards, events, reparameterise=rotated
    )
    settings = FULL.study_fit | {"draws": args.draws, "tune": args.tune}
    settings |= {"target_accept": args.target_accept}
    print(
        f"settings: {settings}, centred IIV: {args.centered}, non-centred: {args.noncentered}, "
        f"coordinates: {'card' if args.card_form else 'reparameterised'}"
    )
    start = time.perf_counter()
    result = fit(cards, events, seed=20261201, progressbar=False, **settings)
    wall = time.perf_counter() - start
    stats = result.tree["sample_stats"]
    table = convergence(result.tree)
    r_hat = table["r_hat"].to_series()
    ess = table["ess_bulk"].to_series()
    steps = stats["n_steps"].values
    print(f"fit wall time (compile + sampling): {wall:.0f} s")
    print(f"leapfrog steps per draw: median {np.median(steps):.0f}, mean {steps.mean():.1f}")
    print(f"step size per chain: {np.round(stats['step_size'].values[:, -1], 4).tolist()}")
    print(f"divergences: {int(stats['diverging'].sum())}")
    print(
        f"worst R-hat: {r_hat.max():.3f} ({r_hat.idxmax()}); above 1.01: "
        f"{int((r_hat > 1.01).sum())} of {len(r_hat)}"
    )
    print(f"min ESS_bulk: {ess.min():.0f} ({ess.idxmin()})")
    names = population_variables(result.tree)
    posterior = result.posterior
    for a, b in (("pop_plt0", "beta_plt0_DISEASE"), ("pop_tp", "pop_tp_agonist")):
        if a in names and b in posterior:
            x = np.log(posterior[a].values.ravel())
            ys = posterior[b].values.reshape(x.size, -1)
            ys = ys if b.startswith("beta") else np.log(ys)
            print(f"corr(log {a}, {b}): {np.round([np.corrcoef(x, y)[0, 1] for y in ys.T], 2)}")
    if args.out:
        result.save(args.out)


if __name__ == "__main__":
    main()
