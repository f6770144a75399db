"""Prints the requirements of ``pyproject.toml`` (core dependencies plus the named extras, one per
line) so the Makefile installs exactly what the package declares, without building it.

Usage: ``python scripts/deps.py all dev | xargs pip install``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib


def requirements(extras: list[str]) -> list[str]:
    """Core dependencies and those of ``extras`` (``raysplat[...]`` self-references expanded)."""
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    out, todo, seen = list(project["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in optional:
            sys.exit(f"unknown extra {extra!r} (known: {', '.join(optional)})")
        seen.add(extra)
        for req in optional[extra]:
            m = re.fullmatch(r"raysplat\[(.*)\]", req)
            if m:
                todo.extend(x.strip() for x in m.group(1).split(","))
            elif req not in out:
                out.append(req)
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1:])))
