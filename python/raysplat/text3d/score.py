"""A camera-conditioned variational score ε_φ for text-to-3D VSD with priors that have no UNet
to LoRA-tune (:class:`RenderedScore`).

VSD's ε_φ estimates the score of the particles' rendered images ``q(x | c)`` at camera ``c``.
For a finite set of particles that distribution is a mixture of Diracs at their renders, so a
mixture of Gaussians whose means are *renders of 3D models* — the same kind of model as the
particles — contains the optimum of ε_φ's loss at every camera at once: the camera enters
through projection, which no image network has to learn. The score's models start from their
own random initialisation (nothing about the particles is given to them) and are trained only
by ε_φ's denoising loss (:func:`raysplat.distill.lora_loss`) on the particles' renders.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from raysplat.guidance.analytic import _mixture_eps
from raysplat.guidance.base import DiffusionPrior

#: ``render(k, c2w [B, 4, 4], K [B, 3, 3]) -> images [B, 3, H, W]`` in [0, 1]: component ``k``
#: rendered as the particles are at this step (size, shading, background)
RenderFn = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


class RenderedScore(nn.Module):
    """ε_φ of ``q(x | c) ≈ Σ_k π_k N(encode(render_k(c)), τ² I)``: a Gaussian mixture in the
    prior's space whose means are the renders of ``components`` (3D models: NeRF or Gaussian
    particles) from the queried camera, encoded by the prior. The components, the log-weights and
    ``log τ`` are trained by the ε_φ loss; ``render`` draws component ``k`` (see
    :data:`RenderFn`).

    It always conditions on the camera (a render needs one): camera dropout does not apply, and
    the prompt is ignored (it models the particles of one prompt). Inside
    :meth:`at_camera` the components are rendered once, with gradients, and every call at that
    camera reuses the renders (a VSD step queries ε_φ twice at the same camera: for the particle's
    update, detached, and for ε_φ's own loss)."""

    #: ``_call_phi`` hands it the camera-dropout mask (ignored) and the intrinsics
    handles_camera_dropout = True
    #: :func:`~raysplat.distill.lora_loss` weights its loss by ``(1 - ᾱ_t) / ᾱ_t``: the components
    #: then regress on the particles' renders equally at every t (the plain ε loss's SNR weights
    #: span five decades, and Adam's steps shrink to the rare small-t spikes)
    loss_weighting = "x0"

    def __init__(
        self,
        prior: DiffusionPrior,
        components: Sequence[nn.Module],
        render: RenderFn,
        std: float = 0.05,
    ):
        super().__init__()
        if len(components) < 1:
            raise ValueError("RenderedScore needs at least one component")
        if not std > 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.prior = prior
        self.components = nn.ModuleList(components)
        self.render_component = render
        device = prior.alphas_cumprod.device
        self.log_weights = nn.Parameter(torch.zeros(len(components), device=device))
        self.log_std = nn.Parameter(torch.tensor(math.log(std), device=device))
        self._cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def means(self, c2w: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        """The components' encoded renders ``[B, components, *model shape]`` at these cameras."""
        enc = [
            self.prior.encode(self.render_component(k, c2w, K)).float() for k in range(len(self.components))
        ]
        return torch.stack(enc, 1)

    @contextmanager
    def at_camera(self, c2w: torch.Tensor, K: torch.Tensor) -> Iterator[None]:
        """Renders the components at ``(c2w, K)`` once (with gradients) for every call inside."""
        K = K if K.dim() == 3 else K.expand(c2w.shape[0], 3, 3)
        self._cache = (c2w, K, self.means(c2w, K))
        try:
            yield
        finally:
            self._cache = None

    def _means_at(self, c2w: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        if self._cache is not None:
            c, k, m = self._cache
            if c.shape == c2w.shape and k.shape == K.shape and torch.equal(c, c2w) and torch.equal(k, K):
                return m if torch.is_grad_enabled() else m.detach()
        return self.means(c2w, K)

    def forward(self, z_t, t, cond=None, c2w=None, K=None, keep=None):
        if c2w is None or K is None:
            raise ValueError("RenderedScore needs the camera: pass c2w [B, 4, 4] and K [B, 3, 3]")
        b = z_t.shape[0]
        K = K if K.dim() == 3 else K.expand(b, 3, 3)
        means = self._means_at(c2w, K)
        if tuple(means.shape[2:]) != tuple(z_t.shape[1:]):
            raise ValueError(
                f"z_t must have the shape of the encoded renders {tuple(means.shape[2:])}, got "
                f"{tuple(z_t.shape[1:])}"
            )
        t = torch.as_tensor(t, device=z_t.device).long().reshape(-1).expand(b)
        logw = self.log_weights.log_softmax(0)[None]
        std = self.log_std.exp()
        eps = [
            _mixture_eps(z_t[j : j + 1], t[j : j + 1], self.prior.alphas_cumprod, means[j], logw, std)
            for j in range(b)
        ]
        return torch.cat(eps).float()
