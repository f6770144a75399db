"""raysplat.distill: the checks of algorithms.md §5.5 (SDS closed form, reparameterisation,
VSD ↔ SDS, CFG conventions, schedules, uniform particles), VSD with LoRA (peft) and with the
residual score, and distill_images on analytic, tiny-SD and third-party priors."""

from __future__ import annotations

import pytest
import torch
from raysplat.distill import (
    LoRAScore,
    MixtureScore,
    ResidualScore,
    TimestepSchedule,
    cfg_combine,
    choose_particle,
    distill_images,
    lora_loss,
    make_variational_score,
    reparameterised_loss,
    sds_loss,
    sds_weight,
    vsd_loss,
)
from raysplat.guidance import (
    DiffusionPrior,
    GaussianMixturePrior,
    procedural_targets,
    scaled_linear_alphas_cumprod,
)
from raysplat.guidance.analytic import _mixture_eps
from raysplat.guidance.base import add_noise


class StubPrior(DiffusionPrior):
    """predict_noise returns fixed ε_c / ε_u by the condition's value (1: conditional, 0: not)."""

    alphas_cumprod = scaled_linear_alphas_cumprod()

    def __init__(self, eps_c, eps_u):
        self.eps_c, self.eps_u = eps_c, eps_u

    def encode(self, images):
        return 2 * images - 1

    def decode(self, z):
        return (z + 1) / 2

    def embed_prompts(self, prompts):
        return torch.tensor([[0.0 if p == "" else 1.0] for p in prompts])

    def predict_noise(self, z_t, t, cond, c2w=None, K=None):
        c = cond.reshape(-1, 1, 1, 1)
        return (
            c * self.eps_c.repeat(2, 1, 1, 1)[: z_t.shape[0]]
            + (1 - c) * self.eps_u.repeat(2, 1, 1, 1)[: z_t.shape[0]]
        )


@pytest.fixture
def stub():
    g = torch.Generator().manual_seed(3)
    return StubPrior(torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g))


def test_sds_closed_form_gradient(stub):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    noise = torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([100, 700])
    s = 7.0
    out = sds_loss(stub, z, stub.embed_prompts(["x"]), t, guidance_scale=s, latents=True, noise=noise)
    out.loss.backward()
    eps_hat = stub.eps_u + s * (stub.eps_c - stub.eps_u)
    w = (1 - stub.alphas_cumprod[t]).reshape(-1, 1, 1, 1)
    assert torch.allclose(z.grad, w * (eps_hat - noise) / 2, atol=1e-6)
    # reduction="sum": exactly w(t)(ε̂ - ε)
    z.grad = None
    sds_loss(
        stub, z, stub.embed_prompts(["x"]), t, guidance_scale=s, latents=True, noise=noise, reduction="sum"
    ).loss.backward()
    assert torch.allclose(z.grad, w * (eps_hat - noise), atol=1e-6)
    # through images: the chain rule of encode (2x - 1) doubles it
    x = ((z.detach() + 1) / 2).clamp(0, 1).requires_grad_(True)
    sds_loss(
        stub, x, stub.embed_prompts(["x"]), t, guidance_scale=s, noise=noise, reduction="sum"
    ).loss.backward()
    assert torch.allclose(x.grad, 2 * w * (eps_hat - noise), atol=1e-5)


def test_reparameterisation_identity():
    g = torch.Generator().manual_seed(1)
    for shape in [(3,), (2, 5), (4, 2, 3, 3)]:
        x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        grad = torch.randn(shape, generator=g, dtype=torch.float64)
        reparameterised_loss(x, grad, "sum").backward()
        assert torch.allclose(x.grad, grad, rtol=0, atol=1e-12)


