"""Writes tests/data/splat_golden.npz: projection and SH colours of fixed scenes computed by
gsplat's own pure-torch implementation (``gsplat/cuda/_torch_impl.py``, CPU, float64).

gsplat is not a dependency: point ``--gsplat`` at an unpacked gsplat wheel (pure Python) or
have it importable, e.g.::

    pip download gsplat==1.5.3 --no-deps -d /tmp/g && python -m zipfile -e /tmp/g/*.whl /tmp/g/pkg
    .venv/bin/python scripts/make_splat_golden.py --gsplat /tmp/g/pkg

``tests/test_splat.py`` compares raysplat's Rust kernels and torch twin with these values.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "splat_golden.npz"
WIDTH, HEIGHT = 64, 48
EPS2D, NEAR, FAR = 0.3, 0.01, 1e10


def _viewmat(angle: float, dist: float, lift: float) -> torch.Tensor:
    """World-to-camera (OpenCV) of a camera on a circle around the origin, looking at it."""
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]], dtype=torch.float64)
    vm = torch.eye(4, dtype=torch.float64)
    vm[:3, :3] = rot
    vm[:3, 3] = torch.tensor([0.0, lift, dist], dtype=torch.float64)
    return vm


def scene(seed: int, n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.8
    means[: n // 8, 2] -= 6.0  # some behind the cameras (culled by the near plane)
    means[n // 8 : n // 4, 0] += 4.0  # some off to the side (partly outside the image)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.exp(torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.7 - 2.5)
    scales[n // 4 : n // 4 + 4, 1] = 1e-4  # needle-thin ones: the eps2d blur matters
    viewmats = torch.stack([_viewmat(0.0, 4.0, 0.0), _viewmat(0.7, 3.0, 0.4)])
    ks = torch.tensor(
        [[[60.0, 0, 32.0], [0, 62.0, 24.0], [0, 0, 1]], [[45.0, 0, 30.5], [0, 45.0, 25.5], [0, 0, 1]]],
        dtype=torch.float64,
    )
    coeffs = torch.randn(n, 16, 3, generator=g, dtype=torch.float64) * 0.5
    return {
        "means": means,
        "quats": quats,
        "scales": scales,
        "viewmats": viewmats,
        "Ks": ks,
        "coeffs": coeffs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gsplat", help="folder holding the gsplat package (an unpacked wheel)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if args.gsplat:
        sys.path.insert(0, args.gsplat)
    import gsplat
    from gsplat.cuda._torch_impl import (
        _fully_fused_projection,
        _quat_scale_to_covar_preci,
        _spherical_harmonics,
    )

    arrays: dict[str, np.ndarray] = {"gsplat_version": np.array(gsplat.__version__)}
    for name, seed, n in (("a", 0, 64), ("b", 1, 128)):
        s = scene(seed, n)
        covars, _ = _quat_scale_to_covar_preci(
            s["quats"], s["scales"], compute_covar=True, compute_preci=False
        )
        radii, means2d, depths, conics, comps = _fully_fused_projection(
            s["means"],
            covars,
            s["viewmats"],
            s["Ks"],
            WIDTH,
            HEIGHT,
            EPS2D,
            NEAR,
            FAR,
            calc_compensations=True,
        )
        campos = torch.linalg.inv(s["viewmats"])[:, :3, 3]
        dirs = s["means"][None] - campos[:, None]
        for key, v in s.items():
            arrays[f"{name}_{key}"] = v.numpy()
        arrays[f"{name}_radii"] = radii.numpy()
        arrays[f"{name}_means2d"] = means2d.numpy()
        arrays[f"{name}_depths"] = depths.numpy()
        arrays[f"{name}_conics"] = conics.numpy()
        arrays[f"{name}_compensations"] = comps.numpy()
        for degree in range(4):
            coeffs = s["coeffs"][None].expand(dirs.shape[0], -1, -1, -1)
            arrays[f"{name}_sh{degree}"] = _spherical_harmonics(degree, dirs, coeffs).numpy()
    arrays["size"] = np.array([WIDTH, HEIGHT])
    arrays["eps2d_near_far"] = np.array([EPS2D, NEAR, FAR])
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} (gsplat {gsplat.__version__})")


if __name__ == "__main__":
    main()
