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
    dtype: torch.dtype = torch.float32,
) -> DiffusionPrior:
    """A prior from a CLI spec: ``"tiny"`` (the random tiny Stable Diffusion with its tiny depth
    ControlNet, written once to the temp directory) or a diffusers directory / hub id
    (``DIR/controlnet/`` or ``controlnet=PATH`` attaches a depth ControlNet), its networks in
    ``dtype``. A :class:`~raysplat.guidance.DiffusionPrior` instance is returned as is."""
    from raysplat import guidance

    if isinstance(spec, DiffusionPrior):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"prior must be 'tiny' or a diffusers Stable Diffusion directory, got {spec!r}")
    if spec == "tiny":
        d = Path(tempfile.gettempdir()) / "raysplat-tiny-sd-controlnet-v1-seed0"
        if not (d / "controlnet" / "config.json").is_file():
            guidance.tiny_stable_diffusion(d, seed=0, controlnet=True)
        spec = str(d)
    return guidance.StableDiffusionPrior.from_pretrained(
        spec, device=device, controlnet=controlnet, dtype=dtype
    )


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
    precision: str = "fp32",
) -> dict:
    """Textures the mesh file ``mesh`` from ``prompt`` and writes ``out_dir`` (see
    :mod:`raysplat.texgen.export`); returns the metrics. ``precision`` (``"fp32"``, ``"bf16"``,
    ``"fp16"``) is the dtype the prior's networks are loaded in (diffusers' ``torch_dtype``:
    half the memory and, on GPUs, the tensor cores; sampling, baking and the texture stay fp32);
    it applies to a prior given as a spec. Every input is checked before anything is generated or
    written (bad mesh, bad config, non-empty ``out_dir``, missing prior)."""
    from raysplat.training.config import check_device
    from raysplat.training.precision import check_precision
    from raysplat.training.progress import Progress

    device = check_device(device)
    dtype = check_precision(precision, device) or torch.float32
    if isinstance(prior, DiffusionPrior) and precision != "fp32":
        raise ValueError(
            f"precision {precision!r} applies to a prior loaded from a spec; load this one with "
            "StableDiffusionPrior.from_pretrained(..., dtype=...) instead"
        )
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
    model = load_prior(prior, device, controlnet, dtype)
    bar = Progress(cfg.steps * cfg.views, "texture", enabled=progress)
    try:
        result = generate_texture(model, uv_mesh, prompt, cfg, progress=bar)
    finally:
        bar.close()
    result.info["precision"] = precision
    return write_outputs(result, uv_mesh, out_dir, reference=ref, frames=frames, force=force)
