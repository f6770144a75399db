"""The NeRDF network: one pass per ray -> ``[R, 4, 24]`` Fourier coefficients.

Input (the paper's, algorithms.md section 3.2; ``nerdf_llff.py``/``utils/input_emb.py``): 16
points spaced uniformly between ``near`` and ``far`` on the ray (jittered per ray in training),
each coordinate encoded as ``[x, sin(2^l x), cos(2^l x)]_{l=0..9}`` (21 values), the ray origin
with the same encoding (63) and the unit view direction as real spherical harmonics of degree 8
(l = 0..7, 64 values): ``16 * 3 * 21 + 63 + 64 = 1135`` values.

This is the ``encoding="pe"`` network (:class:`NerdfNetwork`). The default is
:class:`NerdfHashNetwork` (``encoding="hashgrid"``), which the issue allows when it trains much
faster on CPU, and it does: at 600 distillation steps from the same occupancy-grid teacher it
reaches 25.96 dB against the teacher where this input reaches 20.94, and its first layer is
smaller (16 points x 24 hash features + 16 SH values instead of 1135 inputs), so it also renders
faster (``benches/nerdf.py``, README).

MLP (``utils/model_lib.py::NewNeRF``, "res_cat"): ``depth`` linear layers of ``width`` with
ReLU, residual (``h = relu(W h) + h``) except every 4th layer, which takes ``[h, input]``; a
linear head of 96 = 4 x 24 outputs (sigma, r, g, b x the basis of
:mod:`raysplat.distribution`). The released code's head has 288 outputs of which rendering reads
96; we use 96, as the paper describes.
"""

from __future__ import annotations

import math

import torch

from raysplat.distribution import N_BASIS, N_CHANNELS, distribution_taus
from raysplat.training.precision import Autocast

#: points sampled along each ray for the input
N_POINTS = 16
#: positional-encoding frequencies (2^0 .. 2^9)
PE_FREQS = 10
#: spherical-harmonics degree of the view direction (l = 0..7)
SH_DEGREE = 8


def positional_encoding(x: torch.Tensor, n_freqs: int = PE_FREQS) -> torch.Tensor:
    """``[..., D]`` -> ``[..., D * (2 n_freqs + 1)]``: ``x`` then ``sin(2^l x), cos(2^l x)``
    per frequency (nerf-pytorch's order)."""
    freqs = 2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype)
    xf = x[..., None, :] * freqs[:, None]  # [..., L, D]
    enc = torch.stack([torch.sin(xf), torch.cos(xf)], dim=-2)  # [..., L, 2, D]
    return torch.cat([x, enc.flatten(-3)], dim=-1)


