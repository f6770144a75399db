"""OccupancyGrid: DDA marching equals the brute-force step test, update semantics, culling."""

import pytest
import raysplat as rs
import torch
from raysplat.reference import grid as ref


def _rays(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    origins = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, -2.5])
    target = torch.rand(n, 3, generator=g) * 1.6 - 0.8
    directions = torch.nn.functional.normalize(target - origins, dim=-1)
    return origins, directions


def _grid(levels=1, res=16, seed=0, p=0.3):
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], res, levels)
    g = torch.Generator().manual_seed(seed)
    grid.binaries.copy_(torch.rand(grid.binaries.shape, generator=g) < p)
    return grid


@pytest.mark.parametrize("levels", [1, 3])
@pytest.mark.parametrize("cone_angle", [0.0, 0.05])
@pytest.mark.parametrize("stratified", [False, True])
def test_march_visits_exactly_the_brute_force_samples(levels, cone_angle, stratified):
    grid = _grid(levels)
    o, d = _rays(300)
    gen_a = torch.Generator().manual_seed(3)
    gen_b = torch.Generator().manual_seed(3)
    ri, ts, te = grid.sampling(
        o,
        d,
        near=0.1,
        far=8.0,
        render_step_size=0.02,
        cone_angle=cone_angle,
        stratified=stratified,
        generator=gen_a,
    )
    jitter = torch.rand(300, generator=gen_b) if stratified else None
    bri, bts, bte = ref.march_steps(
        o,
        d,
        torch.full((300,), 0.1),
        torch.full((300,), 8.0),
        grid.binaries,
        grid.aabb,
        0.02,
        cone_angle,
        jitter,
    )
    assert ri.numel() > 100
    assert torch.equal(ri, bri)
    assert torch.equal(ts, bts)
    assert torch.equal(te, bte)


def test_every_sample_midpoint_is_in_an_occupied_cell():
    grid = _grid(2, p=0.1)
    o, d = _rays(200, seed=1)
    ri, ts, te = grid.sampling(o, d, render_step_size=0.01)
    mid = o[ri] + (0.5 * (ts + te))[:, None] * d[ri]
    assert bool(ref.occupied(mid, grid.binaries, grid.aabb).all())


def test_full_grid_uniform_steps_and_empty_grid():
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 8)
    grid.binaries.fill_(True)
    o = torch.tensor([[0.0, 0.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0]])
    ri, ts, te = grid.sampling(o, d, render_step_size=0.1)
    assert ri.numel() == 20
    torch.testing.assert_close(te - ts, torch.full_like(ts, 0.1))
    torch.testing.assert_close(ts[0], torch.tensor(2.0))
    grid.binaries.fill_(False)
    ri, ts, te = grid.sampling(o, d, render_step_size=0.1)
    assert ri.numel() == 0 and ts.numel() == 0


def test_cone_angle_steps_grow_geometrically():
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 8, levels=4)
    grid.binaries.fill_(True)
    o = torch.zeros(1, 3)
    d = torch.tensor([[1.0, 0.0, 0.0]])
    _, ts, te = grid.sampling(o, d, near=0.05, render_step_size=0.01, cone_angle=0.1)
    torch.testing.assert_close(te - ts, torch.clamp(0.1 * ts, min=0.01))
    assert float(te[-1]) > 7.0


def test_update_warmup_marks_the_density_support():
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 16)
    sphere = lambda x: (x.norm(dim=-1) < 0.5).float() * 10.0  # noqa: E731
    grid.update(0, sphere, threshold=0.01, generator=torch.Generator().manual_seed(0))
    centers = grid.cell_centers(0, torch.arange(grid.cells_per_level))
    inside = centers.norm(dim=-1) < 0.4
    outside = centers.norm(dim=-1) > 0.65
    occ = grid.binaries.reshape(-1)
    assert bool(occ[inside].all())
    assert not bool(occ[outside].any())


