"""3D Gaussian stitching: algorithms.md §4.4 invariants, transforms, round trips and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from raysplat import cli
from raysplat._checks import backend
from raysplat.cameras import intrinsics, look_at
from raysplat.gs.model import GaussianModel, rgb_to_sh, sh_to_rgb
from raysplat.gs.ply import load_ply, save_ply
from raysplat.stitch import (
    Similarity,
    StitchConfig,
    StitchError,
    find_boundary,
    merge,
    parse_selection,
    stitch,
    streaming_palette,
    transform_model,
)
from raysplat.stitch.compose import clone_model
from raysplat.stitch.demo import demo_problem, sphere_model
from raysplat.stitch.optimize import _parts, _render, nearest_palette

FAST = {"steps": 6, "views": 3, "width": 32, "height": 24, "frames": 2, "out_width": 32, "out_height": 24}


def _random_model(n=200, degree=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = GaussianModel.from_points(
        torch.randn(n, 3, generator=g) * 0.5,
        torch.rand(n, 3, generator=g),
        sh_degree=degree,
        init_opacity=0.8,
    )
    k = (degree + 1) ** 2 - 1
    m.params["shN"].data = torch.randn(n, k, 3, generator=g) * 0.3
    m.params["quats"].data = torch.randn(n, 4, generator=g)
    m.params["scales"].data += torch.randn(n, 3, generator=g) * 0.3
    return m


# ------------------------------------------------------------------- §4.4 invariants


def test_boundary_kdtree_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(500, 3, generator=g), torch.rand(300, 3, generator=g) + 0.6
    op = torch.rand(500, generator=g)
    m1, i1 = find_boundary(a, op, b, 0.2, k=8, tau=0.3)
    with backend("torch"):
        m2, i2 = find_boundary(a, op, b, 0.2, k=8, tau=0.3)
    assert torch.equal(m1, m2) and torch.equal(i1, i2) and 0 < int(m1.sum()) < 500
    # brute force by hand
    d = torch.cdist(a.double(), b.double()).sort(1).values[:, :8].mean(1)
    assert torch.equal(m1, (d < 0.2) & (op > 0.3))


def test_boundary_invariant_under_common_rigid_transform_and_radius_limits():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(400, 3, generator=g), torch.rand(200, 3, generator=g) + 0.7
    op = torch.ones(400)
    m1, _ = find_boundary(a, op, b, 0.25, k=4, tau=0.5)
    tf = Similarity.from_parts((1.0, -2.0, 0.5), (20.0, 35.0, -60.0))
    m2, _ = find_boundary(tf.apply_points(a), op, tf.apply_points(b), 0.25, k=4, tau=0.5)
    d = torch.cdist(a.double(), b.double()).sort(1).values[:, :4].mean(1)
    stable = (d - 0.25).abs() > 1e-5  # float32 round-off may only flip points on the threshold
    assert torch.equal(m1[stable], m2[stable]) and m1.any()
    assert not find_boundary(a, op, b, 0.0, k=4)[0].any()  # radius 0: empty
    assert find_boundary(a, op, b, math.inf, k=4, tau=0.5)[0].all()  # radius inf: everything opaque
    half = torch.where(torch.arange(400) % 2 == 0, 1.0, 0.1)
    assert torch.equal(find_boundary(a, half, b, math.inf, k=4, tau=0.5)[0], half > 0.5)


def test_sh_dc_round_trip():
    rgb = torch.rand(1000, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.allclose(sh_to_rgb(rgb_to_sh(rgb)), rgb, atol=1e-15, rtol=0)


def test_losses_zero_and_target_unchanged_when_source_agrees():
    # a uniformly coloured target and an identical source: feature, colour and gradient losses
    # vanish at initialisation and the optimum is the original target
    m = sphere_model(600, seed=4, sh_degree=1)
    m.params["sh0"].data[:] = rgb_to_sh(torch.tensor([0.6, 0.4, 0.3]))
    m.params["shN"].data.zero_()
    cfg = StitchConfig(**{**FAST, "lambda_tune": 0.0, "progress": False})
    res = stitch(m, m, "sphere:1,0,0,0.5", Similarity.from_parts(scale=1.01), cfg)
    first = res.metrics["loss_history"]["rows"][0]
    assert first[0] == 1 and max(abs(v) for v in first[1:]) < 1e-10
    assert torch.equal(res.model.params["sh0"][: len(m)], m.params["sh0"].detach())


def test_offset_propagation_shifts_the_colour_and_keeps_the_texture():
    # the 'shade' demo's source is the target plus one colour offset (its texture lies on the grey
    # axis, which the hue rotation keeps): "offset" moves the boundary's chroma by that offset
    # for every Gaussian alike (texture kept) and leaves the interior; "copy" replaces the
    # boundary colours by blurred source colours (texture lost)
    target, source, sel, tf = demo_problem(1500, seed=12)
    cfg = {**FAST, "steps": 60, "lr": 0.1, "lambda_tune": 0.0, "progress": False}
    grey = torch.ones(3) / math.sqrt(3)
    rgb0 = sh_to_rgb(target.params["sh0"].detach()[:, 0])
    source_rgb = sh_to_rgb(source.params["sh0"].detach()[:, 0])
    want = (source_rgb - rgb0).mean(0)
    want = want - (want @ grey) * grey  # the offset's chroma
    spread = {}
    for mode in ("offset", "copy"):
        res = stitch(target, source, sel, tf, StitchConfig(**cfg, propagate=mode))
        n_t = len(target)
        d = sh_to_rgb(res.model.params["sh0"].detach()[:n_t, 0]) - rgb0
        b = res.boundary
        lum = d[b] @ grey
        spread[mode] = float(lum.std())
        if mode == "offset":
            chroma = d[b] - lum[:, None] * grey
            assert float((chroma.mean(0) - want).norm()) < 0.25 * float(want.norm())
            dist = torch.cdist(target.means, target.means[b]).min(1).values
            far = dist > res.metrics["config"]["prop_radius"] * res.metrics["L"]
            assert far.sum() > 100 and float(d[far].abs().mean()) < 0.01  # the interior is pinned
    assert spread["offset"] < 0.5 * spread["copy"], spread


def test_palette_idempotent_and_one_cluster_is_the_mean():
    g = torch.Generator().manual_seed(5)
    cols = [torch.rand(300, 3, generator=g) for _ in range(6)]
    pal, w = streaming_palette(cols, init_bins=3, max_bins=8, new_bin=0.2)
    assert 3 <= len(pal) <= 8 and abs(float(w.sum()) - 1) < 1e-6
    idx, _ = nearest_palette(torch.cat(cols), pal)
    idx2, d2 = nearest_palette(pal[idx], pal)
    assert torch.equal(idx, idx2) and float(d2.max()) == 0.0  # assigning twice changes nothing
    one, w1 = streaming_palette(cols, init_bins=1, max_bins=1, new_bin=0.0)
    assert torch.allclose(one[0], torch.cat(cols).double().mean(0).float(), atol=1e-6) and float(w1[0]) == 1


# ------------------------------------------------------------- transforms and round trips


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_rigid_transform_renders_like_the_inverse_camera(degree):
    m = _random_model(degree=degree)
    tf = Similarity.from_parts((0.3, -1.0, 2.0), (30.0, -50.0, 70.0), 1.7)
    moved = transform_model(m, tf)
    cam = look_at(torch.tensor([3.0, 1.0, 1.5]), torch.zeros(3))
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3] = cam
    cam2 = (tf.matrix() @ c2w)[:3].clone()
    cam2[:, :3] /= tf.scale
    K = intrinsics(48, 36, 50.0)[None]
    a, _, _ = _render(_parts(m), cam.float()[None], K, 48, 36)
    b, _, _ = _render(_parts(moved), cam2.float()[None], K, 48, 36)
    assert float((a - b).abs().max()) < 2e-5 and float(a.std()) > 0.05
    if degree > 0:  # the SH rotation matters: without it the view-dependent colours differ
        p = {k: v.detach() for k, v in moved.params.items()}
        raw = GaussianModel(
            p["means"], p["quats"], p["scales"], p["opacities"], p["sh0"], m.params["shN"].detach()
        )
        c, _, _ = _render(_parts(raw), cam2.float()[None], K, 48, 36)
        assert float((a - c).abs().max()) > 1e-2


def test_transform_parsing():
    tf = Similarity.from_parts((1.0, 2.0, 3.0), (10.0, 20.0, 30.0), 2.0)
    m = tf.matrix()
    for vals in (m.reshape(-1).tolist(), m[:3].reshape(-1).tolist()):
        back = Similarity.from_matrix(vals)
        assert torch.allclose(back.matrix(), m, atol=1e-12) and abs(back.scale - 2.0) < 1e-12
    shear = torch.eye(4)
    shear[0, 1] = 0.5
    with pytest.raises(ValueError, match="uniform scale"):
        Similarity.from_matrix(shear.reshape(-1))
    with pytest.raises(ValueError, match="12 or 16"):
        Similarity.from_matrix([1.0] * 9)
    with pytest.raises(ValueError, match="scale"):
        Similarity.from_parts(scale=-1.0)


def test_selection_parsing_and_masks():
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0.0, 2.5, 0]])
    assert parse_selection("box:-0.5,-0.5,-0.5,1,1,1").mask(pts).tolist() == [True, True, False]
    assert parse_selection("sphere:0,0,0,1.5").mask(pts).tolist() == [True, True, False]
    # a box of half-extents (0.2, 3, 0.2) rotated 90° about z covers x in [-3, 3]
    q = f"{math.cos(math.pi / 4)},0,0,{math.sin(math.pi / 4)}"
    assert parse_selection(f"obox:0,0,0,0.2,3,0.2,{q}").mask(pts).tolist() == [True, True, False]
    assert parse_selection(None).mask(pts).all()
    for bad, what in [
        ("box:1,2,3", "6"),
        ("cube:1", "selection"),
        ("sphere:0,0,0,-1", "radius"),
        ("box:a,b", "numbers"),
    ]:
        with pytest.raises(ValueError, match=what):
            parse_selection(bad)


def test_select_transform_merge_save_load_round_trip(tmp_path):
    target, source, sel, _ = demo_problem(800, seed=6)
    source = _random_model(300, degree=3, seed=7)
    tf = Similarity.from_parts((0.1, 0.2, 0.3), (0.0, 0.0, 45.0), 0.9)
    part = transform_model(clone_model(source, parse_selection("sphere:0,0,0,0.6").mask(source.means)), tf)
    merged, labels = merge(target, part)
    assert merged.sh_degree == 3 and labels.tolist() == [0] * 800 + [1] * len(part)
    back = load_ply(save_ply(merged, tmp_path / "m.ply"))
    for k in merged.params:
        assert torch.equal(back.params[k], merged.params[k].detach()), k
    # the padded target keeps its colours (new SH bands are zero)
    assert torch.equal(merged.params["shN"][:800, :3], target.params["shN"].detach())
    assert not merged.params["shN"][:800, 3:].any()


def test_stitch_writes_outputs_that_round_trip(tmp_path):
    target, source, sel, tf = demo_problem(1500, seed=8)
    save_ply(target, tmp_path / "t.ply")
    save_ply(source, tmp_path / "s.ply")
    out = tmp_path / "run"
    res = stitch(
        tmp_path / "t.ply", tmp_path / "s.ply", sel, tf, StitchConfig(**FAST, progress=False), out=out
    )
    plys = sorted(p.name for p in out.rglob("*.ply"))
    assert plys == ["stitched.ply"]
    back = load_ply(out / "stitched.ply")
    for k in back.params:
        assert torch.equal(back.params[k], res.model.params[k].detach()), k
    labels = np.load(out / "labels.npy")
    assert labels.dtype == np.uint8 and labels.tolist() == res.labels.tolist()
    assert labels.sum() == res.metrics["n_source"] > 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"] == 6 and m["n_boundary"] > 0
    assert (out / "renders" / "before_00.png").is_file() and (out / "renders" / "after_00.png").is_file()
    assert (out / "video" / "turntable.gif").is_file() and (out / "video" / "turntable.mp4").is_file()
    with open(out / "stitched.ply", "rb") as f:
        header = f.read(4000).split(b"end_header")[0].decode()
    assert all(line.startswith("property float ") for line in header.splitlines() if "property" in line)
    # the source part is unchanged; only the target's SH moved
    n_t = res.metrics["n_target"]
    for k in ("means", "quats", "scales", "opacities"):
        assert torch.equal(res.model.params[k][:n_t], res.naive.params[k][:n_t])
    assert torch.equal(res.model.params["sh0"][n_t:], res.naive.params["sh0"][n_t:])
    assert not torch.equal(res.model.params["sh0"][:n_t], res.naive.params["sh0"][:n_t])


# ----------------------------------------------------------------------------- bad input


def _write_ply_without(path, model, drop):
    from raysplat.gs.ply import read_ply_vertices

    save_ply(model, path)
    v = read_ply_vertices(path)
    names = [n for n in v.dtype.names if n != drop]
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {len(v)}\n"
    header += "".join(f"property float {k}\n" for k in names) + "end_header\n"
    rec = np.empty(len(v), dtype=[(k, "<f4") for k in names])
    for k in names:
        rec[k] = v[k]
    path.write_bytes(header.encode() + rec.tobytes())


def test_bad_inputs_give_one_clear_error_and_write_nothing(tmp_path):
    target, source, sel, tf = demo_problem(600, seed=9)
    save_ply(target, tmp_path / "t.ply")
    _write_ply_without(tmp_path / "noop.ply", source, "opacity")
    nan = clone_model(source)
    nan.params["scales"].data[5, 1] = float("nan")
    save_ply(nan, tmp_path / "nan.ply")
    save_ply(source, tmp_path / "s.ply")
    cfg = StitchConfig(**FAST, progress=False)
    cases = [
        (tmp_path / "noop.ply", sel, tf, "source.*missing opacity"),
        (tmp_path / "nan.ply", sel, tf, "source: scales holds NaN"),
        (tmp_path / "s.ply", "sphere:5,5,5,0.1", tf, "contains no source Gaussian"),
        (tmp_path / "s.ply", sel, Similarity.from_parts((4.0, 0.0, 0.0)), "no boundary found"),
        (tmp_path / "missing.ply", sel, tf, "no such PLY"),
    ]
    for i, (src, s, t, msg) in enumerate(cases):
        out = tmp_path / f"out{i}"
        with pytest.raises((StitchError, FileNotFoundError), match=msg):
            stitch(tmp_path / "t.ply", src, s, t, cfg, out=out)
        assert not out.exists()


def test_cli_stitch_and_errors(tmp_path, capsys):
    target, source, sel, _ = demo_problem(600, seed=10)
    save_ply(target, tmp_path / "t.ply")
    save_ply(source, tmp_path / "s.ply")
    out = tmp_path / "run"
    sets = [x for k, v in FAST.items() if k != "steps" for x in ("--set", f"{k}={v}")]
    args = ["stitch", str(tmp_path / "t.ply"), str(tmp_path / "s.ply"), "--select", sel, "--scale", "1.01"]
    assert cli.main([*args, "--out", str(out), "--steps", "3", "-q", *sets]) == 0
    assert "stitched" in capsys.readouterr().out and (out / "stitched.ply").is_file()
    for extra, msg in [
        (["--transform", "1,0,0"], "12 or 16"),
        (["--translate", "9,0,0"], "no boundary found"),
        (["--select", "sphere:0,0"], "selection sphere"),
        (["--transform", ",".join(["1"] * 12), "--scale", "2"], "cannot be combined"),
    ]:
        rc = cli.main([*args[:3], *extra, "--out", str(tmp_path / "bad"), "-q", *sets])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and err.count("\n") == 1, err
        assert not (tmp_path / "bad").exists()
