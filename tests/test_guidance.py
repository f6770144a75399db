"""raysplat.guidance: the DiffusionPrior interface, the tiny Stable Diffusion round trip through
diffusers, the analytic priors' closed forms, DDPM identities and bad inputs."""

from __future__ import annotations

import pytest
import torch
from raysplat.cameras import look_at
from raysplat.guidance import (
    DiffusionPrior,
    GaussianMixturePrior,
    RenderedMeshPrior,
    StableDiffusionPrior,
    add_noise,
    eps_to_v,
    scaled_linear_alphas_cumprod,
    tiny_stable_diffusion,
    v_to_eps,
)

pytest.importorskip("diffusers")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_stable_diffusion(tmp_path_factory.mktemp("sd") / "tiny", seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return StableDiffusionPrior.from_pretrained(tiny_dir)


def test_tiny_sd_layout_and_round_trip(tiny_dir, tiny):
    for part in ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_dir / part).exists()
    size = sum(f.stat().st_size for f in tiny_dir.rglob("*") if f.is_file())
    assert size < 20e6
    assert isinstance(tiny, DiffusionPrior) and tiny.prediction_type == "epsilon"
    assert torch.allclose(tiny.alphas_cumprod, scaled_linear_alphas_cumprod(), atol=1e-6)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    z = tiny.encode(x)
    assert z.shape == (2, 4, 8, 8)  # 8x downsampling as SD
    cond = tiny.embed_prompts(["a ceramic mug", ""])
    assert cond.shape == (2, 77, 32) and cond.dtype == torch.float32
    eps = tiny.predict_noise(z, torch.tensor([20, 900]), cond)
    assert eps.shape == z.shape and eps.dtype == torch.float32 and torch.isfinite(eps).all()
    eps.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable through the VAE encoder
    assert tiny.decode(z.detach()).shape == (2, 3, 64, 64)
    # the same seed writes the same weights; the same model loads back identically
    again = StableDiffusionPrior.from_pretrained(tiny_dir)
    assert torch.equal(again.predict_noise(z.detach(), torch.tensor([20, 900]), cond), eps.detach())


def test_tiny_sd_v_prediction(tmp_path):
    d = tiny_stable_diffusion(tmp_path / "v", seed=0, prediction_type="v_prediction")
    prior = StableDiffusionPrior.from_pretrained(d)
    assert prior.prediction_type == "v_prediction"
    z_t = torch.randn(1, 4, 8, 8)
    t = torch.tensor([300])
    cond = prior.embed_prompts(["x"])
    v = prior.unet(z_t, t, encoder_hidden_states=cond).sample
    assert torch.allclose(
        prior.predict_noise(z_t, t, cond), v_to_eps(prior.alphas_cumprod, v, z_t, t), atol=1e-6
    )


def test_not_a_diffusers_layout(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(ValueError, match="not a diffusers Stable Diffusion layout: missing model_index.json"):
        StableDiffusionPrior.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        StableDiffusionPrior.from_pretrained(tmp_path / "nope")


def test_add_noise_matches_diffusers_and_closed_form():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    ac = scaled_linear_alphas_cumprod()
    assert torch.allclose(sched.alphas_cumprod.float(), ac, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 4, 3, 3, generator=g), torch.randn(5, 4, 3, 3, generator=g)
    t = torch.tensor([0, 20, 500, 980, 999])
    ours = add_noise(ac, x0, eps, t)
    a = ac[t].reshape(-1, 1, 1, 1)
    assert torch.allclose(ours, a.sqrt() * x0 + (1 - a).sqrt() * eps, atol=1e-6)
    assert torch.allclose(ours, sched.add_noise(x0, eps, t), atol=1e-5)


def test_v_eps_conversion():
    ac = scaled_linear_alphas_cumprod()
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(64, 4, generator=g), torch.randn(64, 4, generator=g)
    t = torch.randint(0, 1000, (64,), generator=g)
    a = ac[t][:, None]
    x_t = add_noise(ac, x0, eps, t)
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    assert (a.sqrt() * v + (1 - a).sqrt() * x_t - eps).abs().max() <= 1e-5
    assert (v_to_eps(ac, v, x_t, t) - eps).abs().max() <= 1e-5
    assert (eps_to_v(ac, eps, x_t, t) - v).abs().max() <= 1e-4


def test_mixture_eps_is_tweedie_score():
    """ε* = -sqrt(1-ᾱ_t) ∇ log p_t(z_t) (Tweedie), p_t the noised mixture's density (autograd)."""
    g = torch.Generator().manual_seed(0)
    targets = {"a": torch.rand(3, 3, 4, 4, generator=g), "b": torch.rand(2, 3, 4, 4, generator=g)}
    prior = GaussianMixturePrior(targets, std=0.3)
    t = torch.tensor([150, 600])
    z_t = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) * 0.5
    cond = prior.embed_prompts(["b", ""])
    eps = prior.predict_noise(z_t, t, cond)
    for i in range(2):
        a2 = prior.alphas_cumprod[t[i]].double()
        v = a2 * 0.09 + (1 - a2)
        m = 2 * prior.targets.double() - 1
        pi = torch.tensor([0, 0, 0, 0.5, 0.5] if i == 0 else [0.5 / 3] * 3 + [0.25] * 2, dtype=torch.float64)
        z = z_t[i].clone().requires_grad_(True)
        d2 = ((z[None] - a2.sqrt() * m) ** 2).flatten(1).sum(1)
        keep = pi > 0
        logp = torch.logsumexp(pi[keep].log() - d2[keep] / (2 * v), 0)
        (grad,) = torch.autograd.grad(logp, z)
        assert torch.allclose(eps[i], -(1 - a2).sqrt() * grad, atol=1e-9)


