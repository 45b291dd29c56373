"""The base of tpopk's typed documents: model cards, trial designs, report and JSON outputs."""

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """An immutable pydantic model that refuses unknown keys (a typo is an error, not ignored)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
