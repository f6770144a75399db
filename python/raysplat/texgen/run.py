"""End to end: mesh file + prompt + prior -> output directory (the ``raysplat texture`` flow)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from raysplat.guidance.base import DiffusionPrior
from raysplat.texgen.atlas import load_mesh
from raysplat.texgen.export import check_out_dir, write_outputs
from raysplat.texgen.sampler import TexGenConfig, generate_texture

__all__ = ["load_prior", "texture_mesh"]


def load_prior(
    spec: str | DiffusionPrior,
    device: str | torch.device = "cpu",
    controlnet: str | os.PathLike | None = None,
) -> DiffusionPrior:
    """A prior from a CLI spec: ``"tiny"`` (the random tiny Stable Diffusion with its tiny depth
    ControlNet, written once to the temp directory) or a diffusers directory / hub id
    (``DIR/controlnet/`` or ``controlnet=PATH`` attaches a depth ControlNet). A
    :class:`~raysplat.guidance.DiffusionPrior` instance is returned as is."""
    from raysplat import guidance

    if isinstance(spec, DiffusionPrior):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"prior must be 'tiny' or a diffusers Stable Diffusion directory, got {spec!r}")
    if spec == "tiny":
        d = Path(tempfile.gettempdir()) / "raysplat-tiny-sd-controlnet-v1-seed0"
        if not (d / "controlnet" / "config.json").is_file():
            guidance.tiny_stable_diffusion(d, seed=0, controlnet=True)
        return guidance.StableDiffusionPrior.from_pretrained(d, device=device, controlnet=controlnet)
    return guidance.StableDiffusionPrior.from_pretrained(spec, device=device, controlnet=controlnet)


def texture_mesh(
    mesh: str | os.PathLike,
    prompt: str,
    prior: str | DiffusionPrior,
    out_dir: str | os.PathLike,
    config: TexGenConfig | None = None,
    reference: str | os.PathLike | torch.Tensor | None = None,
    frames: int = 24,
    force: bool = False,
    device: str = "cpu",
    controlnet: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Textures the mesh file ``mesh`` from ``prompt`` and writes ``out_dir`` (see
    :mod:`raysplat.texgen.export`); returns the metrics. Every input is checked before anything
    is generated or written (bad mesh, bad config, non-empty ``out_dir``, missing prior)."""
    from raysplat.training.config import check_device
    from raysplat.training.progress import Progress

    device = check_device(device)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: a text prompt is required")
    cfg = (config or TexGenConfig()).validate()
    uv_mesh = load_mesh(mesh, texture_size=cfg.texture_size)
    ref = None
    if reference is not None:
        if isinstance(reference, torch.Tensor):
            ref = reference
        else:
            import numpy as np
            from PIL import Image

            if not Path(reference).is_file():
                raise ValueError(f"reference {str(reference)!r} does not exist")
            ref = torch.from_numpy(np.asarray(Image.open(reference).convert("RGB"), np.float32) / 255.0)
    check_out_dir(out_dir, force)
    model = load_prior(prior, device, controlnet)
    bar = Progress(cfg.steps * cfg.views, "texture", enabled=progress)
    try:
        result = generate_texture(model, uv_mesh, prompt, cfg, progress=bar)
    finally:
        bar.close()
    return write_outputs(result, uv_mesh, out_dir, reference=ref, frames=frames, force=force)
