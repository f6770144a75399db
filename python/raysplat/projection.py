"""Projection of per-ray sample points into reference cameras with bilinear colour lookup.

ProNeRF's projection-aware sampling (Bello et al., "ProNeRF", 2023; released code
``inverse_warp_rod1_rt2_coords``): for ray ``r``, point ``n`` and reference slot ``v`` with
camera ``m = view_ids[r, v]`` (OpenGL camera-to-world ``[R | t]``, pixel intrinsics ``K``),
``c = Rᵀ (X - t)``, ``u = fx · c_x / (-c_z) + cx``, ``v = fy · (-c_y) / (-c_z) + cy``: the exact
inverse of :func:`raysplat.generate_rays` (pixel ``(x, y)`` has its centre at ``(x + 0.5, y + 0.5)``).
Images are sampled bilinearly between pixel centres (``grid_sample(align_corners=False,
padding_mode="border")``). A sample is valid when ``c_z < 0`` (in front of the camera) and
``0 ≤ u ≤ W``, ``0 ≤ v ≤ H``; invalid samples are 0 and pass no gradient.

LLFF NDC depths ``t ∈ [0, 1)`` (as in ProNeRF's sampler) are converted to metric camera depth by
``z = near / (1 - t)`` before forming ``X = o + z d`` with the un-normalised pixel direction
(``|d_z| = 1`` in camera space), e.g. ``near = 1`` for LLFF poses rescaled by ``bd_factor``.

CPU tensors run the Rust kernels (forward and backward w.r.t. points and images); other
devices run the torch twin :mod:`raysplat.reference.projection`.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from raysplat import _checks as chk
from raysplat import _core
from raysplat._checks import float_dtype_of, from_numpy, to_numpy
from raysplat.reference import projection as ref


class _ProjectToViews(torch.autograd.Function):
    @staticmethod
    def forward(ctx, points, images, view_ids, c2w, K):
        dt = float_dtype_of(points)
        r, n = points.shape[:2]
        v = view_ids.shape[1]
        m, h, w, ch = images.shape
        dims = (r, n, v, m, h, w, ch)
        args = (
            to_numpy("points", points, dt),
            to_numpy("view_ids", view_ids, torch.int64),
            to_numpy("c2w", c2w, dt),
            to_numpy("K", K, dt),
            to_numpy("images", images, dt),
        )
        s, ok = _core.project_to_views(*args, dims)
        ctx.args, ctx.dims, ctx.dt = args, dims, dt
        valid = from_numpy(ok, (r, n, v))
        ctx.mark_non_differentiable(valid)
        return from_numpy(s, (r, n, v, ch)), valid

    @staticmethod
    @once_differentiable
    def backward(ctx, v_samples, _v_valid):
        need_p, need_i = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if v_samples is None or not (need_p or need_i):
            return None, None, None, None, None
        r, n, v, m, h, w, ch = ctx.dims
        gp, gi = _core.project_to_views_backward(
            *ctx.args, ctx.dims, to_numpy("v_samples", v_samples, ctx.dt), need_p, need_i
        )
        return (
            None if gp is None else from_numpy(gp, (r, n, 3)),
            None if gi is None else from_numpy(gi, (m, h, w, ch)),
            None,
            None,
            None,
        )


def project_to_views(
    points: torch.Tensor,
    view_ids: torch.Tensor,
    c2w: torch.Tensor,
    K: torch.Tensor,
    images: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear colours of every point in its ray's reference cameras.

    Args:
        points: world points [R, N, 3] (e.g. ``o + z d`` per ray).
        view_ids: int64 [R, V] reference camera ids per ray, into the M cameras below.
        c2w: OpenGL camera-to-world [M, 3, 4] or [M, 4, 4].
        K: pixel intrinsics [M, 3, 3] (or one shared [3, 3]).
        images: [M, H, W, C] reference images.

    Returns:
        ``(samples, valid)``: [R, N, V, C] bilinear samples (0 where invalid) and a bool
        [R, N, V] mask (point in front of the camera and inside the image). Differentiable
        w.r.t. ``points`` and ``images``.
    """
    chk.tensor("points", points, ndim=3, last=3)
    chk.tensor("view_ids", view_ids, ndim=2, floating=False)
    chk.tensor("images", images, ndim=4)
    chk.tensor("c2w", c2w, ndim=3, finite=True)
    chk.tensor("K", K, ndim=(2, 3), finite=True)
    chk.same_device(points=points, view_ids=view_ids, c2w=c2w, K=K, images=images)
    if tuple(c2w.shape[-2:]) not in ((3, 4), (4, 4)):
        raise ValueError(f"c2w must have shape [M, 3, 4] or [M, 4, 4], got {tuple(c2w.shape)}")
    if tuple(K.shape[-2:]) != (3, 3):
        raise ValueError(f"K must have shape [M, 3, 3] or [3, 3], got {tuple(K.shape)}")
    m = c2w.shape[0]
    K = K[None].expand(m, 3, 3) if K.dim() == 2 else K
    if K.shape[0] != m:
        raise ValueError(f"K holds {K.shape[0]} cameras but c2w holds {m}")
    if images.shape[0] != m:
        raise ValueError(f"images holds {images.shape[0]} cameras but c2w holds {m}")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"images must have positive height and width, got {tuple(images.shape)}")
    if view_ids.shape[0] != points.shape[0]:
        raise ValueError(
            f"view_ids must have one row per ray ({points.shape[0]}), got shape {tuple(view_ids.shape)}"
        )
    if view_ids.numel() and (int(view_ids.min()) < 0 or int(view_ids.max()) >= m):
        raise ValueError(f"view_ids must be camera indices in [0, {m})")
    if bool((K[:, 0, 0] == 0).any()) or bool((K[:, 1, 1] == 0).any()):
        raise ValueError("K must have non-zero focal lengths K[0, 0] and K[1, 1]")
    c2w = c2w[:, :3, :4]
    view_ids = view_ids.long()
    if chk.use_rust(points, view_ids, c2w, K, images):
        dt = float_dtype_of(points)
        s, ok = _ProjectToViews.apply(points, images.to(dt), view_ids, c2w.to(dt), K.to(dt))
        return s.to(points.dtype), ok
    dt = points.dtype if points.dtype in (torch.float32, torch.float64) else torch.float32
    s, ok = ref.project_to_views(points.to(dt), view_ids, c2w.to(dt), K.to(dt), images.to(dt))
    return s.to(points.dtype), ok


