"""The public API is ``tpopk.__all__`` and the ``__all__`` of the modules docs/api.rst documents.

Each list must be true (every name resolves) and complete (every public name a module
defines is in it), and every subpackage must be documented, so the API reference, the
``__all__`` lists and the package cannot drift apart.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest

import tpopk

ROOT = Path(__file__).parents[1]
API_PAGE = ROOT / "docs" / "api.rst"


def documented_modules() -> list[str]:
    """Modules with an ``automodule`` directive in the API reference."""
    text = API_PAGE.read_text(encoding="utf-8")
    return re.findall(r"^\.\. automodule:: (\S+)$", text, flags=re.M)


# the packages whose __all__ is the public API (tpopk.pd.drug_effect is documented as a
# module listed in tpopk.pd.__all__)
PUBLIC = [m for m in documented_modules() if m != "tpopk.pd.drug_effect"]


def test_every_subpackage_is_documented() -> None:
    subpackages = {f"tpopk.{m.name}" for m in pkgutil.iter_modules(tpopk.__path__) if m.ispkg} - {
        "tpopk.models"
    }  # the model library's data files, not code
    assert subpackages <= set(PUBLIC), f"not in docs/api.rst: {subpackages - set(PUBLIC)}"


def defined_in(value: object, package: str) -> bool:
    """Whether ``value`` (a class or function) comes from ``package`` or its submodules."""
    home = getattr(value, "__module__", None) or ""
    return home == package or home.startswith(f"{package}.")


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_true_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    listed = getattr(module, "__all__", None)
    assert listed is not None, f"{name} has no __all__"
    assert len(listed) == len(set(listed)), f"{name}.__all__ repeats a name"
    missing = [n for n in listed if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what {name} does not have: {missing}"
    defined_here = [
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and not isinstance(value, types.ModuleType)
        and defined_in(value, name)
    ]
    unlisted = sorted(set(defined_here) - set(listed))
    assert not unlisted, f"{name} defines public names missing from its __all__: {unlisted}"
