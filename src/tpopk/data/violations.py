"""A problem found in an event dataset, and the error that carries all of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tpopk.errors import TpopkError

#: How rows are numbered in messages: as lines of the CSV file, header = row 1.
ROW_CONVENTION = "rows are numbered as lines of the CSV file, header = row 1"


@dataclass(frozen=True)
class Violation:
    """One broken rule in an event dataset.

    Parameters
    ----------
    rule
        Short identifier of the rule (e.g. ``"negative-amt"``), stable for programs.
    expected
        What the rule expects, in words.
    row
        Row as a line of the CSV file (header = row 1; for a DataFrame, the row its
        CSV export would have), or ``None`` when the problem concerns the whole file.
    column
        Upper-case column name (or ``"units[KEY]"`` for a declared unit), if any.
    value
        The offending value as found, if any.
    """

    rule: str
    expected: str
    row: int | None = None
    column: str | None = None
    value: str | None = None

    def __str__(self) -> str:
        """Return the one-line message: where, what was found, what was expected."""
        where = "file" if self.row is None else f"row {self.row}"
        if self.column is not None:
            where += f", column {self.column}"
        found = "" if self.value is None else f"found {self.value!r}; "
        return f"{where}: {found}expected {self.expected} [{self.rule}]"


class EventDataError(TpopkError):
    """An event dataset broke one or more rules; ``violations`` lists every one.

    Parameters
    ----------
    violations
        Every problem found, in row order.
    source
        Name of the dataset (file path or ``"DataFrame"``) for the message.
    """

    def __init__(self, violations: Sequence[Violation], source: str = "event data") -> None:
        self.violations = list(violations)
        self.source = source
        header = f"{len(self.violations)} problem(s) in {source} ({ROW_CONVENTION})"
        if len(self.violations) <= LISTED_IN_FULL:
            lines = [f"{header}:", *(f"  {v}" for v in self.violations)]
        else:
            lines = [f"{header}, by rule (the first {PER_RULE} of each):"]
            for rule, found in _by_rule(self.violations).items():
                lines.append(f"  [{rule}] {len(found)} problem(s)")
                lines += [f"    {v}" for v in found[:PER_RULE]]
                if len(found) > PER_RULE:
                    lines.append(f"    ... and {len(found) - PER_RULE} more")
        super().__init__("\n".join(lines))


#: Up to this many problems are listed one per line; beyond, grouped by rule and capped,
#: so one systematic error in a million-row file reads as one rule, not a million lines.
LISTED_IN_FULL = 30
#: Problems listed per rule in a grouped message.
PER_RULE = 5


def _by_rule(violations: Sequence[Violation]) -> dict[str, list[Violation]]:
    grouped: dict[str, list[Violation]] = {}
    for violation in violations:
        grouped.setdefault(violation.rule, []).append(violation)
    return grouped
