"""Model cards and the PyMC models built from them."""

from tpopk.model.build import build_model
from tpopk.model.card import CardError, ModelCard, load_card
from tpopk.model.levels import population_variables
from tpopk.model.structural import concentration_factor

__all__ = [
    "CardError",
    "ModelCard",
    "build_model",
    "concentration_factor",
    "load_card",
    "population_variables",
]
