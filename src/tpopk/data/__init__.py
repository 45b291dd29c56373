"""NONMEM-style event data: read, validate, expand doses, pack arrays, write.

>>> from tpopk.data import read_events
>>> events = read_events("study.csv", units={"AMT": "mg", "conc": "ng/mL"})  # doctest: +SKIP
>>> arrays = events.subject_arrays(dvid="conc")  # doctest: +SKIP
"""

from tpopk.data.events import EventTable, SubjectArrays, expand_doses, read_events, write_events
from tpopk.data.schema import AGONISTS, DVID_CODES, OBSERVATION_TYPES, Evid
from tpopk.data.units import UNIT_TABLE, Units
from tpopk.data.violations import EventDataError, Violation

__all__ = [
    "AGONISTS",
    "DVID_CODES",
    "OBSERVATION_TYPES",
    "UNIT_TABLE",
    "EventDataError",
    "EventTable",
    "Evid",
    "SubjectArrays",
    "Units",
    "Violation",
    "expand_doses",
    "read_events",
    "write_events",
]
