"""Exposure: closed-form linear compartmental PK with NONMEM dosing, NumPy or PyTensor.

>>> import numpy as np
>>> from tpopk.pk import PK_MODELS, concentration
>>> c = concentration(PK_MODELS["iv_1cmt"], {"cl": 2.0, "v": 10.0},
...                   [0.0], [100.0], [0.0], [0], [0.0], 5.0)
>>> round(float(c), 6)  # 100 / 10 * exp(-0.2 * 5)
3.678794

Doses name their compartment by NONMEM ``CMT`` (``dose_cmt=``), numbered per model in
:attr:`PKModel.compartments`:

>>> PK_MODELS["oral_2cmt"].describe_cmts()
'1 depot, 2 central, 3 peripheral'
>>> PK_MODELS["iv_2cmt"].describe_cmts()
'1 central, 2 peripheral'
"""

from tpopk.pk.exposure import concentration
from tpopk.pk.models import PK_MODELS, Absorption, PKModel, StructuralParameter

__all__ = ["PK_MODELS", "Absorption", "PKModel", "StructuralParameter", "concentration"]
