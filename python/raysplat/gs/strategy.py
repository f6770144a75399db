"""Adaptive density control (3DGS; the logic of gsplat's ``DefaultStrategy``).

Gradient units: 3DGS thresholds the norm of the loss gradient with respect to each Gaussian's
projected centre in normalised device coordinates (``x_ndc = 2 x_px / W - 1``), averaged over
the steps in which the Gaussian was visible. :func:`raysplat.rasterization`'s ``means2d`` are in
pixels, so ``dL/dx_ndc = dL/dx_px * W / 2`` (and ``H / 2`` for y); the rasterized batch loss is
a mean over its ``C`` cameras, so the gradients are also multiplied by ``C`` (gsplat does the
same). With that, 3DGS's threshold ``grow_grad2d = 2e-4`` applies unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from raysplat.gs.model import GaussianModel
from raysplat.reference.splat import quat_to_rotmat
from raysplat.training.config import Config


@dataclass
class DensifyConfig(Config):
    """Densification schedule and thresholds (defaults: 3DGS / gsplat ``DefaultStrategy``)."""

    #: prune Gaussians with opacity below this
    prune_opa: float = 0.005
    #: grow Gaussians whose mean NDC gradient norm exceeds this
    grow_grad2d: float = 2e-4
    #: clone if max scale <= grow_scale3d * extent, else split
    grow_scale3d: float = 0.01
    #: after the first opacity reset, prune max scale > prune_scale3d * extent ...
    prune_scale3d: float = 0.1
    #: ... and max screen radius > prune_scale2d * max(W, H) (3DGS's 20 px at 800 px is 0.025)
    prune_scale2d: float = 0.15
    #: refine (grow + prune) every ``refine_every`` steps in (refine_start, refine_stop)
    refine_start: int = 500
    refine_stop: int = 15000
    refine_every: int = 100
    #: reset opacities to 2 * prune_opa every ``reset_every`` steps (while refining; 0: never)
    reset_every: int = 3000
    #: skip refinement for this many steps after each opacity reset
    pause_after_reset: int = 0
    #: stop growing above this many Gaussians (0: no cap)
    max_gaussians: int = 0
    #: split into this many children
    n_split: int = 2


def update_params(
    model: GaussianModel,
    optimizers: dict[str, torch.optim.Optimizer],
    param_fn: Callable[[str, torch.Tensor], torch.Tensor],
    state_fn: Callable[[str, torch.Tensor], torch.Tensor],
    names: tuple[str, ...] | None = None,
) -> None:
    """Replaces each parameter ``p`` (of ``names``, default all) by ``param_fn(name, p)`` and
    each of its per-Gaussian optimizer state tensors ``v`` (Adam's moments) by
    ``state_fn(key, v)``; scalar states (``step``) are kept. The optimizers then hold the new
    parameters."""
    for name, old in list(model.params.items()):
        if names is not None and name not in names:
            continue
        new = torch.nn.Parameter(param_fn(name, old.detach()), requires_grad=old.requires_grad)
        opt = optimizers.get(name)
        if opt is not None:
            for group in opt.param_groups:
                for i, p in enumerate(group["params"]):
                    if p is not old:
                        continue
                    st = opt.state.pop(p, None)
                    if st is not None:
                        opt.state[new] = {
                            k: state_fn(k, v) if isinstance(v, torch.Tensor) and v.dim() > 0 else v
                            for k, v in st.items()
                        }
                    group["params"][i] = new
        model.params[name] = new


class DensityControl:
    """Adaptive density control: accumulates 2D-gradient statistics each step and clones,
    splits, prunes and resets opacities on schedule, keeping the optimizers consistent.

    Usage per step: ``pre_backward(meta)`` before ``loss.backward()`` (retains ``means2d``'s
    gradient) and ``post_backward(step, meta)`` after the optimizer step.
    """

    def __init__(
        self,
        model: GaussianModel,
        optimizers: dict[str, torch.optim.Optimizer],
        config: DensifyConfig,
        extent: float,
        generator: torch.Generator,
    ):
        self.model, self.optimizers, self.cfg = model, optimizers, config
        self.extent, self.generator = extent, generator
        self.reset_state()

    def reset_state(self) -> None:
        n, dev = len(self.model), self.model.means.device
        self.grad2d = torch.zeros(n, device=dev)
        self.count = torch.zeros(n, device=dev)
        self.radii = torch.zeros(n, device=dev)

    def state_dict(self) -> dict:
        return {"grad2d": self.grad2d.clone(), "count": self.count.clone(), "radii": self.radii.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.grad2d, self.count, self.radii = (state[k].clone() for k in ("grad2d", "count", "radii"))

    @staticmethod
    def pre_backward(meta: dict) -> None:
        if meta["means2d"].requires_grad:
            meta["means2d"].retain_grad()

    def increments(
        self, meta: dict, n_cameras: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """This step's statistics ``(grad2d, count, radii)`` (each ``[N]``) from the rasterization
        ``meta`` after ``backward`` (``None`` when ``means2d`` has no gradient). ``n_cameras``: the
        cameras the loss averages over (default ``meta``'s; under ``torch.distributed`` the
        global batch, of which this rank rendered a share)."""
        m2 = meta["means2d"]
        if m2.grad is None:
            return None
        g = m2.grad.detach().clone()  # [C, N, 2] pixels
        c = meta["n_cameras"] if n_cameras is None else n_cameras
        w, h = meta["width"], meta["height"]
        g[..., 0] *= 0.5 * w * c
        g[..., 1] *= 0.5 * h * c
        radii = meta["radii"]
        vis = (radii > 0).all(-1) if radii.dim() == 3 else radii > 0  # [C, N]
        norms = torch.where(vis, g.norm(dim=-1), torch.zeros((), device=g.device))
        r = radii.max(-1).values if radii.dim() == 3 else radii
        r = (r.to(self.radii.dtype) / max(w, h)).max(0).values
        return norms.sum(0), vis.sum(0).to(self.count.dtype), r

    def add(self, increments: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        """Adds :meth:`increments` (summed over ranks, radii maximised) to the statistics."""
        grad2d, count, radii = increments
        self.grad2d += grad2d
        self.count += count
        self.radii = torch.maximum(self.radii, radii)

    def _accumulate(self, meta: dict) -> None:
        inc = self.increments(meta)
        if inc is not None:
            self.add(inc)

    @torch.no_grad()
    def post_backward(
        self,
        step: int,
        meta: dict | None = None,
        increments: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> dict:
        """Accumulates statistics of ``step`` (1-based; from ``meta``, or the given
        ``increments`` — all ranks' when training data-parallel) and refines on schedule; returns
        counts of ``cloned``, ``split``, ``pruned`` Gaussians and whether opacities were ``reset``."""
        cfg = self.cfg
        out = {"cloned": 0, "split": 0, "pruned": 0, "reset": False}
        if step >= cfg.refine_stop:
            return out
        if increments is not None:
            self.add(increments)
        elif meta is not None:
            self._accumulate(meta)
        if (
            step > cfg.refine_start
            and step % cfg.refine_every == 0
            and (cfg.reset_every <= 0 or step % cfg.reset_every >= cfg.pause_after_reset)
        ):
            out["cloned"], out["split"] = self.grow()
            out["pruned"] = self.prune(step)
            self.reset_state()
        if cfg.reset_every > 0 and step % cfg.reset_every == 0:
            self.reset_opacities(2 * cfg.prune_opa)
            out["reset"] = True
        return out

    # ------------------------------------------------------------------ operations

    def grow(self) -> tuple[int, int]:
        """Clones small and splits large Gaussians with a high mean 2D gradient."""
        cfg = self.cfg
        avg = self.grad2d / self.count.clamp_min(1)
        high = avg > cfg.grow_grad2d
        small = self.model.scales.max(-1).values <= cfg.grow_scale3d * self.extent
        clone, split = high & small, high & ~small
        if cfg.max_gaussians > 0:
            room = cfg.max_gaussians - len(self.model)
            n_c, n_s = int(clone.sum()), int(split.sum())
            if n_c + (cfg.n_split - 1) * n_s > room:
                # keep the largest gradients that fit
                budget = max(room, 0)
                order = torch.argsort(torch.where(high, avg, torch.full_like(avg, -1.0)), descending=True)
                keep = torch.zeros_like(high)
                cost = torch.where(clone, 1, cfg.n_split - 1)[order]
                fits = torch.cumsum(cost, 0) <= budget
                keep[order[fits & high[order]]] = True
                clone, split = clone & keep, split & keep
        n_clone = int(clone.sum())
        if n_clone:
            self.duplicate(clone)
            split = torch.cat([split, torch.zeros(n_clone, dtype=torch.bool, device=split.device)])
        n_split = int(split.sum())
        if n_split:
            self.split(split)
        return n_clone, n_split

    def prune(self, step: int) -> int:
        """Removes nearly transparent Gaussians (and, after the first opacity reset, too large ones)."""
        cfg = self.cfg
        bad = self.model.opacities < cfg.prune_opa
        if cfg.reset_every > 0 and step > cfg.reset_every:
            bad |= self.model.scales.max(-1).values > cfg.prune_scale3d * self.extent
            bad |= self.radii > cfg.prune_scale2d
        n = int(bad.sum())
        if n:
            self.remove(bad)
        return n

    def duplicate(self, mask: torch.Tensor) -> None:
        """Appends copies of the ``mask``ed Gaussians (fresh zero optimizer moments)."""
        idx = mask.nonzero()[:, 0]
        update_params(
            self.model,
            self.optimizers,
            lambda _, p: torch.cat([p, p[idx]]),
            lambda _, v: torch.cat([v, torch.zeros_like(v[idx])]),
        )
        for k in ("grad2d", "count", "radii"):
            setattr(self, k, torch.cat([getattr(self, k), getattr(self, k)[idx]]))

    def split(self, mask: torch.Tensor) -> None:
        """Replaces each ``mask``ed Gaussian by ``n_split`` children sampled from it, with scales
        divided by ``0.8 * n_split`` (3DGS's 1.6 for two)."""
        s = self.cfg.n_split
        idx, rest = mask.nonzero()[:, 0], (~mask).nonzero()[:, 0]
        p = self.model.params
        scales = torch.exp(p["scales"][idx])
        rot = quat_to_rotmat(p["quats"][idx])
        noise = torch.randn((s, len(idx), 3), generator=self.generator).to(scales)
        samples = torch.einsum("nij,nj,bnj->bni", rot, scales, noise)  # [S, M, 3]
        new_means = (p["means"][idx][None] + samples).reshape(-1, 3)
        new_scales = torch.log(scales / (0.8 * s)).repeat(s, 1)

        def param_fn(name, x):
            if name == "means":
                child = new_means
            elif name == "scales":
                child = new_scales
            else:
                child = x[idx].repeat(s, *([1] * (x.dim() - 1)))
            return torch.cat([x[rest], child])

        update_params(
            self.model,
            self.optimizers,
            param_fn,
            lambda _, v: torch.cat([v[rest], v.new_zeros((s * len(idx), *v.shape[1:]))]),
        )
        for k in ("grad2d", "count", "radii"):
            x = getattr(self, k)
            setattr(self, k, torch.cat([x[rest], x[idx].repeat(s)]))

    def remove(self, mask: torch.Tensor) -> None:
        """Deletes the ``mask``ed Gaussians and their optimizer moments."""
        keep = (~mask).nonzero()[:, 0]
        update_params(self.model, self.optimizers, lambda _, p: p[keep], lambda _, v: v[keep])
        for k in ("grad2d", "count", "radii"):
            setattr(self, k, getattr(self, k)[keep])

    def reset_opacities(self, value: float) -> None:
        """Clamps opacities to at most ``value`` and zeroes their Adam moments (3DGS)."""
        logit = math.log(value / (1 - value))
        update_params(
            self.model,
            self.optimizers,
            lambda _, p: p.clamp_max(logit),
            lambda _, v: torch.zeros_like(v),
            names=("opacities",),
        )