def nearest_views(
    c2w_query: torch.Tensor,
    c2w_train: torch.Tensor,
    n_views: int,
    exclude_self: bool = False,
    random: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Reference-view ids per query camera by camera-centre distance (ProNeRF's selection).

    Args:
        c2w_query: [Q, 3|4, 4] query poses (one per ray is fine: ``c2w_train[ray_cam]``).
        c2w_train: [M, 3|4, 4] reference (training) poses.
        n_views: V views to pick per query.
        exclude_self: drop reference cameras whose centre coincides with the query's (the
            target view itself during training).
        random: pick V *random* cameras among the allowed ones (ProNeRF training) instead of
            the V nearest (ProNeRF testing); either way the result is in distance order.
        generator: random generator for ``random``.

    Returns:
        int64 [Q, V] camera ids into ``c2w_train``, nearest first.
    """
    chk.tensor("c2w_query", c2w_query, ndim=3, last=4, finite=True)
    chk.tensor("c2w_train", c2w_train, ndim=3, last=4, finite=True)
    chk.same_device(c2w_query=c2w_query, c2w_train=c2w_train)
    for name, t in (("c2w_query", c2w_query), ("c2w_train", c2w_train)):
        if t.shape[1] not in (3, 4):
            raise ValueError(f"{name} must have shape [N, 3, 4] or [N, 4, 4], got {tuple(t.shape)}")
    n_views = chk.positive_int("n_views", n_views)
    q = c2w_query[:, :3, 3].double()
    t = c2w_train[:, :3, 3].double()
    dist = torch.cdist(q, t)  # [Q, M]
    allowed = torch.ones_like(dist, dtype=torch.bool)
    if exclude_self:
        scale = 1.0 + float(t.abs().max()) if t.numel() else 1.0
        allowed = dist > 1e-6 * scale
    n_allowed = int(allowed.sum(1).min()) if dist.numel() else 0
    if n_views > n_allowed:
        raise ValueError(f"n_views ({n_views}) exceeds the {n_allowed} reference cameras available per query")
    inf = torch.full_like(dist, float("inf"))
    if random:
        keys = torch.rand(dist.shape, generator=generator, dtype=torch.float64)
        keys = torch.where(allowed, keys.to(dist.device), inf)
        picked = keys.topk(n_views, dim=1, largest=False).indices
        d = dist.gather(1, picked)
        return picked.gather(1, d.argsort(dim=1, stable=True))
    key = torch.where(allowed, dist, inf)
    return key.topk(n_views, dim=1, largest=False, sorted=True).indices
