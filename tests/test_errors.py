"""Argument validation: every bad input is a TypeError / ValueError, never a Rust panic."""

from __future__ import annotations

import re

import pytest
import raysplat as rs
import torch
from raysplat import _checks

# every case runs on the Rust path and on the public torch branch (CUDA tensors' path)
pytestmark = pytest.mark.usefixtures("op_backend")

NAN, INF = float("nan"), float("inf")
LONG = torch.long


def expect(exc_type, fn, *args, match: str | None = None, **kwargs):
    """Calls ``fn`` and checks it raises ``exc_type``; a non-Exception BaseException (pyo3's
    PanicException) fails the test."""
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - inspected below
        assert isinstance(e, exc_type), f"expected {exc_type.__name__}, got {type(e).__name__}: {e}"
        if match is not None:
            assert re.search(match, str(e)), f"{match!r} not in {e!r}"
        return e
    except BaseException as e:  # a pyo3 PanicException escaped
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        pytest.fail(f"non-Exception {type(e).__name__} escaped: {e}")
    pytest.fail(f"{exc_type.__name__} not raised")


def no_panic(fn, *args, **kwargs):
    """Calls ``fn``; returns its result or None for TypeError/ValueError; fails on panics."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        pytest.fail(f"{type(e).__name__} escaped: {e}")


def _iv(shape=(2, 3)):
    ts = torch.rand(shape)
    return ts, ts + 0.1, torch.rand(shape)


SORTED_EDGES = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, 0.5, 1.0, 4.0]])
W = torch.rand(2, 3)


# -------------------------------------------------------------------------------- rank / dims


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rs.render_weight_from_density(*_iv((2, 3, 1))), "t_starts"),
        (lambda: rs.render_weight_from_alpha(torch.rand(2, 3, 1)), "alphas"),
        (lambda: rs.render_weight_from_alpha(torch.rand(5)), "alphas"),  # 1-D without ray_indices
        (lambda: rs.accumulate_along_rays(torch.rand(2, 3, 1)), "weights"),
        (lambda: rs.accumulate_along_rays(torch.rand(2, 3), torch.rand(2, 3)), "values"),  # values rank
        (lambda: rs.inclusive_sum(torch.rand(2, 3, 4)), "inputs"),
        (lambda: rs.exclusive_prod(torch.rand(2, 3), ray_indices=torch.zeros(2, 3, dtype=LONG)), "inputs"),
        (lambda: rs.generate_rays(torch.eye(4)[0], torch.eye(3), 4, 4), "c2w"),
        (lambda: rs.generate_rays(torch.eye(4), torch.eye(3)[None, None], 4, 4), "K"),
        (
            lambda: rs.generate_rays(torch.eye(4), torch.eye(3), 4, 4, pixels=torch.zeros(2, 1, dtype=LONG)),
            "pixels",
        ),
        (lambda: rs.ray_aabb_intersect(torch.rand(3), torch.rand(3), torch.rand(6)), "origins"),
        (lambda: rs.ray_aabb_intersect(torch.rand(2, 3), torch.rand(2, 3), torch.rand(1, 1, 6)), "aabb"),
        (lambda: rs.stratified_samples(torch.rand(2, 2), 3.0, 4), "t_near"),
        (lambda: rs.stratified_samples(torch.rand(2, 1, 1), 3.0, 4), "t_near"),
        (lambda: rs.importance_sampling(SORTED_EDGES[0], W[0], 4), r"\bt_edges\b"),
        (lambda: rs.inverse_cdf(SORTED_EDGES, W, torch.rand(2)), "u"),
        (lambda: rs.interlevel_loss(SORTED_EDGES[0], W[0], SORTED_EDGES, W), "t_edges_prop"),
    ],
)
def test_wrong_rank(call, match):
    expect(ValueError, call, match=match)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rs.ray_aabb_intersect(torch.rand(2, 2), torch.rand(2, 2), torch.rand(6)), "origins"),
        (lambda: rs.ray_aabb_intersect(torch.rand(2, 3), torch.rand(2, 3), torch.rand(5)), "aabb"),
        (lambda: rs.ndc_rays(torch.rand(2, 4), torch.rand(2, 4), 1.0, 4, 4), "origins"),
        (lambda: rs.generate_rays(torch.eye(3), torch.eye(3), 4, 4), "c2w"),
        (lambda: rs.generate_rays(torch.eye(4), torch.eye(2), 4, 4), "K"),
        (lambda: rs.volume_render(*_iv(), torch.rand(2, 3, 3), render_bkgd=torch.rand(4)), "render_bkgd"),
        (lambda: rs.ndc_rays(torch.rand(2, 3), torch.rand(2, 3), torch.rand(4, 4), 4, 4), "focal"),
    ],
)
def test_wrong_last_dim(call, match):
    expect(ValueError, call, match=match)


# ------------------------------------------------------------------------------- dtypes/types


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rs.render_weight_from_density(torch.zeros(2, 3, dtype=LONG), *_iv()[1:]), "t_starts"),
        (lambda: rs.render_weight_from_density(*_iv()[:2], torch.ones(2, 3, dtype=torch.int32)), "sigmas"),
        (lambda: rs.render_weight_from_alpha(torch.ones(2, 3, dtype=torch.bool)), "alphas"),
        (lambda: rs.accumulate_along_rays(torch.ones(2, 3, dtype=LONG)), "weights"),
        (lambda: rs.accumulate_along_rays(torch.rand(2, 3), torch.ones(2, 3, 1, dtype=LONG)), "values"),
        (lambda: rs.inclusive_sum(torch.arange(6).view(2, 3)), "inputs"),
        (lambda: rs.inclusive_prod(torch.rand(2, 3, dtype=torch.complex64)), "inputs"),
        (lambda: rs.generate_rays(torch.eye(4, dtype=LONG), torch.eye(3), 4, 4), "c2w"),
        (
            lambda: rs.ray_aabb_intersect(torch.zeros(2, 3, dtype=LONG), torch.rand(2, 3), torch.rand(6)),
            "origins",
        ),
        (lambda: rs.importance_sampling(SORTED_EDGES.long(), W, 4), "t_edges"),
        (lambda: rs.stratified_samples(torch.ones(2, dtype=LONG), 3.0, 4), "t_near"),
        (lambda: rs.stratified_samples(1.0, 2.0, 2.5), "n_samples"),
        (lambda: rs.stratified_samples(1.0, 2.0, True), "n_samples"),
        (lambda: rs.generate_rays(torch.eye(4), torch.eye(3), 4.0, 4), "width"),
        (lambda: rs.inclusive_sum([1.0, 2.0]), "inputs"),
        (lambda: rs.render_weight_from_alpha(None), "alphas"),
        (lambda: rs.set_num_threads("2"), r"\bn\b"),
    ],
)
def test_wrong_dtype_or_type(call, match):
    expect(TypeError, call, match=match)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_float_ray_indices(dtype):
    ri = torch.tensor([0, 0, 1]).to(dtype)
    x = torch.rand(3)
    expect(TypeError, rs.render_weight_from_density, x, x + 1, x, ray_indices=ri, match="ray_indices")
    expect(TypeError, rs.render_weight_from_alpha, x, ray_indices=ri, match="ray_indices")
    expect(TypeError, rs.accumulate_along_rays, x, ray_indices=ri, match="ray_indices")
    expect(TypeError, rs.inclusive_sum, x, ray_indices=ri, match="ray_indices")
    expect(TypeError, rs.pack_info, ri, match="ray_indices")
    expect(
        TypeError, rs.inclusive_sum, x, packed_info=torch.tensor([[0.0, 3.0]]).to(dtype), match="packed_info"
    )
    expect(TypeError, rs.generate_rays, torch.eye(4), torch.eye(3), 4, 4, pixels=ri, match="pixels")


# ----------------------------------------------------------------------------- non-finite


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_non_finite_inputs(bad):
    def poison(x):
        x = x.clone()
        x.view(-1)[1] = bad
        return x

    ts, te, sig = _iv()
    expect(ValueError, rs.render_weight_from_density, poison(ts), te, sig, match="t_starts.*NaN or infinite")
    expect(ValueError, rs.render_weight_from_density, ts, poison(te), sig, match="t_ends")
    expect(ValueError, rs.render_weight_from_density, ts, te, poison(sig), match="sigmas")
    expect(ValueError, rs.render_weight_from_alpha, poison(sig), match="alphas")
    expect(ValueError, rs.accumulate_along_rays, poison(sig), match="weights")
    expect(ValueError, rs.accumulate_along_rays, sig, poison(torch.rand(2, 3, 2)), match="values")
    expect(ValueError, rs.volume_render, ts, te, sig, poison(torch.rand(2, 3, 3)), match="rgbs")
    expect(
        ValueError,
        rs.volume_render,
        ts,
        te,
        sig,
        torch.rand(2, 3, 3),
        render_bkgd=poison(torch.rand(3)),
        match="render_bkgd",
    )
    for scan in (rs.inclusive_sum, rs.exclusive_sum, rs.inclusive_prod, rs.exclusive_prod):
        expect(ValueError, scan, poison(sig), match="inputs")
    expect(ValueError, rs.stratified_samples, poison(torch.rand(3)), 5.0, 4, match="t_near")
    expect(ValueError, rs.stratified_samples, 0.1, bad, 4, match="t_far")
    expect(ValueError, rs.importance_sampling, poison(SORTED_EDGES), W, 4, match="t_edges")
    expect(ValueError, rs.importance_sampling, SORTED_EDGES, poison(W), 4, match="weights")
    expect(ValueError, rs.inverse_cdf, SORTED_EDGES, W, poison(torch.rand(2, 3)), match="u")
    expect(ValueError, rs.interlevel_loss, SORTED_EDGES, poison(W), SORTED_EDGES, W, match="weights_prop")
    expect(ValueError, rs.interlevel_loss, SORTED_EDGES, W, SORTED_EDGES, poison(W), match=r"\bweights\b")
    expect(ValueError, rs.generate_rays, poison(torch.eye(4)), torch.eye(3), 4, 4, match="c2w")
    expect(ValueError, rs.generate_rays, torch.eye(4), poison(torch.eye(3)), 4, 4, match="K")
    o, d = torch.rand(2, 3), torch.rand(2, 3) - torch.tensor([0, 0, 2.0])
    expect(ValueError, rs.ndc_rays, poison(o), d, 10.0, 4, 4, match="origins")
    expect(ValueError, rs.ndc_rays, o, poison(d), 10.0, 4, 4, match="directions")
    expect(
        ValueError,
        rs.ray_aabb_intersect,
        poison(o),
        d,
        torch.rand(6).sort().values,
        match="origins",
    )
    box = torch.tensor([0.0, 0, 0, 1, 1, 1])
    expect(ValueError, rs.ray_aabb_intersect, o, d, poison(box), match="aabb")


# ------------------------------------------------------------------------ shape mismatches


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: rs.render_weight_from_density(torch.rand(2, 3), torch.rand(2, 4), torch.rand(2, 3)),
            "t_ends",
        ),
        (
            lambda: rs.render_weight_from_density(torch.rand(2, 3), torch.rand(2, 3), torch.rand(3, 3)),
            "sigmas",
        ),
        (
            lambda: rs.render_weight_from_density(*_iv((4,)), ray_indices=torch.tensor([0, 0, 1])),
            "ray_indices",
        ),
        (
            lambda: rs.render_weight_from_alpha(torch.rand(4), ray_indices=torch.tensor([0, 0, 1])),
            "ray_indices",
        ),
        (lambda: rs.accumulate_along_rays(torch.rand(4), ray_indices=torch.tensor([0, 0, 1])), "ray_indices"),
        (lambda: rs.accumulate_along_rays(torch.rand(2, 3), torch.rand(2, 4, 3)), "values"),
        (
            lambda: rs.accumulate_along_rays(
                torch.rand(3), torch.rand(4, 2), ray_indices=torch.tensor([0, 0, 1])
            ),
            "values",
        ),
        (lambda: rs.volume_render(*_iv(), torch.rand(2, 4, 3)), "rgbs"),
        (lambda: rs.inclusive_sum(torch.rand(4), ray_indices=torch.tensor([0, 0, 1])), "ray_indices"),
        (lambda: rs.inclusive_sum(torch.rand(5), packed_info=torch.tensor([[0, 2], [3, 3]])), "packed_info"),
        (lambda: rs.inclusive_sum(torch.rand(5), packed_info=torch.tensor([[0, 2], [2, 2]])), "packed_info"),
        (lambda: rs.inclusive_sum(torch.rand(5), packed_info=torch.tensor([[0, 7], [7, -2]])), "packed_info"),
        (lambda: rs.stratified_samples(torch.rand(3), torch.rand(4) + 1, 4), "t_far"),
        (lambda: rs.importance_sampling(SORTED_EDGES, torch.rand(2, 4), 4), r"\bweights\b"),
        (lambda: rs.importance_sampling(SORTED_EDGES, torch.rand(3, 3), 4), r"\bweights\b"),
        (lambda: rs.importance_sampling(SORTED_EDGES[:, :1], torch.rand(2, 0), 4), r"\bweights\b"),
        (lambda: rs.inverse_cdf(SORTED_EDGES, W, torch.rand(3, 5)), "u"),
        (lambda: rs.interlevel_loss(SORTED_EDGES, W, SORTED_EDGES[:1], W[:1]), "t_edges_prop"),
        (lambda: rs.ray_aabb_intersect(torch.rand(2, 3), torch.rand(3, 3), torch.rand(6)), "directions"),
        (lambda: rs.ndc_rays(torch.rand(2, 3), torch.rand(3, 3), 1.0, 4, 4), "directions"),
        (lambda: rs.generate_rays(torch.eye(4).expand(3, 4, 4), torch.eye(3).expand(2, 3, 3), 4, 4), "c2w"),
    ],
)
def test_mismatched_lengths(call, match):
    expect(ValueError, call, match=match)


# ------------------------------------------------------------------------------ bad values


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rs.stratified_samples(2.0, 1.0, 4), "t_far"),
        (lambda: rs.stratified_samples(0.0, 1.0, 4, "disparity"), "t_near"),
        (lambda: rs.stratified_samples(-0.5, 1.0, 4, "contracted"), "t_near"),
        (lambda: rs.stratified_samples(0.1, 1.0, 0), "n_samples"),
        (lambda: rs.importance_sampling(SORTED_EDGES, -W, 4), r"\bweights\b"),
        (lambda: rs.importance_sampling(SORTED_EDGES.flip(-1), W, 4), r"\bt_edges\b"),
        (lambda: rs.importance_sampling(SORTED_EDGES, W, 0), "n_samples"),
        (lambda: rs.interlevel_loss(SORTED_EDGES, W, SORTED_EDGES.flip(-1), W), r"\bt_edges\b"),
        (lambda: rs.generate_rays(torch.eye(4), torch.eye(3), 0, 4), "width"),
        (lambda: rs.generate_rays(torch.eye(4), torch.zeros(3, 3), 4, 4), "K"),
        (lambda: rs.ndc_rays(torch.rand(2, 3), -torch.ones(2, 3), 0.0, 4, 4), "focal"),
        (lambda: rs.ndc_rays(torch.rand(2, 3), -torch.ones(2, 3), 1.0, 4, 4, near=0.0), "near"),
        (
            lambda: rs.ndc_rays(torch.rand(2, 3), torch.tensor([[0.0, 0, -1], [1.0, 0, 0]]), 1.0, 4, 4),
            "directions",
        ),
        (
            lambda: rs.ray_aabb_intersect(
                torch.rand(2, 3), torch.rand(2, 3), torch.tensor([1.0, 1, 1, 0, 0, 0])
            ),
            "aabb",
        ),
        (
            lambda: rs.render_weight_from_alpha(
                torch.rand(3), ray_indices=torch.tensor([0, 0, 1]), n_rays=-1
            ),
            "n_rays",
        ),
        (lambda: rs.set_num_threads(0), r"\bn\b"),
    ],
)
def test_bad_values(call, match):
    expect(ValueError, call, match=match)


# ---------------------------------------------------------------------------- ray_indices


UNSORTED = torch.tensor([1, 0, 0, 1])


@pytest.mark.parametrize(
    "call",
    [
        lambda ri: rs.render_weight_from_density(*_iv((4,)), ray_indices=ri),
        lambda ri: rs.render_weight_from_alpha(torch.rand(4), ray_indices=ri),
        lambda ri: rs.volume_render(*_iv((4,)), torch.rand(4, 3), ray_indices=ri),
        lambda ri: rs.inclusive_sum(torch.rand(4), ray_indices=ri),
        lambda ri: rs.exclusive_prod(torch.rand(4), ray_indices=ri),
        lambda ri: rs.pack_info(ri),
    ],
)
def test_unsorted_ray_indices(call):
    expect(ValueError, call, UNSORTED, match="ray_indices.*sorted")


def test_accumulate_accepts_unsorted_ray_indices():
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = rs.accumulate_along_rays(w, ray_indices=UNSORTED)
    assert torch.equal(out, torch.tensor([[5.0], [5.0]]))


@pytest.mark.parametrize(
    "ri", [torch.tensor([0, 0, 1, 5]), torch.tensor([-1, 0, 0, 1]), torch.tensor([3, 0, 0, 1])]
)
@pytest.mark.parametrize(
    "call",
    [
        lambda ri: rs.render_weight_from_density(*_iv((4,)), ray_indices=ri, n_rays=2),
        lambda ri: rs.render_weight_from_alpha(torch.rand(4), ray_indices=ri, n_rays=2),
        lambda ri: rs.accumulate_along_rays(torch.rand(4), ray_indices=ri, n_rays=2),
        lambda ri: rs.accumulate_along_rays(torch.rand(4), torch.rand(4, 3), ray_indices=ri, n_rays=2),
        lambda ri: rs.volume_render(*_iv((4,)), torch.rand(4, 3), ray_indices=ri, n_rays=2),
        lambda ri: rs.inclusive_sum(torch.rand(4), ray_indices=ri, n_rays=2),
        lambda ri: rs.pack_info(ri, 2),
    ],
)
def test_out_of_range_ray_indices(call, ri):
    expect(ValueError, call, ri, match="ray_indices")


def test_negative_ray_indices_default_n_rays():
    ri = torch.tensor([-1, 0, 0, 1])
    expect(ValueError, rs.render_weight_from_density, *_iv((4,)), ray_indices=ri, match="ray_indices")
    expect(
        ValueError,
        rs.accumulate_along_rays,
        torch.rand(4),
        ray_indices=torch.tensor([1, 0, -1, 1]),
        match="ray_indices",
    )
    expect(ValueError, rs.inclusive_sum, torch.rand(4), ray_indices=ri, match="ray_indices")


def test_generate_rays_pixels_out_of_range():
    expect(
        ValueError,
        rs.generate_rays,
        torch.eye(4),
        torch.eye(3),
        4,
        4,
        pixels=torch.tensor([16]),
        match="pixels",
    )
    expect(
        ValueError,
        rs.generate_rays,
        torch.eye(4),
        torch.eye(3),
        4,
        4,
        pixels=torch.tensor([-1]),
        match="pixels",
    )
    o, _ = rs.generate_rays(torch.eye(4), torch.eye(3), 4, 4, pixels=torch.tensor([15, 0]))
    assert o.shape == (2, 3)


# --------------------------------------------------------------------------------- enums


def test_bad_enum_strings():
    expect(ValueError, rs.stratified_samples, 0.1, 1.0, 4, spacing="log", match="spacing")
    expect(ValueError, rs.stratified_samples, 0.1, 1.0, 4, spacing="Linear", match="spacing")
    expect(
        ValueError,
        rs.generate_rays,
        torch.eye(4),
        torch.eye(3),
        4,
        4,
        "directx",
        match="convention",
    )
    expect(ValueError, rs.generate_rays, torch.eye(4), torch.eye(3), 4, 4, None, match="convention")


# ------------------------------------------------------------------------------- devices


def test_mixed_devices():
    x = torch.rand(2, 3)
    m = x.to("meta")
    same = "same device"
    expect(ValueError, rs.render_weight_from_density, x, m, x, match=same + ".*t_ends=meta")
    expect(
        ValueError,
        rs.render_weight_from_alpha,
        torch.rand(3),
        ray_indices=torch.zeros(3, dtype=LONG, device="meta"),
        match=same + ".*ray_indices=meta",
    )
    expect(
        ValueError,
        rs.accumulate_along_rays,
        x,
        torch.rand(2, 3, 1, device="meta"),
        match=same + ".*values=meta",
    )
    expect(
        ValueError,
        rs.volume_render,
        x,
        x + 1,
        x,
        torch.rand(2, 3, 3, device="meta"),
        match=same + ".*rgbs=meta",
    )
    expect(
        ValueError,
        rs.inclusive_sum,
        torch.rand(3),
        ray_indices=torch.zeros(3, dtype=LONG, device="meta"),
        match=same + ".*ray_indices=meta",
    )
    expect(
        ValueError,
        rs.stratified_samples,
        torch.rand(3),
        torch.rand(3, device="meta"),
        4,
        match=same + ".*t_far=meta",
    )
    expect(ValueError, rs.importance_sampling, SORTED_EDGES, W.to("meta"), 4, match=same + ".*weights=meta")
    expect(
        ValueError, rs.inverse_cdf, SORTED_EDGES, W, torch.rand(2, 3, device="meta"), match=same + ".*u=meta"
    )
    expect(
        ValueError,
        rs.generate_rays,
        torch.eye(4, device="meta"),
        torch.eye(3),
        4,
        4,
        match=same + ".*c2w=meta",
    )
    expect(
        ValueError,
        rs.generate_rays,
        torch.eye(4),
        torch.eye(3),
        4,
        4,
        pixels=torch.zeros(2, dtype=LONG, device="meta"),
        match=same + ".*pixels=meta",
    )
    expect(
        ValueError,
        rs.interlevel_loss,
        SORTED_EDGES,
        W,
        SORTED_EDGES,
        W.to("meta"),
        match=same + ".*weights=meta",
    )
    expect(ValueError, rs.ndc_rays, x[:, :3], m[:, :3], 1.0, 4, 4, match=same + ".*directions=meta")
    expect(ValueError, rs.ray_aabb_intersect, x, x, torch.rand(6, device="meta"), match=same + ".*aabb=meta")


@pytest.mark.parametrize("which", ["generate_rays_K", "interlevel_loss_nerf"])
def test_mixed_devices_checked_before_values(which):
    if which == "generate_rays_K":
        expect(
            ValueError,
            rs.generate_rays,
            torch.eye(4),
            torch.eye(3, device="meta"),
            4,
            4,
            match="same device",
        )
    else:
        expect(
            ValueError,
            rs.interlevel_loss,
            SORTED_EDGES,
            W,
            SORTED_EDGES.to("meta"),
            W.to("meta"),
            match="same device",
        )


def test_to_numpy_is_cpu_only():
    expect(ValueError, _checks.to_numpy, "x", torch.empty(2, device="meta"), match="CPU")


# --------------------------------------------------------------------------- empty batches


def test_empty_batches_return_empty_shapes():
    e = torch.empty(0)
    eri = torch.empty(0, dtype=LONG)
    for out in rs.render_weight_from_density(torch.empty(0, 4), torch.empty(0, 4), torch.empty(0, 4)):
        assert out.shape == (0, 4)
    for out in rs.render_weight_from_density(torch.empty(3, 0), torch.empty(3, 0), torch.empty(3, 0)):
        assert out.shape == (3, 0)
    for out in rs.render_weight_from_density(e, e, e, ray_indices=eri, n_rays=3):
        assert out.shape == (0,)
    for out in rs.render_weight_from_alpha(e, ray_indices=eri):
        assert out.shape == (0,)
    assert rs.accumulate_along_rays(torch.empty(0, 4)).shape == (0, 1)
    acc = rs.accumulate_along_rays(torch.empty(3, 0), torch.empty(3, 0, 2))
    assert torch.equal(acc, torch.zeros(3, 2))
    acc = rs.accumulate_along_rays(e, torch.empty(0, 3), ray_indices=eri, n_rays=2)
    assert torch.equal(acc, torch.zeros(2, 3))
    c, o, d, w = rs.volume_render(
        torch.empty(0, 4), torch.empty(0, 4), torch.empty(0, 4), torch.empty(0, 4, 3)
    )
    assert c.shape == (0, 3) and o.shape == (0, 1) and d.shape == (0, 1) and w.shape == (0, 4)
    c, o, d, w = rs.volume_render(
        e, e, e, torch.empty(0, 3), ray_indices=eri, n_rays=2, render_bkgd=torch.ones(3)
    )
    assert torch.equal(c, torch.ones(2, 3)) and torch.equal(o, torch.zeros(2, 1))
    assert rs.inclusive_sum(torch.empty(0, 4)).shape == (0, 4)
    assert rs.exclusive_prod(e, ray_indices=eri).shape == (0,)
    assert torch.equal(rs.pack_info(eri, 3), torch.zeros(3, 2, dtype=LONG))
    assert rs.pack_info(eri).shape == (0, 2)
    assert rs.stratified_samples(torch.empty(0), torch.empty(0), 4).shape == (0, 5)
    assert rs.importance_sampling(torch.empty(0, 5), torch.empty(0, 4), 3).shape == (0, 4)
    assert rs.inverse_cdf(torch.empty(0, 5), torch.empty(0, 4), torch.empty(0, 3)).shape == (0, 3)
    assert rs.inverse_cdf(SORTED_EDGES, W, torch.empty(2, 0)).shape == (2, 0)
    tn, tf, hit = rs.ray_aabb_intersect(torch.empty(0, 3), torch.empty(0, 3), torch.rand(2, 6).sort().values)
    assert tn.shape == (0, 2) and hit.shape == (0, 2)
    assert rs.ndc_rays(torch.empty(0, 3), torch.empty(0, 3), 10.0, 4, 4)[0].shape == (0, 3)
    o, d = rs.generate_rays(torch.eye(4), torch.eye(3), 4, 4, pixels=eri)
    assert o.shape == (0, 3) and d.shape == (0, 3)
    o, d = rs.generate_rays(torch.eye(4)[None][:0], torch.eye(3)[None][:0], 4, 4)
    assert o.shape == (0, 4, 4, 3)


def test_zero_cameras_with_shared_K():
    o, d = rs.generate_rays(torch.empty(0, 4, 4), torch.eye(3), 4, 4)
    assert o.shape == (0, 4, 4, 3) and d.shape == (0, 4, 4, 3)


def test_empty_batches_backward():
    x = torch.empty(0, 4, requires_grad=True)
    w, _, _ = rs.render_weight_from_density(x, x + 1, x)
    (g,) = torch.autograd.grad(w.sum(), x)
    assert g.shape == (0, 4)
    e = torch.empty(0, requires_grad=True)
    out = rs.accumulate_along_rays(e, ray_indices=torch.empty(0, dtype=LONG), n_rays=2)
    (g,) = torch.autograd.grad(out.sum(), e)
    assert g.shape == (0,)
    out = rs.inclusive_prod(e, ray_indices=torch.empty(0, dtype=LONG))
    (g,) = torch.autograd.grad(out.sum(), e)
    assert g.shape == (0,)


def test_interlevel_loss_on_empty_batch_returns_scalar():
    """Zero rays give a zero loss (not the NaN of torch's mean over nothing), still connected to
    ``weights_prop`` so ``backward()`` works in a training loop with an empty batch."""
    weights_prop = torch.empty(0, 4, requires_grad=True)
    loss = no_panic(rs.interlevel_loss, torch.empty(0, 5), weights_prop, torch.empty(0, 5), torch.empty(0, 4))
    assert loss is not None and loss.dim() == 0
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert weights_prop.grad is not None and weights_prop.grad.shape == (0, 4)
