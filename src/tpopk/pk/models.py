"""The PK model registry: which closed form a model card names, and its parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PK_MODELS", "Absorption", "PKModel", "StructuralParameter"]

Absorption = Literal["iv", "first_order", "dual", "transit"]
"""How a dose reaches the central compartment."""


@dataclass(frozen=True)
class StructuralParameter:
    """One structural PK parameter.

    Attributes
    ----------
    name : str
        Key in the ``params`` mapping passed to :func:`tpopk.pk.concentration`.
    unit : str
        Unit the closed forms assume (time in h, volume in L, amount as dosed).
    description : str
        What it is, in the field's words.
    default : float or None
        Value used when the caller omits the parameter; ``None`` means required.
    """

    name: str
    unit: str
    description: str
    default: float | None = None


@dataclass(frozen=True)
class PKModel:
    """A linear compartmental PK model with a closed-form solution.

    Attributes
    ----------
    name : str
        Registry key, as written in model cards (e.g. ``"oral_2cmt"``).
    n_compartments : int
        Disposition compartments (1-3), elimination from the central one.
    absorption : {"iv", "first_order", "dual", "transit"}
        Route of the dose to the central compartment.
    parameters : tuple of StructuralParameter
        Parameters in a stable order.
    dose_cmt : int
        NONMEM ``CMT`` whose doses take the bioavailability ``f`` and lag ``tlag``
        (NONMEM ``F1``, ``ALAG1``): 1, the depot of extravascular models and the central
        compartment of IV models.
    obs_cmt : int
        NONMEM ``CMT`` of the central compartment (2 for extravascular models, 1 for IV).
    compartments : tuple of str
        Name of each NONMEM ``CMT``, ``compartments[cmt - 1]``; every one takes doses.
        ``"depot"`` (CMT 1 of extravascular models) is the absorption route: the
        transit chain's entry for transit models, the ``ka1``/``ka2`` depot for dual
        absorption. ``"central"``, ``"peripheral"`` (and ``"peripheral_2"``) follow as
        in NONMEM ADVAN1-4, 11 and 12.
    """

    name: str
    n_compartments: int
    absorption: Absorption
    parameters: tuple[StructuralParameter, ...]
    dose_cmt: int
    obs_cmt: int
    compartments: tuple[str, ...] = ()

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of :attr:`parameters`, in order."""
        return tuple(spec.name for spec in self.parameters)

    @property
    def dose_cmts(self) -> tuple[int, ...]:
        """The NONMEM ``CMT`` numbers a dose record may name, in order."""
        return tuple(range(1, len(self.compartments) + 1))

    def describe_cmts(self) -> str:
        """Return the numbering in words, e.g. ``"1 depot, 2 central, 3 peripheral"``."""
        return ", ".join(
            f"{cmt} {name}" for cmt, name in zip(self.dose_cmts, self.compartments, strict=True)
        )


_DISPOSITION = (
    StructuralParameter(
        "cl", "L/h", "clearance from the central compartment (apparent, CL/F, if oral)"
    ),
    StructuralParameter("v", "L", "central volume of distribution"),
    StructuralParameter("q", "L/h", "intercompartmental clearance, central-first peripheral"),
    StructuralParameter("v2", "L", "volume of the first peripheral compartment"),
    StructuralParameter("q3", "L/h", "intercompartmental clearance, central-second peripheral"),
    StructuralParameter("v3", "L", "volume of the second peripheral compartment"),
)
_BIOAVAILABILITY = (
    StructuralParameter("f", "-", "bioavailable fraction of each dose", default=1.0),
    StructuralParameter("tlag", "h", "absorption lag time (ALAG)", default=0.0),
)
_ABSORPTION: dict[Absorption, tuple[StructuralParameter, ...]] = {
    "iv": (),
    "first_order": (StructuralParameter("ka", "1/h", "first-order absorption rate constant"),),
    "dual": (
        StructuralParameter("ka1", "1/h", "absorption rate constant from the lag until mtime"),
        StructuralParameter("ka2", "1/h", "absorption rate constant after mtime"),
        StructuralParameter("mtime", "h", "time after the dose at which ka1 switches to ka2"),
    ),
    "transit": (
        StructuralParameter("ka", "1/h", "rate constant from the absorption compartment"),
        StructuralParameter("mtt", "h", "mean transit time, ktr = (n_transit + 1) / mtt"),
        StructuralParameter("n_transit", "-", "number of transit compartments (an integer, fixed)"),
    ),
}
_PREFIX: dict[Absorption, str] = {
    "iv": "iv",
    "first_order": "oral",
    "dual": "oral_dual",
    "transit": "transit",
}


def _build_registry() -> dict[str, PKModel]:
    registry = {}
    for absorption, prefix in _PREFIX.items():
        for n_compartments in (1, 2, 3):
            name = f"{prefix}_{n_compartments}cmt"
            central = 1 if absorption == "iv" else 2
            peripherals = ("peripheral", "peripheral_2")[: n_compartments - 1]
            depot = () if absorption == "iv" else ("depot",)
            registry[name] = PKModel(
                name=name,
                n_compartments=n_compartments,
                absorption=absorption,
                parameters=(
                    _ABSORPTION[absorption] + _DISPOSITION[: 2 * n_compartments] + _BIOAVAILABILITY
                ),
                dose_cmt=1,
                obs_cmt=central,
                compartments=(*depot, "central", *peripherals),
            )
    return registry


PK_MODELS: dict[str, PKModel] = _build_registry()
"""Every closed-form model, keyed by the name a model card uses (``iv_1cmt`` ...)."""