def test_weightings_and_clip(stub):
    ac = stub.alphas_cumprod
    t = torch.tensor([20, 500, 980])
    assert torch.allclose(sds_weight(ac, t, "sds"), 1 - ac[t])
    assert torch.equal(sds_weight(ac, t, "uniform"), torch.ones(3))
    assert torch.allclose(sds_weight(ac, t, "fantasia3d"), ac[t].sqrt() * (1 - ac[t]))
    with pytest.raises(ValueError, match="weighting"):
        sds_weight(ac, t, "nope")
    z = torch.randn(2, 3, 4, 4)
    out = sds_loss(stub, z, stub.embed_prompts(["x"]), 500, latents=True, grad_clip=0.01)
    assert out.grad.abs().max() <= 0.01


def test_negative_prompt_replaces_uncond(stub):
    z = torch.randn(2, 3, 4, 4)
    noise = torch.randn_like(z)
    cond = stub.embed_prompts(["x"])
    # an "unconditional" embedding equal to the conditional one: ε̂ = ε_c whatever the scale
    out = sds_loss(
        stub, z, cond, 300, uncond=cond, latents=True, noise=noise, weighting="uniform", reduction="sum"
    )
    assert torch.allclose(out.eps_pred, stub.eps_c, atol=1e-6)


class _NoiseEcho(torch.nn.Module):
    """An ε_φ that returns the injected noise (set before the call)."""

    noise = None

    def forward(self, z_t, t, cond, c2w=None):
        return self.noise


def test_vsd_reduces_to_sds_and_vanishes(stub):
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    noise = torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([50, 900])
    cond = stub.embed_prompts(["x"])
    echo = _NoiseEcho()
    echo.noise = noise
    vsd = vsd_loss(stub, echo, z, cond, t, guidance_scale=7.5, latents=True, noise=noise)
    sds = sds_loss(stub, z, cond, t, guidance_scale=7.5, latents=True, noise=noise)
    assert torch.equal(vsd.grad, sds.grad)

    class Perfect(torch.nn.Module):  # ε_φ ≡ ε_pre (the guided prediction)
        def forward(self, z_t, t, cond, c2w=None):
            return stub.eps_u + 7.5 * (stub.eps_c - stub.eps_u)

    out = vsd_loss(stub, Perfect(), z, cond, t, guidance_scale=7.5, latents=True, noise=noise)
    out.loss.backward()
    assert out.grad.abs().max() == 0 and z.grad.abs().max() == 0


def test_cfg_conventions():
    g = torch.Generator().manual_seed(4)
    u, c = torch.randn(5, generator=g), torch.randn(5, generator=g)
    for s in (0.0, 7.5, 100.0):
        assert torch.allclose(
            cfg_combine(u, c, s, "threestudio"), cfg_combine(u, c, s + 1, "diffusers"), atol=1e-5
        )
    assert torch.allclose(cfg_combine(u, c, 1.0), c, atol=1e-6)
    with pytest.raises(ValueError, match="cfg_convention"):
        cfg_combine(u, c, 1.0, "other")


def test_timestep_schedule_and_annealing():
    sch = TimestepSchedule.from_fractions(1000, 0.02, 0.98, anneal_step=5000, anneal_hi=0.5)
    assert (sch.min_step, sch.max_step, sch.anneal_max_step) == (20, 980, 500)
    g = torch.Generator().manual_seed(5)
    before = sch.sample(4999, 20000, g)
    after = sch.sample(5000, 20000, g)
    assert before.min() == 20 and before.max() == 980
    assert after.min() == 20 and after.max() == 500
    assert TimestepSchedule(anneal_step=None).range(10**6) == (20, 980)
    with pytest.raises(ValueError, match="min_step"):
        TimestepSchedule(min_step=30, max_step=10)


def test_lora_timesteps_cover_whole_range(stub):
    """lora_loss draws t' over 0..T-1 (recorded through a spy ε_φ)."""
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, z_t, t, cond, c2w=None):
            seen.append(t.clone())
            return z_t * self.w

    g = torch.Generator().manual_seed(6)
    for _ in range(40):
        lora_loss(stub, Spy(), torch.randn(500, 1), stub.embed_prompts(["x"]), generator=g)
    ts = torch.cat(seen)
    assert ts.min() == 0 and ts.max() == 999


