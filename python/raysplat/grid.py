"""Cascaded binary occupancy grid for empty-space skipping (Instant-NGP / nerfacc style)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from raysplat import _checks as chk
from raysplat import _core, _peers
from raysplat.reference import grid as ref
from raysplat.volrend import render_weight_from_density

DensityFn = Callable[[torch.Tensor], torch.Tensor]


class OccupancyGrid(torch.nn.Module):
    """A cascade of ``levels`` binary grids; level ``l`` covers ``aabb`` scaled by ``2^l``.

    Buffers (saved in ``state_dict``): ``occs`` [levels * rx * ry * rz] running occupancy
    values and ``binaries`` [levels, rx, ry, rz] booleans.

    Args:
        aabb: [6] (xmin, ymin, zmin, xmax, ymax, zmax) of level 0.
        resolution: cells per axis (int or three ints).
        levels: number of cascade levels (use > 1 for unbounded scenes).
    """

    def __init__(
        self, aabb: Sequence[float] | torch.Tensor, resolution: int | Sequence[int] = 128, levels: int = 1
    ):
        super().__init__()
        aabb_t = torch.as_tensor(aabb, dtype=torch.float32).flatten()
        if (
            aabb_t.numel() != 6
            or not bool(torch.isfinite(aabb_t).all())
            or bool((aabb_t[:3] >= aabb_t[3:]).any())
        ):
            raise ValueError(f"aabb must hold 6 finite values with min < max, got {aabb_t.tolist()}")
        res = [resolution] * 3 if isinstance(resolution, int) else list(resolution)
        if len(res) != 3:
            raise ValueError(f"resolution must be an int or three ints, got {resolution!r}")
        self.resolution = [chk.positive_int("resolution", r) for r in res]
        self.levels = chk.positive_int("levels", levels)
        if self.levels > 16:
            raise ValueError("levels must be at most 16")
        n = self.levels * self.resolution[0] * self.resolution[1] * self.resolution[2]
        self.register_buffer("aabb", aabb_t)
        self.register_buffer("occs", torch.zeros(n))
        self.register_buffer("binaries", torch.zeros(self.levels, *self.resolution, dtype=torch.bool))

    @property
    def cells_per_level(self) -> int:
        """Number of cells in one level."""
        return self.resolution[0] * self.resolution[1] * self.resolution[2]

    def level_aabbs(self) -> torch.Tensor:
        """[levels, 6] boxes of every level."""
        return ref.level_aabbs(self.aabb, self.levels)

    def cell_centers(
        self, level: int, indices: torch.Tensor, jitter: torch.Tensor | None = None
    ) -> torch.Tensor:
        """World positions of cells ``indices`` (flat within ``level``), jittered inside the cell."""
        rx, ry, rz = self.resolution
        ijk = torch.stack([indices // (ry * rz), (indices // rz) % ry, indices % rz], -1).float()
        offs = 0.5 if jitter is None else jitter
        res = torch.tensor(self.resolution, dtype=torch.float32, device=indices.device)
        box = self.level_aabbs()[level]
        return box[:3] + (ijk + offs) / res * (box[3:] - box[:3])

    @torch.no_grad()
    def update(
        self,
        step: int,
        density_fn: DensityFn,
        threshold: float = 0.01,
        ema_decay: float = 0.95,
        warmup_steps: int = 256,
        generator: torch.Generator | None = None,
    ) -> None:
        """Refreshes occupancy from ``density_fn`` (positions [N, 3] -> values [N] or [N, 1]).

        Pure torch on every device (nerfacc's update is torch code too, the same algorithm). After
        warm-up, drawing from the occupied cells is the one host synchronisation (their number is
        data dependent); the threshold stays on the device.

        During warm-up (``step < warmup_steps``) every cell is evaluated; afterwards a random
        quarter of the cells plus a quarter drawn from the occupied ones. Each evaluated cell
        takes ``max(ema_decay * old, density_fn(x))`` at a jittered point ``x`` inside it, and is
        occupied when above ``min(threshold, mean occupancy)``. Scale the density by the render
        step size in ``density_fn`` to threshold opacity instead of density (as nerfacc does).
        """
        dev = self.occs.device
        n_cells = self.cells_per_level
        for level in range(self.levels):
            base = level * n_cells
            if step < warmup_steps:
                idx = torch.arange(n_cells, device=dev)
            else:
                idx = torch.randint(0, n_cells, (n_cells // 4,), device=dev, generator=generator)
                occupied = torch.nonzero(self.occs[base : base + n_cells] > 0)[:, 0]
                if occupied.numel() > n_cells // 4:
                    pick = torch.randint(
                        0, occupied.numel(), (n_cells // 4,), device=dev, generator=generator
                    )
                    occupied = occupied[pick]
                idx = torch.cat([idx, occupied])
            jitter = torch.rand((idx.numel(), 3), device=dev, generator=generator)
            x = self.cell_centers(level, idx, jitter)
            occ = density_fn(x)
            if not isinstance(occ, torch.Tensor) or occ.numel() != idx.numel():
                raise ValueError(
                    f"density_fn must return one value per point ({idx.numel()}), "
                    f"got {getattr(occ, 'shape', type(occ))}"
                )
            occ = occ.reshape(-1).to(self.occs.dtype)
            cur = self.occs[base + idx]
            self.occs[base + idx] = torch.maximum(cur * ema_decay, occ)
        # threshold = min(threshold, mean of the valid cells), kept on the device (no sync)
        valid = self.occs >= 0
        n_valid = valid.sum()
        mean = torch.where(valid, self.occs, torch.zeros_like(self.occs)).sum() / n_valid.clamp_min(1)
        thre = torch.where(n_valid > 0, mean.clamp_max(float(threshold)), mean.new_tensor(float(threshold)))
        self.binaries.copy_((self.occs > thre).view_as(self.binaries))

    def update_every_n_steps(self, step: int, density_fn: DensityFn, n: int = 16, **kwargs) -> None:
        """Calls :meth:`update` when ``step % n == 0`` (training-loop convenience)."""
        if step % n == 0:
            self.update(step, density_fn, **kwargs)

    def _nerfacc_march(self, nf, origins, directions, near_t, far_t, step, cone_angle, jitter):
        """nerfacc's ``traverse_grids`` with raysplat's conventions: the march starts at
        ``max(near, entry into the outermost level) + jitter * step`` (nerfacc would jitter
        ``near`` before clamping it to the box)."""
        n = origins.shape[0]
        near_b = near_t.expand(n) if near_t.numel() == 1 else near_t
        far_b = far_t.expand(n) if far_t.numel() == 1 else far_t
        t0, _ = ref.slab(origins.float(), directions.float(), self.level_aabbs()[-1])
        start = torch.maximum(t0, near_b)
        if jitter is not None:
            start = start + jitter * step
        intervals, samples, _ = nf.traverse_grids(
            origins.float().contiguous(),
            directions.float().contiguous(),
            self.binaries.contiguous(),
            self.level_aabbs().contiguous(),
            near_planes=start.contiguous(),
            far_planes=far_b.contiguous(),
            step_size=float(step),
            cone_angle=float(cone_angle),
        )
        ts = intervals.vals[intervals.is_left]
        te = intervals.vals[intervals.is_right]
        return samples.ray_indices.long(), ts, te

    @torch.no_grad()
    def sampling(
        self,
        origins: torch.Tensor,
        directions: torch.Tensor,
        near: float | torch.Tensor = 0.0,
        far: float | torch.Tensor = 1e10,
        render_step_size: float = 1e-3,
        density_fn: DensityFn | None = None,
        early_stop_eps: float = 1e-4,
        alpha_thre: float = 0.0,
        cone_angle: float = 0.0,
        stratified: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Marches rays through occupied cells, skipping empty space.

        Args:
            origins, directions: [R, 3] rays.
            near, far: distance bounds (floats or [R] tensors, ``near >= 0``).
            render_step_size: step length (the minimum one when ``cone_angle > 0``).
            density_fn: optional density of positions [N, 3]; when given, samples behind
                transmittance < ``early_stop_eps`` or with alpha < ``alpha_thre`` are dropped.
            cone_angle: steps grow as ``max(step, cone_angle * t)`` (0: uniform).
            stratified: shift each ray's first step by ``U(0, 1) * render_step_size``.

        Returns:
            Packed ``(ray_indices, t_starts, t_ends)``, sorted by ray.
        """
        # The Rust kernel checks finiteness itself (inside its parallel loops).
        rust = chk.use_rust(origins, directions, self.binaries)
        chk.tensor("origins", origins, ndim=2, last=3, finite=not rust)
        chk.tensor("directions", directions, ndim=2, last=3, finite=not rust)
        chk.same_shape("origins", origins, "directions", directions)
        chk.same_device(origins=origins, directions=directions, grid=self.binaries)
        if not render_step_size > 0:
            raise ValueError(f"render_step_size must be positive, got {render_step_size}")
        if not cone_angle >= 0:
            raise ValueError(f"cone_angle must be non-negative, got {cone_angle}")
        n = origins.shape[0]
        near_t = torch.as_tensor(near, dtype=torch.float32, device=origins.device).reshape(-1)
        far_t = torch.as_tensor(far, dtype=torch.float32, device=origins.device).reshape(-1)
        for name, v in (("near", near_t), ("far", far_t)):
            if v.numel() not in (1, n):
                raise ValueError(f"{name} must be a float or hold one value per ray ({n}), got {v.numel()}")
        if bool((near_t < 0).any()) or not bool(torch.isfinite(near_t).all()):
            raise ValueError("near must be finite and >= 0")
        if bool(torch.isnan(far_t).any()):
            raise ValueError("far contains NaN")
        jitter = torch.rand((n,), device=origins.device, generator=generator) if stratified else None
        nf = _peers.select("nerfacc", origins, directions, float32=True)
        if nf is not None:
            ri, ts, te = self._nerfacc_march(
                nf, origins, directions, near_t, far_t, render_step_size, cone_angle, jitter
            )
        elif rust:
            ri, ts, te = _core.march(
                chk.to_numpy("origins", origins),
                chk.to_numpy("directions", directions),
                chk.to_numpy("near", near_t),
                chk.to_numpy("far", far_t),
                self.binaries.reshape(-1).contiguous().numpy(),
                self.aabb.tolist(),
                self.resolution,
                self.levels,
                float(render_step_size),
                float(cone_angle),
                None if jitter is None else chk.to_numpy("jitter", jitter),
            )
            ri, ts, te = torch.from_numpy(ri), torch.from_numpy(ts), torch.from_numpy(te)
        else:
            near_b = near_t.expand(n) if near_t.numel() == 1 else near_t
            far_b = far_t.expand(n) if far_t.numel() == 1 else far_t
            ri, ts, te = ref.march(
                origins.float(),
                directions.float(),
                near_b,
                far_b,
                self.binaries,
                self.aabb,
                float(render_step_size),
                float(cone_angle),
                jitter,
            )
        if density_fn is None or ri.numel() == 0 or (early_stop_eps <= 0 and alpha_thre <= 0):
            return ri, ts, te
        mid = 0.5 * (ts + te)
        x = origins[ri] + mid[:, None] * directions[ri]
        sigmas = density_fn(x).reshape(-1).float()
        _, trans, alphas = render_weight_from_density(ts, te, sigmas, ri, n)
        keep = trans >= early_stop_eps
        alpha_thre = min(float(alpha_thre), float(self.occs.mean()))
        if alpha_thre > 0:
            keep &= alphas >= alpha_thre
        return ri[keep], ts[keep], te[keep]
