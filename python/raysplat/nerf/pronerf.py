"""ProNeRF's projection-aware sampling (PAS): a fourth sampler that renders with 8-12 field
evaluations a ray (Bello, Bui, Kim, "ProNeRF", arXiv 2312.08136 / IEEE Access 2024; released code
``KAIST-VICLab/pronerf``, ``run_S_eS_eN_alter_base.py``).

Per ray (``algorithms.md`` §1.1 of the research notes):

* **Stage A** (ray -> samples): an MLP of the ray's Plücker coordinates predicts ``N`` depths
  ``t_k = near + sigmoid(o_k) (far - near)`` (then sorted), a density *additive* term ``a_k`` and
  *multiplicative* term ``m_k`` (permuted with the same sort) and a direct colour ``c_A``.
* **Projection**: the stage-A points are projected into ``V = 4`` reference (training) views with
  :func:`raysplat.project_to_views`; invalid lookups take the mean of the sample's valid views.
  Reference views are the 4 nearest training cameras (by centre) at test time and 4 random other
  training cameras while training (:func:`raysplat.nearest_views`), as the released code does.
* **Stage B** (refinement): an MLP of the ray encoding, the stage-A depths and the projected
  colours predicts one offset per bin, ``t'_k = lower_k + sigmoid(r_k) (upper_k - lower_k)`` with
  the bins between the midpoints of consecutive stage-A samples (so ``t'`` stays sorted for any
  output), a bounded 3-D point offset ``Δ_k = bound · tanh(.)`` and a colour ``c_f``.
* **Rendering** with the field at ``x_k = o + t'_k d + Δ_k`` and *density modulation*:
  ``σ_k = act(raw_k + a_k)``, ``α_k = (1 - exp(-σ_k δ_k)) relu(m_k)``, ``δ_k = (t'_{k+1} - t'_k)|d|``.
  ProNeRF's NeRF uses ``relu`` as the density activation, raysplat's hash-grid field ``trunc_exp``
  of the logit, so ``a_k`` is added to the logit (``a = 0, m = 1`` is the plain field).

Training alternates (§1.2, :meth:`ProNerfSampler.explores`): odd iterations (1-based; step 0, 2, ...
0-based) *explore*: the sampler is frozen and the field learns alone on densified, jittered samples
(``N · n_mult ≤ 64`` a ray, :func:`explore_samples`) without modulation; even iterations *exploit*:
everything learns end to end on the exact ``N`` samples with the three colour losses
(``C``, ``c_f``, ``c_A``).

Gradients. The depths ``t'`` and offsets ``Δ`` learn end to end mostly through the field's
derivative with respect to the sample position (the paper's NeRF is an MLP, differentiable in its
input). raysplat's hash-grid encoding passes that gradient (Rust ``backward_x``) whenever the
points require it; without it only the interval lengths ``δ`` carried a signal, ``Δ`` none, and
the PAS samples stayed where they were initialised (measured: README).

Refinement stage (the released code's stage 2, ``run_S_eS_eN_alter_base_refine2.py``; the
trainer's ``pronerf_refine`` share of the budget, at the end; :meth:`ProNerfSampler.phase`
``"refine"``): a fresh optimiser over the field and both PAS networks (the code's new NeRF is
initialised from stage 1's, i.e. training simply continues from it), every step end to end on the
refined samples jittered inside their gaps (:func:`jitter_samples`, no densification), offsets
and density modulation on, the rendered colour's loss only (``c_f``/``c_A`` unsupervised), at
``3e-4 / 5e-4 = 0.6`` times stage 1's learning rates on a schedule restarted over the stage.
Choices where the code has no counterpart: raysplat's schedule (warm-up, then step decays) instead
of the code's exponential decay, and no density noise (the code adds ``N(0, 1)`` to its ``relu``
density input; raysplat's field takes ``trunc_exp`` of a logit, where the same noise would scale
the density by ``e^N(0,1)``, and no other raysplat sampler uses density noise). The code trains
stage 2 as long as stage 1 (500k iterations each); the paper does not describe the stage.

Spaces. Forward-facing (LLFF) scenes: NDC, ``t ∈ [0, 1]`` as in the paper; for the projection a
sample's NDC point is mapped back to the world exactly (the inverse of :func:`raysplat.ndc_rays`),
which puts it at metric depth ``z = near / (1 - t)`` along the camera's ``-z``. 360° object scenes
(Blender): metric ray distance between the dataset's ``near`` and ``far`` (the object lies in a
bounded box, so no contraction is needed); the last interval ends at ``far`` instead of NeRF's
``1e10`` so the background can show through, and the offset bound is ``0.01 (far - near)`` (the
paper's ``0.01`` of the NDC range). Unbounded captures are not supported by this sampler.

Deviations for object scenes, where the object fills a small part of each ray (both off for the
released code's behaviour; measured in the README, "ProNeRF vs the other samplers"):

* **Box ranges** (``aabb``, ``NerfConfig.pronerf_box``, on by default): every depth range above
  (stage A's ``(near, far)``, the bins, the jitter, the last interval) is the ray's part inside
  the scene's box (:func:`box_range`, the slab test; a ray that misses it keeps ``[near, far]``),
  so the samples cannot be wasted where the field is empty by construction.
* **Interlevel loss** (``interlevel``, ``NerfConfig.pronerf_interlevel``): in exploration steps,
  which already render the ray densely, stage A also learns (its own optimiser group; stage B
  stays frozen) from ``λ Σ_k ((t_k - t*_k) / (far - near))²``, the distance of its sorted depths
  to the quantiles ``(k + ½) / N`` of the field's compositing weights mixed with a uniform share
  (:func:`weight_quantiles`; the weights carry no gradient), as mip-NeRF 360's proposal networks
  learn from the NeRF's weights. Without it stage A learns where to put samples only through the
  end-to-end photometric gradient, which on Blender left the 12 samples spread over 0.89 of each
  ray after ~700 steps (0.46 of the box range with it). On by default only for object scenes
  without the occupancy grid: it measured 1.1 dB worse on LLFF, and about 0.8 dB worse with the
  grid (two paired runs).
* **Occupancy grid** (``occupancy``, ``NerfConfig.pronerf_occupancy``, on by default with the box):
  a binary grid over the box, refreshed from the field's density as the occgrid sampler's is
  (:meth:`ProNerfSampler.update`). It does three things. (1) Each ray's range shrinks further to
  its occupied part, from the entry into its first occupied cell to the exit from its last
  (:meth:`ProNerfSampler.occupied_range`; the grid is marched without the field, in Rust on the
  CPU). (2) Rays that cross no occupied cell render the background with no field evaluation
  and no PAS network. (3) Exploration steps train the field on the grid's marched samples
  (stratified, early stop: the occgrid sampler's training samples) instead of the densified PAS
  samples, and the interlevel targets are the quantiles of those samples' weights. The released
  code has no grid, but its Blender configurations (32 samples) also rely on a separately trained
  "mask" sampler that restricts where samples go. Exploitation, refinement and test renders
  still evaluate the field only at the N refined PAS samples of each ray that crosses occupied
  cells. Without the grid, the field was the bottleneck: trained on 12-24 PAS-placed samples a
  ray it reached only 23.0 dB on the sample Blender scene after 60 s even when rendered with 256
  uniform samples (measured: README).

Network sizes. The paper's two PAS networks are 6 x 256 ELU MLPs next to an 8 x 256 NeRF.
raysplat's field is a hash grid with a 64-wide MLP, about 10x cheaper per sample than that NeRF:
at paper size the two PAS networks alone (≈ 2 x 330k multiply-adds a ray) would cost as much as
~80 of our field evaluations and erase the speed-up of evaluating only 8-12. They are therefore
four 64-wide layers by default (3 hidden + the head; ``pronerf_width`` / ``pronerf_layers``),
together about the cost of 3-4 field evaluations a ray. Two further small changes, both
because the paper's inputs carry no information: the stage-A input is the 6-D Plücker ray once
(the paper replicates it 48x; the moment is invariant along the ray) with a 4-frequency sinusoidal
encoding, and stage B also sees the stage-A depths (the paper's per-sample Plücker inputs are all
the same vector). The stage-A depth head starts at evenly spaced depths and ``m`` at 1.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from raysplat.grid import OccupancyGrid
from raysplat.nerf.field import RadianceField, trunc_exp
from raysplat.nerf.samplers import Rays, RenderOut, refresh_occupancy
from raysplat.projection import project_to_views
from raysplat.volrend import render_weight_from_density, volume_render

#: the most field samples a ray gets during exploration
MAX_EXPLORE_SAMPLES = 64


def plucker(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Plücker coordinates ``(d̂, o × d̂)`` [..., 6] of rays (the same for every point of a ray)."""
    d = F.normalize(directions, dim=-1)
    return torch.cat([d, torch.cross(origins, d, dim=-1)], -1)


