"""The TexGen sampler and its two baselines (see :mod:`raysplat.texgen` for the design)."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from raysplat.bake import bake, cosine_exponent, fill_holes, render_texture
from raysplat.guidance.base import DiffusionPrior
from raysplat.mesh import sample_texture
from raysplat.texgen.atlas import UVMesh, ViewBuffers, camera_ring, view_buffers
from raysplat.texgen.attention import KVBank, share_views, supports_view_sharing

__all__ = [
    "METHODS",
    "TexGenConfig",
    "TexGenResult",
    "ddim_step",
    "ddim_timesteps",
    "generate_texture",
    "multi_cfg",
    "view_suffix",
]

#: ``texgen`` (AGVS + T²GR), ``sequential`` (AGVS only: views in sequence, partial-texture
#: guidance, no resampling), ``independent`` (per-view generation, baked once at the end)
METHODS = ("texgen", "sequential", "independent")


def ddim_timesteps(steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """``steps`` descending training timesteps, evenly spaced from ``T - 1`` to 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps == 1:
        return [num_train_timesteps - 1]
    return [round((num_train_timesteps - 1) * (1 - k / (steps - 1))) for k in range(steps)]


def ddim_step(
    z_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_t: float,
    alpha_prev: float,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step (Song et al. 2021) from ᾱ_t to ᾱ_prev: returns ``(z_prev, x̂_0)``::

    x̂_0 = (z_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t)
    σ   = η sqrt((1 - ᾱ_prev) / (1 - ᾱ_t)) sqrt(1 - ᾱ_t / ᾱ_prev)
    z_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1 - ᾱ_prev - σ²) ε + σ noise
    """
    x0 = (z_t - math.sqrt(1 - alpha_t) * eps) / math.sqrt(alpha_t)
    sigma = 0.0
    if eta > 0 and alpha_prev < 1:
        sigma = (
            eta * math.sqrt((1 - alpha_prev) / (1 - alpha_t)) * math.sqrt(max(0.0, 1 - alpha_t / alpha_prev))
        )
    z = math.sqrt(alpha_prev) * x0 + math.sqrt(max(0.0, 1 - alpha_prev - sigma**2)) * eps
    if sigma > 0:
        if noise is None:
            raise ValueError("noise is required when eta > 0")
        z = z + sigma * noise
    return z, x0


def multi_cfg(
    eps_u: torch.Tensor,
    eps_y: torch.Tensor,
    eps_tex: torch.Tensor | None,
    w_y: float,
    w_tex: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Text-and-texture classifier-free guidance ``ε_u + w_y (ε_y - ε_u) + w_tex m (ε_tex - ε_u)``
    (``m`` the texture's coverage mask, 1 if ``None``). ``w_tex = 0`` is ordinary CFG; all
    weights 0 give ``ε_u``."""
    out = eps_u + w_y * (eps_y - eps_u)
    if eps_tex is not None and w_tex != 0:
        d = eps_tex - eps_u
        out = out + w_tex * (d if mask is None else mask * d)
    return out


def view_suffix(azimuth_deg: float) -> str:
    """Front within 45° of the front (+z), back beyond 135°, else side (threestudio's rule)."""
    a = (azimuth_deg + 180.0) % 360.0 - 180.0
    return ", front view" if abs(a) < 45 else (", back view" if abs(a) > 135 else ", side view")


