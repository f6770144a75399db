"""Analytic priors whose optimal denoiser is closed form: convergence and diversity of score
distillation become measurable on a CPU.

Both live in pixel space, ``z = 2x - 1`` (``x`` in [0, 1]), with Stable Diffusion's ᾱ_t.
If the data are a mixture ``z_0 ~ Σ_k π_k N(m_k, τ² I)``, then given component k the noisy
``z_t = a z_0 + s ε`` (``a = sqrt(ᾱ_t)``, ``s = sqrt(1 - ᾱ_t)``) is ``N(a m_k, (a²τ² + s²) I)``
and ``Cov(ε, z_t) = s I``, so the MMSE noise prediction (Tweedie / Gaussian conditioning) is::

    ε*(z_t, t) = Σ_k r_k(z_t) · s (z_t - a m_k) / (a²τ² + s²),
    r_k ∝ π_k exp(-‖z_t - a m_k‖² / (2 (a²τ² + s²)))       (posterior responsibilities)

:class:`GaussianMixturePrior` uses it with named target images (prompts are names; the
unconditional prompt ``""`` mixes all names equally, so classifier-free guidance is meaningful);
:class:`RenderedMeshPrior` with one component per view: the render of a textured mesh from the
view's camera (``τ = 0`` by default: a Dirac at the render).
"""

from __future__ import annotations

import contextlib
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from raysplat.guidance.base import DiffusionPrior, check_images, scaled_linear_alphas_cumprod

__all__ = ["GaussianMixturePrior", "RenderedMeshPrior", "procedural_targets"]


def _mixture_logits(z_t, t, alphas_cumprod, means, std):
    """Per-component log-likelihoods ``-‖z_t - a m_k‖² / (2 (a²τ² + s²))`` ``[B, N]`` (float64;
    ``means [N, C, H, W]``), up to a per-row constant."""
    a2 = alphas_cumprod.to(z_t.device)[t.long()].to(torch.float64)
    var = a2 * std**2 + (1 - a2)  # [B]
    x = z_t.to(torch.float64).flatten(1)
    m = means.to(torch.float64).flatten(1)
    d2 = (
        (x * x).sum(1, keepdim=True) - 2 * a2.sqrt()[:, None] * (x @ m.T) + a2[:, None] * (m * m).sum(1)[None]
    )
    return -d2 / (2 * var[:, None])


def _mixture_eps(z_t, t, alphas_cumprod, means, log_weights, std, logits=None):
    """ε* of a Gaussian mixture; ``means [N, C, H, W]``, ``log_weights [B, N]``; ``logits``:
    :func:`_mixture_logits` of the same inputs when the caller already has them."""
    a2 = alphas_cumprod.to(z_t.device)[t.long()].to(torch.float64)
    a, s = a2.sqrt(), (1 - a2).sqrt()
    var = a2 * std**2 + (1 - a2)  # [B]
    x = z_t.to(torch.float64).flatten(1)
    m = means.to(torch.float64).flatten(1)
    if logits is None:
        logits = _mixture_logits(z_t, t, alphas_cumprod, means, std)
    r = torch.softmax(log_weights.to(torch.float64) + logits, dim=1)  # [B, N]
    mean = r @ m  # [B, D]
    eps = (s / var)[:, None] * (x - a[:, None] * mean)
    return eps.reshape(z_t.shape).to(z_t.dtype)


def _disc(size, cx, cy, r):
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return ((xx / size - cx) ** 2 + (yy / size - cy) ** 2 <= r * r).float()


def _paint(mask, color, bg=(1.0, 1.0, 1.0)):
    c, b = torch.tensor(color)[:, None, None], torch.tensor(bg)[:, None, None]
    return mask[None] * c + (1 - mask[None]) * b


