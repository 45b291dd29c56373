"""The JSON form of a trial comparison (schema ``tpopk.compare/1``, described in the README).

``tpopk compare --json`` prints it and the demo writes it; both build it here, from the
tree of :func:`tpopk.compare`. Undefined or infinite statistics are ``null``, so the
output is strict JSON (RFC 8259).
"""

from __future__ import annotations

import math
from typing import Literal

import xarray as xr
from pydantic import Field

from tpopk import __version__
from tpopk.typed import FrozenModel

SCHEMA: Literal["tpopk.compare/1"] = "tpopk.compare/1"
_STATS = ("median", "lower", "upper")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def format_value(value: float | None) -> str:
    """Format a JSON number for people: 3 significant digits, ``n/a`` for null."""
    return "n/a" if value is None else f"{value:.3g}"


class Interval(FrozenModel):
    """Posterior median and equal-tailed credible interval; ``None`` where undefined."""

    median: float | None
    lower: float | None
    upper: float | None

    @classmethod
    def of(cls, statistics: xr.DataArray) -> Interval:
        """Read the ``median``, ``lower`` and ``upper`` entries of a ``stat`` dimension."""
        return cls(**{s: _finite(float(statistics.sel(stat=s))) for s in _STATS})

    def text(self) -> str:
        """``median [lower, upper]`` for people."""
        return (
            f"{format_value(self.median)} [{format_value(self.lower)}, {format_value(self.upper)}]"
        )


class Contrast(FrozenModel):
    """``arm`` minus ``versus`` and the probability that ``arm`` is the better one."""

    arm: str
    versus: str
    difference: Interval
    p_better: float | None


class EquivalenceDraws(FrozenModel):
    """What became of the posterior draws (fractions; they sum to 1)."""

    matched: float
    below_grid: float
    above_grid: float
    undefined: float


class Equivalence(FrozenModel):
    """The dose of ``arm`` whose endpoint equals ``reference``'s."""

    reference: str
    arm: str
    dose_unit: str
    dose: Interval
    draws: EquivalenceDraws


class EndpointComparison(FrozenModel):
    """One endpoint: its unit, each arm's posterior, every ordered pair, dose equivalences."""

    unit: str = ""
    arms: dict[str, Interval]
    contrasts: tuple[Contrast, ...]
    equivalence: tuple[Equivalence, ...]


class Comparison(FrozenModel):
    """``tpopk compare --json``: the endpoints of a trial simulated from a fit (or priors)."""

    schema_name: Literal["tpopk.compare/1"] = Field(default=SCHEMA, alias="schema")
    tpopk_version: str = __version__
    trial: str
    ci_prob: float
    n_patients: int
    draws: int
    endpoints: dict[str, EndpointComparison]

    @classmethod
    def from_tree(cls, result: xr.DataTree) -> Comparison:
        """Read the tree returned by :func:`tpopk.compare` (or ``prior_compare``)."""
        summary = result["summary"].to_dataset()
        contrasts = result["contrasts"].to_dataset()
        endpoints = {}
        for name in map(str, summary.data_vars):
            pairs = [
                Contrast(
                    arm=str(contrasts["arm"][i].item()),
                    versus=str(contrasts["versus"][i].item()),
                    difference=Interval.of(contrasts[f"difference_{name}"].isel(pair=i)),
                    p_better=_finite(float(contrasts[f"p_better_{name}"].isel(pair=i))),
                )
                for i in range(contrasts.sizes["pair"])
            ]
            endpoints[name] = EndpointComparison(
                unit=str(summary[name].attrs.get("units", "")),
                arms={str(a): Interval.of(summary[name].sel(arm=a)) for a in summary["arm"].values},
                contrasts=tuple(pairs),
                equivalence=_equivalences(result, name),
            )
        attrs = result.attrs
        return cls(
            trial=str(attrs["trial"]),
            ci_prob=float(attrs["ci_prob"]),
            n_patients=int(attrs["n_patients"]),
            draws=int(attrs["draws"]),
            endpoints=endpoints,
        )

    def to_json(self) -> str:
        """Return the document as indented JSON text (``schema`` first)."""
        return self.model_dump_json(by_alias=True, indent=2)


def _equivalences(result: xr.DataTree, name: str) -> tuple[Equivalence, ...]:
    """Dose-equivalence entries of one endpoint (none without ``/equivalence``)."""
    if "equivalence" not in result.children:
        return ()
    table = result.children["equivalence"].to_dataset(inherit=False)
    dose, fraction = table[f"dose_{name}"], table[f"fraction_{name}"]
    return tuple(
        Equivalence(
            reference=str(table["reference"][i].item()),
            arm=str(table["arm"][i].item()),
            dose_unit=str(table["dose_unit"][i].item()),
            dose=Interval.of(dose.isel(pair=i)),
            draws=EquivalenceDraws(
                **{
                    str(outcome): float(fraction.isel(pair=i).sel(outcome=outcome))
                    for outcome in table["outcome"].to_numpy()
                }
            ),
        )
        for i in range(table.sizes["pair"])
    )
