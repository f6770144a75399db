"""Writing a generated texture: textured GLB (embedded PNG), OBJ + MTL + PNG, turntable GIF and
MP4, metrics.json. Everything goes to a staging directory first and is moved into place at
the end, so a failure leaves nothing half written."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from raysplat.mesh import rasterize_mesh, sample_texture
from raysplat.metrics import psnr, ssim
from raysplat.texgen.atlas import UVMesh, camera_ring
from raysplat.training import outputs

__all__ = ["check_out_dir", "render_views", "write_outputs"]

FILES = ("textured.glb", "textured.obj", "textured.mtl", "textured.png", "metrics.json")


def check_out_dir(out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Refuses (``FileExistsError``) a non-empty ``out_dir`` unless ``force``; creates nothing."""
    p = Path(out_dir)
    if p.exists() and not p.is_dir():
        raise FileExistsError(f"{p}: exists and is not a directory")
    if p.is_dir() and any(p.iterdir()) and not force:
        raise FileExistsError(f"{p}: output directory is not empty (use --force to write into it)")
    return p


@torch.no_grad()
def render_views(
    mesh: UVMesh,
    texture: torch.Tensor,
    c2w: torch.Tensor,
    K: torch.Tensor,
    size: int,
    background=(1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Albedo renders ``[N, size, size, 3]`` of the textured mesh."""
    bg = torch.tensor(background, dtype=torch.float32)
    out = []
    for i in range(c2w.shape[0]):
        r = rasterize_mesh(
            mesh.vertices, mesh.faces, c2w=c2w[i], K=K[i], width=size, height=size, attributes=mesh.uv
        )
        hit = (r.triangle_id >= 0)[..., None]
        out.append(torch.where(hit, sample_texture(texture, r.attributes), bg))
    return torch.stack(out)


def _write_obj(folder: Path, mesh: UVMesh) -> None:
    v = mesh.original_vertices.numpy()
    uv = mesh.uv.numpy()
    f = mesh.faces.numpy() + 1
    lines = ["# raysplat texgen", "mtllib textured.mtl", "usemtl material0"]
    lines += [f"v {x:.7g} {y:.7g} {z:.7g}" for x, y, z in v]
    lines += [f"vt {a:.7g} {b:.7g}" for a, b in uv]
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in f]
    (folder / "textured.obj").write_text("\n".join(lines) + "\n")
    (folder / "textured.mtl").write_text(
        "newmtl material0\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\nmap_Kd textured.png\n"
    )


def _write_glb(path: Path, mesh: UVMesh, texture: torch.Tensor) -> None:
    import trimesh
    from PIL import Image

    img = Image.fromarray(outputs.to_uint8(texture))
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=img, metallicFactor=0.0, roughnessFactor=1.0
    )
    visual = trimesh.visual.TextureVisuals(uv=mesh.uv.numpy().astype(np.float64), material=material)
    tm = trimesh.Trimesh(mesh.original_vertices.numpy(), mesh.faces.numpy(), visual=visual, process=False)
    tm.export(str(path), file_type="glb")


def write_outputs(
    result,
    mesh: UVMesh,
    out_dir: str | os.PathLike,
    reference: torch.Tensor | None = None,
    frames: int = 24,
    force: bool = False,
    extra: dict | None = None,
) -> dict:
    """Writes ``result`` (a :class:`~raysplat.texgen.TexGenResult`) to ``out_dir`` and returns the
    metrics. ``reference``: an optional ``[H, W, 3]`` ground-truth texture; then ``psnr`` /
    ``ssim`` compare renders of both from the sampler's views (else they are ``null``)."""
    from raysplat.texgen.quality import consistency_psnr, seam_energy

    out = check_out_dir(out_dir, force)
    cfg = result.config
    texture = result.texture.clamp(0, 1)
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    try:
        outputs.save_image(stage / "textured.png", texture)
        _write_glb(stage / "textured.glb", mesh, texture)
        _write_obj(stage, mesh)
        ms = None
        if frames > 0:
            size = max(128, cfg.image_size)
            c2w, K, _ = camera_ring(frames, (15.0,), cfg.fovy, size)
            t0 = time.perf_counter()
            frames_img = render_views(mesh, texture, c2w, K, size, cfg.background)
            ms = 1000 * (time.perf_counter() - t0) / frames
            outputs.save_video(stage / outputs.VIDEO_DIR / "turntable", list(frames_img), fps=12)
        p = s = None
        if reference is not None:
            ref_views = render_views(
                mesh, reference.float().clamp(0, 1), result.c2w, result.K, cfg.image_size, cfg.background
            )
            got = render_views(mesh, texture, result.c2w, result.K, cfg.image_size, cfg.background)
            p = psnr(got, ref_views)
            s = sum(ssim(g, r) for g, r in zip(got, ref_views, strict=True))
            s /= len(got)
        seams = seam_energy(texture, mesh, result.views, result.buffers)
        metrics = {
            "psnr": p,
            "ssim": s,
            "steps": cfg.steps,
            "train_seconds": result.seconds,
            "render_ms_per_frame": ms,
            "method": cfg.method,
            "views": cfg.views,
            "prompts": result.prompts,
            "negative_prompt": cfg.negative_prompt,
            "texture_size": cfg.texture_size,
            "image_size": cfg.image_size,
            "eta": cfg.eta,
            "coverage": float((result.texel_weight > 0).float().mean()),
            "seam_energy": seams["total"],
            "seam_energy_chart": seams["chart"],
            "seam_energy_view": seams["view"],
            "consistency_psnr": consistency_psnr(result.views, result.buffers, cfg.texture_size),
            "uv_source": "mesh" if mesh.had_uv else "xatlas",
            **result.info,
            **(extra or {}),
        }
        outputs.write_metrics(stage / outputs.METRICS, metrics)
        out.mkdir(parents=True, exist_ok=True)
        for item in sorted(stage.iterdir()):
            dest = out / item.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(item, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return metrics