def encode_rays(origins: torch.Tensor, directions: torch.Tensor, freqs: int) -> torch.Tensor:
    """Plücker coordinates with ``freqs`` sinusoidal frequencies: [..., 6 + 12 freqs]."""
    p = plucker(origins, directions)
    if freqs == 0:
        return p
    scales = (2.0 ** torch.arange(freqs, device=p.device, dtype=p.dtype)) * math.pi
    x = (p[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([p, torch.sin(x), torch.cos(x)], -1)


def stage_a_outputs(o: torch.Tensor, n: int, near: float, far: float):
    """Stage A's raw outputs ``o`` [R, 3N+3] -> sorted depths ``t`` [R, N] in ``(near, far)``,
    additive / multiplicative density terms ``a``, ``m`` [R, N] (permuted with the sort) and the
    direct colour ``c_A`` [R, 3]."""
    t = near + torch.sigmoid(o[:, :n]) * (far - near)
    t, order = torch.sort(t, dim=-1)
    a = o[:, n : 2 * n].gather(1, order)
    m = o[:, 2 * n : 3 * n].gather(1, order)
    return t, a, m, torch.sigmoid(o[:, 3 * n : 3 * n + 3])


def refine_bins(t: torch.Tensor, near: float, far: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage B's bins around sorted depths ``t`` [R, N]: ``lower_0 = (near + t_0) / 2``,
    ``lower_k = upper_{k-1} = (t_{k-1} + t_k) / 2``, ``upper_{N-1} = (far + t_{N-1}) / 2``."""
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    lo = torch.cat([0.5 * (near + t[:, :1]), mids], -1)
    hi = torch.cat([mids, 0.5 * (far + t[:, -1:])], -1)
    return lo, hi


def stage_b_outputs(t: torch.Tensor, r: torch.Tensor, near: float, far: float, bound: float):
    """Stage B's raw outputs ``r`` [R, 4N+3] -> refined depths ``t'`` [R, N] (one in each bin of
    :func:`refine_bins`, hence sorted), point offsets ``Δ`` [R, N, 3] with ``|Δ| ≤ bound`` and the
    colour ``c_f`` [R, 3]."""
    n = t.shape[1]
    lo, hi = refine_bins(t, near, far)
    tr = lo + torch.sigmoid(r[:, :n]) * (hi - lo)
    delta = bound * torch.tanh(r[:, n : 4 * n].reshape(-1, n, 3))
    return tr, delta, torch.sigmoid(r[:, 4 * n : 4 * n + 3])


def _gaps(t: torch.Tensor, near, far, forward: bool) -> torch.Tensor:
    """Distance of each sorted sample to its next one (or ``far``), or to its previous one (or
    ``near``) when not ``forward`` (``near``/``far``: floats or per-ray [R, 1])."""
    if forward:
        nxt = torch.cat([t[:, 1:], torch.zeros_like(t[:, :1]) + far], -1)
        return (nxt - t).clamp_min(0.0)
    prv = torch.cat([torch.zeros_like(t[:, :1]) + near, t[:, :-1]], -1)
    return (t - prv).clamp_min(0.0)


def box_range(
    origins: torch.Tensor, directions: torch.Tensor, aabb: torch.Tensor, near: float, far: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each ray's depth range ``[lo, hi]`` [R, 1] inside the box ``aabb`` (6 floats), clipped to
    ``[near, far]`` (the slab test); a ray that misses the box keeps ``[near, far]``."""
    inv = 1.0 / torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t0 = (aabb[:3] - origins) * inv
    t1 = (aabb[3:] - origins) * inv
    lo = torch.minimum(t0, t1).amax(-1, keepdim=True).clamp_min(near)
    hi = torch.maximum(t0, t1).amin(-1, keepdim=True).clamp_max(far)
    hit = hi > lo + 1e-6 * (far - near)
    return torch.where(hit, lo, torch.full_like(lo, near)), torch.where(hit, hi, torch.full_like(hi, far))


def weight_quantiles(t: torch.Tensor, w: torch.Tensor, near, far, n: int, uniform: float) -> torch.Tensor:
    """Depths [R, n] at the quantiles ``(k + ½) / n`` of the mixture ``(1 - uniform) p_w +
    uniform · U(near, far)``, where ``p_w`` spreads each compositing weight ``w`` [R, S] of the
    sorted samples ``t`` [R, S] evenly over its quadrature interval ``[t_k, t_{k+1}]`` (the last
    one ends at ``far``). A ray with no weight (``Σw < 1e-4``) gets the uniform quantiles. The
    targets of the interlevel loss (:meth:`ProNerfSampler.render`); no gradient."""
    with torch.no_grad():
        z = torch.zeros_like(t[:, :1])
        edges = torch.cat([z + near, t, z + far], -1)  # [R, S + 2]: the bin before t_0 gets no weight
        length = (edges[:, 1:] - edges[:, :-1]).clamp_min(0.0)
        wb = torch.cat([z, w.clamp_min(0.0)], -1)
        total = wb.sum(-1, keepdim=True)
        p_w = torch.where(total > 1e-4, wb / total.clamp_min(1e-12), length / length.sum(-1, keepdim=True))
        p = (1.0 - uniform) * p_w + uniform * length / length.sum(-1, keepdim=True).clamp_min(1e-12)
        cdf = torch.cat([z, torch.cumsum(p, -1)], -1)
        cdf = cdf / cdf[:, -1:].clamp_min(1e-12)
        u = ((torch.arange(n, device=t.device, dtype=t.dtype) + 0.5) / n).expand(t.shape[0], n).contiguous()
        i = torch.searchsorted(cdf.contiguous(), u, right=True).clamp(1, edges.shape[1] - 1)
        c0, c1 = cdf.gather(1, i - 1), cdf.gather(1, i)
        e0, e1 = edges.gather(1, i - 1), edges.gather(1, i)
        f = ((u - c0) / (c1 - c0).clamp_min(1e-12)).clamp(0.0, 1.0)
        return e0 + f * (e1 - e0)


def pad_packed(ray_indices: torch.Tensor, values: torch.Tensor, n_rays: int, fill) -> torch.Tensor:
    """Packed per-sample ``values`` [S] (sorted by ray, ``ray_indices`` [S]) as a dense [R, S_max]
    tensor, each ray's values first and the rest ``fill`` (a float or a per-ray [R, 1] tensor)."""
    counts = torch.bincount(ray_indices, minlength=n_rays)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(ray_indices.numel(), device=values.device) - start[ray_indices]
    out = torch.zeros((n_rays, width), dtype=values.dtype, device=values.device) + fill
    out[ray_indices, slot] = values
    return out


def explore_samples(
    t: torch.Tensor,
    near: float,
    far: float,
    generator: torch.Generator | None = None,
    max_samples: int = MAX_EXPLORE_SAMPLES,
) -> tuple[torch.Tensor, int]:
    """Exploration samples (§1.2): ``n_mult ~ U{1..⌊max/N⌋}`` copies of every sorted depth at
    ``t_k ± (j / n_mult) gap_k`` (towards the next sample or ``far`` with probability ½, else
    towards the previous or ``near``), then a jitter ``t ± η gap`` with ``η = min(|N(0,1)| / 5,
    0.99)`` in the same direction, so samples never cross. Returns the sorted ``[R, N n_mult]``
    depths and ``n_mult``."""
    n = t.shape[1]
    dev = t.device
    hi = max(max_samples // n, 1)
    n_mult = int(torch.randint(1, hi + 1, (1,), generator=generator, device=dev))
    forward = bool(torch.rand((1,), generator=generator, device=dev) < 0.5)
    sign = 1.0 if forward else -1.0
    if n_mult > 1:
        gap = _gaps(t, near, far, forward)
        j = torch.arange(n_mult, device=dev, dtype=t.dtype) / n_mult
        t = (t[..., None] + sign * j * gap[..., None]).flatten(1)
        t, _ = torch.sort(t, dim=-1)
    return jitter_samples(t, near, far, generator), n_mult


def jitter_samples(t: torch.Tensor, near: float, far: float, generator: torch.Generator | None = None):
    """The exploration jitter of sorted depths ``t`` [R, S] (§1.2 step 2, also the refinement
    stage's): ``t ± η gap`` with ``η = min(|N(0,1)| / 5, 0.99)`` per sample, towards the next
    sample (or ``far``) for the whole batch with probability ½, else towards the previous one (or
    ``near``), so samples never cross. Differentiable in ``t``."""
    dev = t.device
    forward = bool(torch.rand((1,), generator=generator, device=dev) < 0.5)
    sign = 1.0 if forward else -1.0
    gap = _gaps(t, near, far, forward)
    eta = (torch.randn(t.shape, generator=generator, device=dev, dtype=t.dtype).abs() / 5).clamp_max(0.99)
    return t + sign * eta * gap


def modulated_alpha(
    raw: torch.Tensor,
    delta: torch.Tensor,
    a: torch.Tensor | None = None,
    m: torch.Tensor | None = None,
    inside: torch.Tensor | None = None,
) -> torch.Tensor:
    """ProNeRF opacities ``α = (1 - exp(-act(raw + a) δ)) relu(m)`` with ``act = trunc_exp`` (the
    field's density activation; ``raw`` is its density logit); ``a``/``m`` omitted: plain NeRF."""
    sigma = trunc_exp(raw if a is None else raw + a)
    if inside is not None:
        sigma = sigma * inside
    alpha = 1.0 - torch.exp(-sigma * delta)
    return alpha if m is None else alpha * F.relu(m)


def transmittance(alpha: torch.Tensor) -> torch.Tensor:
    """NeRF's transmittance before each of [R, S] opacities: ``Π_{j<k} (1 - α_j + 1e-10)``."""
    return torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], -1), -1)[:, :-1]


def composite(alpha: torch.Tensor, rgb: torch.Tensor, t: torch.Tensor, bkgd=None):
    """NeRF compositing of [R, S] opacities: colour [R, 3], opacity [R, 1], depth [R, 1]."""
    w = alpha * transmittance(alpha)
    color = (w[..., None] * rgb).sum(1)
    acc = w.sum(1, keepdim=True)
    if bkgd is not None:
        color = color + (1.0 - acc) * bkgd
    return color, acc, (w * t).sum(1, keepdim=True)


def _mlp(d_in: int, width: int, layers: int, d_out: int, gen: torch.Generator | None) -> torch.nn.Sequential:
    mods: list[torch.nn.Module] = []
    d = d_in
    for _ in range(layers):
        mods += [torch.nn.Linear(d, width), torch.nn.ELU()]
        d = width
    mods.append(torch.nn.Linear(d, d_out))
    with torch.no_grad():
        for mod in mods:
            if isinstance(mod, torch.nn.Linear):
                bound = 1.0 / math.sqrt(mod.in_features)
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=gen) * 2 * bound - bound)
                mod.bias.copy_(torch.rand(mod.bias.shape, generator=gen) * 2 * bound - bound)
    return torch.nn.Sequential(*mods)