@dataclass
class TexGenConfig:
    """Settings of :func:`generate_texture` (defaults: CPU-friendly with the tiny prior)."""

    method: str = "texgen"
    views: int = 6
    elevations: tuple[float, ...] = (20.0, -10.0)
    azimuth_offset: float = 0.0
    fovy: float = 40.0
    image_size: int = 64
    texture_size: int = 256
    steps: int = 20
    eta: float = 0.0
    guidance_scale: float = 7.5
    view_guidance: float = 0.75
    texture_guidance: float = 0.5
    kv_share: float = 0.5
    reestimate: bool = True
    exponent_start: float = 0.0
    exponent_end: float = 6.0
    noise: str = "auto"
    negative_prompt: str = ""
    view_prompts: bool = True
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 0

    def validate(self) -> TexGenConfig:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("views", "image_size", "texture_size", "steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.texture_size & (self.texture_size - 1):
            raise ValueError(f"texture_size must be a power of two (mip-mapping), got {self.texture_size}")
        if self.texture_size > 8192 or self.image_size > 4096:
            raise ValueError("texture_size must be <= 8192 and image_size <= 4096")
        if self.noise not in ("auto", "uv", "view"):
            raise ValueError(f"noise must be 'auto', 'uv' or 'view', got {self.noise!r}")
        if not self.elevations:
            raise ValueError("elevations must not be empty")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if not 0.0 <= self.kv_share <= 1.0:
            raise ValueError(f"kv_share must be in [0, 1], got {self.kv_share}")
        if not 0.0 < self.fovy < 170.0:
            raise ValueError(f"fovy must be in (0, 170) degrees, got {self.fovy}")
        for name in ("guidance_scale", "view_guidance", "texture_guidance", "exponent_start", "exponent_end"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
        if len(self.background) != 3 or not all(0 <= b <= 1 for b in self.background):
            raise ValueError(f"background must be 3 values in [0, 1], got {self.background}")
        return self


@dataclass
class TexGenResult:
    """What :func:`generate_texture` returns."""

    texture: torch.Tensor  # [T, T, 3] in [0, 1], holes filled
    texel_weight: torch.Tensor  # [T, T] total bake weight (0: no view saw the texel)
    views: torch.Tensor  # [N, 3, S, S] the final view images
    buffers: ViewBuffers
    c2w: torch.Tensor
    K: torch.Tensor
    azimuths: torch.Tensor
    prompts: list[str]
    seconds: float
    config: TexGenConfig
    info: dict = field(default_factory=dict)


def _latent_scale(prior: DiffusionPrior) -> int:
    return int(getattr(prior, "vae_scale", 1))


def _pool(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``[N, 1, S, S]`` -> latent resolution (area average)."""
    return x if scale == 1 else F.avg_pool2d(x, scale)


class _Sampler:
    def __init__(self, prior: DiffusionPrior, mesh: UVMesh, prompt: str, cfg: TexGenConfig, progress=None):
        self.prior, self.mesh, self.cfg, self.progress = prior, mesh, cfg, progress
        dev = prior.device
        self.device = dev
        S = cfg.image_size
        self.scale = _latent_scale(prior)
        if S % self.scale:
            raise ValueError(
                f"image_size must be a multiple of the prior's latent scale {self.scale}, got {S}"
            )
        self.c2w, self.K, self.azim = camera_ring(
            cfg.views, tuple(cfg.elevations), cfg.fovy, S, azimuth_offset=cfg.azimuth_offset
        )
        self.buf = view_buffers(mesh, self.c2w, self.K, S)
        use_suffix = cfg.view_prompts and not prior.named_prompts
        self.prompts = [prompt + (view_suffix(float(a)) if use_suffix else "") for a in self.azim]
        with torch.no_grad():
            self.cond = prior.embed_prompts(self.prompts)
            self.uncond = prior.embed_prompts([cfg.negative_prompt])
        self.control = self.buf.control().to(dev) if prior.accepts_control else None
        self.bg = torch.tensor(cfg.background, dtype=torch.float32).view(1, 3, 1, 1)
        self.vis = self.buf.visible.float()[:, None]  # [N, 1, S, S]
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.T = prior.num_train_timesteps
        self.ac = prior.alphas_cumprod.detach().cpu().double()
        self.bank = None
        if cfg.method != "independent" and cfg.kv_share > 0 and supports_view_sharing(prior):
            self.bank = KVBank(cfg.kv_share)

    # ------------------------------------------------------------------ model calls

    def _eps(self, z: torch.Tensor, t: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ε_u, ε_y)`` of view ``i`` (one batched call)."""
        z2 = z.expand(2, *z.shape[1:]).to(self.device)
        cond = torch.cat([self.uncond, self.cond[i : i + 1]]).to(self.device)
        kw = {"c2w": self.c2w[i : i + 1].expand(2, 4, 4), "K": self.K[i : i + 1].expand(2, 3, 3)}
        if self.control is not None:
            kw["control"] = self.control[i : i + 1].expand(2, -1, -1, -1)
        tt = torch.full((2,), t, dtype=torch.long, device=self.device)
        with torch.no_grad():
            e = self.prior.predict_noise(z2, tt, cond, **kw).float().cpu()
        return e[:1], e[1:]

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.prior.decode(z.to(self.device)).float().cpu().clamp(0, 1)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.prior.encode(x.clamp(0, 1).to(self.device)).float().cpu()

    # ------------------------------------------------------------------ texture terms

    def _coverage(self, texel_weight: torch.Tensor, i: int) -> torch.Tensor:
        """``[1, 1, S, S]`` pixels of view i whose texels some baked view already covers."""
        seen = render_texture((texel_weight > 0).float()[..., None], self.buf.uv[i])[..., 0]
        return ((seen > 0.999) & self.buf.visible[i]).float()[None, None]

    def _eps_tex(self, z, t, texture, mask, x_own, i):
        """Texture-implied noise: the render of ``texture`` into view i (its own estimate
        ``x_own`` where the texture has no value), encoded, turned into ε at ``z``."""
        render = render_texture(texture, self.buf.uv[i]).permute(2, 0, 1)[None]
        img = mask * render + (1 - mask) * x_own
        z_tex = self._encode(img)
        a = float(self.ac[t])
        return (z - math.sqrt(a) * z_tex) / math.sqrt(1 - a)

    # ------------------------------------------------------------------ the loop

    def run(self) -> TexGenResult:
        cfg = self.cfg
        t0 = time.perf_counter()
        n, S = cfg.views, cfg.image_size
        with torch.no_grad():
            shape = self.prior.encode(self.bg.expand(1, 3, S, S).to(self.device).contiguous()).shape[1:]
        z = self._initial_noise(n, shape)
        steps = ddim_timesteps(cfg.steps, self.T)
        stats = {"agvs_coverage": [], "t2gr_coverage": []}
        ctx = share_views(self.prior, self.bank) if self.bank is not None else contextlib.nullcontext()
        with ctx as shared:
            for k, t in enumerate(steps):
                a_t = float(self.ac[t])
                a_prev = float(self.ac[steps[k + 1]]) if k + 1 < len(steps) else 1.0
                p = cosine_exponent(k, cfg.steps, cfg.exponent_start, cfg.exponent_end)
                if self.bank is not None:
                    self.bank.clear()
                num = torch.zeros(cfg.texture_size, cfg.texture_size, 3)
                den = torch.zeros(cfg.texture_size, cfg.texture_size)
                eps_u, eps_y, eps_view, x_view = [], [], [], []
                for i in range(n):
                    zi = z[i : i + 1]
                    eu, ey = self._eps(zi, t, i)
                    eps = multi_cfg(eu, ey, None, cfg.guidance_scale, 0.0)
                    x_img = self._decode((zi - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t))
                    if cfg.method != "independent" and i > 0 and cfg.view_guidance > 0:
                        m = self._coverage(den, i)
                        stats["agvs_coverage"].append(float(m.sum() / self.vis[i].sum().clamp(min=1)))
                        partial = num / den.clamp(min=1e-12)[..., None]
                        e_tex = self._eps_tex(zi, t, partial, m, x_img, i)
                        m_lat = _pool(m, self.scale)
                        eps = multi_cfg(eu, ey, e_tex, cfg.guidance_scale, cfg.view_guidance, m_lat)
                        x_img = self._decode((zi - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t))
                    eps_u.append(eu)
                    eps_y.append(ey)
                    eps_view.append(eps)
                    x_view.append(x_img)
                    if cfg.method != "independent":
                        tex_i, tw_i = self._bake_one(x_img, i, p)
                        num += tex_i * tw_i[..., None]
                        den += tw_i
                    if self.progress is not None:
                        self.progress.update(1, t=t)
                eps_final = torch.cat(eps_view)
                if cfg.method == "texgen" and cfg.reestimate and self.bank is not None:
                    eps_u, eps_y = self._reestimate(z, t)
                    pairs = zip(eps_u, eps_y, strict=True)
                    eps_final = torch.cat(
                        [multi_cfg(eu, ey, None, cfg.guidance_scale, 0.0) for eu, ey in pairs]
                    )
                if cfg.method == "texgen" and cfg.texture_guidance > 0:
                    full = num / den.clamp(min=1e-12)[..., None]
                    new = []
                    for i in range(n):
                        m = self._coverage(den, i)
                        stats["t2gr_coverage"].append(float(m.sum() / self.vis[i].sum().clamp(min=1)))
                        e_tex = self._eps_tex(z[i : i + 1], t, full, m, x_view[i], i)
                        new.append(
                            multi_cfg(
                                eps_u[i],
                                eps_y[i],
                                e_tex,
                                cfg.guidance_scale,
                                cfg.texture_guidance,
                                _pool(m, self.scale),
                            )
                        )
                    eps_final = torch.cat(new)
                noise = torch.randn(z.shape, generator=self.gen) if cfg.eta > 0 else None
                z, _ = ddim_step(z, eps_final, a_t, a_prev, cfg.eta, noise)
        images = self._decode(z)
        colors = images.permute(0, 2, 3, 1)
        tex, tw = bake(colors, self.buf.uv, self.buf.weights(cfg.exponent_end), cfg.texture_size)
        filled, _ = fill_holes(tex, tw)
        info = {
            "agvs_coverage_mean": _mean(stats["agvs_coverage"]),
            "t2gr_coverage_mean": _mean(stats["t2gr_coverage"]),
            "kv_shared_layers": len(shared or ()),
            "latent_scale": self.scale,
            "noise": self.noise_mode,
        }
        return TexGenResult(
            texture=filled.clamp(0, 1),
            texel_weight=tw,
            views=images,
            buffers=self.buf,
            c2w=self.c2w,
            K=self.K,
            azimuths=self.azim,
            prompts=self.prompts,
            seconds=time.perf_counter() - t0,
            config=cfg,
            info=info,
        )

    def _reestimate(self, z: torch.Tensor, t: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """T²GR's re-estimate of every view's ``(ε_u, ε_y)`` with the complete bank of the step:
        view ``i`` now shares the information of all the other views (before and after it), not
        only of the earlier ones; nothing new is recorded."""
        bank = self.bank
        bank.recording = False
        eps_u, eps_y = [], []
        try:
            for i in range(self.cfg.views):
                bank.exclude = i
                eu, ey = self._eps(z[i : i + 1], t, i)
                eps_u.append(eu)
                eps_y.append(ey)
        finally:
            bank.recording, bank.exclude = True, None
        return eps_u, eps_y

    def _initial_noise(self, n: int, shape) -> torch.Tensor:
        """Independent Gaussian latents per view (``noise="view"``), or one Gaussian noise
        texture in UV space rendered into every view's latent grid (nearest texel; background
        latents independent), so that views seeing the same surface point start from the same
        noise (``"uv"``, SyncMVD's initialisation). ``"auto"``: ``"view"`` for the independent
        baseline, ``"uv"`` otherwise."""
        z = torch.randn(n, *shape, generator=self.gen)
        mode = (
            self.cfg.noise
            if self.cfg.noise != "auto"
            else ("view" if self.cfg.method == "independent" else "uv")
        )
        self.noise_mode = mode
        if mode == "view":
            return z
        h = shape[-1]
        K = self.K.clone()
        K[:, :2] /= self.scale
        lat = view_buffers(self.mesh, self.c2w, K, h)
        size = self.cfg.texture_size
        tex = torch.randn(size, size, shape[0], generator=self.gen)
        for i in range(n):
            vals = render_texture_nearest(tex, lat.uv[i]).permute(2, 0, 1)
            z[i] = torch.where(lat.visible[i][None], vals, z[i])
        return z

    def _bake_one(self, image: torch.Tensor, i: int, exponent: float):
        colors = image[0].permute(1, 2, 0)
        w = self.buf.weights(exponent)[i]
        return bake(colors, self.buf.uv[i], w, self.cfg.texture_size)


def render_texture_nearest(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Nearest-texel lookup (keeps a Gaussian noise texture's unit variance)."""
    return sample_texture(texture, uv, mode="nearest")


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def generate_texture(
    prior: DiffusionPrior,
    mesh: UVMesh,
    prompt: str,
    config: TexGenConfig | None = None,
    progress=None,
    **overrides,
) -> TexGenResult:
    """Textures ``mesh`` from ``prompt`` with ``prior`` (see :mod:`raysplat.texgen`).

    ``config`` (or keyword ``overrides`` of :class:`TexGenConfig` fields) picks the method
    (``"texgen"``, ``"sequential"``, ``"independent"``), views, steps, η, guidance weights...
    ``progress``: anything with ``update(n, **postfix)`` (a :class:`raysplat.training.progress.
    Progress`), advanced once per view per step."""
    if not isinstance(prior, DiffusionPrior):
        raise TypeError(f"prior must be a DiffusionPrior, got {type(prior).__name__}")
    if not isinstance(mesh, UVMesh):
        raise TypeError(f"mesh must be a UVMesh (raysplat.texgen.load_mesh), got {type(mesh).__name__}")
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    cfg = config or TexGenConfig()
    if overrides:
        cfg = TexGenConfig(**{**cfg.__dict__, **overrides})
    cfg.validate()
    return _Sampler(prior, mesh, prompt, cfg, progress).run()
