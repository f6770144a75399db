"""ProNeRF sampler: the checks of algorithms.md §1.5 (Plücker invariance, stage-A / stage-B depth
ranges, own-camera projection round trip, NDC -> metric depth, exploration counts and jitter,
density modulation, offset bound), exploration / exploitation, reference views, exact resume,
self-contained checkpoints and a short training run with the CLI on a generated LLFF scene."""

from __future__ import annotations

import json
import math

import pytest
import torch
from raysplat.cli import main
from raysplat.datasets import make_scene
from raysplat.nerf import NerfConfig, ProNerfSampler, Rays, Trainer, load_scene
from raysplat.nerf.field import trunc_exp
from raysplat.nerf.pronerf import (
    explore_samples,
    modulated_alpha,
    plucker,
    refine_bins,
    stage_a_outputs,
    stage_b_outputs,
)
from raysplat.projection import project_to_views
from raysplat.rays import generate_rays, ndc_rays
from raysplat.training.trainer import load_checkpoint

#: tiny, fast settings
TINY = dict(
    n_levels=8, log2_table=14, max_res=128, hidden=32, batch_rays=256, eval_views=1, warmup_steps=10,
    pronerf_width=32, pronerf_layers=2, pronerf_samples=8,
)  # fmt: skip


@pytest.fixture(scope="module")
def llff_dir(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("pronerf") / "llff", "llff", size=40, views=16, seed=0)


@pytest.fixture(scope="module")
def llff(llff_dir):
    return load_scene(llff_dir)


