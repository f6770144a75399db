"""Regenerates the README's benchmark tables from the benches' JSON results.

Each bench writes its results with ``--json`` (the command line, date and machine included)::

    .venv/bin/python benches/sampling.py --json benches/results/sampling.json
    .venv/bin/python benches/splat.py --json benches/results/splat.json
    .venv/bin/python benches/knn.py --json benches/results/knn.json
    .venv/bin/python benches/projection.py --json benches/results/projection.json
    .venv/bin/python scripts/readme_tables.py          # rewrites the tables in README.md

The README holds each table between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``,
preceded by the exact command that produced it. ``--check`` exits 1 when the README differs
from what the JSON files give (``tests/test_readme.py`` runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "benches" / "results"
sys.path.insert(0, str(ROOT / "benches"))

from harness import format_knn_row, format_row, format_target, header_line  # noqa: E402

#: table name -> case-column width of the bench's printout
WIDTHS = {"sampling": 30, "splat": 24, "projection": 30}


def _timing_table(name: str, doc: dict) -> list[str]:
    width = WIDTHS[name]
    lines = [doc["title"], "", header_line(width)]
    lines += [format_row(r["case"], r["impl"], r, width) for r in doc["rows"]]
    emitted = doc.get("samples_emitted") or {}
    targets = doc.get("targets") or []
    if emitted or targets:
        lines.append("")
    lines += [f"{case}: {n:,} samples emitted" for case, n in emitted.items()]
    lines += [format_target(t) for t in targets]
    return lines


def _knn_table(doc: dict) -> list[str]:
    lines = [doc["title"], f"{'N':>10} {'raysplat [s]':>13} {'cKDTree [s]':>12} {'speed-up':>9}"]
    return lines + [format_knn_row(r) for r in doc["rows"]]


def render(name: str) -> str:
    """The README block for bench ``name`` (command, date, machine, then the printout)."""
    doc = json.loads((RESULTS / f"{name}.json").read_text())
    lines = _knn_table(doc) if name == "knn" else _timing_table(name, doc)
    return f"`{doc['command']}` ({doc['date']}, {doc['machine']}):\n\n```\n" + "\n".join(lines) + "\n```\n"


def rewrite(text: str) -> str:
    """``text`` with every ``<!-- bench:NAME -->`` block regenerated."""

    def block(m: re.Match) -> str:
        return f"{m.group(1)}\n{render(m.group(2))}{m.group(3)}"

    return re.sub(r"(<!-- bench:(\w+) -->)\n.*?(<!-- /bench:\2 -->)", block, text, flags=re.S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = ap.parse_args()
    text = README.read_text()
    new = rewrite(text)
    if args.check:
        if new != text:
            sys.exit("README.md's bench tables differ from benches/results/*.json (run readme_tables.py)")
        return
    README.write_text(new)
    print(f"rewrote {README}")


if __name__ == "__main__":
    main()
