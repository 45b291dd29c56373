"""Durations written with their unit in trial designs: ``"14 d"``, ``"8 weeks"``, ``"24 h"``.

A bare number in a trial file is ambiguous (hours? days?), so every duration carries
its unit and is stored in hours, the time unit of event data.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import BeforeValidator, PlainSerializer

#: Hours per unit, by every spelling accepted.
HOURS_PER: Final = {
    "h": 1.0,
    "hour": 1.0,
    "hours": 1.0,
    "d": 24.0,
    "day": 24.0,
    "days": 24.0,
    "week": 168.0,
    "weeks": 168.0,
}

_PATTERN: Final = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]+)\s*$")


def hours(text: object) -> float:
    """Parse a duration such as ``"14 d"`` into hours.

    Parameters
    ----------
    text
        A number followed by ``h``, ``d``/``day(s)`` or ``week(s)``.

    Returns
    -------
    float
        The duration in hours (≥ 0).

    Raises
    ------
    ValueError
        If the text is not a non-negative number with one of those units.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        raise ValueError(
            f"{text!r} has no unit; write e.g. '{text} d', '{text} weeks' or '{text} h'"
        )
    match = _PATTERN.match(str(text))
    if match is None or match.group(2).lower() not in HOURS_PER:
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit "
            f"({', '.join(sorted(set(HOURS_PER)))}), e.g. '14 d'"
        )
    return float(match.group(1)) * HOURS_PER[match.group(2).lower()]


def _as_text(value: float) -> str:
    return f"{value!r} h"


#: A pydantic field holding a duration in hours, read from (and written as) text with a unit.
Hours = Annotated[float, BeforeValidator(hours), PlainSerializer(_as_text, return_type=str)]