def procedural_targets(size: int = 32) -> dict[str, torch.Tensor]:
    """The built-in named targets ``name -> [K, 3, size, size]`` in [0, 1] (one image per mode).

    * ``"shapes"``: 4 modes — a red disc, a green square, a blue diamond, an orange ring (white ground);
    * ``"colors"``: 4 modes — flat red, green, blue and yellow images;
    * ``"disc"``, ``"square"``, ``"checker"``: one mode each.
    """
    if size < 4:
        raise ValueError(f"size must be >= 4, got {size}")
    yy, xx = torch.meshgrid(
        (torch.arange(size) + 0.5) / size, (torch.arange(size) + 0.5) / size, indexing="ij"
    )
    disc = _disc(size, 0.5, 0.5, 0.3)
    square = ((xx - 0.5).abs() <= 0.28).float() * ((yy - 0.5).abs() <= 0.28).float()
    diamond = ((xx - 0.5).abs() + (yy - 0.5).abs() <= 0.35).float()
    ring = disc - _disc(size, 0.5, 0.5, 0.17)
    checker = (((xx * 4).floor() + (yy * 4).floor()) % 2).float()
    shapes = torch.stack(
        [
            _paint(disc, (0.9, 0.1, 0.1)),
            _paint(square, (0.1, 0.7, 0.2)),
            _paint(diamond, (0.15, 0.2, 0.9)),
            _paint(ring, (1.0, 0.55, 0.0)),
        ]
    )
    flat = torch.ones(1, size, size)
    colors = torch.stack(
        [_paint(flat[0], c) for c in ((0.9, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.9), (0.95, 0.9, 0.1))]
    )
    return {
        "shapes": shapes,
        "colors": colors,
        "disc": shapes[:1],
        "square": shapes[1:2],
        "checker": _paint(checker, (0.1, 0.1, 0.1))[None],
    }


class GaussianMixturePrior(DiffusionPrior):
    """An analytic pixel-space prior: each prompt names a mixture of isotropic Gaussians
    (std ``std`` in ``z = 2x - 1`` units) around target images, with equal weights.

    Args:
        targets: ``name -> [K, 3, H, W]`` (or ``[3, H, W]``) images in [0, 1]; default: the
            built-in :func:`procedural_targets` at ``size``.
        std: τ, the spread of each mode (0 gives Dirac modes).
        alphas_cumprod: ᾱ_t (default: Stable Diffusion's scaled-linear 1000-step schedule).

    ``embed_prompts`` gives ``[B, P]`` weights over the P names (one-hot; ``""`` uniform).
    ``predict_noise`` works at any resolution: targets are resized (area) to ``z_t``'s size.
    """

    named_prompts = True

    def __init__(
        self,
        targets: dict[str, torch.Tensor] | None = None,
        std: float = 0.05,
        alphas_cumprod: torch.Tensor | None = None,
        size: int = 32,
    ):
        if targets is None:
            targets = procedural_targets(size)
        if not isinstance(targets, dict) or not targets:
            raise ValueError("targets must be a non-empty dict name -> images")
        if not (std >= 0 and math.isfinite(std)):
            raise ValueError(f"std must be finite and >= 0, got {std}")
        self.names = list(targets)
        means, owner = [], []
        shape = None
        for i, (name, imgs) in enumerate(targets.items()):
            if not isinstance(name, str) or not name:
                raise ValueError("targets keys must be non-empty strings")
            imgs = imgs[None] if imgs.ndim == 3 else imgs
            check_images(f"targets[{name!r}]", imgs)
            if shape is not None and imgs.shape[1:] != shape:
                raise ValueError(f"targets[{name!r}] must have the shape of the others {tuple(shape)}")
            shape = imgs.shape[1:]
            means.append(imgs.float())
            owner += [i] * imgs.shape[0]
        self.targets = torch.cat(means)  # [N, 3, H, W] in [0, 1]
        self.owner = torch.tensor(owner)
        counts = torch.bincount(self.owner, minlength=len(self.names)).float()
        self.log_pi = -counts.log()[self.owner]  # equal weights within a name
        self.std = float(std)
        self.alphas_cumprod = (
            scaled_linear_alphas_cumprod()
            if alphas_cumprod is None
            else torch.as_tensor(alphas_cumprod).float()
        )
        self._resized: dict[tuple[int, int], torch.Tensor] = {}

    def modes(self, name: str, size: int | None = None) -> torch.Tensor:
        """The target images ``[K, 3, size, size]`` of ``name``."""
        i = self._index(name)
        return (
            self._means(size or self.targets.shape[-1], size or self.targets.shape[-2])[self.owner == i]
            .add(1)
            .div(2)
        )

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(
                f"prompt {name!r} is not a target of this prior (known: {', '.join(self.names)})"
            )
        return self.names.index(name)

    def _means(self, h: int, w: int) -> torch.Tensor:
        if (h, w) not in self._resized:
            x = self.targets
            if x.shape[-2:] != (h, w):
                x = F.interpolate(x, size=(h, w), mode="area" if h <= x.shape[-2] else "bilinear")
            self._resized[(h, w)] = 2 * x - 1
        return self._resized[(h, w)]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        check_images("images", images)
        return 2 * images - 1

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z + 1) / 2

    def embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings")
        out = torch.zeros(len(prompts), len(self.names))
        for b, p in enumerate(prompts):
            if p == "":
                out[b] = 1.0 / len(self.names)
            else:
                out[b, self._index(p)] = 1.0
        return out.to(self.alphas_cumprod.device)

    def predict_noise(self, z_t, t, cond, c2w=None, K=None) -> torch.Tensor:
        if z_t.ndim != 4 or z_t.shape[1] != 3:
            raise ValueError(f"z_t must have shape [B, 3, H, W], got {tuple(z_t.shape)}")
        if cond.shape != (z_t.shape[0], len(self.names)):
            raise ValueError(
                f"cond must have shape [{z_t.shape[0]}, {len(self.names)}], got {tuple(cond.shape)}"
            )
        t = torch.as_tensor(t).long().reshape(-1).expand(z_t.shape[0])
        means = self._means(*z_t.shape[-2:]).to(z_t.device)
        w = cond.to(z_t.device, torch.float64)[:, self.owner.to(z_t.device)]
        logw = torch.where(w > 0, w.clamp(min=1e-300).log(), torch.full_like(w, -math.inf)) + self.log_pi.to(
            z_t.device, torch.float64
        )
        return _mixture_eps(z_t, t, self.alphas_cumprod, means, logw, self.std)