def test_mixture_prompts_and_errors():
    prior = GaussianMixturePrior(size=8)
    cond = prior.embed_prompts(["shapes", ""])
    assert cond.shape == (2, len(prior.names)) and torch.allclose(cond.sum(1), torch.ones(2))
    assert prior.modes("shapes").shape == (4, 3, 8, 8)
    with pytest.raises(ValueError, match="prompt 'a cat' is not a target"):
        prior.embed_prompts(["a cat"])
    with pytest.raises(ValueError, match=r"images must hold values in \[0, 1\]"):
        prior.encode(torch.full((1, 3, 8, 8), 2.0))
    with pytest.raises(ValueError, match=r"images must have shape \[B, 3, H, W\]"):
        prior.encode(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="z_t must have shape"):
        prior.predict_noise(torch.rand(1, 4, 8, 8), torch.tensor([1]), cond[:1])
    # at t -> 0 and a Dirac mode, ε* = (z_t - a m) / s: noise prediction recovers the injected noise
    d = GaussianMixturePrior({"one": prior.modes("disc")}, std=0.0)
    z0 = d.encode(d.modes("one"))
    eps = torch.randn_like(z0)
    t = torch.tensor([700])
    assert torch.allclose(
        d.predict_noise(add_noise(d.alphas_cumprod, z0, eps, t), t, d.embed_prompts(["one"])), eps, atol=1e-4
    )


def test_rendered_mesh_prior_is_camera_aware():
    prior = RenderedMeshPrior("sample", radius=0.5)
    c2w = torch.cat(
        [
            look_at(torch.tensor([0.0, 0.5, 2.0]), torch.zeros(3), torch.tensor([0.0, 1, 0])),
            torch.tensor([[0.0, 0, 0, 1]]),
        ]
    )[None].float()
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]])
    img = prior.render(c2w, K, 32, 32)
    assert img.shape == (1, 32, 32, 3) and 0 <= img.min() and img.max() <= 1
    assert (img < 0.99).any(dim=-1).float().mean() > 0.1  # the object covers part of the view
    assert torch.allclose(img[0, 0, 0], torch.ones(3))  # white background in the corner
    z0 = prior.encode(img.permute(0, 3, 1, 2))
    eps = torch.randn_like(z0)
    t = torch.tensor([500])
    z_t = add_noise(prior.alphas_cumprod, z0, eps, t)
    cond = prior.embed_prompts(["mesh"])
    assert torch.allclose(prior.predict_noise(z_t, t, cond, c2w=c2w, K=K[None]), eps, atol=1e-4)
    with pytest.raises(ValueError, match="c2w and K are required"):
        prior.predict_noise(z_t, t, cond)


class _ThirdParty(DiffusionPrior):
    """A prior written outside raysplat: attributes + four methods, no __init__."""

    alphas_cumprod = scaled_linear_alphas_cumprod()

    def encode(self, images):
        return images * 2 - 1

    def decode(self, z):
        return (z + 1) / 2

    def embed_prompts(self, prompts):
        return torch.zeros(len(prompts), 1)

    def predict_noise(self, z_t, t, cond, c2w=None, K=None):
        return torch.zeros_like(z_t)


def test_third_party_prior_works_with_defaults():
    p = _ThirdParty()
    assert p.variational_score() is None and p.accepts_control is False and p.num_train_timesteps == 1000
    with pytest.raises(TypeError):

        class Incomplete(DiffusionPrior):
            alphas_cumprod = torch.ones(2)

        Incomplete()
