"""Score distillation: SDS (DreamFusion, Poole et al. 2022) and VSD (ProlificDreamer, Wang et al.
2023), following threestudio's ``stable_diffusion_guidance.py`` / ``stable_diffusion_vsd_guidance.py``
and the official ``thu-ml/prolificdreamer`` code.

With ``z = encode(g(θ, c))``, ``t ~ U{t_min..t_max}``, ``ε ~ N(0, I)``,
``z_t = sqrt(ᾱ_t) z + sqrt(1-ᾱ_t) ε``::

    ε̂     = ε_u + s (ε_c - ε_u)                         (classifier-free guidance, diffusers' s)
    SDS:  grad = w(t) (ε̂ - ε)
    VSD:  grad = w(t) (ε̂ - ε_φ(z_t, t, c, y))           (ε_φ: the variational score of the particles)
    loss = ½ ‖z - sg(z - grad)‖² / B                     ⇒  ∂loss/∂z = grad / B

``w(t)``: ``"sds"`` 1 - ᾱ_t, ``"uniform"`` 1, ``"fantasia3d"`` sqrt(ᾱ_t)(1 - ᾱ_t). threestudio writes
CFG as ``ε_c + s'(ε_c - ε_u)``, i.e. diffusers' ``s = s' + 1`` (``cfg_convention="threestudio"``).
ε_φ is trained on the (detached) particles with ``‖ε_φ(z_t', t', c) - ε'‖²``, ``t' ~ U{0..T-1}``,
the camera dropped (zeroed) with probability 0.1. For diffusers UNets ε_φ is a LoRA (peft) of the
prior's own UNet plus a camera MLP (16-D flattened c2w -> Linear -> SiLU -> Linear) added to the
timestep embedding; for other priors a small residual network on top of the prior's conditional
prediction (zero-initialised, so ε_φ starts equal to ε_pre(y) exactly as a fresh LoRA does).
For 2D distillation (:func:`distill_images`, no cameras) the default ε_φ of such priors is a
learned Gaussian mixture (:class:`MixtureScore`): the residual network does not learn the score
of a few particles and VSD then collapses to one mode (``benches/distill_2d.py`` measures both).
Timesteps are drawn from [20, 980] and annealed to [20, 500] after ``anneal_step``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raysplat.guidance.base import DiffusionPrior, add_noise, check_images

__all__ = [
    "SCORE_KINDS",
    "WEIGHTINGS",
    "DistillOutput",
    "LoRAScore",
    "MixtureScore",
    "ResidualScore",
    "TimestepSchedule",
    "cfg_combine",
    "choose_particle",
    "distill_images",
    "guidance_eps",
    "lora_loss",
    "make_variational_score",
    "reparameterised_loss",
    "sds_loss",
    "sds_weight",
    "vsd_loss",
]

#: timestep weightings w(t)
WEIGHTINGS = ("sds", "uniform", "fantasia3d")
#: default guidance scales (diffusers convention) of each method
DEFAULT_GUIDANCE = {"sds": 100.0, "vsd": 7.5}


# ------------------------------------------------------------------------------ building blocks


def cfg_combine(eps_uncond, eps_cond, guidance_scale: float, convention: str = "diffusers"):
    """Classifier-free guidance: ``ε_u + s (ε_c - ε_u)`` (``"diffusers"``) or threestudio's
    ``ε_c + s (ε_c - ε_u)`` (``"threestudio"``, ≡ diffusers with ``s + 1``)."""
    if convention == "diffusers":
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)
    if convention == "threestudio":
        return eps_cond + guidance_scale * (eps_cond - eps_uncond)
    raise ValueError(f"cfg_convention must be 'diffusers' or 'threestudio', got {convention!r}")


def sds_weight(alphas_cumprod: torch.Tensor, t: torch.Tensor, weighting: str = "sds") -> torch.Tensor:
    """w(t) ``[B]`` of a weighting in :data:`WEIGHTINGS`."""
    a = alphas_cumprod.to(t.device)[t.long()]
    if weighting == "sds":
        return 1 - a
    if weighting == "uniform":
        return torch.ones_like(a)
    if weighting == "fantasia3d":
        return a.sqrt() * (1 - a)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def reparameterised_loss(z: torch.Tensor, grad: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``½ ‖z - sg(z - grad)‖²`` summed, divided by the batch size for ``"mean"``: its gradient
    with respect to ``z`` is exactly ``grad`` (``"sum"``) or ``grad / B`` (``"mean"``)."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    target = (z - grad).detach()
    loss = 0.5 * F.mse_loss(z, target, reduction="sum")
    return loss / z.shape[0] if reduction == "mean" else loss


@dataclass
class TimestepSchedule:
    """``t ~ U{min_step..max_step}`` (inclusive), ``max_step`` becoming ``anneal_max_step`` from
    step ``anneal_step`` on (official ``t5_iters``; threestudio ``max_step_percent``). ``None``
    disables annealing."""

    min_step: int = 20
    max_step: int = 980
    anneal_step: int | None = 5000
    anneal_max_step: int = 500

    def __post_init__(self) -> None:
        if not (0 <= self.min_step <= self.max_step):
            raise ValueError(
                "min_step/max_step must satisfy 0 <= min_step <= max_step, "
                f"got {self.min_step}, {self.max_step}"
            )
        if not (self.min_step <= self.anneal_max_step):
            raise ValueError(f"anneal_max_step must be >= min_step, got {self.anneal_max_step}")

    @classmethod
    def from_fractions(
        cls,
        num_train_timesteps: int = 1000,
        lo: float = 0.02,
        hi: float = 0.98,
        anneal_step=5000,
        anneal_hi: float = 0.5,
    ) -> TimestepSchedule:
        T = num_train_timesteps
        return cls(int(T * lo), int(T * hi), anneal_step, int(T * anneal_hi))

    def range(self, step: int) -> tuple[int, int]:
        """``(lo, hi)`` inclusive at training ``step``."""
        annealed = self.anneal_step is not None and step >= self.anneal_step
        return self.min_step, (self.anneal_max_step if annealed else self.max_step)

    def sample(
        self, step: int, batch: int, generator: torch.Generator | None = None, device=None
    ) -> torch.Tensor:
        lo, hi = self.range(step)
        return torch.randint(lo, hi + 1, (batch,), generator=generator).to(device or "cpu")


def choose_particle(n_particles: int, generator: torch.Generator | None = None) -> int:
    """The particle updated this step, uniform over ``0..n_particles-1`` (official ``random.randint``)."""
    if n_particles < 1:
        raise ValueError(f"n_particles must be >= 1, got {n_particles}")
    return int(torch.randint(0, n_particles, (1,), generator=generator))


def _camera_kwargs(c2w, K):
    kw = {}
    if c2w is not None:
        kw["c2w"] = c2w
    if K is not None:
        kw["K"] = K
    return kw


def _expand(cond: torch.Tensor, b: int, name: str) -> torch.Tensor:
    if cond.shape[0] == b:
        return cond
    if cond.shape[0] == 1:
        return cond.expand(b, *cond.shape[1:])
    raise ValueError(f"{name} must have batch size 1 or {b}, got {cond.shape[0]}")


def guidance_eps(
    prior: DiffusionPrior, z_t, t, cond, uncond, guidance_scale, cfg_convention="diffusers", c2w=None, K=None
) -> torch.Tensor:
    """ε̂ with classifier-free guidance (one batched call of ``[x_t; x_t]`` as threestudio)."""
    b = z_t.shape[0]
    cond, uncond = _expand(cond, b, "cond"), _expand(uncond, b, "uncond")
    kw = {}
    if c2w is not None:
        kw["c2w"] = torch.cat([c2w, c2w])
    if K is not None:
        kw["K"] = torch.cat([K, K])
    with torch.no_grad():
        eps = prior.predict_noise(torch.cat([z_t, z_t]), torch.cat([t, t]), torch.cat([cond, uncond]), **kw)
    eps_c, eps_u = eps[:b].float(), eps[b:].float()
    return cfg_combine(eps_u, eps_c, guidance_scale, cfg_convention)


class DistillOutput:
    """What :func:`sds_loss` / :func:`vsd_loss` return: ``loss`` (backpropagate it), ``grad``
    (``w(t)(ε̂ - ε_target)`` after clipping), ``z`` (the latents), ``t``, ``noise``, ``z_t``, ``eps_pred``."""

    def __init__(self, loss, grad, z, t, noise, z_t, eps_pred):
        self.loss, self.grad, self.z, self.t, self.noise, self.z_t, self.eps_pred = (
            loss,
            grad,
            z,
            t,
            noise,
            z_t,
            eps_pred,
        )


def _prepare(prior, x, latents, t, noise, generator):
    if latents:
        if not isinstance(x, torch.Tensor) or x.ndim < 2:
            raise ValueError("latents must be a tensor [B, ...]")
        z = x
    else:
        check_images("images", x)
        z = prior.encode(x)
    b = z.shape[0]
    t = torch.as_tensor(t, device=z.device).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(b)
    if t.shape[0] != b:
        raise ValueError(f"t must have 1 or {b} entries, got {t.shape[0]}")
    T = prior.alphas_cumprod.shape[0]
    if bool((t < 0).any()) or bool((t >= T).any()):
        raise ValueError(f"t must lie in [0, {T - 1}]")
    if noise is None:
        noise = torch.randn(z.shape, generator=generator, dtype=torch.float32).to(z.device, z.dtype)
    elif noise.shape != z.shape:
        raise ValueError(f"noise must have shape {tuple(z.shape)}, got {tuple(noise.shape)}")
    z_t = add_noise(prior.alphas_cumprod, z.detach().float(), noise.float(), t).to(z.dtype)
    return z, t, noise, z_t


def _finish(prior, z, t, noise, z_t, eps_pred, eps_target, weighting, grad_clip, reduction):
    w = sds_weight(prior.alphas_cumprod, t, weighting).to(z.device).reshape(-1, *([1] * (z.ndim - 1)))
    grad = torch.nan_to_num(w * (eps_pred - eps_target))
    if grad_clip is not None:
        grad = grad.clamp(-grad_clip, grad_clip)
    loss = reparameterised_loss(z, grad.to(z.dtype), reduction)
    return DistillOutput(loss, grad, z, t, noise, z_t, eps_pred)


def sds_loss(
    prior: DiffusionPrior,
    images_or_latents: torch.Tensor,
    cond: torch.Tensor,
    t: torch.Tensor | int,
    *,
    uncond: torch.Tensor | None = None,
    guidance_scale: float = 100.0,
    cfg_convention: str = "diffusers",
    weighting: str = "sds",
    grad_clip: float | None = None,
    latents: bool = False,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    c2w: torch.Tensor | None = None,
    K: torch.Tensor | None = None,
    reduction: str = "mean",
) -> DistillOutput:
    """Score distillation sampling.

    Args:
        images_or_latents: images ``[B, 3, H, W]`` in [0, 1] (encoded with ``prior.encode``, the
            gradient flows through the encoder) or, with ``latents=True``, the model-space ``z``.
        cond: ``[B or 1, ...]`` from ``prior.embed_prompts``.
        t: LongTensor ``[B]`` (or one int) of timesteps.
        uncond: the unconditional embedding, default ``embed_prompts([""])``; pass a negative
            prompt's embedding here for negative prompts.
        guidance_scale: CFG scale in ``cfg_convention`` (``"diffusers"`` or ``"threestudio"``).
        weighting: ``"sds"``, ``"uniform"`` or ``"fantasia3d"``; ``grad_clip``: clamp of the gradient.
        c2w, K: the rendered view, for camera-aware priors.
        reduction: ``"mean"`` (``∂loss/∂z = grad / B``, threestudio) or ``"sum"`` (``= grad``).
    """
    z, t, noise, z_t = _prepare(prior, images_or_latents, latents, t, noise, generator)
    if uncond is None:
        uncond = prior.embed_prompts([""])
    eps_pred = guidance_eps(prior, z_t, t, cond, uncond, guidance_scale, cfg_convention, c2w, K)
    return _finish(prior, z, t, noise, z_t, eps_pred, noise.float(), weighting, grad_clip, reduction)


# ------------------------------------------------------------------------------ variational score


def _flat_camera(c2w: torch.Tensor | None, b: int, device) -> torch.Tensor:
    if c2w is None:
        return torch.zeros(b, 16, device=device)
    c = c2w.float()
    if c.shape[-2:] == (3, 4):
        c = torch.cat([c, torch.tensor([0.0, 0, 0, 1], device=c.device).expand(*c.shape[:-2], 1, 4)], -2)
    return c.reshape(b, 16).to(device)


class _CameraMLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(16, dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class LoRAScore(nn.Module):
    """ε_φ for a diffusers-UNet prior (:class:`~raysplat.guidance.StableDiffusionPrior`): a peft
    LoRA (rank ``rank`` on ``to_q/to_k/to_v/to_out.0``) of the prior's own UNet — adapter on for
    ε_φ, off for ε_pre — plus the camera MLP fed to the UNet as its class embedding (added to the
    timestep embedding), installed only during ε_φ calls."""

    def __init__(self, prior, rank: int = 4):
        super().__init__()
        peft = __import__("raysplat._extras", fromlist=["require"]).require("peft")
        self.prior = prior
        unet = prior.unet
        if not getattr(unet, "_hf_peft_config_loaded", False):
            unet.add_adapter(
                peft.LoraConfig(
                    r=rank,
                    lora_alpha=rank,
                    init_lora_weights=True,
                    target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                )
            )
        self.lora_params = nn.ParameterList([p for n, p in unet.named_parameters() if "lora" in n])
        for p in self.lora_params:
            p.requires_grad_(True)
        dim = unet.time_embedding.linear_2.out_features
        self.camera = _CameraMLP(dim).to(prior.alphas_cumprod.device)

    def forward(self, z_t, t, cond, c2w=None):
        unet = self.prior.unet
        cam = _flat_camera(c2w, z_t.shape[0], z_t.device)
        saved = unet.class_embedding
        unet.class_embedding = self.camera
        try:
            return self.prior.unet_eps(z_t, t, cond, class_labels=cam.to(self.prior.dtype))
        finally:
            unet.class_embedding = saved


def _timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], 1)


class ResidualScore(nn.Module):
    """The generic ε_φ for any prior: ``ε_pre(z_t, t, y) + sqrt(ᾱ_t / (1 - ᾱ_t)) f_φ(z_t, t, camera)``
    where ``f_φ`` is a small convolutional network (``hidden`` channels, dilations 1, 2, 4, ...,
    a global-average
    branch, plus a t-dependent gain on ``z_t``) conditioned on a
    sinusoidal timestep embedding plus the camera MLP, its last layer zero-initialised (ε_φ starts
    at ε_pre(y), as a fresh LoRA does). The scale makes ``f_φ`` a correction of the denoised
    estimate: ε = (z_t - a ẑ_0) / s, so ε_φ - ε_pre = (a / s)(ẑ_0,pre - ẑ_0,φ), which stays O(1)
    at every t while ε itself does not."""

    def __init__(self, prior: DiffusionPrior, channels: int, hidden: int = 64, depth: int = 3):
        super().__init__()
        self.prior = prior
        self.hidden = hidden
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.camera = _CameraMLP(hidden)
        self.inp = nn.Conv2d(channels, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(
            [nn.Conv2d(hidden, hidden, 3, padding=2**i, dilation=2**i) for i in range(1, depth)]
        )
        self.glob = nn.Linear(hidden, hidden)
        self.out = nn.Conv2d(hidden, channels, 3, padding=1)
        self.skip = nn.Linear(hidden, channels)  # a t-dependent gain on z_t itself
        for m in (self.out, self.skip):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    #: ``_call_phi`` hands it the camera-dropout mask and the intrinsics
    handles_camera_dropout = True

    def forward(self, z_t, t, cond, c2w=None, K=None, keep=None):
        """``keep [B]``: 0 drops the camera from the embedding (camera dropout); a camera-aware
        prior still sees the real view."""
        with torch.no_grad():
            kw = _camera_kwargs(c2w, K) if self.prior.camera_aware else {}
            base = self.prior.predict_noise(z_t, t, cond, **kw).float()
        cam = _flat_camera(c2w, z_t.shape[0], z_t.device)
        if keep is not None:
            cam = cam * keep.to(cam.device, cam.dtype)[:, None]
        emb = self.time(_timestep_features(t, self.hidden)) + self.camera(cam)
        h = F.silu(self.inp(z_t.float()) + emb[:, :, None, None])
        for blk in self.blocks:
            h = F.silu(blk(h) + emb[:, :, None, None])
        h = F.silu(h + self.glob(h.mean((2, 3)))[:, :, None, None])  # global context
        a2 = self.prior.alphas_cumprod.to(z_t.device)[t.long()].reshape(-1, 1, 1, 1)
        f = self.out(h) + self.skip(emb)[:, :, None, None] * z_t.float()
        return base + (a2 / (1 - a2)).sqrt() * f


class MixtureScore(nn.Module):
    """A learned Gaussian-mixture ε_φ: the exact ε of ``Σ_k π_k N(μ_k, τ² I)`` (see
    :mod:`raysplat.guidance.analytic`) with the means ``μ [components, *shape]`` (in the prior's
    space), the log-weights and ``log τ`` trained by the usual ε_φ loss (:func:`lora_loss`).

    The score of ``n`` particles is the score of a mixture of ``n`` Diracs, so with
    ``components >= n`` this family contains the optimum of ε_φ's loss. A small convolutional
    :class:`ResidualScore` fits it worse: at small t ε_φ must recognise which particle a
    noisy image came from (a global, instance-level map), and the VSD update it gives agrees
    less with the exact one (``benches/distill_2d.py`` measures both). The means
    start at ``N(0, init_scale²)`` (nothing about the prior or the particles is given to it);
    they live in the particles' space, so they are best trained at the particles' learning rate.
    It ignores the prompt and the camera: it models the particles of one prompt in 2D
    (:func:`distill_images`); text-to-3D renders depend on the camera and use its 3D counterpart
    :class:`raysplat.text3d.score.RenderedScore` (means rendered from 3D models) or
    :class:`LoRAScore`.
    """

    def __init__(
        self,
        prior: DiffusionPrior,
        shape: tuple[int, ...],
        components: int = 8,
        std: float = 0.05,
        init_scale: float = 0.1,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.prior = prior
        self.shape = tuple(int(v) for v in shape)
        device = prior.alphas_cumprod.device
        mu = init_scale * torch.randn(components, *self.shape, generator=generator)
        self.means = nn.Parameter(mu.to(device))
        self.log_weights = nn.Parameter(torch.zeros(components, device=device))
        self.log_std = nn.Parameter(torch.tensor(math.log(std), device=device))

    def forward(self, z_t, t, cond=None, c2w=None, K=None, keep=None):
        from raysplat.guidance.analytic import _mixture_eps

        if tuple(z_t.shape[1:]) != self.shape:
            raise ValueError(
                f"z_t must have shape [B, {', '.join(map(str, self.shape))}], got {tuple(z_t.shape)}"
            )
        b = z_t.shape[0]
        logw = self.log_weights.log_softmax(0).expand(b, -1)
        t = torch.as_tensor(t, device=z_t.device).long().reshape(-1).expand(b)
        return _mixture_eps(z_t, t, self.prior.alphas_cumprod, self.means, logw, self.log_std.exp()).float()


#: the kinds of ε_φ :func:`make_variational_score` builds
SCORE_KINDS = ("auto", "lora", "residual", "mixture")


def make_variational_score(
    prior: DiffusionPrior,
    channels: int | None = None,
    *,
    kind: str = "auto",
    shape: tuple[int, ...] | None = None,
    **kwargs,
) -> nn.Module:
    """ε_φ for ``prior``. ``kind="auto"``: ``prior.variational_score()`` if it gives one, a
    :class:`LoRAScore` for diffusers-UNet priors, else a :class:`ResidualScore` (``channels``:
    of the model space). ``"lora"``, ``"residual"`` or ``"mixture"`` (a :class:`MixtureScore`
    over model-space tensors of ``shape``) force one; ``kwargs`` go to its constructor."""
    if kind not in SCORE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SCORE_KINDS)}, got {kind!r}")
    if kind == "auto":
        own = prior.variational_score()
        if own is not None:
            return own
        kind = "lora" if hasattr(prior, "unet") and hasattr(prior, "unet_eps") else "residual"
    if kind == "lora":
        return LoRAScore(prior, **kwargs)
    if kind == "mixture":
        if shape is None:
            raise ValueError("shape is required to build a MixtureScore")
        return MixtureScore(prior, shape, **kwargs)
    if channels is None:
        raise ValueError("channels is required to build a ResidualScore")
    return ResidualScore(prior, channels, **kwargs).to(prior.alphas_cumprod.device)


def _call_phi(phi, z_t, t, cond, c2w, K, keep=None):
    if getattr(phi, "handles_camera_dropout", False):
        return phi(z_t, t, cond, c2w=c2w, K=K, keep=keep)
    if c2w is not None and keep is not None:  # dropped cameras are zeros (threestudio)
        b = z_t.shape[0]
        c2w = (_flat_camera(c2w, b, z_t.device) * keep.to(z_t.device).float()[:, None]).reshape(b, 4, 4)
    return phi(z_t, t, cond, c2w=c2w)


def vsd_loss(
    prior: DiffusionPrior,
    phi: nn.Module,
    images_or_latents: torch.Tensor,
    cond: torch.Tensor,
    t: torch.Tensor | int,
    *,
    uncond: torch.Tensor | None = None,
    guidance_scale: float = 7.5,
    cfg_convention: str = "diffusers",
    weighting: str = "sds",
    grad_clip: float | None = None,
    latents: bool = False,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    c2w: torch.Tensor | None = None,
    K: torch.Tensor | None = None,
    phi_cond: torch.Tensor | None = None,
    reduction: str = "mean",
) -> DistillOutput:
    """Variational score distillation: :func:`sds_loss` with the injected noise replaced by
    ``ε_φ(z_t, t, cond, c2w)`` (no CFG on ε_φ; ``phi_cond`` defaults to ``cond``, the
    view-independent prompt in threestudio). ``phi`` is any module ``(z_t, t, cond, c2w=) -> ε``."""
    z, t, noise, z_t = _prepare(prior, images_or_latents, latents, t, noise, generator)
    if uncond is None:
        uncond = prior.embed_prompts([""])
    eps_pred = guidance_eps(prior, z_t, t, cond, uncond, guidance_scale, cfg_convention, c2w, K)
    b = z.shape[0]
    with torch.no_grad():
        eps_phi = _call_phi(
            phi, z_t, t, _expand(cond if phi_cond is None else phi_cond, b, "phi_cond"), c2w, K
        )
    return _finish(prior, z, t, noise, z_t, eps_pred, eps_phi.float(), weighting, grad_clip, reduction)


def lora_loss(
    prior: DiffusionPrior,
    phi: nn.Module,
    z: torch.Tensor,
    cond: torch.Tensor,
    c2w: torch.Tensor | None = None,
    K: torch.Tensor | None = None,
    *,
    camera_dropout: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The ε_φ training loss on detached particles ``z``: ``t' ~ U{0..T-1}``, fresh noise,
    ``‖ε_φ(z_t', t', cond, c2w) - ε'‖²`` (mean), each camera zeroed with probability ``camera_dropout``."""
    z = z.detach().float()
    b = z.shape[0]
    T = prior.alphas_cumprod.shape[0]
    t = torch.randint(0, T, (b,), generator=generator).to(z.device)
    noise = torch.randn(z.shape, generator=generator).to(z.device)
    z_t = add_noise(prior.alphas_cumprod, z, noise, t)
    keep = None
    if c2w is not None:
        keep = (torch.rand(b, generator=generator) >= camera_dropout).to(z.device)
    eps = _call_phi(phi, z_t, t, _expand(cond, b, "cond"), c2w, K, keep)
    err = (eps.float() - noise).pow(2).flatten(1).mean(1)
    if getattr(phi, "loss_weighting", "eps") == "x0":
        # the same optimum, weighted by (1 - ᾱ) / ᾱ: an error in ε_φ's denoised estimate counts
        # alike at every t (the plain ε loss weights it by the SNR ᾱ / (1 - ᾱ), 1e-2 ... 1e3)
        a2 = prior.alphas_cumprod.to(z.device)[t].float()
        err = err * (1 - a2) / a2
    return err.mean()