def _y_up(parts, radius: float, up: str):
    from raysplat.datasets.generate import Part

    R = np.eye(3) if up == "y" else np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # z-up -> y-up
    verts = np.concatenate([p.vertices for p in parts]) @ R.T
    lo, hi = verts.min(0), verts.max(0)
    centre = (lo + hi) / 2
    scale = radius / max(float(np.linalg.norm(verts - centre, axis=1).max()), 1e-12)
    out = [
        Part(p.name, (p.vertices @ R.T - centre) * scale, p.faces, p.uv, p.normals @ R.T, p.colors, p.texture)
        for p in parts
    ]
    return out, R


class _CameraAwarePixelPrior(DiffusionPrior):
    """Shared by the camera-aware analytic priors: pixel space scaled to [-1, 1] and a single
    (constant) conditioning row per prompt; subclasses define ``predict_noise``."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        check_images("images", images)
        return 2 * images - 1

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z + 1) / 2

    def embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings")
        return torch.ones(len(prompts), 1, device=self.alphas_cumprod.device)


class RenderedMeshPrior(_CameraAwarePixelPrior):
    """A camera-aware analytic prior: for a view ``(c2w, K)`` its data are the render of a
    textured mesh from that camera (Lambertian with a fixed light, 2x2 supersampled, through
    :func:`raysplat.rasterize_mesh`) composited over ``background``, and its ε is the closed-form
    denoiser towards that render (a Gaussian of std ``std`` around it; a Dirac by default).

    Args:
        mesh: ``"sample"`` (the sample scene's four textured objects), a path to any mesh trimesh
            reads, or a list of :class:`raysplat.datasets.generate.Part`.
        radius: the mesh is centred and scaled into a sphere of this radius (world up +y).
        background: RGB in [0, 1] behind the mesh.
        up: the up axis of the input mesh (``"z"`` for the sample scene and loaded meshes,
            which :func:`raysplat.datasets.generate.load_mesh_part` turns z-up).

    Prompts are ignored beyond their presence (one concept; ``""`` is the same, so CFG is the
    identity on this prior).
    """

    camera_aware = True
    named_prompts = True

    def __init__(
        self,
        mesh: str | os.PathLike | list = "sample",
        radius: float = 0.5,
        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
        std: float = 0.0,
        up: str = "z",
        alphas_cumprod: torch.Tensor | None = None,
    ):
        from raysplat.datasets import generate

        if up not in ("y", "z"):
            raise ValueError(f"up must be 'y' or 'z', got {up!r}")
        if not radius > 0:
            raise ValueError(f"radius must be > 0, got {radius}")
        if isinstance(mesh, str) and mesh == "sample":
            parts = generate.procedural_objects(0)
        elif isinstance(mesh, (str, os.PathLike)):
            parts = [generate.load_mesh_part(mesh)]
        elif isinstance(mesh, (list, tuple)) and mesh and all(isinstance(p, generate.Part) for p in mesh):
            parts = list(mesh)
        else:
            raise TypeError("mesh must be 'sample', a mesh file path or a list of Part")
        self.parts, R = _y_up(parts, radius, up)
        self.renderer = generate.Renderer(self.parts)
        self.renderer.light = torch.tensor(R @ generate.LIGHT, dtype=torch.float32)
        self.background = torch.tensor(background, dtype=torch.float32)
        if self.background.shape != (3,) or not bool(((self.background >= 0) & (self.background <= 1)).all()):
            raise ValueError(f"background must be 3 values in [0, 1], got {background}")
        self.std = float(std)
        self.alphas_cumprod = (
            scaled_linear_alphas_cumprod()
            if alphas_cumprod is None
            else torch.as_tensor(alphas_cumprod).float()
        )

    @torch.no_grad()
    def render(self, c2w: torch.Tensor, K: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """The target images ``[B, H, W, 3]`` in [0, 1] for OpenGL ``c2w [B, 4, 4]`` (or
        ``[B, 3, 4]``), ``K [B, 3, 3]`` or ``[3, 3]`` (pixels)."""
        c2w = torch.as_tensor(c2w).detach().cpu().float()
        c2w = c2w[None] if c2w.ndim == 2 else c2w
        K = torch.as_tensor(K).detach().cpu().float()
        K = K[None].expand(c2w.shape[0], 3, 3) if K.ndim == 2 else K
        if c2w.ndim != 3 or c2w.shape[1:] not in ((4, 4), (3, 4)) or K.shape != (c2w.shape[0], 3, 3):
            raise ValueError(
                f"c2w must be [B, 4, 4] and K [B, 3, 3]; got {tuple(c2w.shape)} and {tuple(K.shape)}"
            )
        out = []
        for i in range(c2w.shape[0]):
            rgb, alpha, _ = self.renderer.render(
                c2w[i, :3].numpy(), K[i].double().numpy(), width, height, sky=False
            )
            rgb, alpha = torch.from_numpy(rgb), torch.from_numpy(alpha)[..., None]
            out.append(rgb * alpha + self.background * (1 - alpha))
        return torch.stack(out)

    def predict_noise(self, z_t, t, cond, c2w=None, K=None) -> torch.Tensor:
        if c2w is None or K is None:
            raise ValueError("c2w and K are required: RenderedMeshPrior is camera-aware")
        if z_t.ndim != 4 or z_t.shape[1] != 3:
            raise ValueError(f"z_t must have shape [B, 3, H, W], got {tuple(z_t.shape)}")
        h, w = z_t.shape[-2:]
        target = self.render(c2w, K, w, h).permute(0, 3, 1, 2).to(z_t.device, z_t.dtype)
        if target.shape[0] != z_t.shape[0]:
            raise ValueError(f"c2w must hold {z_t.shape[0]} cameras, got {target.shape[0]}")
        t = torch.as_tensor(t).long().reshape(-1).expand(z_t.shape[0])
        n = z_t.shape[0]
        eps = [
            _mixture_eps(
                z_t[i : i + 1],
                t[i : i + 1],
                self.alphas_cumprod,
                2 * target[i : i + 1] - 1,
                torch.zeros(1, 1),
                self.std,
            )
            for i in range(n)
        ]
        return torch.cat(eps)


class TextureMixturePrior(_CameraAwarePixelPrior):
    """A camera-aware analytic prior with several answers: the data of a view are the render of
    one of ``K`` known textures of the same UV-mapped mesh (equal weights), composited over
    ``background``. Its exact denoiser for a view is the posterior-weighted mix of the K
    textures' renders from that camera (the mixture ε* above, one component per texture), so
    views sampled independently can settle on different textures: the inconsistency
    :mod:`raysplat.texgen` removes.

    Args:
        mesh: anything with ``vertices [V, 3]``, ``faces [F, 3]`` and ``uv [V, 2]`` tensors
            (a :class:`raysplat.texgen.UVMesh`).
        textures: ``[K, H, W, 3]`` in [0, 1].
        background: RGB behind the mesh.
        std: τ of each mode (0: Dirac modes).

    Pixel space (``z = 2x - 1``); prompts are ignored (one concept, CFG is the identity).
    """

    camera_aware = True
    named_prompts = True

    def __init__(
        self,
        mesh,
        textures: torch.Tensor,
        background=(1.0, 1.0, 1.0),
        std: float = 0.0,
        alphas_cumprod: torch.Tensor | None = None,
    ):
        if not isinstance(textures, torch.Tensor) or textures.ndim != 4 or textures.shape[-1] != 3:
            raise ValueError("textures must be a [K, H, W, 3] tensor")
        if textures.shape[0] < 1:
            raise ValueError("textures must hold at least one texture")
        self.mesh = mesh
        self.textures = textures.detach().float().cpu()
        self.background = torch.tensor(background, dtype=torch.float32)
        self.std = float(std)
        self.alphas_cumprod = (
            scaled_linear_alphas_cumprod()
            if alphas_cumprod is None
            else torch.as_tensor(alphas_cumprod).float()
        )
        self._cache: dict[bytes, torch.Tensor] = {}
        self._bank = None

    @torch.no_grad()
    def renders(self, c2w: torch.Tensor, K: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """``[K, 3, H, W]`` renders of every texture from one camera (OpenGL ``c2w [4, 4]``)."""
        from raysplat.mesh import rasterize_mesh, sample_texture

        c2w, K = c2w.detach().cpu().float(), K.detach().cpu().float()
        key = c2w.numpy().tobytes() + K.numpy().tobytes() + bytes([width % 256, height % 256])
        if key not in self._cache:
            r = rasterize_mesh(
                self.mesh.vertices,
                self.mesh.faces,
                c2w=c2w,
                K=K,
                width=width,
                height=height,
                attributes=self.mesh.uv,
            )
            hit = (r.triangle_id >= 0)[..., None]
            out = [torch.where(hit, sample_texture(t, r.attributes), self.background) for t in self.textures]
            self._cache[key] = torch.stack(out).permute(0, 3, 1, 2).contiguous()
        return self._cache[key]

    @contextlib.contextmanager
    def shared_views(self, bank):
        """TexGen's attention guidance for this prior, its counterpart of the UNet's shared
        self-attention keys / values (:mod:`raysplat.texgen.attention`): while installed, every
        :meth:`predict_noise` records its views' per-texture log-likelihoods in ``bank`` (a
        :class:`raysplat.texgen.KVBank`, cleared by the sampler at every step), and the
        posterior of a view adds ``λ`` times those of the views recorded before it
        (``λ = bank.weight``). ``λ = 1`` is the exact posterior of one texture shared by all the
        views so far (noise treated as independent across views), ``λ = 0`` the plain prior.
        Yields the names of the shared terms."""
        previous = self._bank
        self._bank = bank
        try:
            yield ["texture_posterior"]
        finally:
            self._bank = previous

    def predict_noise(self, z_t, t, cond, c2w=None, K=None) -> torch.Tensor:
        if c2w is None or K is None:
            raise ValueError("c2w and K are required: TextureMixturePrior is camera-aware")
        if z_t.ndim != 4 or z_t.shape[1] != 3:
            raise ValueError(f"z_t must have shape [B, 3, H, W], got {tuple(z_t.shape)}")
        c2w = c2w[None] if c2w.ndim == 2 else c2w
        K = K[None].expand(c2w.shape[0], 3, 3) if K.ndim == 2 else K
        if c2w.shape[0] != z_t.shape[0]:
            raise ValueError(f"c2w must hold {z_t.shape[0]} cameras, got {c2w.shape[0]}")
        t = torch.as_tensor(t).long().reshape(-1).expand(z_t.shape[0])
        h, w = z_t.shape[-2:]
        nk = self.textures.shape[0]
        bank = self._bank
        refs = bank.refs("texture_posterior", z_t.shape[0]) if bank is not None else []
        eps, own = [], []
        for i in range(z_t.shape[0]):
            zi, ti = z_t[i : i + 1], t[i : i + 1]
            means = 2 * self.renders(c2w[i], K[i], w, h).to(z_t.device, z_t.dtype) - 1
            ell = _mixture_logits(zi, ti, self.alphas_cumprod, means, self.std)
            log_w = torch.zeros(1, nk, dtype=torch.float64)
            if refs and bank.weight > 0:
                log_w = log_w + bank.weight * sum(r[i : i + 1] for r in refs)
            eps.append(_mixture_eps(zi, ti, self.alphas_cumprod, means, log_w, self.std, logits=ell))
            own.append(ell)
        if bank is not None and bank.recording:
            bank.store.setdefault("texture_posterior", []).append(torch.cat(own).cpu())
        return torch.cat(eps)
