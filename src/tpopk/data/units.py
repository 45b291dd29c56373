"""Declared units of an event dataset: a small explicit table, no unit algebra.

Units are declared per column (``TIME``, ``AMT``, ``WT``, any covariate) and per
observation type (``conc``, ``plt``...: the unit of ``DV`` and ``LLOQ`` on those
records). ``RATE`` is always ``AMT`` per ``TIME`` and ``II`` is in ``TIME`` units.
Nothing is converted: the table only lets validation reject what cannot be right (a
dose in ng/mL, a unit nobody knows, a µg/kg dose without body weight).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from tpopk.data.schema import DVID_CODES, OBSERVATION_TYPES
from tpopk.data.violations import Violation

#: Allowed units per physical quantity, spelled canonically (µ is U+00B5, the micro sign).
UNIT_TABLE: Final = MappingProxyType(
    {
        "time": ("h", "min", "d"),
        "amount": ("ng", "µg", "mg", "g", "nmol", "µmol", "mmol"),
        "amount_per_weight": ("µg/kg", "mg/kg"),
        "concentration": (
            "pg/mL",
            "ng/mL",
            "µg/L",
            "µg/mL",
            "mg/L",
            "nmol/L",
            "µmol/L",
        ),
        "cell_count": ("10^9/L", "10^3/µL"),
        "weight": ("kg",),
        "volume": ("L", "mL"),
        "clearance": ("L/h", "mL/min"),
        "relative": ("%", "1"),
    }
)

#: Other spellings people write, mapped to the canonical one (matched case-insensitively).
_ALIASES: Final = MappingProxyType(
    {
        "hr": "h",
        "hour": "h",
        "hours": "h",
        "day": "d",
        "days": "d",
        "minute": "min",
        "minutes": "min",
        "x10^9/l": "10^9/L",
        "10e9/l": "10^9/L",
        "k/µl": "10^3/µL",
        "nm": "nmol/L",
        "µm": "µmol/L",
    }
)

#: Mass or molar basis of amounts and concentrations: a dose in mg cannot predict nmol/L.
_MOLAR_UNITS: Final = frozenset({"nmol", "µmol", "mmol", "nmol/L", "µmol/L"})

#: Keys that name a column, and the quantity each must be.
_COLUMN_QUANTITIES: Final = MappingProxyType(
    {"TIME": ("time",), "AMT": ("amount", "amount_per_weight"), "WT": ("weight",)}
)

DEFAULT_UNITS: Final = MappingProxyType(
    {
        "TIME": "h",
        "AMT": "mg",
        "WT": "kg",
        **{name: t.default_unit for name, t in OBSERVATION_TYPES.items()},
    }
)


def canonical_unit(text: str) -> str | None:
    """Return the canonical spelling of a unit, or ``None`` if it is not in the table.

    Parameters
    ----------
    text
        Unit as written (``"ug/L"``, ``"mcg"``, ``"hr"``, ``"10^9/L"``...).
    """
    cleaned = text.strip().replace(" ", "").replace("\u03bc", "µ")  # Greek mu -> micro sign
    cleaned = cleaned.replace("mcg", "µg").replace("ug", "µg").replace("umol", "µmol")
    cleaned = cleaned.replace("uL", "µL").replace("ul", "µl").replace("uM", "µM")
    lowered = cleaned.lower()
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    for units in UNIT_TABLE.values():
        for unit in units:
            if unit.lower() == lowered:
                return unit
    return None


def quantity_of(unit: str) -> str:
    """Return the quantity (key of :data:`UNIT_TABLE`) of a canonical unit."""
    return next(q for q, units in UNIT_TABLE.items() if unit in units)


def is_standard_key(key: str) -> bool:
    """Whether a units key is TIME, AMT, WT or an observation type (not a covariate)."""
    return key in _COLUMN_QUANTITIES or key in OBSERVATION_TYPES


def is_molar(unit: str) -> bool:
    """Whether a canonical amount or concentration unit counts moles rather than mass."""
    return unit in _MOLAR_UNITS


def canonical_key(key: str) -> str:
    """Column keys upper-case, observation types by lower-case name (codes mapped).

    Other keys are upper-cased: :func:`resolve_units` treats them as covariate columns.
    """
    stripped = key.strip()
    if stripped.upper() in _COLUMN_QUANTITIES:
        return stripped.upper()
    if stripped.lower() in OBSERVATION_TYPES:
        return stripped.lower()
    if stripped.isdigit() and int(stripped) in DVID_CODES:
        return DVID_CODES[int(stripped)]
    return stripped.upper()


@dataclass(frozen=True)
class Units:
    """Units of one event dataset, by column (``TIME``, ``AMT``, ``WT``) and observation type.

    Parameters
    ----------
    items
        ``(key, canonical unit)`` pairs; build with :func:`resolve_units`.
    """

    items: tuple[tuple[str, str], ...]

    def __getitem__(self, key: str | int) -> str:
        """Return the unit of a column or observation type (``"AMT"``, ``"plt"``, ``2``)."""
        units = self.as_dict()
        response = str(key).strip().lower()  # a named response keeps its lower-case name
        return units[response] if response in units else units[canonical_key(str(key))]

    def as_dict(self) -> dict[str, str]:
        """Return a new ``{key: unit}`` dictionary."""
        return dict(self.items)

    @property
    def rate(self) -> str:
        """Unit of ``RATE``: amount per time (e.g. ``"mg/h"``)."""
        return f"{self['AMT']}/{self['TIME']}"

    @property
    def dose_per_weight(self) -> bool:
        """Whether doses are per kg of body weight (``AMT`` in µg/kg or mg/kg)."""
        return quantity_of(self["AMT"]) == "amount_per_weight"


def resolve_units(
    declared: Mapping[str, str] | None, responses: Iterable[str] = ()
) -> tuple[Units, list[Violation]]:
    """Merge declared units over the defaults and check each against the unit table.

    Parameters
    ----------
    declared
        ``{column or DVID: unit}``; keys are case-insensitive, DVIDs by name or code.
    responses
        Named responses of the data (DVIDs outside the known types, lower case): a key
        naming one is its unit (any unit of the table), not a covariate's.

    Returns
    -------
    units, violations
        Units with every known key filled (defaults where undeclared; invalid entries
        keep the default), and one violation per unusable declaration.
    """
    merged = dict(DEFAULT_UNITS)
    violations: list[Violation] = []
    named = frozenset(responses)
    for raw_key, raw_unit in (declared or {}).items():
        key = canonical_key(str(raw_key))
        if str(raw_key).strip().lower() in named:
            key = str(raw_key).strip().lower()
        where = f"units[{raw_key}]"
        if key in _COLUMN_QUANTITIES:
            allowed_quantities = _COLUMN_QUANTITIES[key]
        elif key in OBSERVATION_TYPES:
            allowed_quantities = (OBSERVATION_TYPES[key].quantity,)
        else:  # a covariate column: any known unit; validation checks the column exists
            allowed_quantities = tuple(UNIT_TABLE)
        unit = canonical_unit(str(raw_unit))
        allowed = _allowed(allowed_quantities)
        if unit is None:
            violations.append(
                Violation(
                    "unknown-unit", f"one of {', '.join(allowed)}", column=where, value=raw_unit
                )
            )
        elif unit not in allowed:
            violations.append(
                Violation(
                    "unit-quantity-mismatch",
                    f"a {' or '.join(allowed_quantities)} unit ({', '.join(allowed)}), "
                    f"not a {quantity_of(unit)} unit",
                    column=where,
                    value=raw_unit,
                )
            )
        else:
            merged[key] = unit
    return Units(tuple(merged.items())), violations


def _allowed(quantities: Iterable[str]) -> tuple[str, ...]:
    return tuple(u for q in quantities for u in UNIT_TABLE[q])
