"""Model cards and the PyMC models built from them."""

from tpopk.model.build import build_model, concentration_factor
from tpopk.model.card import CardError, ModelCard, load_card

__all__ = ["CardError", "ModelCard", "build_model", "concentration_factor", "load_card"]
