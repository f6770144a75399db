"""Optional dependency groups: importing one that is missing says which pip extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

#: pip extra of each optional module
EXTRAS = {
    "diffusers": "gen",
    "transformers": "gen",
    "peft": "gen",
    "xatlas": "gen",
    "viser": "viewer",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the ``raysplat[...]`` extra."""


def require(module: str) -> ModuleType:
    """Imports ``module`` or raises :class:`MissingExtraError` naming its extra."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra = EXTRAS.get(module.split(".")[0], "all")
        raise MissingExtraError(f"{module} is not installed: pip install 'raysplat[{extra}]'") from e
