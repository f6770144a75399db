"""raysplat.text3d.score.RenderedScore: VSD's camera-conditioned ε_φ as a mixture of renders of its
own 3D models — the exact score of one particle when it matches it (VSD = SDS then), one render per
camera per step, gradients to its models, fitting the particles' renders, and the trainer using it."""

from __future__ import annotations

import math

import pytest
import torch
from raysplat.distill import lora_loss, sds_loss, vsd_loss
from raysplat.guidance import GaussianMixturePrior, RenderedMeshPrior
from raysplat.text3d import Text3DConfig, Trainer
from raysplat.text3d.score import RenderedScore
from torch import nn

SIZE = 8


class _Image(nn.Module):
    """A toy "3D model": a learnable image brightened by the camera's x position."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.logits = nn.Parameter(torch.randn(3, SIZE, SIZE, generator=g))

    def render(self, c2w):
        gain = 0.6 + 0.4 * torch.sigmoid(c2w[:, 0, 3])[:, None, None, None]
        return torch.sigmoid(self.logits)[None] * gain


def _score(n=1, std=0.05, calls=None):
    prior = GaussianMixturePrior(size=SIZE)
    comps = [_Image(k) for k in range(n)]

    def render(k, c2w, K):
        if calls is not None:
            calls.append(k)
        return comps[k].render(c2w)

    return prior, RenderedScore(prior, comps, render, std=std)


def _camera(x=0.3):
    c2w = torch.eye(4)[None].clone()
    c2w[0, 0, 3] = x
    return c2w, torch.eye(3)[None]


def test_matching_model_gives_the_exact_score_and_vsd_equals_sds():
    """ε_φ of one particle whose render it reproduces is the injected noise, so VSD's update is
    SDS's (the optimum of ε_φ's loss for a single particle)."""
    prior, phi = _score(std=1e-6)
    c2w, K = _camera()
    x = phi.components[0].render(c2w).detach()  # the "particle" renders exactly what ε_φ does
    cond = prior.embed_prompts(["disc"])
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(prior.encode(x).shape, generator=g)
    for t in (50, 400, 900):
        kw = dict(noise=noise, c2w=c2w, K=K, guidance_scale=7.5)
        v = vsd_loss(prior, phi, x, cond, t, **kw)
        s = sds_loss(prior, x, cond, t, **kw)
        assert torch.allclose(v.grad, s.grad, atol=1e-4), t


def test_means_depend_on_the_camera_and_are_rendered_once_per_step():
    calls: list[int] = []
    prior, phi = _score(n=2, calls=calls)
    c2w, K = _camera(0.3)
    other, _ = _camera(-2.0)
    assert not torch.allclose(phi.means(c2w, K), phi.means(other, K))
    calls.clear()
    z = prior.encode(phi.components[0].render(c2w)).detach()
    with phi.at_camera(c2w, K):
        assert calls == [0, 1]
        with torch.no_grad():
            e = phi(z, torch.tensor([500]), c2w=c2w, K=K)
        assert not e.requires_grad
        loss = lora_loss(prior, phi, z, prior.embed_prompts(["disc"]), c2w, K)
        loss.backward()
        assert calls == [0, 1]  # both calls reused the renders
    grad = phi.components[0].logits.grad  # the component the noisy render came from
    assert grad is not None and grad.abs().sum() > 0
    with torch.no_grad():
        phi(z, torch.tensor([500]), c2w=other, K=K)  # outside: rendered again
    assert calls == [0, 1, 0, 1]


def test_trained_by_its_loss_it_fits_the_particles_render():
    """Only ε_φ's denoising loss on a particle's renders (random cameras) moves its model onto
    the particle: the render error falls several-fold."""
    torch.manual_seed(0)
    prior, phi = _score(std=0.05)
    particle = _Image(seed=7)
    opt = torch.optim.Adam(phi.parameters(), lr=5e-2)
    g = torch.Generator().manual_seed(1)
    cond = prior.embed_prompts(["disc"])

    def error():
        c2w, _ = _camera(0.0)
        with torch.no_grad():
            return float((phi.components[0].render(c2w) - particle.render(c2w)).abs().mean())

    before = error()
    for _ in range(300):
        c2w, K = _camera(float(torch.randn(1, generator=g)))
        z = prior.encode(particle.render(c2w)).detach()
        opt.zero_grad()
        lora_loss(prior, phi, z, cond, c2w, K, generator=g).backward()
        opt.step()
    assert error() < before / 4, (before, error())


def test_x0_weighted_score_loss():
    """``loss_weighting = "x0"`` weights ε_φ's loss by (1 - ᾱ_t) / ᾱ_t per sample (same optimum)."""
    prior = GaussianMixturePrior(size=SIZE)

    class Zero(nn.Module):
        loss_weighting = "eps"

        def forward(self, z_t, t, cond, c2w=None):
            return torch.zeros_like(z_t)

    phi, z, cond = Zero(), torch.zeros(4, 3, SIZE, SIZE), prior.embed_prompts(["disc"])
    plain = lora_loss(prior, phi, z, cond, generator=torch.Generator().manual_seed(3))
    phi.loss_weighting = "x0"
    g = torch.Generator().manual_seed(3)
    weighted = lora_loss(prior, phi, z, cond, generator=g)
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, prior.alphas_cumprod.shape[0], (4,), generator=g)
    noise = torch.randn(z.shape, generator=g)
    a2 = prior.alphas_cumprod[t]
    per = noise.pow(2).flatten(1).mean(1)
    assert torch.allclose(plain, per.mean()) and torch.allclose(weighted, (per * (1 - a2) / a2).mean())


