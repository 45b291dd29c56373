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
        lines = [
            f"{len(self.violations)} problem(s) in {source} ({ROW_CONVENTION}):",
            *(f"  {v}" for v in self.violations),
        ]
        super().__init__("\n".join(lines))