def real_sh(d: torch.Tensor, degree: int = SH_DEGREE) -> torch.Tensor:
    """Real spherical harmonics of unit directions ``[..., 3]``, bands ``l < degree``
    (``degree**2`` values, ordered l = 0.., m = -l..l, Condon-Shortley phase as in
    :func:`raysplat.nerf.sh_encode`, which this matches for degree <= 4)."""
    x, y, z = d.unbind(-1)
    # (x + i y)^m = sin^m(theta) e^{i m phi}
    re, im = [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(1, degree):
        re.append(re[-1] * x - im[-1] * y)
        im.append(re[-2] * y + im[-1] * x)
    # Q_l^m(z) = P_l^m(z) / sin^m(theta), by the standard recurrences
    q: dict[tuple[int, int], torch.Tensor] = {}
    for m in range(degree):
        q[(m, m)] = torch.full_like(z, (-1.0) ** m * math.prod(range(1, 2 * m, 2)))
        if m + 1 < degree:
            q[(m + 1, m)] = z * (2 * m + 1) * q[(m, m)]
        for ll in range(m + 2, degree):
            q[(ll, m)] = ((2 * ll - 1) * z * q[(ll - 1, m)] - (ll + m - 1) * q[(ll - 2, m)]) / (ll - m)
    out = []
    for ll in range(degree):
        for m in range(-ll, ll + 1):
            am = abs(m)
            k = math.sqrt((2 * ll + 1) / (4 * math.pi) * math.factorial(ll - am) / math.factorial(ll + am))
            if m == 0:
                out.append(k * q[(ll, 0)])
            elif m > 0:
                out.append(math.sqrt(2) * k * q[(ll, am)] * re[am])
            else:
                out.append(math.sqrt(2) * k * q[(ll, am)] * im[am])
    return torch.stack(out, -1)


def input_dim(n_points: int = N_POINTS) -> int:
    """Width of :func:`ray_input` (1135 for 16 points)."""
    return n_points * 3 * (2 * PE_FREQS + 1) + 3 * (2 * PE_FREQS + 1) + SH_DEGREE**2


def ray_points(
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: torch.Tensor | float,
    far: torch.Tensor | float,
    n_points: int = N_POINTS,
    stratified: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``[R, P, 3]``: the points ``o + t d`` with ``t`` uniform in [near, far] (jittered per ray
    when ``stratified``) — the ray's input samples."""
    n = origins.shape[0]
    taus = distribution_taus(n_points, n, stratified, generator, origins.device, origins.dtype)
    near = torch.as_tensor(near, dtype=origins.dtype, device=origins.device).reshape(-1, 1)
    far = torch.as_tensor(far, dtype=origins.dtype, device=origins.device).reshape(-1, 1)
    t = near + taus * (far - near)  # [R, P] (or [1, P] broadcast)
    return origins[:, None] + t[..., None] * directions[:, None]


def ray_input(
    origins: torch.Tensor,
    directions: torch.Tensor,
    viewdirs: torch.Tensor,
    near: torch.Tensor | float,
    far: torch.Tensor | float,
    n_points: int = N_POINTS,
    stratified: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``[R, input_dim]``: the encoded points ``o + t d`` (t uniform in [near, far], jittered
    when ``stratified``), the encoded origin and the SH of the unit ``viewdirs``."""
    n = origins.shape[0]
    pts = ray_points(origins, directions, near, far, n_points, stratified, generator)
    vd = torch.nn.functional.normalize(viewdirs, dim=-1)
    return torch.cat(
        [positional_encoding(pts).reshape(n, -1), positional_encoding(origins), real_sh(vd)], dim=-1
    )


class NerdfNetwork(Autocast, torch.nn.Module):
    """Residual MLP ("res_cat") from :func:`ray_input` to coefficients ``[R, 4, 24]`` (the
    layers under :meth:`autocast`, ``config.precision``; the input encoding and the returned
    coefficients are fp32)."""

    def __init__(
        self,
        in_dim: int,
        width: int = 128,
        depth: int = 8,
        skip_every: int = 4,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.skip_every = skip_every
        layers = []
        for i in range(depth):
            d_in = in_dim if i == 0 else width + (in_dim if i % skip_every == 0 else 0)
            layers.append(torch.nn.Linear(d_in, width))
        self.layers = torch.nn.ModuleList(layers)
        self.head = torch.nn.Linear(width, N_CHANNELS * N_BASIS)
        with torch.no_grad():
            for lin in [*self.layers, self.head]:
                bound = math.sqrt(6.0 / lin.in_features)  # He-uniform (ReLU)
                lin.weight.uniform_(-bound, bound, generator=generator)
                lin.bias.zero_()
            self.head.weight.mul_(0.01 / bound * math.sqrt(1.0 / width))
            self.head.bias.zero_()
            self.head.bias[0] = 0.1  # a small positive density everywhere to start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast(x):
            h = torch.relu(self.layers[0](x))
            for i, lin in enumerate(self.layers[1:], start=1):
                if i % self.skip_every == 0:
                    h = torch.relu(lin(torch.cat([h, x.to(h.dtype)], dim=-1)))
                else:
                    h = torch.relu(lin(h)) + h
            out = self.head(h)
        return out.float().reshape(-1, N_CHANNELS, N_BASIS)


class NerdfHashNetwork(Autocast, torch.nn.Module):
    """The hash-grid variant: the ray's :func:`ray_points` looked up in one multi-resolution
    hash grid (``raysplat.hashgrid``, the scene box of the teacher's field), their features
    concatenated in ray order with the SH (degree 4) of the view direction, then a plain ReLU MLP
    of ``depth`` layers and the 96-wide head. The points' order along the ray is what tells the
    head where along the ray each feature lies, so no depth encoding is added. The MLP runs under
    :meth:`autocast` (``config.precision``); the hash-grid lookup and the output are fp32.

    Args:
        aabb, contraction: the teacher's scene box (:class:`raysplat.nerf.field.SceneBox`).
        n_points: points per ray; width, depth: the MLP.
        n_levels, n_feat, log2_table, base_res, max_res: the hash grid.
    """

    def __init__(
        self,
        aabb,
        contraction: str | None = None,
        n_points: int = N_POINTS,
        width: int = 128,
        depth: int = 3,
        n_levels: int = 12,
        n_feat: int = 2,
        log2_table: int = 17,
        base_res: int = 16,
        max_res: int = 512,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        from raysplat.nerf.encoding import HashGrid
        from raysplat.nerf.field import SceneBox

        self.box = SceneBox(aabb, contraction)
        self.grid = HashGrid(n_levels, n_feat, log2_table, base_res, max_res, generator=generator)
        self.n_points = n_points
        d = n_points * self.grid.out_dim + 16
        layers = []
        for _ in range(depth):
            layers.append(torch.nn.Linear(d, width))
            d = width
        self.layers = torch.nn.ModuleList(layers)
        self.head = torch.nn.Linear(d, N_CHANNELS * N_BASIS)
        with torch.no_grad():
            for lin in self.layers:
                bound = math.sqrt(6.0 / lin.in_features)
                lin.weight.uniform_(-bound, bound, generator=generator)
                lin.bias.zero_()
            bound = math.sqrt(6.0 / self.head.in_features)
            self.head.weight.uniform_(-bound, bound, generator=generator)
            self.head.weight.mul_(0.01)
            self.head.bias.zero_()
            self.head.bias[0] = 0.1

    def forward(self, points: torch.Tensor, viewdirs: torch.Tensor) -> torch.Tensor:
        """``points`` ``[R, P, 3]`` (:func:`ray_points`), ``viewdirs`` ``[R, 3]`` -> ``[R, 4, 24]``."""
        from raysplat.nerf.encoding import sh_encode

        r, p = points.shape[:2]
        u, _ = self.box(points.reshape(-1, 3))
        feats = self.grid(u.clamp(0.0, 1.0)).reshape(r, -1)
        vd = torch.nn.functional.normalize(viewdirs, dim=-1)
        h = torch.cat([feats, sh_encode(vd, 4)], dim=-1)
        with self.autocast(h):
            for lin in self.layers:
                h = torch.relu(lin(h))
            out = self.head(h)
        return out.float().reshape(-1, N_CHANNELS, N_BASIS)
