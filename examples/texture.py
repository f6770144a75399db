"""Texture a mesh from a prompt with TexGen (multi-view sampling + resampling).

    python examples/texture.py --out runs/texture_example            # the tiny random prior
    python examples/texture.py --mesh my.obj --prior /path/to/sd-2-1-base --prompt "a wooden chair"

Without --mesh it textures an icosphere. The tiny prior is random (its textures are noise); the
path, the files and the metrics are the real ones. Writes textured.glb, textured.obj/.mtl/.png,
video/turntable.gif/.mp4 and metrics.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from raysplat.texgen import TexGenConfig
from raysplat.texgen.run import texture_mesh


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mesh", default=None, help="OBJ / GLB / PLY (default: an icosphere)")
    p.add_argument("--prompt", default="a blue and white porcelain vase")
    p.add_argument("--prior", default="tiny")
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--texture-size", type=int, default=128)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny prior)")
    p.add_argument("--out", default="runs/texture_example")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    mesh = args.mesh
    if mesh is None:
        import trimesh

        mesh = str(Path(tempfile.mkdtemp()) / "icosphere.obj")
        trimesh.creation.icosphere(2).export(mesh)
    cfg = TexGenConfig(views=args.views, steps=args.steps, texture_size=args.texture_size)
    m = texture_mesh(mesh, args.prompt, args.prior, args.out, config=cfg, frames=args.frames, force=True)
    print(
        f"{m['method']}: {m['views']} views x {m['steps']} steps in {m['train_seconds']:.1f} s, coverage "
        f"{m['coverage']:.2f}, seam energy {m['seam_energy']:.4f} -> {args.out}"
    )


if __name__ == "__main__":
    main()
