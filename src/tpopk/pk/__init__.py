"""Exposure: closed-form linear compartmental PK with NONMEM dosing, NumPy or PyTensor.

>>> import numpy as np
>>> from tpopk.pk import PK_MODELS, concentration
>>> c = concentration(PK_MODELS["iv_1cmt"], {"cl": 2.0, "v": 10.0},
...                   [0.0], [100.0], [0.0], [0], [0.0], 5.0)
>>> round(float(c), 6)  # 100 / 10 * exp(-0.2 * 5)
3.678794
"""

from tpopk.pk.exposure import concentration
from tpopk.pk.models import PK_MODELS, Absorption, PKModel, StructuralParameter

__all__ = ["PK_MODELS", "Absorption", "PKModel", "StructuralParameter", "concentration"]
