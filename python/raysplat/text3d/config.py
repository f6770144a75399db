"""Text-to-3D settings (:class:`Text3DConfig`): defaults follow threestudio's DreamFusion /
ProlificDreamer configs scaled to CPU (64 x 64 renders, a small hash grid)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from raysplat.gs.strategy import DensifyConfig
from raysplat.training.config import TrainingConfig, option

METHODS = ("sds", "vsd")
REPRESENTATIONS = ("nerf", "gs")
SAMPLERS = ("occgrid", "proposal")
BACKGROUNDS = ("learned", "random", "white", "black")
SHADINGS = ("albedo", "random")
#: VSD's ε_φ (:attr:`Text3DConfig.score`)
SCORES = ("auto", "rendered", "residual", "lora")

#: text-to-3D's densification defaults (``densify={}``): gsplat's logic on a short CPU schedule
#: (DreamGaussian-like: from step 100 every 100 steps, no opacity reset) and a 2D-gradient
#: threshold for the score-distillation loss, whose per-pixel gradients are O(1) (the
#: reparameterised loss is a sum over pixels), not O(1 / pixels) as 3DGS's photometric mean:
#: measured on RenderedMeshPrior SDS at the default 64 px, the Gaussians' mean NDC gradient
#: norms have quantiles 0.04 / 0.18 / 0.71 / 2.8 (10 / 50 / 90 / 99 %), so 1.0 grows roughly the
#: top 5 % (0.3 grew 4,000 Gaussians to 18,000 in 1,200 steps and lost 3 dB)
TEXT3D_DENSIFY = {
    "refine_start": 100,
    "refine_every": 100,
    "refine_stop": 100000,
    "reset_every": 0,
    "grow_grad2d": 1.0,
    "grow_scale3d": 0.02,
    "max_gaussians": 50000,
}


def _pair(name: str, v, lo=None, hi=None) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {v!r}") from None
    if not a <= b or (lo is not None and a < lo) or (hi is not None and b > hi):
        raise ValueError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {v!r}")
    return a, b


@dataclass
class Text3DConfig(TrainingConfig):
    """Score-distillation text-to-3D (SDS / VSD) of a NeRF or 3D Gaussians."""

    DEFAULT_STEPS: ClassVar[int] = 1000
    PRECISIONS: ClassVar[tuple[str, ...]] = ("fp32", "bf16", "fp16")

    prompt: str = option("", "the text prompt (analytic priors: a target name)")
    prior: str | None = option(
        None,
        "how to rebuild the prior on resume: 'tiny', 'mixture:NAME', 'mesh:PATH|sample' or a diffusers path",
    )
    method: str = option("sds", "'sds' (DreamFusion) or 'vsd' (ProlificDreamer)")
    representation: str = option("nerf", "'nerf' (hash grid, see `sampler`) or 'gs' (3D Gaussians)")
    sampler: str = option(
        "occgrid", "NeRF sample placement: 'occgrid' (nerfacc) or 'proposal' (Mip-NeRF 360)"
    )
    prop_samples: tuple[int, ...] = option((64,), "samples of each proposal level (sampler='proposal')")
    num_samples: int = option(32, "samples of the radiance field per ray (sampler='proposal')")
    guidance_scale: float | None = option(None, "CFG scale, diffusers convention (None: 100 SDS, 7.5 VSD)")
    cfg_convention: str = option("diffusers", "'diffusers' or 'threestudio' (its s = diffusers s - 1)")
    weighting: str = option("sds", "w(t): 'sds' (1 - alphā), 'uniform' or 'fantasia3d'")
    grad_clip: float | None = option(None, "clamp of the distillation gradient (None: off)")
    negative_prompt: str = option("", "negative prompt (replaces the unconditional one)")
    min_step_percent: float = option(0.02, "smallest t / T")
    max_step_percent: float = option(0.98, "largest t / T before annealing")
    anneal_step: int | None = option(5000, "step from which t <= anneal_max_step_percent T (None: never)")
    anneal_max_step_percent: float = option(0.5, "largest t / T after annealing")
    n_particles: int = option(1, "independent 3D models (VSD particles); one drawn uniformly per step")
    lambda_lora: float = option(1.0, "weight of the variational score's loss (VSD)")
    lora_lr: float = option(
        1e-3,
        "learning rate of the variational score (LoRA + camera MLP, the residual net, or the "
        "rendered score's mixture weights and std)",
    )
    lora_rank: int = option(4, "LoRA rank (diffusers priors)")
    camera_dropout: float = option(0.1, "probability of dropping the camera condition of ε_φ")
    score: str = option(
        "auto",
        "VSD's ε_φ: 'auto' (the prior's own, a LoRA for diffusers UNets, else 'rendered'), "
        "'rendered' (a mixture of renders of ε_φ's own 3D models), 'residual' (a small conv net), 'lora'",
    )
    score_components: int | None = option(None, "3D models of the 'rendered' ε_φ (None: n_particles)")
    score_lr_scale: float = option(
        3.0, "learning rates of the 'rendered' ε_φ's models over the particles' (it must track them)"
    )
    render_size: int = option(64, "training render width = height (pixels)")
    render_size_late: int | None = option(None, "render size from `render_size_step` on (None: unchanged)")
    render_size_step: int = option(5000, "step of the render-resolution change")
    eval_size: int = option(64, "evaluation / video render size")
    eval_views: int = option(8, "held-out views (scored against camera-aware priors)")
    camera_distance: tuple[float, float] = option((1.5, 2.0), "camera distance range from the origin")
    elevation_range: tuple[float, float] = option((-10.0, 45.0), "camera elevation range (degrees)")
    azimuth_range: tuple[float, float] = option((-180.0, 180.0), "camera azimuth range (degrees)")
    fovy_range: tuple[float, float] = option((40.0, 70.0), "vertical field of view range (degrees)")
    background: str = option("learned", "'learned' (MLP of the view direction), 'random', 'white' or 'black'")
    shading: str = option("albedo", "'albedo' or 'random' (albedo / lambertian / textureless, NeRF)")
    albedo_ratio: float = option(0.5, "probability of albedo shading with shading='random'")
    view_dependent_prompts: bool = option(True, "append ', front/side/back view' (off for analytic priors)")
    radius: float = option(1.0, "the scene box is [-radius, radius]^3")
    lr: float = option(1e-2, "learning rate of the hash grid (NeRF) / Gaussian colours (GS)")
    mlp_lr: float = option(1e-3, "learning rate of the MLPs and the background")
    n_levels: int = option(8, "hash-grid levels")
    log2_table: int = option(15, "log2 hash-table size per level")
    max_res: int = option(256, "finest hash-grid resolution")
    hidden: int = option(32, "MLP width")
    grid_resolution: int = option(32, "occupancy-grid resolution")
    density_blob: float = option(10.0, "initial density blob strength (Magic3D: s (1 - r / blob_radius))")
    blob_radius: float = option(0.5, "radius of the initial density blob")
    n_gaussians: int = option(4000, "initial number of Gaussians (GS)")
    densify: DensifyConfig | None = option(
        None,
        "GS adaptive density control (clone / split / prune, raysplat.gs.strategy): None = off; "
        "a dict of DensifyConfig fields over text3d's defaults, e.g. --set 'densify={}'",
    )
    lambda_sparsity: float = option(0.0, "weight of the mean rendered opacity")
    lambda_opaque: float = option(0.0, "weight of the binary entropy of the rendered opacity")
    lambda_orient: float = option(
        0.0,
        "weight of DreamFusion's orientation loss (NeRF; normals from central differences of the density)",
    )
    mesh_resolution: int = option(96, "marching-tetrahedra grid for the GLB export")
    mesh_threshold: float = option(10.0, "density iso-level of the exported mesh")

    def validate(self) -> None:
        super().validate()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.representation not in REPRESENTATIONS:
            raise ValueError(
                f"representation must be one of {', '.join(REPRESENTATIONS)}, got {self.representation!r}"
            )
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        from raysplat.nerf.trainer import _positive_ints

        self.prop_samples = _positive_ints("prop_samples", self.prop_samples)
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        if self.shading not in SHADINGS:
            raise ValueError(f"shading must be one of {', '.join(SHADINGS)}, got {self.shading!r}")
        if self.weighting not in ("sds", "uniform", "fantasia3d"):
            raise ValueError(f"weighting must be 'sds', 'uniform' or 'fantasia3d', got {self.weighting!r}")
        if self.cfg_convention not in ("diffusers", "threestudio"):
            raise ValueError(
                f"cfg_convention must be 'diffusers' or 'threestudio', got {self.cfg_convention!r}"
            )
        if self.n_particles < 1:
            raise ValueError(f"n_particles must be >= 1, got {self.n_particles}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        if self.score_components is not None and self.score_components < 1:
            raise ValueError(f"score_components must be >= 1, got {self.score_components}")
        if not self.score_lr_scale > 0:
            raise ValueError(f"score_lr_scale must be > 0, got {self.score_lr_scale}")
        for name in (
            "render_size",
            "eval_size",
            "eval_views",
            "n_gaussians",
            "mesh_resolution",
            "num_samples",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.render_size_late is not None and self.render_size_late < 1:
            raise ValueError(f"render_size_late must be >= 1, got {self.render_size_late}")
        if not 0 <= self.min_step_percent <= self.max_step_percent <= 1:
            raise ValueError("min_step_percent / max_step_percent must satisfy 0 <= min <= max <= 1")
        if not self.min_step_percent <= self.anneal_max_step_percent <= 1:
            raise ValueError("anneal_max_step_percent must lie in [min_step_percent, 1]")
        if not 0 <= self.camera_dropout <= 1 or not 0 <= self.albedo_ratio <= 1:
            raise ValueError("camera_dropout and albedo_ratio must lie in [0, 1]")
        if isinstance(self.densify, dict):
            self.densify = DensifyConfig.from_dict({**TEXT3D_DENSIFY, **self.densify})
        if self.densify is not None and not isinstance(self.densify, DensifyConfig):
            raise ValueError(f"densify must be None or a dict of DensifyConfig fields, got {self.densify!r}")
        if self.densify is not None and self.representation != "gs":
            raise ValueError("densify applies to representation='gs' only (NeRF has no Gaussians)")
        if self.densify is not None and self.precision == "fp16":
            raise ValueError(
                "precision 'fp16' with densify: fp16's loss scaling would scale the 2-D gradient "
                "statistics densification thresholds; use 'bf16' (no loss scaling) or 'fp32'"
            )
        self.camera_distance = _pair("camera_distance", self.camera_distance, 1e-3)
        self.elevation_range = _pair("elevation_range", self.elevation_range, -90, 90)
        self.azimuth_range = _pair("azimuth_range", self.azimuth_range, -360, 360)
        self.fovy_range = _pair("fovy_range", self.fovy_range, 1, 179)
        if not self.radius > 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")