# ---------------------------------------------------------------- §1.5 checks
def test_plucker_is_invariant_along_the_ray(gen):
    o = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    d = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    p0 = plucker(o, d)
    for s in (-2.0, 0.3, 7.0):
        torch.testing.assert_close(plucker(o + s * d, d), p0)
    torch.testing.assert_close(plucker(o, 3.0 * d), p0)  # and scale-free in d
    torch.testing.assert_close(p0[:, :3].norm(dim=-1), torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close((p0[:, :3] * p0[:, 3:]).sum(-1), torch.zeros(50, dtype=torch.float64))


def test_stage_a_depths_sorted_inside_and_terms_permuted():
    n, near, far = 4, 2.0, 6.0
    logits = torch.tensor([[3.0, -1.0, 0.5, -4.0]])
    a = torch.tensor([[10.0, 11.0, 12.0, 13.0]])
    m = torch.tensor([[20.0, 21.0, 22.0, 23.0]])
    o = torch.cat([logits, a, m, torch.zeros(1, 3)], -1)
    t, aa, mm, c = stage_a_outputs(o, n, near, far)
    order = [3, 1, 2, 0]  # ascending logits
    torch.testing.assert_close(t[0], near + torch.sigmoid(logits[0, order]) * (far - near))
    assert torch.equal(aa[0], a[0, order]) and torch.equal(mm[0], m[0, order])
    torch.testing.assert_close(c, torch.full((1, 3), 0.5))
    o = torch.randn(1000, 3 * 12 + 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5
    t, *_ = stage_a_outputs(o, 12, near, far)
    assert bool((t > near).all() and (t < far).all() and (t[:, 1:] >= t[:, :-1]).all())


def test_refined_depths_stay_in_their_bins(gen):
    near, far, n = 0.0, 1.0, 8
    t, _ = torch.sort(torch.rand(500, n, generator=gen, dtype=torch.float64), -1)
    lo, hi = refine_bins(t, near, far)
    assert torch.equal(lo[:, 1:], hi[:, :-1])  # contiguous, disjoint
    torch.testing.assert_close(lo[:, 0], 0.5 * (near + t[:, 0]))
    torch.testing.assert_close(hi[:, -1], 0.5 * (far + t[:, -1]))
    for scale in (0.1, 10.0, 1e4):
        r = torch.randn(500, 4 * n + 3, generator=gen, dtype=torch.float64) * scale
        tr, delta, c = stage_b_outputs(t, r, near, far, 0.01)
        assert bool((tr >= lo).all() and (tr <= hi).all() and (tr[:, 1:] >= tr[:, :-1]).all())
        assert float(delta.abs().max()) <= 0.01  # §1.5 check 8: offset bound
        assert delta.shape == (500, n, 3) and c.shape == (500, 3)


def test_own_camera_round_trip_through_ndc(llff):
    """A pixel's sample at any NDC depth, mapped back to the world and projected into its own
    camera, lands on that pixel (the image holds each pixel's centre coordinates)."""
    w, h = llff.width, llff.height
    c2w, K = llff.c2w[:3].float(), llff.K[:3].float()
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    coords = torch.stack([xs, ys], -1)[None].expand(3, h, w, 2).contiguous()
    pix = torch.tensor([0, 5 * w + 7, w * h + 3 * w + 11, 2 * w * h + w * h - 1])
    o, d = generate_rays(c2w, K, w, h, pixels=pix)
    k0 = llff.K[0].float()
    on, dn = ndc_rays(o, d, k0, w, h, near=llff.meta.get("ndc_near", 1.0))
    s = ProNerfSampler(8, 0.0, 1.0, (float(k0[0, 0]), float(k0[1, 1]), w, h, llff.meta.get("ndc_near", 1.0)))
    rays = Rays(on, dn, d, 0.0, 1.0)
    t = torch.tensor([0.0, 0.2, 0.5, 0.9])[None].expand(4, 4).contiguous()
    pts = s.world_points(rays, t)
    cam = (pix // (w * h))[:, None]
    got, ok = project_to_views(pts, cam, c2w, K, coords)
    assert bool(ok.all())
    want = torch.stack([(pix % w).float() + 0.5, (pix % (w * h) // w).float() + 0.5], -1)
    torch.testing.assert_close(got[:, :, 0], want[:, None].expand(4, 4, 2), atol=2e-3, rtol=0)


def test_ndc_depth_to_metric():
    """NDC t maps to world z = -near / (1 - t): t = 0 is the near plane, t -> 1 is infinity."""
    n = 1.0
    s = ProNerfSampler(4, 0.0, 1.0, (50.0, 50.0, 64.0, 48.0, n))
    o = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.1, 0.05, -1.0]])
    on, dn = ndc_rays(o, d, (50.0, 50.0), 64, 48, near=n)
    t = torch.tensor([[0.0, 0.5, 0.9, 0.999]]).expand(2, 4)
    z = -s.world_points(Rays(on, dn, d, 0.0, 1.0), t)[..., 2]
    torch.testing.assert_close(z, (n / (1 - t)).expand(2, 4), rtol=1e-4, atol=1e-4)
    assert float(z[0, 0]) == pytest.approx(1.0) and float(z[0, -1]) > 900
    pts = s.world_points(Rays(on, dn, d, 0.0, 1.0), t)  # on the original world ray
    dirs = torch.nn.functional.normalize(pts[1] - o[1], dim=-1)
    torch.testing.assert_close(
        dirs, torch.nn.functional.normalize(d[1], dim=0).expand(4, 3), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("n", [8, 12])
def test_exploration_counts_and_jitter_never_cross(n):
    g = torch.Generator().manual_seed(0)
    t0, _ = torch.sort(torch.rand(200, n, generator=g), -1)
    seen = set()
    for _ in range(40):
        te, n_mult = explore_samples(t0, 0.0, 1.0, g)
        seen.add(n_mult)
        assert 1 <= n_mult <= 64 // n and te.shape == (200, n * n_mult) and te.shape[1] <= 64
        assert bool((te[:, 1:] >= te[:, :-1]).all())  # the jitter never crosses a neighbour
        assert bool((te >= 0).all() and (te <= 1).all())
    assert seen == set(range(1, 64 // n + 1))


def test_density_modulation_limits(gen):
    raw = torch.randn(100, 8, generator=gen, dtype=torch.float64)
    delta = torch.rand(100, 8, generator=gen, dtype=torch.float64)
    plain = 1 - torch.exp(-trunc_exp(raw) * delta)
    torch.testing.assert_close(modulated_alpha(raw, delta), plain)
    torch.testing.assert_close(
        modulated_alpha(raw, delta, torch.zeros_like(raw), torch.ones_like(raw)), plain
    )
    m = torch.randn(100, 8, generator=gen, dtype=torch.float64)
    alpha = modulated_alpha(raw, delta, torch.randn_like(raw), m)
    assert bool((alpha[m <= 0] == 0).all()) and bool((alpha[m > 0] > 0).all())


# ---------------------------------------------------------------- sampler and trainer
def test_explore_and_exploit_steps(llff):
    t = Trainer(llff, NerfConfig(sampler="pronerf", steps=4, **TINY))
    s = t.sampler
    assert s.ref_images.dtype == torch.uint8 and s.ref_images.shape[0] == len(llff.indices("train"))
    a0 = [p.detach().clone() for p in s.parameters()]
    t.train_step()  # step 0 explores: the sampler is frozen
    assert all(torch.equal(p, q) for p, q in zip(s.parameters(), a0, strict=True))
    t.train_step()  # step 1 exploits: everything learns
    assert all(not torch.equal(p, q) for p, q in zip(s.parameters(), a0, strict=True))
    rays = t.make_rays(t.sampler.ref_c2w[:1], t.info.K[:1], torch.arange(64))
    with pytest.raises(ValueError, match="view_ids"):
        s.render(t.field, rays)
    rays.view_ids = torch.tensor([[1, 2, 3, 4]]).expand(64, 4)
    out = s.render(t.field, rays, train=True, generator=t.gen, step=1)
    assert out.n_samples == 64 * 8 and len(out.aux_rgb) == 2
    out = s.render(t.field, rays, train=True, generator=t.gen, step=2)
    assert out.n_samples % (64 * 8) == 0 and not out.aux_rgb
    s.explore_max = 16  # pronerf_explore_samples: n_mult <= 16 // 8
    counts = {s.render(t.field, rays, train=True, generator=t.gen, step=0).n_samples for _ in range(12)}
    assert counts == {64 * 8, 64 * 16}


def test_training_views_exclude_the_target(llff, monkeypatch):
    import raysplat.nerf.trainer as tr

    seen = []
    real = tr.nearest_views

    def spy(q, ref, n, **kw):
        ids = real(q, ref, n, **kw)
        seen.append((q, ref, ids, kw))
        return ids

    monkeypatch.setattr(tr, "nearest_views", spy)
    t = Trainer(llff, NerfConfig(sampler="pronerf", steps=1, **TINY))
    t.train_step()
    q, ref, ids, kw = seen[0]
    assert kw["random"] and kw["exclude_self"] and ids.shape == (256, 4)
    own = (ref[ids][..., :3, 3] - q[:, None, :3, 3]).norm(dim=-1)
    assert bool((own > 1e-6).all())
    t.render_image(llff.c2w[0])  # test time: the 4 nearest training cameras
    q, ref, ids, kw = seen[-1]
    d = (ref[:, :3, 3] - q[0, :3, 3]).norm(dim=-1)
    assert torch.equal(ids[0].sort().values, d.topk(4, largest=False).indices.sort().values)


def test_resume_is_exact_and_checkpoint_self_contained(llff, tmp_path):
    cfg = NerfConfig(sampler="pronerf", steps=6, **TINY)
    straight = Trainer(llff, cfg)
    straight.train(progress=False)
    _assert_resumes_exactly(straight, llff, cfg, 3, tmp_path)
    ck = straight.checkpoint()
    ck["cameras"]["path"] = None  # no dataset: the references must come from the checkpoint
    torch.save(ck, tmp_path / "full.pt")
    alone = load_checkpoint(tmp_path / "full.pt")
    assert alone.scene is None and torch.equal(alone.sampler.ref_images, straight.sampler.ref_images)
    c2w = llff.c2w[llff.indices("test")[0]]
    a = straight.render_image(c2w)["rgb"]
    b = alone.render_image(c2w)["rgb"]
    assert torch.equal(a, b)


def test_refinement_stage(llff, tmp_path):
    cfg = NerfConfig(sampler="pronerf", steps=6, pronerf_refine=0.5, **TINY)
    t = Trainer(llff, cfg)
    t.train(steps=3, progress=False)  # stage 1: steps 0-2
    s = t.sampler
    assert s.refine_from is None and not t.r_optimizer.state
    t.save_checkpoint(tmp_path / "stage1.pt")
    before = [p.detach().clone() for _, p in t.named_parameters()]
    t.train_step()  # progress 3/6 reaches the stage's share: refinement from step 3 on
    assert s.refine_from == 3
    assert [s.phase(k) for k in (1, 2, 3, 9)] == ["exploit", "explore", "refine", "refine"]
    assert t.r_optimizer.state and len(t.r_optimizer.state) == len(before)  # one fresh optimiser, all
    after = [p.detach() for _, p in t.named_parameters()]
    assert all(not torch.equal(p, q) for p, q in zip(before, after, strict=True))
    rays = t.make_rays(s.ref_c2w[:1], t.info.K[:1], torch.arange(64))
    rays.view_ids = torch.tensor([[1, 2, 3, 4]]).expand(64, 4)
    out = s.render(t.field, rays, train=True, generator=torch.Generator().manual_seed(0), step=4)
    assert out.n_samples == 64 * 8 and not out.aux_rgb  # the rendered colour's loss only
    (tr,) = s.render(t.field, rays, train=False).edges[1:]
    tj = out.edges[1]  # jittered refined samples: sorted, inside (near, far), not the exact ones
    assert bool((tj[:, 1:] >= tj[:, :-1]).all()) and bool(((tj >= 0) & (tj <= 1)).all())
    assert not torch.equal(tj, tr)
    t.train(progress=False)
    for name in ("stage1.pt", "refine.pt"):  # resume exactly before and inside the stage
        if name == "refine.pt":
            half = Trainer(llff, cfg)
            half.train(steps=5, progress=False)
            half.save_checkpoint(tmp_path / name)
        resumed = Trainer.load_checkpoint(tmp_path / name, llff)
        resumed.train(progress=False)
        assert resumed.sampler.refine_from == 3
        for (n, p), (_, q) in zip(t.named_parameters(), resumed.named_parameters(), strict=True):
            assert torch.equal(p, q), (name, n)


def test_config_and_cli_errors(llff_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="pronerf_samples"):
        NerfConfig(sampler="pronerf", pronerf_samples=1)
    out = tmp_path / "x"
    args = ["train", "nerf", str(llff_dir), "--sampler", "occgrid", "--samples", "12", "--out", str(out)]
    assert main(args) == 2
    assert "--samples" in capsys.readouterr().err
    with pytest.raises(ValueError, match="pronerf_explore_samples"):
        NerfConfig(sampler="pronerf", pronerf_samples=12, pronerf_explore_samples=8)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="pronerf_refine"):
            NerfConfig(sampler="pronerf", pronerf_refine=bad)
    args = ["train", "nerf", str(llff_dir), "--sampler", "hierarchical", "--refine", "0.5", "--out", str(out)]
    assert main(args) == 2
    assert "--refine" in capsys.readouterr().err


def test_pronerf_rejects_unbounded_scenes(tmp_path):
    sc = load_scene(make_scene(tmp_path / "ns", "nerfstudio", size=16, views=6, seed=0))
    with pytest.raises(ValueError, match="pronerf"):
        Trainer(sc, NerfConfig(sampler="pronerf", steps=1, **TINY))


def test_short_training_improves_and_writes_everything(llff_dir, tmp_path):
    out = tmp_path / "run"
    sets = [
        x
        for k, v in TINY.items()
        if k not in ("pronerf_samples", "eval_views")
        for x in ("--set", f"{k}={v}")
    ]
    args = ["train", "nerf", str(llff_dir), "--sampler", "pronerf", "--samples", "8", "--steps", "30"]
    rc = main([*args, "--out", str(out), "--frames", "2", "-q", *sets])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 30 and m["sampler"] == "pronerf" and math.isfinite(m["psnr"])
    first = Trainer(
        load_scene(llff_dir), NerfConfig(sampler="pronerf", steps=1, **dict(TINY, eval_views=None))
    )
    assert m["psnr"] > first.evaluate()["psnr"] + 1.0
    bd = m["render_breakdown"]
    assert bd["field_evals_per_ray"] == 8 and all(bd[k] > 0 for k in bd)
    assert m["eval_samples_per_ray"] == 8
    assert (out / "checkpoint.pt").is_file() and (out / "video" / "turntable.mp4").stat().st_size > 0
    assert any((out / "test").iterdir())
    r = tmp_path / "r"
    assert (
        main(["render", str(out / "checkpoint.pt"), "--path", "spiral", "--frames", "2", "--out", str(r)])
        == 0
    )
    assert (r / "video" / "spiral.gif").is_file()


def test_blender_scene_in_metric_space(tmp_path):
    sc = load_scene(make_scene(tmp_path / "bl", "blender", size=16, views=8, seed=0))
    t = Trainer(sc, NerfConfig(sampler="pronerf", steps=2, **TINY))
    s = t.sampler
    assert s.ndc is None and (s.near, s.far) == (t.near, t.far) and s.ref_images.shape[-1] == 4
    assert s.bound == pytest.approx(0.01 * (t.far - t.near))
    t.train(progress=False)
    img = t.render_image(sc.c2w[sc.indices("test")[0]])
    assert img["rgb"].shape == (16, 16, 3) and bool(torch.isfinite(img["rgb"]).all())


# ---------------------------------------------------------------- per-ray box ranges, interlevel loss
def test_box_range_is_the_slab_intersection(gen):
    from raysplat.nerf.pronerf import box_range

    box = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0])
    o = torch.tensor([[-4.0, 0.0, 0.0], [-4.0, 0.5, 0.0], [-4.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    lo, hi = box_range(o, d, box, 0.5, 10.0)
    assert lo.shape == (4, 1)
    torch.testing.assert_close(lo[:, 0], torch.tensor([1.5, 3.0, 0.5, 0.5]))  # t in units of |d|
    torch.testing.assert_close(hi[:, 0], torch.tensor([2.5, 5.0, 10.0, 1.0]))  # miss: [near, far]
    o = torch.randn(300, 3, generator=gen) * 3
    d = torch.randn(300, 3, generator=gen)
    lo, hi = box_range(o, d, box, 0.0, 20.0)
    assert bool((lo >= 0).all() and (hi <= 20).all() and (lo < hi).all())
    s = torch.linspace(0, 1, 50)
    inside = lambda t: ((o[:, None] + t[..., None] * d[:, None]).abs() <= 1 + 1e-4).all(-1)  # noqa: E731
    hit = inside(lo + s * (hi - lo)).all(-1)  # the whole range of a hitting ray is in the box
    miss = (lo[:, 0] == 0) & (hi[:, 0] == 20)
    assert bool((hit | miss).all()) and bool(hit.any() and miss.any())


def test_weight_quantiles():
    from raysplat.nerf.pronerf import weight_quantiles

    t = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    w = torch.tensor([[0.0, 1.0, 0.0, 0.0]])  # all the weight on [2, 3]
    q = weight_quantiles(t, w, 0.0, 5.0, 4, 0.0)
    torch.testing.assert_close(q, torch.tensor([[2.125, 2.375, 2.625, 2.875]]))
    q = weight_quantiles(t, torch.zeros_like(w), 0.0, 5.0, 5, 0.0)  # no weight: uniform
    torch.testing.assert_close(q, torch.tensor([[0.5, 1.5, 2.5, 3.5, 4.5]]))
    q = weight_quantiles(t, w, 0.0, 5.0, 5, 1.0)  # all uniform
    torch.testing.assert_close(q, torch.tensor([[0.5, 1.5, 2.5, 3.5, 4.5]]))
    near, far = torch.tensor([[0.0], [1.0]]), torch.tensor([[5.0], [4.5]])
    w = torch.rand(2, 4, generator=torch.Generator().manual_seed(0))
    q = weight_quantiles(t.expand(2, 4), w, near, far, 12, 0.3)  # per-ray ranges; sorted, inside
    assert bool((q[:, 1:] >= q[:, :-1]).all() and (q >= near).all() and (q <= far).all())


def test_blender_box_ranges_and_interlevel_loss(tmp_path):
    sc = load_scene(make_scene(tmp_path / "bl", "blender", size=16, views=8, seed=0))
    cfg = NerfConfig(sampler="pronerf", steps=4, pronerf_interlevel=1.0, **TINY)
    t = Trainer(sc, cfg)
    s = t.sampler
    assert torch.equal(s.aabb, sc.aabb.float())
    rays = t.make_rays(s.ref_c2w[:1], t.info.K[:1], torch.arange(256))
    rays.view_ids = torch.tensor([[1, 2, 3, 4]]).expand(256, 4)
    lo, hi = s.ray_range(rays)
    assert bool((lo >= t.near).all() and (hi <= t.far).all() and (hi - lo < t.far - t.near).any())
    ta, tr = s.render(t.field, rays).edges
    assert bool(((ta >= lo) & (ta <= hi) & (tr >= lo) & (tr <= hi)).all())  # samples inside the box
    out = s.render(t.field, rays, train=True, generator=torch.Generator().manual_seed(0), step=0)  # explore
    assert out.aux_loss is not None and out.aux_loss.requires_grad
    a0 = [p.detach().clone() for p in s.stage_a.parameters()]
    b0 = [p.detach().clone() for p in s.stage_b.parameters()]
    t.train_step()  # exploration with the interlevel loss: stage A learns, stage B stays
    assert all(not torch.equal(p, q) for p, q in zip(s.stage_a.parameters(), a0, strict=True))
    assert all(torch.equal(p, q) for p, q in zip(s.stage_b.parameters(), b0, strict=True))
    t.train(progress=False)
    _assert_resumes_exactly(t, sc, cfg, 1, tmp_path)  # with the extra optimiser group
    plain = Trainer(sc, NerfConfig(sampler="pronerf", steps=1, pronerf_box=False, **TINY))
    assert plain.sampler.aabb.numel() == 0 and plain.sampler.ray_range(rays) == (t.near, t.far)
    with pytest.raises(ValueError, match="pronerf_interlevel"):
        NerfConfig(sampler="pronerf", pronerf_interlevel=-1.0)
    with pytest.raises(ValueError, match="pronerf_interlevel_uniform"):
        NerfConfig(sampler="pronerf", pronerf_interlevel_uniform=1.5)


def _assert_resumes_exactly(straight, scene, cfg, split: int, tmp_path) -> None:
    """A run stopped after ``split`` steps, saved and resumed, ends bit-identical to ``straight``."""
    half = Trainer(scene, cfg)
    half.train(steps=split, progress=False)
    half.save_checkpoint(tmp_path / "ck.pt")
    resumed = Trainer.load_checkpoint(tmp_path / "ck.pt", scene)
    resumed.train(progress=False)
    for (n, p), (_, q) in zip(straight.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.equal(p, q), n


# ---------------------------------------------------------------- occupancy grid (object scenes)
def _blender_trainer(tmp_path, **kw):
    sc = load_scene(make_scene(tmp_path / "bl", "blender", size=16, views=8, seed=0))
    cfg = NerfConfig(sampler="pronerf", grid_resolution=16, **{**TINY, "steps": 2, **kw})
    return sc, cfg, Trainer(sc, cfg)


def _block_grid(s, lo_cell: int, hi_cell: int) -> None:
    """Occupies the grid's cells [lo_cell, hi_cell) on every axis, nothing else."""
    b = torch.zeros_like(s.grid.binaries)
    b[0, lo_cell:hi_cell, lo_cell:hi_cell, lo_cell:hi_cell] = True
    s.grid.binaries.copy_(b)


def test_occupied_range_against_brute_force(tmp_path):
    _, _, t = _blender_trainer(tmp_path)
    s = t.sampler
    assert s.grid is not None and s.grid.resolution == [16, 16, 16]
    _block_grid(s, 5, 11)
    rays = t.make_rays(s.ref_c2w[:2], t.info.K[:2])
    near, far = s.ray_range(rays)
    lo, hi, hit = s.occupied_range(rays, near, far)
    # brute force: fine points along each ray's box range, which of them lie in occupied cells
    box = s.aabb
    u = torch.linspace(0, 1, 4000)
    tt = near + u * (far - near)
    x = rays.origins[:, None] + tt[..., None] * rays.directions[:, None]
    cell = ((x - box[:3]) / (box[3:] - box[:3]) * 16).floor()
    occ = ((cell >= 5) & (cell < 11)).all(-1)
    assert bool(hit.any() and (~hit).any())
    assert torch.equal(hit, occ.any(-1))
    big = torch.full_like(tt, math.inf)
    first = torch.where(occ, tt, big).amin(-1)[hit]
    last = torch.where(occ, tt, -big).amax(-1)[hit]
    step = s.occ_step
    assert bool((lo[hit, 0] <= first + 1e-4).all() and (lo[hit, 0] >= first - 2 * step - 1e-4).all())
    assert bool((hi[hit, 0] >= last - 1e-4).all() and (hi[hit, 0] <= last + 2 * step + 1e-4).all())
    assert torch.equal(lo[~hit], near[~hit]) and torch.equal(hi[~hit], far[~hit])  # misses keep the box


def test_rays_through_empty_cells_show_the_background(tmp_path):
    _, _, t = _blender_trainer(tmp_path)
    s = t.sampler
    _block_grid(s, 6, 10)
    rays = t.make_rays(s.ref_c2w[:1], t.info.K[:1])
    rays.view_ids = torch.tensor([[1, 2, 3, 4]]).expand(len(rays), 4)
    _, _, hit = s.occupied_range(rays, *s.ray_range(rays))
    white = torch.ones(3)
    s.reset_timing()
    out = s.render(t.field, rays, white)
    assert out.n_samples == s.n * int(hit.sum()) and s.timing["rays"] == len(rays)
    assert torch.equal(out.rgb[~hit], white.expand(int((~hit).sum()), 3))
    assert bool((out.opacity[~hit] == 0).all() and (out.opacity[hit] > 0).any())
    ex = s.render(t.field, rays, white, train=True, step=1)  # exploitation: direct colours too
    assert len(ex.aux_rgb) == 2 and all(torch.equal(a[~hit], out.rgb[~hit]) for a in ex.aux_rgb)
    ex.rgb.sum().backward()
    assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in t.field.parameters())
    s.grid.binaries.zero_()  # nothing occupied: every ray is background, no field evaluation
    out = s.render(t.field, rays, white)
    assert out.n_samples == 0 and torch.equal(out.rgb, white.expand(len(rays), 3))


def test_exploration_on_marched_samples(tmp_path):
    _, _, t = _blender_trainer(tmp_path, pronerf_interlevel=1.0)
    s = t.sampler
    _block_grid(s, 4, 12)
    rays = t.make_rays(s.ref_c2w[:1], t.info.K[:1], torch.arange(0, 256, 3))
    rays.view_ids = torch.tensor([[1, 2, 3, 4]]).expand(len(rays), 4)
    out = s.render(t.field, rays, train=True, generator=torch.Generator().manual_seed(0), step=0)
    ri, t0, t1 = out.packed  # the grid's marched samples, inside the occupied ranges
    lo, hi, _ = s.occupied_range(rays, *s.ray_range(rays))
    assert out.n_samples == ri.numel() > 0
    assert bool((t0 >= lo[ri, 0] - 1e-5).all() and (t1 <= hi[ri, 0] + s.occ_step + 1e-5).all())
    assert out.aux_loss is not None and out.aux_loss.requires_grad
    (out.rgb.sum() + out.aux_loss).backward()
    assert all(p.grad is not None for p in s.stage_a.parameters())
    assert all(p.grad is None for p in s.stage_b.parameters())


def test_occupancy_grid_training_resume_and_options(tmp_path):
    sc, cfg, _ = _blender_trainer(tmp_path, steps=20)
    t = Trainer(sc, cfg)
    t.train(progress=False)  # the grid is refreshed at steps 0 and 16
    assert bool(t.sampler.grid.binaries.any())
    _assert_resumes_exactly(t, sc, cfg, 17, tmp_path)
    half = Trainer(sc, cfg)
    half.train(steps=17, progress=False)
    saved = load_checkpoint(tmp_path / "ck.pt").sampler.grid  # the grid is in the checkpoint
    assert torch.equal(saved.binaries, half.sampler.grid.binaries)
    assert torch.equal(saved.occs, half.sampler.grid.occs)
    off = Trainer(sc, NerfConfig(sampler="pronerf", pronerf_occupancy=False, **{**TINY, "steps": 2}))
    assert off.sampler.grid is None
    pas = Trainer(sc, NerfConfig(sampler="pronerf", pronerf_explore_grid=False, **{**TINY, "steps": 2}))
    s = pas.sampler
    _block_grid(s, 4, 12)
    rays = pas.make_rays(s.ref_c2w[:1], pas.info.K[:1], torch.arange(0, 256, 3))
    rays.view_ids = torch.tensor([[1, 2, 3, 4]]).expand(len(rays), 4)
    out = s.render(pas.field, rays, train=True, generator=torch.Generator().manual_seed(0), step=0)
    lo, hi, _ = s.occupied_range(rays, *s.ray_range(rays))
    (te,) = out.edges  # densified PAS samples inside the occupied ranges, not the grid's
    assert out.packed is None and bool(((te >= lo) & (te <= hi)).all())
    with pytest.raises(ValueError, match="pronerf_occupancy needs pronerf_box"):
        NerfConfig(sampler="pronerf", pronerf_occupancy=True, pronerf_box=False)
