"""The ``raysplat`` command line.

Each subcommand is one ``_add_<name>(subparsers)`` function registering its parser with
``set_defaults(func=<handler>)``; a handler takes the parsed ``argparse.Namespace`` and returns
the exit status. To add a command (``train``, ``render``, ...) write both and append the adder to
:data:`COMMANDS`. Handlers import their heavy modules lazily so ``raysplat --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _make_scene(args: argparse.Namespace) -> int:
    import time

    from raysplat.datasets.generate import make_scene

    t0 = time.perf_counter()
    out = make_scene(
        args.out,
        format=args.format,
        size=args.size,
        views=args.views,
        seed=args.seed,
        mesh=args.mesh,
        up=args.up,
        progress=not args.quiet,
        overwrite=args.force,
    )
    print(f"wrote a {args.format} scene to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def _add_make_scene(sub: argparse._SubParsersAction) -> None:
    from raysplat.datasets.generate import FORMATS

    p = sub.add_parser(
        "make-scene",
        help="render the procedural sample scene (or a mesh) in a dataset layout",
        description="Renders a deterministic textured scene and writes it exactly as a real "
        "dataset of the chosen format is laid out.",
    )
    p.add_argument("out", help="output directory (created; must be empty unless --force)")
    p.add_argument("--format", choices=FORMATS, default="blender", help="dataset layout (default: blender)")
    p.add_argument("--size", type=int, default=100, help="image width in pixels (default: 100)")
    p.add_argument(
        "--views",
        type=int,
        default=100,
        help="training views (blender/nerfstudio/colmap) or all views (llff)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (cameras, noise texture, points)")
    p.add_argument("--mesh", default=None, help="an OBJ / GLB / PLY mesh replacing the procedural objects")
    p.add_argument("--up", choices=("y", "z"), default="y", help="up axis of --mesh (default: y)")
    p.add_argument("--force", action="store_true", help="write into a non-empty output directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_make_scene)


#: subcommand registrars, in the order ``--help`` lists them
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_make_scene]


def build_parser() -> argparse.ArgumentParser:
    """The ``raysplat`` argument parser with every subcommand of :data:`COMMANDS`."""
    from raysplat import __version__

    parser = argparse.ArgumentParser(
        prog="raysplat", description="raysplat: neural rendering on CPU and GPU."
    )
    parser.add_argument("--version", action="version", version=f"raysplat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.
    Errors in the inputs (missing files, malformed datasets, bad values) print one line to
    stderr and return 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"raysplat {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
