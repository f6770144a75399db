"""Text-to-texture for meshes: TexGen's multi-view sampling and resampling (Huo et al., ECCV 2024).

TexGen released no code; this is our design, built from the paper's description (project page
and abstract, ``research/algorithms.md`` §6). Where the paper is silent the choice is ours and is
listed here; ``benches/texgen.py`` measures it against two baselines.

Texture space (:mod:`raysplat.texgen.atlas`, :mod:`raysplat.bake`)
    * UV atlas: the mesh's own UVs when present and inside [0, 1], else an xatlas unwrap
      (vertices split at the seams; ``vmapping`` keeps the input vertex of each).
    * Per view, :func:`raysplat.rasterize_mesh` gives UV, face normal, depth, triangle id and
      visibility buffers. Views are a ring around the unit-sphere-normalised mesh: ``views``
      azimuths evenly spaced from the front (+z), elevations cycling through ``elevations``
      (default +20°, −10°), field of view 40°. Prompt suffixes ", front view" / ", side view" /
      ", back view" by azimuth (front within 45°, back beyond 135°), off for analytic priors.
    * Bake: bilinear splat (adjoint of bilinear sampling), weights ``visible · max(0, cos θ)^p``
      normalised per texel, ``p`` linear from 0 to 6 over the steps (SyncMVD's schedule: early
      steps blend all views evenly, late steps trust the most frontal view). Uncovered texels are
      filled by dilation (mean of filled 8-neighbours, ring by ring) over the whole atlas.

Sampler (:mod:`raysplat.texgen.sampler`), per DDIM step ``t`` (η configurable, default 0; T
steps evenly spaced over the 1000 training timesteps). Initial latents (``noise``): one Gaussian
noise texture in UV space rendered (nearest texel) into every view's latent grid, background
latents independent, so views that see the same surface point start from the same noise
(SyncMVD's initialisation; ``noise="view"`` draws every view independently, and is what the
independent baseline uses). Views are processed in azimuth order from the front.
    1. **AGVS** (attention-guided view sampling): views are denoised in order 0..N-1. For view
       ``i``: ``(ε_u, ε_y)`` from the prior (negative prompt / view prompt; depth ControlNet
       image when the prior ``accepts_control``; cameras as ``c2w=`` / ``K=``). When the prior
       is a diffusers UNet, its self-attention shares keys / values with the views already
       denoised at this step (:mod:`raysplat.texgen.attention`: every ``attn1``, output
       ``(1−λ)·self + λ·extended``, λ = ``kv_share`` = 0.5); a prior that defines its own
       ``shared_views(bank)`` context (e.g. ``TextureMixturePrior``) shares through it instead.
       Then the partial texture
       ``Û_t^{i−1}`` (views 0..i−1 baked) guides view ``i``: it is rendered into the view, encoded
       (the view's own x̂₀ fills pixels the texture does not cover yet), turned into the noise it
       implies, ``ε_tex = (z_t − sqrt(ᾱ_t) z_tex) / sqrt(1 − ᾱ_t)``, and mixed in by the
       multi-conditioned CFG below with weight ``view_guidance`` (0.75) on the covered pixels
       only (mask average-pooled to the latent grid). The result's x̂₀ is decoded and baked into
       ``Û_t^i``.
    2. **T²GR** (text-and-texture-guided resampling): after all views, each view's noise is
       re-estimated: when views are shared, the prior is called again for every view with the
       complete bank of the step (``reestimate=True``: view ``i`` now shares the information of
       *all* the other views, the later ones included, where AGVS could only see the earlier
       ones; one more prior call a view), and guided by the complete texture ``Û_t = Û_t^N``:
       ``ε̃ = ε_u + w_y (ε_y − ε_u) + w_tex · m ⊙ (ε_tex − ε_u)`` (``w_y = guidance_scale`` 7.5,
       ``w_tex = texture_guidance`` 0.5, ``m`` the view's pixels covered by ``Û_t``;
       research/algorithms.md §6.2's hypothesis). ``ε̃`` takes the DDIM step to ``t−1``.
       ``reestimate=False`` reuses AGVS's ``ε_u``, ``ε_y`` (no extra call) and changes the
       texture term only.
    Because x̂₀ is affine in ε, the texture term moves x̂₀ towards the texture's render on the
    covered pixels by the fraction ``w_tex`` (exactly so when ``ε_u = ε_y``). ``w_tex = 1`` would
    replace the prior's re-estimate by the texture on every covered pixel, so that the first
    view, which AGVS shows no other view, keeps whatever it chose alone; 0.5 lets the
    re-estimate, informed by every view, move it.

    After the last step the final view images are baked (exponent 6) and holes filled.

Measured (``benches/texgen.py``, README): on a camera-aware prior with three exact answers
(``TextureMixturePrior``, whose ``shared_views`` is its counterpart of shared self-attention: a
view's posterior over the textures adds λ times the evidence of the shared views), TexGen lands
on one texture in every view on every seed, with the lowest seam energy and the highest
cross-view consistency; without the re-estimate, or without view sharing, or with either
baseline, views settle on different textures.

Baselines in the same module (``method=``): ``"independent"`` (each view sampled alone with
text CFG, baked once at the end: per-view generate-then-bake) and ``"sequential"`` (AGVS only:
views in sequence guided by the partial texture, no resampling; inpainting-style).

Outputs (:mod:`raysplat.texgen.export`): ``textured.glb`` (embedded PNG), ``textured.obj`` +
``.mtl`` + ``.png``, turntable GIF + MP4, ``metrics.json``. CLI: ``raysplat texture``.
"""

from raysplat.texgen.atlas import (
    UVMesh,
    ViewBuffers,
    camera_ring,
    chart_mask,
    load_mesh,
    unwrap,
    view_buffers,
)
from raysplat.texgen.attention import KVBank, SharedSelfAttnProcessor, shared_attention
from raysplat.texgen.sampler import (
    METHODS,
    TexGenConfig,
    TexGenResult,
    ddim_step,
    ddim_timesteps,
    generate_texture,
    multi_cfg,
    view_suffix,
)

__all__ = [
    "METHODS",
    "KVBank",
    "SharedSelfAttnProcessor",
    "TexGenConfig",
    "TexGenResult",
    "UVMesh",
    "ViewBuffers",
    "camera_ring",
    "chart_mask",
    "ddim_step",
    "ddim_timesteps",
    "generate_texture",
    "load_mesh",
    "multi_cfg",
    "shared_attention",
    "unwrap",
    "view_buffers",
    "view_suffix",
]