# ------------------------------------------------------------------------------ 2D distillation


def distill_images(
    prior: DiffusionPrior,
    prompt: str,
    method: str = "sds",
    n_particles: int = 4,
    steps: int = 500,
    size: int = 64,
    guidance_scale: float | None = None,
    seed: int = 0,
    *,
    negative_prompt: str = "",
    lr: float = 0.03,
    lora_lr: float | None = None,
    lambda_lora: float = 1.0,
    lora_steps: int = 1,
    lora_warmup: int = 0,
    weighting: str = "sds",
    schedule: TimestepSchedule | None = None,
    cfg_convention: str = "diffusers",
    grad_clip: float | None = None,
    init: torch.Tensor | None = None,
    phi: nn.Module | None = None,
    score: str = "auto",
    components: int | None = None,
    callback=None,
) -> torch.Tensor:
    """ProlificDreamer's 2D experiment: ``n_particles`` images optimised directly by SDS or VSD.

    Particles are parameterised in the prior's space: ``z_i = encode(x_i⁰)`` with ``x_i⁰``
    uniform noise images (or ``init``), optimised with Adam (``lr``); every step updates all
    particles (batch = ``n_particles``) and, for VSD, takes ``lora_steps`` ε_φ steps (its own
    Adam, ``lora_lr``, loss scaled by ``lambda_lora``; official K = 1), after ``lora_warmup``
    ε_φ steps on the initial particles (0 in the paper).

    ε_φ (VSD): ``phi`` if given, else ``make_variational_score(prior, kind=score)`` where
    ``score="auto"`` is the prior's own ε_φ, a LoRA for diffusers UNets, and otherwise a
    :class:`MixtureScore` with ``components`` (default ``n_particles``) Gaussians — the camera-
    conditioned :class:`ResidualScore` of text-to-3D (``score="residual"``) cannot fit the score
    of a few particles and lets them collapse to one mode (``benches/distill_2d.py``).
    ``lora_lr`` defaults to ``lr`` for a :class:`MixtureScore` (its means live in the particles'
    space) and to 1e-3 otherwise. Works with any :class:`DiffusionPrior`;
    no cameras are passed. ``guidance_scale`` defaults to 100 (SDS) / 7.5 (VSD). Returns
    ``decode(z)`` clamped: ``[n_particles, 3, size, size]`` in [0, 1].
    """
    if method not in ("sds", "vsd"):
        raise ValueError(f"method must be 'sds' or 'vsd', got {method!r}")
    if n_particles < 1 or steps < 0 or size < 1:
        raise ValueError(f"n_particles, steps, size must be positive, got {n_particles}, {steps}, {size}")
    if guidance_scale is None:
        guidance_scale = DEFAULT_GUIDANCE[method]
    gen = torch.Generator().manual_seed(seed)
    device = prior.alphas_cumprod.device
    schedule = schedule or TimestepSchedule.from_fractions(prior.alphas_cumprod.shape[0], anneal_step=None)
    with torch.no_grad():
        x0 = (
            torch.rand(n_particles, 3, size, size, generator=gen)
            if init is None
            else init.detach().cpu().float()
        )
        check_images("init", x0)
        z = prior.encode(x0.to(device)).float().detach().clone()
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    cond = prior.embed_prompts([prompt])
    uncond = prior.embed_prompts([negative_prompt])
    if method == "vsd":
        if phi is None:
            kind = score
            if kind == "auto" and prior.variational_score() is None:
                kind = "lora" if hasattr(prior, "unet") and hasattr(prior, "unet_eps") else "mixture"
            kw = {}
            if kind == "mixture":
                kw = dict(shape=tuple(z.shape[1:]), components=components or n_particles, generator=gen)
            phi = make_variational_score(prior, channels=z.shape[1], kind=kind, **kw)
        if lora_lr is None:
            lora_lr = lr if isinstance(phi, MixtureScore) else 1e-3
        phi_opt = torch.optim.Adam([p for p in phi.parameters() if p.requires_grad], lr=lora_lr)

    def fit_phi(n: int) -> None:
        for _ in range(n):
            phi_opt.zero_grad(set_to_none=True)
            loss = lora_loss(prior, phi, z, _expand(cond, n_particles, "cond"), generator=gen)
            (lambda_lora * loss).backward()
            phi_opt.step()

    if method == "vsd":
        fit_phi(lora_warmup)  # fit ε_φ to the initial particles first (not in the paper)
    for step in range(steps):
        t = schedule.sample(step, n_particles, gen, device)
        noise = torch.randn(z.shape, generator=gen).to(device)
        kw = dict(
            uncond=uncond,
            guidance_scale=guidance_scale,
            cfg_convention=cfg_convention,
            weighting=weighting,
            grad_clip=grad_clip,
            latents=True,
            noise=noise,
        )
        if method == "sds":
            out = sds_loss(prior, z, cond, t, **kw)
        else:
            out = vsd_loss(prior, phi, z, cond, t, **kw)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        if method == "vsd":
            fit_phi(lora_steps)
        if callback is not None:
            callback(step, z.detach())
    with torch.no_grad():
        return prior.decode(z.detach()).float().clamp(0, 1).cpu()