class ProNerfSampler(torch.nn.Module):
    """ProNeRF's projection-aware sampler (see the module docstring).

    Args:
        n_samples: field samples a ray (8: ProNeRF-8, 12: ProNeRF-12).
        near, far: the ray's depth range (NDC ``0, 1`` for forward-facing scenes).
        ndc: ``(fx, fy, width, height, near_plane)`` of the NDC mapping, or ``None`` (metric rays).
        n_views: reference views a ray is projected into.
        width, layers: size of each PAS MLP.
        freqs: sinusoidal frequencies of the Plücker encoding.
        offset_bound: ``|Δ|`` bound as a fraction of ``far - near``.
        channels: channels of the reference images (3, or 4 with alpha).
        explore_samples: the most field samples a ray gets while exploring (the paper's 64).
        aabb: metric scenes only: the scene's box (6 floats); each ray's depth range becomes its
            part inside the box (:func:`box_range`) instead of the whole ``[near, far]``.
        interlevel: weight of the interlevel loss on stage A in exploration steps (0: off; a
            deviation from the released code, see the module docstring).
        interlevel_uniform: the uniform share of the interlevel targets' distribution.
        occupancy: metric scenes with a box only: the resolution of an occupancy grid over the box
            (0: none). With one, each ray's range shrinks to its occupied part
            (:meth:`occupied_range`), rays through empty cells only render the background with
            no field evaluation, and exploration trains the field on the grid's marched samples
            (a deviation from the released code, see the module docstring).
        explore_grid: with a grid, whether exploration trains the field on the grid's marched
            samples (else on the densified PAS samples, inside the occupied ranges).
    """

    name = "pronerf"

    def __init__(
        self,
        n_samples: int = 12,
        near: float = 0.0,
        far: float = 1.0,
        ndc: tuple[float, float, float, float, float] | None = None,
        n_views: int = 4,
        width: int = 64,
        layers: int = 3,
        freqs: int = 4,
        offset_bound: float = 0.01,
        channels: int = 3,
        explore_samples: int = MAX_EXPLORE_SAMPLES,
        generator: torch.Generator | None = None,
        aabb=None,
        interlevel: float = 0.0,
        interlevel_uniform: float = 0.25,
        occupancy: int = 0,
        explore_grid: bool = True,
    ):
        super().__init__()
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {n_samples}")
        self.n, self.n_views, self.freqs = n_samples, n_views, freqs
        self.explore_max = int(explore_samples)
        self.near, self.far, self.ndc = float(near), float(far), ndc
        if aabb is not None and ndc is not None:
            raise ValueError("aabb: per-ray box ranges are for metric scenes, not NDC ones")
        self.interlevel, self.interlevel_uniform = float(interlevel), float(interlevel_uniform)
        if self.interlevel < 0 or not 0.0 <= self.interlevel_uniform <= 1.0:
            raise ValueError("interlevel must be >= 0 and interlevel_uniform in [0, 1]")
        self.bound = offset_bound * (self.far - self.near)
        enc = 6 + 12 * freqs
        self.stage_a = _mlp(enc, width, layers, 3 * n_samples + 3, generator)
        self.stage_b = _mlp(
            enc + n_samples + channels * n_samples * n_views, width, layers, 4 * n_samples + 3, generator
        )
        with torch.no_grad():  # start at evenly spaced depths with m = 1 (plain density)
            head = self.stage_a[-1]
            q = (torch.arange(n_samples, dtype=torch.float32) + 0.5) / n_samples
            head.weight[:n_samples] *= 0.1
            head.bias[:n_samples] = torch.log(q / (1 - q))
            head.bias[n_samples : 2 * n_samples] = 0.0
            head.bias[2 * n_samples : 3 * n_samples] = 1.0
        self.register_buffer("ref_images", torch.zeros(0, 1, 1, channels, dtype=torch.uint8))
        self.register_buffer("ref_c2w", torch.zeros(0, 3, 4))
        self.register_buffer("ref_K", torch.zeros(0, 3, 3))
        self.register_buffer("_ref", torch.zeros(0, 1, 1, channels), persistent=False)
        box = torch.zeros(0) if aabb is None else torch.as_tensor(aabb, dtype=torch.float32).reshape(6)
        self.register_buffer("aabb", box, persistent=False)
        if occupancy and aabb is None:
            raise ValueError("occupancy: the occupancy grid needs the scene's box (aabb)")
        #: the occupancy grid over the box (None: off)
        self.grid = OccupancyGrid(box, int(occupancy)) if occupancy else None
        self.explore_grid = bool(explore_grid)
        #: the grid's marching step: the box diagonal / 256 (the occgrid sampler's)
        self.occ_step = float((box[3:] - box[:3]).norm()) / 256 if occupancy else 0.0
        #: first step of the refinement stage (None: stage 1); the trainer sets and saves it
        self.refine_from: int | None = None
        self.reset_timing()

    # ------------------------------------------------------------------ references
    def set_references(self, images: torch.Tensor, c2w: torch.Tensor, K: torch.Tensor) -> None:
        """The reference (training) views: images [M, H, W, C] (uint8, or float in [0, 1]), OpenGL
        ``c2w`` [M, 3|4, 4] and ``K`` [M, 3, 3]. Kept in the state (self-contained checkpoints)."""
        if images.dtype != torch.uint8:
            images = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
        if images.shape[0] < self.n_views:
            raise ValueError(f"images: {self.n_views} reference views needed, got {images.shape[0]}")
        dev = self.ref_c2w.device
        self.ref_images = images.to(dev).contiguous()
        self.ref_c2w = c2w[:, :3, :4].float().to(dev).contiguous()
        self.ref_K = K.float().reshape(-1, 3, 3).to(dev).contiguous()
        self._ref = self.ref_images.float() / 255.0

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        self.set_references(state["ref_images"], state["ref_c2w"], state["ref_K"])
        return super().load_state_dict(state, strict)

    def reset_timing(self) -> None:
        """Zeroes the render-time breakdown (:attr:`timing`, seconds, test-time renders only)."""
        self.timing = {
            "field_s": 0.0,
            "sampler_nets_s": 0.0,
            "projection_s": 0.0,
            "occupancy_s": 0.0,
            "rays": 0,
            "samples": 0,
        }

    @staticmethod
    def explores(step: int) -> bool:
        """Whether stage-1 training step ``step`` (0-based) explores: odd 1-based iterations."""
        return step % 2 == 0

    def phase(self, step: int) -> str:
        """What training step ``step`` does: ``"refine"`` from :attr:`refine_from` on (the
        refinement stage, set by the trainer when it starts), else ``"explore"`` / ``"exploit"``."""
        if self.refine_from is not None and step >= self.refine_from:
            return "refine"
        return "explore" if self.explores(step) else "exploit"

    def update(self, step, fld, generator=None) -> None:
        """Refreshes the occupancy grid, if any, every 16 steps as the occgrid sampler does
        (opacity ``density * step`` above 0.01, every cell during the first 256 steps)."""
        if self.grid is not None and step % 16 == 0:
            refresh_occupancy(self.grid, fld, step, self.occ_step, generator=generator)

    @torch.no_grad()
    def occupied_range(self, rays, near: torch.Tensor, far: torch.Tensor):
        """Each ray's part ``[lo, hi]`` [R, 1] of its range ``[near, far]`` [R, 1] from the entry
        into its first occupied grid cell to the exit from its last (widened by one marching step,
        clipped to the range), and whether it crosses any occupied cell ``hit`` [R] (the rest
        keep ``[near, far]``). The grid is marched without the field (no field evaluation)."""
        n = len(rays)
        ri, t0, t1 = self.grid.sampling(
            rays.origins, rays.directions, near.reshape(-1), far.reshape(-1), self.occ_step
        )
        inf = torch.full((n,), math.inf, device=near.device, dtype=near.dtype)
        first = inf.scatter_reduce(0, ri, t0.to(inf.dtype), "amin")
        last = (-inf).scatter_reduce(0, ri, t1.to(inf.dtype), "amax")
        hit = torch.isfinite(first)
        lo = torch.where(hit, first - self.occ_step, near.reshape(-1)).reshape(-1, 1)
        hi = torch.where(hit, last + self.occ_step, far.reshape(-1)).reshape(-1, 1)
        return torch.maximum(lo, near), torch.minimum(hi, far), hit

    # ------------------------------------------------------------------ geometry
    def world_points(self, rays, t: torch.Tensor) -> torch.Tensor:
        """World points [R, N, 3] of depths ``t`` along ``rays`` (NDC points mapped back exactly:
        metric depth ``near_plane / (1 - t)``)."""
        if self.ndc is None:
            return rays.origins[:, None] + t[..., None] * rays.directions[:, None]
        fx, fy, w, h, n = self.ndc
        t = t.clamp(max=1.0 - 1e-5)
        p = rays.origins[:, None] + t[..., None] * rays.directions[:, None]
        z = 2.0 * n / (p[..., 2] - 1.0)
        return torch.stack([p[..., 0] * z * w / (-2.0 * fx), p[..., 1] * z * h / (-2.0 * fy), z], -1)

    def projected(self, rays, t: torch.Tensor, view_ids: torch.Tensor) -> torch.Tensor:
        """Reference colours [R, N·V·C] of the points at ``t``; an invalid lookup takes the mean
        of that sample's valid views (0 if none)."""
        pts = self.world_points(rays, t)
        with torch.no_grad():
            s, ok = project_to_views(pts.detach(), view_ids, self.ref_c2w, self.ref_K, self._ref)
            okf = ok[..., None].to(s.dtype)
            mean = (s * okf).sum(2, keepdim=True) / okf.sum(2, keepdim=True).clamp_min(1.0)
            s = torch.where(ok[..., None], s, mean)
        return s.flatten(1)

    # ------------------------------------------------------------------ rendering
    def _field(self, fld: RadianceField, rays, x: torch.Tensor):
        r, s = x.shape[:2]
        d = rays.viewdirs[:, None].expand(-1, s, -1)
        raw, inside, rgb = fld.raw(x.reshape(-1, 3), d.reshape(-1, 3))
        return raw.reshape(r, s), inside.reshape(r, s), rgb.reshape(r, s, 3)

    def ray_range(self, rays):
        """The depth range ``(near, far)`` of each ray: floats, or [R, 1] tensors (the part of
        the ray inside :attr:`aabb`, :func:`box_range`) when the sampler has a box."""
        if self.aabb.numel() == 0:
            return self.near, self.far
        return box_range(rays.origins, rays.directions, self.aabb, self.near, self.far)

    def _deltas(self, rays, t: torch.Tensor, far) -> torch.Tensor:
        if self.ndc is None:
            end = (far - t[:, -1:]).clamp_min(0.0)
        else:
            end = torch.full_like(t[:, -1:], 1e10)
        return torch.cat([t[:, 1:] - t[:, :-1], end], -1) * rays.directions.norm(dim=-1, keepdim=True)

    def stage_a_depths(self, enc: torch.Tensor, near, far):
        """Stage A on encoded rays: ``(t, a, m, c_A)`` in the rays' ranges."""
        return stage_a_outputs(self.stage_a(enc), self.n, near, far)

    def pas(self, rays, view_ids: torch.Tensor, rng=None, stage_a=None):
        """Both PAS stages: stage-A ``(t, a, m, c_A)`` and stage-B ``(t', Δ, c_f)`` (``rng``: the
        rays' ranges from :meth:`ray_range`; ``stage_a``: its outputs, when already computed)."""
        near, far = self.ray_range(rays) if rng is None else rng
        enc = encode_rays(rays.origins, rays.directions, self.freqs)
        t, a, m, c_a = self.stage_a_depths(enc, near, far) if stage_a is None else stage_a
        tic = time.perf_counter()
        epi = self.projected(rays, t, view_ids)
        self._proj_s = time.perf_counter() - tic
        s = (t - near) / (far - near)
        r = self.stage_b(torch.cat([enc, s, epi], -1))
        tr, delta, c_f = stage_b_outputs(t, r, near, far, self.bound)
        return (t, a, m, c_a), (tr, delta, c_f)

    def render(
        self, fld: RadianceField, rays, bkgd=None, train=False, generator=None, step=0, stratified=None
    ):
        """Renders ``rays`` (``rays.view_ids`` required); in training, what :meth:`phase` says
        step ``step`` does. ``stratified`` is accepted for the samplers' common interface: the
        exploration and refinement jitter is part of the method and always on in training;
        exploitation and test renders are deterministic. Exploitation returns ``c_f`` and
        ``c_A`` in ``aux_rgb`` (supervised too); refinement supervises the rendered colour only.
        With an occupancy grid, rays that cross no occupied cell show the background."""
        if rays.view_ids is None:
            raise ValueError("rays.view_ids: the pronerf sampler needs reference views per ray")
        phase = self.phase(step) if train else "test"
        near, far = self.ray_range(rays)
        if phase == "explore" and self.grid is not None and self.explore_grid:
            return self._explore_marched(fld, rays, near, far, bkgd, generator)
        hit = None
        if self.grid is not None:
            tic = time.perf_counter()
            near, far, hit = self.occupied_range(rays, near, far)
            if not train:
                self.timing["occupancy_s"] += time.perf_counter() - tic
        if phase == "explore":
            return self._explore(fld, rays, near, far, bkgd, generator)
        if hit is None or bool(hit.all()):
            return self._render_pas(fld, rays, near, far, bkgd, phase, generator)
        return self._render_hits(fld, rays, near, far, hit, bkgd, phase, generator)

    def _explore(self, fld, rays, near, far, bkgd, generator):
        """An exploration step (§1.2): the field on densified, jittered PAS samples."""
        ta = None
        if self.interlevel > 0:  # stage A with gradient, for the interlevel loss
            enc = encode_rays(rays.origins, rays.directions, self.freqs)
            ta = self.stage_a_depths(enc, near, far)
        with torch.no_grad():
            sa = None if ta is None else tuple(x.detach() for x in ta)
            (_, _, _, _), (tr, _, _) = self.pas(rays, rays.view_ids, (near, far), sa)
            te, _ = explore_samples(tr, near, far, generator, self.explore_max)
        x = rays.origins[:, None] + te[..., None] * rays.directions[:, None]
        raw, inside, rgb = self._field(fld, rays, x)
        alpha = modulated_alpha(raw, self._deltas(rays, te, far), inside=inside)
        color, acc, depth = composite(alpha, rgb, te, bkgd)
        aux = None
        if ta is not None:
            w = alpha * transmittance(alpha)
            aux = self._interlevel_loss(ta[0], te, w.detach(), near, far)
        return RenderOut(color, acc, depth, te.numel(), edges=[te], aux_loss=aux)

    def _interlevel_loss(self, depths, t, w, near, far, rays_mask=None) -> torch.Tensor:
        """``λ`` times the mean over the rays (those in ``rays_mask``, if given) of the squared
        distance, in units of each ray's range, of stage A's ``depths`` [R, N] to the quantiles
        of the weights ``w`` of the sorted samples ``t`` (:func:`weight_quantiles`)."""
        target = weight_quantiles(t, w, near, far, self.n, self.interlevel_uniform)
        err = (((depths - target) / (far - near)) ** 2).sum(-1)
        if rays_mask is None:
            return self.interlevel * err.mean()
        m = rays_mask.to(err.dtype)
        return self.interlevel * (err * m).sum() / m.sum().clamp_min(1.0)

    def _explore_marched(self, fld, rays, near, far, bkgd, generator):
        """An exploration step with the occupancy grid: the field on the grid's marched samples in
        the box ranges ``near``, ``far`` (stratified, early stop, as the occgrid sampler trains;
        the march visits occupied cells only), and, with the interlevel loss, its targets from
        their compositing weights in the occupied ranges (rays that cross occupied cells only)."""
        n = len(rays)
        ri, t0, t1 = self.grid.sampling(
            rays.origins,
            rays.directions,
            near.reshape(-1),
            far.reshape(-1),
            self.occ_step,
            density_fn=fld.density,
            stratified=True,
            generator=generator,
        )
        x = rays.origins[ri] + (0.5 * (t0 + t1))[:, None] * rays.directions[ri]
        sigma, rgb = fld(x, rays.viewdirs[ri])
        color, acc, depth, _ = volume_render(t0, t1, sigma, rgb, ri, n, render_bkgd=bkgd)
        aux = None
        if self.interlevel > 0:
            lo, hi, hit = self.occupied_range(rays, near, far)
            enc = encode_rays(rays.origins, rays.directions, self.freqs)
            ta = self.stage_a_depths(enc, lo, hi)
            with torch.no_grad():
                w, _, _ = render_weight_from_density(t0, t1, sigma.detach().float(), ri, n)
                tp = pad_packed(ri, t0.to(lo.dtype), n, hi)
                wp = pad_packed(ri, w.to(lo.dtype), n, 0.0)
            aux = self._interlevel_loss(ta[0], tp, wp, lo, hi, hit)
        return RenderOut(color, acc, depth, int(ri.numel()), packed=(ri, t0, t1), aux_loss=aux)

    def _render_hits(self, fld, rays, near, far, hit, bkgd, phase, generator):
        """:meth:`_render_pas` on the rays that ``hit`` occupied cells; the others show the
        background (opacity and depth 0, direct colours = background) without field evaluation."""
        n = len(rays)
        idx = torch.nonzero(hit)[:, 0]
        dev, dt = rays.origins.device, rays.origins.dtype
        base = torch.zeros((n, 3), device=dev, dtype=dt) + (0.0 if bkgd is None else bkgd)
        zeros = torch.zeros((n, 1), device=dev, dtype=dt)
        if phase == "test":  # the background-only rays count in the per-frame timing
            self.timing["rays"] += n - idx.numel()
        if idx.numel() == 0:
            edge = near.expand(-1, self.n).contiguous()
            return RenderOut(base, zeros, zeros, 0, edges=[edge, edge])
        o, d, v = rays.origins[idx], rays.directions[idx], rays.viewdirs[idx]
        sub = Rays(o, d, v, rays.near, rays.far, rays.view_ids[idx])
        b = bkgd if bkgd is None or bkgd.dim() == 1 else bkgd[idx]
        out = self._render_pas(fld, sub, near[idx], far[idx], b, phase, generator)

        def put(full, part):
            return full.index_put((idx,), part.to(full.dtype))

        edges = [put(near.expand(-1, self.n), e) for e in out.edges]
        return RenderOut(
            put(base, out.rgb),
            put(zeros, out.opacity),
            put(zeros, out.depth),
            out.n_samples,
            aux_rgb=[put(base, a) for a in out.aux_rgb],
            edges=edges,
        )

    def _render_pas(self, fld, rays, near, far, bkgd, phase, generator):
        """Exploitation, refinement and test renders: the field at the refined PAS samples with
        density modulation."""
        n_rays = len(rays)
        tic = time.perf_counter()
        (t, a, m, c_a), (tr, delta, c_f) = self.pas(rays, rays.view_ids, (near, far))
        nets = time.perf_counter() - tic - self._proj_s
        tic = time.perf_counter()
        if phase == "refine":  # stage 2: the refined samples jittered inside their gaps
            tr = jitter_samples(tr, near, far, generator)
        x = rays.origins[:, None] + tr[..., None] * rays.directions[:, None] + delta
        raw, inside, rgb = self._field(fld, rays, x)
        alpha = modulated_alpha(raw, self._deltas(rays, tr, far), a, m, inside)
        color, acc, depth = composite(alpha, rgb, tr, bkgd)
        if phase == "test":
            self.timing["field_s"] += time.perf_counter() - tic
            self.timing["sampler_nets_s"] += nets
            self.timing["projection_s"] += self._proj_s
            self.timing["rays"] += n_rays
            self.timing["samples"] += tr.numel()
        aux = [c_f, c_a] if phase == "exploit" else []
        return RenderOut(color, acc, depth, tr.numel(), aux_rgb=aux, edges=[t, tr])