def test_update_ema_decays_and_subsamples_after_warmup():
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 8)
    grid.update(0, lambda x: torch.ones(x.shape[0]), threshold=0.5)
    assert bool(grid.binaries.all())
    gen = torch.Generator().manual_seed(0)
    grid.update(300, lambda x: torch.zeros(x.shape[0]), threshold=0.5, ema_decay=0.5, generator=gen)
    touched = grid.occs < 1.0
    assert 0 < int(touched.sum()) < grid.occs.numel()
    torch.testing.assert_close(grid.occs[touched], torch.full_like(grid.occs[touched], 0.5))


@pytest.mark.usefixtures("op_backend")  # Rust and the public torch branch
def test_density_culling_keeps_only_visible_samples():
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 8)
    grid.binaries.fill_(True)
    o = torch.tensor([[0.0, 0.0, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0]])
    dense = lambda x: torch.full((x.shape[0],), 50.0)  # noqa: E731
    ri, ts, te = grid.sampling(o, d, render_step_size=0.05, density_fn=dense, early_stop_eps=1e-4)
    w, trans, _ = rs.render_weight_from_density(ts, te, torch.full_like(ts, 50.0), ri, 1)
    # 40 steps of 0.05 cross the box (t in [2, 4]); the transmittance in front of step i is
    # exp(-2.5 i) >= 1e-4 for i <= 3 only
    assert ri.tolist() == [0] * 4
    torch.testing.assert_close(ts, torch.tensor([2.0, 2.05, 2.1, 2.15]))
    torch.testing.assert_close(te, ts + 0.05)
    assert bool((trans >= 1e-4).all())
    # without culling every step is kept
    assert grid.sampling(o, d, render_step_size=0.05, density_fn=dense, early_stop_eps=0.0)[0].numel() == 40