def test_particle_choice_is_uniform():
    g = torch.Generator().manual_seed(7)
    n, draws = 5, 5000
    counts = torch.bincount(torch.tensor([choose_particle(n, g) for _ in range(draws)]), minlength=n).double()
    chi2 = float(((counts - draws / n) ** 2 / (draws / n)).sum())
    assert chi2 < 18.47  # chi-square 4 dof, p = 0.001


def test_residual_score_starts_at_prior_and_learns():
    prior = GaussianMixturePrior(size=8)
    phi = make_variational_score(prior, channels=3, hidden=16)
    assert isinstance(phi, ResidualScore)
    z_t = torch.randn(2, 3, 8, 8)
    t = torch.tensor([100, 800])
    cond = prior.embed_prompts(["shapes", "shapes"])
    c2w = torch.eye(4).expand(2, 4, 4)
    assert torch.allclose(phi(z_t, t, cond, c2w=c2w), prior.predict_noise(z_t, t, cond))
    opt = torch.optim.Adam(phi.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(8)
    z0 = torch.zeros(8, 3, 8, 8)  # particles all grey: far from the prior's modes
    cams = torch.eye(4).expand(8, 4, 4)

    def held_out():
        with torch.no_grad():
            return lora_loss(
                prior, phi, z0, cond[:1], c2w=cams, generator=torch.Generator().manual_seed(9)
            ).item()

    before = held_out()
    for _ in range(40):
        loss = lora_loss(prior, phi, z0, cond[:1], c2w=cams, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out() < 0.8 * before


def test_lora_score_on_tiny_sd():
    pytest.importorskip("peft")
    from raysplat.text3d import load_prior

    prior = load_prior("tiny")  # the tiny random SD, written once to the temp directory
    z = torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 600])
    cond = prior.embed_prompts(["a mug", "a mug"])
    base = prior.predict_noise(z, t, cond)
    phi = make_variational_score(prior)
    assert isinstance(phi, LoRAScore)
    trainable = [n for n, p in prior.unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    c2w = torch.eye(4).expand(2, 4, 4)
    eps_phi = phi(z, t, cond, c2w=c2w)
    # LoRA starts at zero (B = 0) but the camera MLP is added to the timestep embedding
    assert eps_phi.shape == base.shape and not torch.allclose(eps_phi, base)
    assert torch.equal(prior.predict_noise(z, t, cond), base)  # adapter and camera off for ε_pre
    assert prior.unet.class_embedding is None
    opt = torch.optim.Adam(phi.parameters(), lr=1e-3)
    loss = lora_loss(prior, phi, z, cond, c2w=c2w, generator=torch.Generator().manual_seed(0))
    loss.backward()
    opt.step()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in phi.lora_params)
    assert phi.camera.linear_1.weight.grad is not None
    x = distill_images(prior, "a mug", method="vsd", n_particles=2, steps=2, size=32, seed=0, phi=phi)
    assert x.shape == (2, 3, 32, 32) and 0 <= x.min() and x.max() <= 1


def test_distill_images_moves_particles_to_modes():
    prior = GaussianMixturePrior(size=8, std=0.05)
    modes = prior.modes("shapes")
    x0 = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x = distill_images(
        prior, "shapes", "sds", n_particles=4, steps=150, size=8, guidance_scale=1.0, seed=0, init=x0
    )
    d0 = ((x0[:, None] - modes[None]) ** 2).flatten(2).mean(-1).min(1).values
    d = ((x[:, None] - modes[None]) ** 2).flatten(2).mean(-1).min(1).values
    assert x.shape == (4, 3, 8, 8)
    assert (d < 0.5 * d0).all()
    v = distill_images(prior, "shapes", "vsd", n_particles=2, steps=3, size=8, seed=0)
    assert v.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="method"):
        distill_images(prior, "shapes", "dds")
    with pytest.raises(ValueError, match="prompt 'cat' is not a target"):
        distill_images(prior, "cat", "sds", steps=1, size=8)