def test_bad_input():
    prior, phi = _score()
    z = torch.zeros(1, 3, SIZE, SIZE)
    with pytest.raises(ValueError, match="camera"):
        phi(z, torch.tensor([10]))
    c2w, K = _camera()
    with pytest.raises(ValueError, match="shape"):
        phi(torch.zeros(1, 3, SIZE + 1, SIZE), torch.tensor([10]), c2w=c2w, K=K)
    with pytest.raises(ValueError, match="component"):
        RenderedScore(prior, [], lambda k, c, K: None)
    with pytest.raises(ValueError, match="std"):
        RenderedScore(prior, [_Image(0)], lambda k, c, K: None, std=0.0)
    with pytest.raises(ValueError, match="score"):
        Text3DConfig(score="conv")
    with pytest.raises(ValueError, match="score_components"):
        Text3DConfig(score_components=0)


TINY = dict(
    render_size=16,
    eval_size=16,
    eval_views=2,
    n_levels=4,
    log2_table=12,
    max_res=64,
    hidden=16,
    grid_resolution=16,
    n_gaussians=200,
    background="white",
    method="vsd",
)


@pytest.mark.parametrize("rep", ["nerf", "gs"])
def test_trainer_trains_the_rendered_score(rep):
    """With an analytic prior VSD's ε_φ is a RenderedScore of the particles' kind, trained each step."""
    cfg = Text3DConfig(steps=3, representation=rep, score_components=2, **TINY)
    tr = Trainer(RenderedMeshPrior("sample"), "mesh", cfg)
    assert isinstance(tr.phi, RenderedScore) and len(tr.phi.components) == 2
    assert type(tr.phi.components[0]) is type(tr.particles[0])
    before = [p.detach().clone() for p in tr.phi.parameters()]
    tr.train(progress=False)
    moved = [not torch.equal(a, b) for a, b in zip(before, tr.phi.parameters(), strict=True)]
    assert any(moved) and math.isfinite(tr.evaluate()["psnr"])
    residual = Trainer(RenderedMeshPrior("sample"), "mesh", cfg.replace(score="residual"))
    assert not isinstance(residual.phi, RenderedScore)
