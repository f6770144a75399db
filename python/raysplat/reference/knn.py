"""Pure-torch exact k-nearest neighbours: the oracle of the Rust kd-tree and its fallback on
non-CPU devices.

Same contract as :func:`raysplat.knn`: Euclidean distances computed in float64 from the
float32-rounded coordinates (as ``(dx² + dy²) + dz²``, bit-identical to the Rust kernel), rows
sorted by ``(distance, index)``; with ``queries=None`` row ``i`` starts with ``i`` itself at
distance 0 unless ``exclude_self``. Rows are processed in chunks so that at most
``max_elements`` pairwise distances exist at a time.

``torch.cdist`` is not used directly: its matrix-multiply path is inexact (duplicate points get
non-zero distances) and its exact path returns rounded square roots, which breaks ties
differently from the squared distances the kd-tree compares.
"""

from __future__ import annotations

import torch

from raysplat import _checks


def pairwise_sq_dists(queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Squared distances ``[m, n]`` between float64 ``queries [m, 3]`` and ``points [n, 3]``."""
    d = (queries[:, None, 0] - points[None, :, 0]) ** 2
    d += (queries[:, None, 1] - points[None, :, 1]) ** 2
    d += (queries[:, None, 2] - points[None, :, 2]) ** 2
    return d


def smallest_k(d2: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` smallest entries of each row of ``d2``, sorted by ``(value, column)``."""
    rows = d2.shape[0]
    if k == 0:
        empty = torch.empty(rows, 0, dtype=d2.dtype, device=d2.device)
        return empty, torch.empty(rows, 0, dtype=torch.int64, device=d2.device)
    vals, idx = torch.topk(d2, k, dim=1, largest=False, sorted=True)
    # topk picks arbitrarily among values equal to the k-th: redo those rows with a stable sort.
    tied = (d2 <= vals[:, -1:]).sum(dim=1) > k
    if bool(tied.any()):
        rows_t = tied.nonzero().squeeze(1)
        s_vals, s_idx = torch.sort(d2[rows_t], dim=1, stable=True)
        vals[rows_t], idx[rows_t] = s_vals[:, :k], s_idx[:, :k]
    # Order within the selection: by column, then stably by value.
    idx, order = idx.sort(dim=1)
    vals = vals.gather(1, order)
    vals, order = vals.sort(dim=1, stable=True)
    return vals, idx.gather(1, order)


def check_args(
    points: torch.Tensor, k: int, queries: torch.Tensor | None, exclude_self: bool
) -> tuple[int, int]:
    """Validates the arguments of :func:`raysplat.knn` (shared by the Rust and torch paths);
    returns ``(k, number of queries M)``. Errors name the argument."""
    _checks.tensor("points", points, ndim=2, last=3, finite=True)
    if queries is not None:
        _checks.tensor("queries", queries, ndim=2, last=3, finite=True)
    _checks.same_device(points=points, queries=queries)
    k = _checks.positive_int("k", k)
    if not isinstance(exclude_self, bool):
        raise TypeError(f"exclude_self must be a bool, got {type(exclude_self).__name__}")
    if exclude_self and queries is not None:
        raise ValueError("exclude_self only applies when queries is None")
    n = points.shape[0]
    m = n if queries is None else queries.shape[0]
    available = n - 1 if exclude_self else n
    if m > 0 and k > available:
        what = "the number of other points N - 1" if exclude_self else "the number of points N"
        raise ValueError(f"k={k} exceeds {what} = {max(available, 0)}")
    return k, m


def knn(
    points: torch.Tensor,
    k: int,
    queries: torch.Tensor | None = None,
    exclude_self: bool = False,
    *,
    max_elements: int = 1 << 24,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours by chunked brute force; see :func:`raysplat.knn`.

    Args:
        points: ``[N, 3]`` floating-point tensor.
        k: neighbours per query.
        queries: ``[M, 3]`` floating-point tensor on the same device, or ``None`` for the points.
        exclude_self: with ``queries=None``, return the ``k`` nearest *other* points.
        max_elements: upper bound on the pairwise distances held at once (per chunk).

    Returns:
        ``(distances [M, k] float32, indices [M, k] int64)`` on the points' device.
    """
    k, _ = check_args(points, k, queries, exclude_self)
    return brute_force(points, k, queries, exclude_self, max_elements=max_elements)


def brute_force(
    points: torch.Tensor,
    k: int,
    queries: torch.Tensor | None,
    exclude_self: bool,
    *,
    max_elements: int = 1 << 24,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`knn` on arguments already checked by :func:`check_args`."""
    device = points.device
    n = points.shape[0]
    m = n if queries is None else queries.shape[0]
    p = points.detach().to(torch.float32).to(torch.float64)
    self_query = queries is None
    q = p if self_query else queries.detach().to(torch.float32).to(torch.float64)
    head = 1 if self_query and not exclude_self else 0
    others = k - head
    distances = torch.empty(m, k, dtype=torch.float32, device=device)
    indices = torch.empty(m, k, dtype=torch.int64, device=device)
    chunk = max(1, max_elements // max(n, 1))
    for start in range(0, m, chunk):
        stop = min(start + chunk, m)
        d2 = pairwise_sq_dists(q[start:stop], p)
        rows = torch.arange(start, stop, device=device)
        if self_query:
            d2[rows - start, rows] = torch.inf
        vals, idx = smallest_k(d2, others)
        if head:
            distances[start:stop, 0] = 0.0
            indices[start:stop, 0] = rows
        distances[start:stop, head:] = vals.sqrt().to(torch.float32)
        indices[start:stop, head:] = idx
    return distances, indices
