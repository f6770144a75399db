"""Exact k-nearest neighbours of 3-D points (Rust kd-tree on CPU, pure torch elsewhere)."""

from __future__ import annotations

import torch

from raysplat import _checks, _core
from raysplat.reference import knn as _reference


def knn(
    points: torch.Tensor,
    k: int,
    queries: torch.Tensor | None = None,
    exclude_self: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours among ``points`` of each query.

    CPU tensors run on a parallel kd-tree in Rust; tensors on other devices (CUDA, MPS...) use
    the chunked brute-force twin in :mod:`raysplat.reference.knn`, with identical results.
    Coordinates are rounded to float32; distances are computed in float64 and returned as
    float32. Ties are broken by the lower index. The outputs carry no gradient.

    Self matches: with ``queries=None`` the points are queried against themselves and each
    point's own index is INCLUDED as its first neighbour at distance 0, i.e.
    ``indices[:, 0] == arange(N)`` (even when other points coincide with it), followed by the
    ``k - 1`` nearest other points. Pass ``exclude_self=True`` to get the ``k`` nearest other
    points instead. With explicit ``queries`` nothing is excluded.

    Args:
        points: ``[N, 3]`` floating-point tensor, finite.
        k: neighbours per query, ``1 <= k <= N`` (``k <= N - 1`` with ``exclude_self``).
        queries: ``[M, 3]`` floating-point tensor on the same device, finite; ``None`` queries
            the points themselves (``M = N``).
        exclude_self: drop each point's own match; only valid with ``queries=None``.

    Returns:
        ``(distances, indices)``: ``[M, k]`` float32 Euclidean (not squared) distances and
        ``[M, k]`` int64 indices into ``points``, each row sorted ascending by distance.

    Raises:
        TypeError: a tensor argument is not a floating-point tensor, ``k`` is not an int or
            ``exclude_self`` is not a bool.
        ValueError: wrong shape, NaN or infinite coordinates, ``k < 1``, ``k`` larger than the
            number of candidate points (while there is at least one query), tensors on
            different devices, or ``exclude_self`` with explicit ``queries``.
    """
    k, m = _reference.check_args(points, k, queries, exclude_self)
    if not _checks.use_rust(points, queries):
        return _reference.brute_force(points, k, queries, exclude_self)
    p = _checks.to_numpy("points", points)
    q = None if queries is None else _checks.to_numpy("queries", queries)
    dist, idx = _core.knn(p, k, q, exclude_self)
    return _checks.from_numpy(dist, (m, k)), _checks.from_numpy(idx, (m, k))


def knn_scale_init(points: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Initial log-scales of 3D Gaussians from their neighbours' distances.

    Returns ``log(max(mean_j d_ij, 1e-7))`` per point, where ``d_ij`` are the Euclidean
    distances from point ``i`` to its ``k`` nearest OTHER points (``knn(..., exclude_self=True)``;
    a coincident duplicate counts, at distance 0). The usual 3DGS initialisation repeats this
    value over the three axes.

    Args:
        points: ``[N, 3]`` floating-point tensor, finite, with ``N >= k + 1``.
        k: neighbours to average over.

    Returns:
        ``[N]`` float32 tensor on the points' device.

    Raises:
        TypeError, ValueError: as :func:`knn` (``k >= N`` is a ``ValueError``).
    """
    distances, _ = knn(points, k, exclude_self=True)
    return distances.mean(dim=1).clamp_min(1e-7).log()


__all__ = ["knn", "knn_scale_init"]
