"""Sphinx configuration: the API reference built from tpopk's numpy-style docstrings."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a checkout builds its own source even where an installed tpopk is on the path
sys.path.insert(0, str(ROOT / "src"))

import importlib  # noqa: E402
import inspect  # noqa: E402
import pkgutil  # noqa: E402

from sphinx.pycode import ModuleAnalyzer  # noqa: E402

import tpopk  # noqa: E402

project = "tpopk"
author = "the tpopk authors"
copyright = "2026, the tpopk authors"
release = tpopk.__version__
version = release

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
exclude_patterns = ["_build", "_generated"]

# numpy convention only, as ruff's pydocstyle setting enforces
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# a class's "Attributes" section as a field list: its fields are also documented as members
napoleon_use_ivar = True
# every name in a module's __all__ is documented, constants included (without their values)
autodoc_default_options = {
    "members": True,
    "undoc-members": True,
    "member-order": "bysource",
    "no-value": True,
}
# signatures carry the types; repeating them in the description only adds noise
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# the re-exports in tpopk and its subpackages are documented once, where __all__ lists them
autodoc_inherit_docstrings = False

html_theme = "alabaster"
html_title = f"tpopk {release}"


# autodoc documents the functions and classes a package re-exports in __all__, but not its
# constants (their ``#:`` comment sits in the submodule that defines them): write those
# entries to _generated/<package>.rst, which api.rst includes after the package's automodule.
PUBLIC_PACKAGES = (
    "data",
    "datasets",
    "pk",
    "pd",
    "model",
    "inference",
    "simulate",
    "diagnostics",
    "report",
)
GENERATED = Path(__file__).parent / "_generated"


def _constant_doc(package: str, name: str) -> list[str]:
    """Return the ``#:`` comment of ``name`` in the package or the submodule defining it."""
    module = importlib.import_module(package)
    found = [package]
    if hasattr(module, "__path__"):
        found += [f"{package}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
    for where in found:
        docs = ModuleAnalyzer.for_module(where).find_attr_docs()
        if ("", name) in docs and getattr(importlib.import_module(where), name, None) is getattr(
            module, name
        ):
            return [line for line in docs["", name] if line]
    return []


def _write_constants() -> None:
    GENERATED.mkdir(exist_ok=True)
    for short in (*PUBLIC_PACKAGES, "parallel"):
        package = f"tpopk.{short}"
        module = importlib.import_module(package)
        lines: list[str] = []
        for name in module.__all__:
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isroutine(value) or inspect.ismodule(value):
                continue
            if ModuleAnalyzer.for_module(package).find_attr_docs().get(("", name)):
                continue  # defined in the package itself: autodoc has it
            doc = _constant_doc(package, name)
            lines += [f".. py:data:: {name}", f"   :module: {package}", ""]
            lines += [f"   {line}" for line in doc] + [""]
        (GENERATED / f"{package}.rst").write_text("\n".join(lines), encoding="utf-8")


_write_constants()