@pytest.fixture
def one_thread():
    """Small tensors: one torch thread is several times faster than two on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _particle_fit(prior, phi, z, t, seed=0):
    """``‖ε_φ − ε_q‖ / ‖ε_pre(y) − ε_q‖`` with ε_q the exact score of the particles ``z`` (Diracs)."""
    n = z.shape[0]
    g = torch.Generator().manual_seed(seed)
    tt = torch.full((n,), t)
    z_t = add_noise(prior.alphas_cumprod, z, torch.randn(z.shape, generator=g), tt)
    eq = _mixture_eps(z_t, tt, prior.alphas_cumprod, z, torch.zeros(n, n), 0.0)
    cond = prior.embed_prompts(["shapes"]).expand(n, -1)
    with torch.no_grad():
        return float((phi(z_t, tt, cond) - eq).norm() / (prior.predict_noise(z_t, tt, cond) - eq).norm())


def test_mixture_score_is_the_particle_score_and_learns_it(one_thread):
    prior = GaussianMixturePrior(size=8)
    z = 2 * torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) - 1
    phi = make_variational_score(prior, kind="mixture", shape=(3, 8, 8), components=4, std=1e-3)
    assert isinstance(phi, MixtureScore)
    with torch.no_grad():
        phi.means.copy_(z)
    assert _particle_fit(prior, phi, z, 50) < 1e-3 and _particle_fit(prior, phi, z, 600) < 1e-3
    # trained from N(0, 0.1²) means by the ε_φ loss alone, it learns the particles' score
    phi = make_variational_score(
        prior, kind="mixture", shape=(3, 8, 8), components=4, generator=torch.Generator().manual_seed(1)
    )
    before = _particle_fit(prior, phi, z, 50)
    opt = torch.optim.Adam(phi.parameters(), lr=0.03)
    g = torch.Generator().manual_seed(2)
    cond = prior.embed_prompts(["shapes"]).expand(4, -1)
    for _ in range(100):
        opt.zero_grad()
        lora_loss(prior, phi, z, cond, generator=g).backward()
        opt.step()
    assert _particle_fit(prior, phi, z, 50) < 0.5 * before
    with pytest.raises(ValueError, match="shape"):
        phi(torch.zeros(1, 3, 4, 4), torch.tensor([10]))
    with pytest.raises(ValueError, match="kind"):
        make_variational_score(prior, 3, kind="unet")
    with pytest.raises(ValueError, match="shape is required"):
        make_variational_score(prior, kind="mixture")


@pytest.mark.slow
def test_vsd_spreads_particles_over_modes_where_sds_collapses(one_thread):
    """ProlificDreamer's 2D claim on the 4-mode analytic prior (benches/distill_2d.py, seed 0):
    VSD (CFG 7.5, learned mixture ε_φ) puts particles on 3+ modes, SDS (CFG 100) on 1 at most."""
    base = procedural_targets(16)
    prior = GaussianMixturePrior({"shapes": base["shapes"], "colors": base["colors"]}, std=0.05)
    modes = prior.modes("shapes")
    x0 = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def coverage(x):
        d = ((x[:, None] - modes[None]) ** 2).flatten(2).mean(-1).sqrt()
        return int((d < 0.15).any(0).sum()), float(d.min(1).values.mean())

    kw = dict(n_particles=8, steps=400, size=16, seed=0, init=x0)
    cover_vsd, near_vsd = coverage(distill_images(prior, "shapes", "vsd", lora_steps=4, **kw))
    cover_sds, near_sds = coverage(distill_images(prior, "shapes", "sds", **kw))
    assert cover_vsd >= 3 and near_vsd < 0.1
    assert cover_sds <= 1 and near_sds > 0.15
