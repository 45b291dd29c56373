"""What an event record may contain: columns, event types, observation types, agonists.

The vocabulary is NONMEM's (``ID, TIME, EVID, AMT, DV, CMT, MDV, RATE, II, ADDL, SS``)
plus ``DVID`` (which quantity an observation measures), ``LLOQ``/``BLQ`` for censoring
and ``AGONIST``. Every other column is a covariate. Column names are matched after
upper-casing; observation-type and agonist names are matched in lower case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Final


class Evid(IntEnum):
    """NONMEM event identifiers."""

    OBSERVATION = 0
    DOSE = 1
    OTHER = 2
    RESET = 3
    RESET_DOSE = 4


DOSE_EVIDS: Final = frozenset({Evid.DOSE, Evid.RESET_DOSE})
RESET_EVIDS: Final = frozenset({Evid.RESET, Evid.RESET_DOSE})

#: Columns every dataset must have (NONMEM needs no more: EVID, MDV, CMT... have defaults).
REQUIRED_COLUMNS: Final = ("ID", "TIME", "DV")

#: Columns with a fixed meaning; anything else in a dataset is a covariate.
RESERVED_COLUMNS: Final = (
    "ID",
    "TIME",
    "EVID",
    "AMT",
    "DV",
    "CMT",
    "MDV",
    "RATE",
    "II",
    "ADDL",
    "SS",
    "DVID",
    "LLOQ",
    "BLQ",
    "AGONIST",
)

#: Reserved columns whose values must be numbers (DVID and AGONIST may be names).
NUMERIC_COLUMNS: Final = tuple(c for c in RESERVED_COLUMNS if c not in ("DVID", "AGONIST"))

#: Numeric columns whose values must be whole numbers.
INTEGER_COLUMNS: Final = ("ID", "EVID", "CMT", "MDV", "ADDL", "SS", "BLQ")

#: Columns that may not hold a missing value on any record, when present.
NO_MISSING_COLUMNS: Final = ("ID", "TIME", "EVID", "CMT", "MDV")

#: Dosing items: they only mean something on dose records (EVID 1/4).
DOSING_COLUMNS: Final = ("AMT", "RATE", "II", "ADDL", "SS")

#: Values of NONMEM's RATE data item that ask the model for the rate (-1) or duration (-2).
MODELLED_RATE_CODES: Final = frozenset({-1.0, -2.0})


@dataclass(frozen=True)
class ObservationType:
    """A kind of observation that ``DVID`` can name.

    Parameters
    ----------
    name
        Lower-case name used in data and model cards (``"conc"``, ``"plt"``...).
    code
        NONMEM numeric ``DVID`` code.
    quantity
        Physical quantity of ``DV`` (a key of :data:`tpopk.data.units.UNIT_TABLE`).
    default_unit
        Unit assumed when the dataset declares none.
    description
        What is measured, in words.
    """

    name: str
    code: int
    quantity: str
    default_unit: str
    description: str


_OBSERVATION_TYPES: Final = (
    ObservationType("conc", 1, "concentration", "ng/mL", "drug concentration in plasma"),
    ObservationType("plt", 2, "cell_count", "10^9/L", "platelet count"),
    ObservationType("wbc", 3, "cell_count", "10^9/L", "white blood cell count"),
    ObservationType("anc", 4, "cell_count", "10^9/L", "absolute neutrophil count"),
    ObservationType("tpo", 5, "concentration", "pg/mL", "endogenous thrombopoietin"),
)

#: Known observation types by name; numeric ``DVID`` codes map through :data:`DVID_CODES`.
OBSERVATION_TYPES: Final = MappingProxyType({t.name: t for t in _OBSERVATION_TYPES})
DVID_CODES: Final = MappingProxyType({t.code: t.name for t in _OBSERVATION_TYPES})

#: Spelling of a named response: a DVID outside :data:`OBSERVATION_TYPES` that a model
#: card declares (warfarin's prothrombin complex activity ``pca``). Its unit is never
#: assumed: the dataset must declare it.
RESPONSE_NAME: Final = re.compile(r"[a-z][a-z0-9_]*")

#: Observation type of every observation when the dataset has no DVID column.
DEFAULT_DVID: Final = "conc"

#: The thrombopoietin-receptor agonists tpopk knows (lower-case canonical names).
AGONISTS: Final = ("avatrombopag", "eltrombopag", "hetrombopag", "lusutrombopag", "romiplostim")


@dataclass(frozen=True)
class CovariateRule:
    """What a known covariate may hold.

    Parameters
    ----------
    name
        Upper-case column name.
    kind
        ``"positive"`` (a positive number), ``"flag"`` (0 or 1), ``"category"``
        (a whole number ≥ 0) or ``"label"`` (any text).
    constant
        Whether the value must stay the same within a subject (baseline-type covariates).
    description
        Meaning, with unit where there is one.
    """

    name: str
    kind: str
    constant: bool
    description: str


_COVARIATES: Final = (
    CovariateRule("WT", "positive", False, "body weight (kg)"),
    CovariateRule("EAST_ASIAN", "flag", True, "1 if of East-Asian ancestry"),
    CovariateRule("SPLENECTOMY", "flag", True, "1 if splenectomised"),
    CovariateRule("DISEASE", "label", True, "indication, e.g. ITP, CLD, AA"),
    CovariateRule("SEX", "flag", True, "1 female, 0 male"),
    CovariateRule("FED", "flag", False, "1 if the dose was taken with food"),
    CovariateRule("HEPATIC", "category", False, "hepatic impairment: 0 none, 1-3 Child-Pugh A-C"),
)

#: Covariates with a known meaning. Columns not listed here are accepted as free covariates.
KNOWN_COVARIATES: Final = MappingProxyType({c.name: c for c in _COVARIATES})
CONSTANT_COVARIATES: Final = frozenset(c.name for c in _COVARIATES if c.constant)