@pytest.mark.usefixtures("op_backend")  # Rust and the public torch branch
def test_alpha_threshold_drops_thin_samples():
    """``alpha_thre`` drops samples with alpha below it (capped by the mean occupancy, as nerfacc)."""
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 8)
    grid.binaries.fill_(True)
    o = torch.tensor([[0.0, 0.0, -3.0], [0.3, 0.2, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    # thin for z < 0 (alpha = 1 - exp(-0.01 * 0.05) = 5e-4), thick for z > 0 (alpha = 0.049)
    density = lambda x: torch.where(x[:, 2] < 0, 0.01, 1.0)  # noqa: E731
    kw = dict(render_step_size=0.05, density_fn=density, early_stop_eps=0.0)
    all_ri, all_ts, _ = grid.sampling(o, d, **kw)
    assert all_ri.numel() == 80
    # a fresh grid has zero mean occupancy, which caps the threshold at 0: nothing is dropped
    assert grid.sampling(o, d, alpha_thre=0.01, **kw)[0].numel() == 80
    grid.occs.fill_(1.0)
    ri, ts, te = grid.sampling(o, d, alpha_thre=0.01, **kw)
    mid_z = -3.0 + 0.5 * (ts + te)
    assert ri.tolist() == [0] * 20 + [1] * 20  # the 20 steps of each ray with z > 0
    assert bool((mid_z > 0).all())
    keep = (-3.0 + all_ts + 0.025) > 0
    assert torch.equal(ts, all_ts[keep])
    assert grid.sampling(o, d, alpha_thre=1e-4, **kw)[0].numel() == 80  # below every alpha


def test_state_dict_round_trip():
    grid = _grid(2)
    other = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 16, 2)
    other.load_state_dict(grid.state_dict())
    assert torch.equal(other.binaries, grid.binaries)


@pytest.mark.usefixtures("op_backend")  # Rust and the public torch branch
def test_bad_arguments():
    with pytest.raises(ValueError, match="aabb"):
        rs.OccupancyGrid([1, 1, 1, 0, 0, 0])
    with pytest.raises(ValueError, match="resolution"):
        rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], 0)
    grid = _grid()
    o, d = _rays(4)
    with pytest.raises(ValueError, match="render_step_size"):
        grid.sampling(o, d, render_step_size=0.0)
    with pytest.raises(ValueError, match="near"):
        grid.sampling(o, d, near=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        grid.sampling(o * float("nan"), d)
    with pytest.raises(ValueError, match="last dimension 3"):
        grid.sampling(o[:, :2], d[:, :2])
    with pytest.raises(ValueError, match="one value per point"):
        grid.update(0, lambda x: torch.zeros(3))


@pytest.mark.parametrize("res", [32, 128])
def test_dda_matches_brute_force_on_many_rays(res):
    grid = rs.OccupancyGrid([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], res)
    centers = grid.cell_centers(0, torch.arange(grid.cells_per_level))
    g = torch.Generator().manual_seed(res)
    shell = (centers.norm(dim=-1) - 0.8).abs() < 0.3
    grid.binaries.copy_((shell & (torch.rand(centers.shape[0], generator=g) < 0.7)).view_as(grid.binaries))
    o, d = _rays(2000, seed=res)
    o = o * 1.5
    step = 3**0.5 * 3 / 1024
    ri, ts, te = grid.sampling(o, d, render_step_size=step)
    with rs.backend("torch"):
        bri, bts, bte = grid.sampling(o, d, render_step_size=step)
    assert ri.numel() > 10_000
    assert torch.equal(ri, bri) and torch.equal(ts, bts) and torch.equal(te, bte)


@pytest.mark.parametrize("levels", [1, 3])
@pytest.mark.parametrize("cone_angle", [0.0, 0.05])
@pytest.mark.parametrize("chunk", [1 << 22, 3000])
def test_vectorised_dda_twin_equals_rust_and_brute_force(levels, cone_angle, chunk):
    """The torch twin's DDA (face crossings sorted per ray) gives the Rust marcher's samples bit
    for bit, in one chunk or many, with stratified starts, axis-aligned rays and rays that start
    inside the grid."""
    grid = _grid(levels, res=16, seed=levels)
    o, d = _rays(400, seed=levels)
    o[:50] = torch.rand(50, 3) * 1.2 - 0.6  # inside the grid
    d[50:60] = torch.tensor([0.0, 0.0, 1.0])  # axis-aligned (two zero components)
    d[60:70] = torch.nn.functional.normalize(torch.tensor([1.0, 1.0, 0.0]), dim=0)
    jitter = torch.rand(400, generator=torch.Generator().manual_seed(5))
    near = torch.full((400,), 0.05)
    far = torch.full((400,), 9.0)
    args = (o, d, near, far, grid.binaries, grid.aabb, 0.013, cone_angle, jitter)
    ri, ts, te = ref.march(*args, chunk_elements=chunk)
    bri, bts, bte = ref.march_steps(*args)
    with rs.backend("rust"):
        rri, rts, rte = grid.sampling(
            o,
            d,
            near=near,
            far=far,
            render_step_size=0.013,
            cone_angle=cone_angle,
            stratified=True,
            generator=torch.Generator().manual_seed(5),
        )
    assert ri.numel() > 1000
    for a, b in ((ri, bri), (ts, bts), (te, bte), (ri, rri), (ts, rts), (te, rte)):
        assert torch.equal(a, b)


def test_vectorised_dda_twin_handles_no_hits():
    grid = _grid(1, res=8, p=0.0)
    o, d = _rays(20)
    ri, ts, te = ref.march(
        o, d, torch.zeros(20), torch.full((20,), 9.0), grid.binaries, grid.aabb, 0.01, 0.0, None
    )
    assert ri.numel() == 0 and ts.numel() == 0 and te.numel() == 0 and ri.dtype == torch.long
    # rays that miss the grid entirely
    ri, _, _ = ref.march(
        o, -d, torch.zeros(20), torch.full((20,), 9.0), grid.binaries, grid.aabb, 0.01, 0.05, None
    )
    assert ri.numel() == 0
