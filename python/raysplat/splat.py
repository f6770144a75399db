"""3D Gaussian splatting: :func:`rasterization`, a drop-in for ``gsplat.rasterization``.

Same argument names, shapes and semantics as gsplat 1.5 (wxyz quaternions, OpenCV
world-to-camera ``viewmats``, ``eps2d`` low-pass blur, antialiased opacity compensation, SH
colours ``+ 0.5`` clamped at 0, 16x16 tiles, ``alpha = min(0.99, o * G)``, skip below 1/255,
stop at transmittance 1e-4; pinhole, ortho and fisheye cameras; ``packed`` meta; gradients
w.r.t. ``viewmats``). CPU tensors run the Rust kernels (forward and backward); CUDA
tensors run gsplat when it is installed and its extension loads (:mod:`raysplat._peers`), else
(and on other devices) the pure-torch twin
(:mod:`raysplat.reference.splat`).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from raysplat import _checks as chk
from raysplat import _core, _peers
from raysplat.reference import splat as ref

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
RASTERIZE_MODES = ("classic", "antialiased")


def _np(name, x, dt):
    return None if x is None else chk.to_numpy(name, x, dt)


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, means, quats, scales, opacities, viewmats, Ks, width, height, near, far, eps2d, aa, model
    ):
        dt = chk.float_dtype_of(means)
        args = [
            _np(n, x, dt)
            for n, x in zip(
                ("means", "quats", "scales", "opacities", "viewmats", "Ks"),
                (means, quats, scales, opacities, viewmats, Ks),
                strict=True,
            )
        ]
        m2, co, de, ra, cp = _core.splat_project(*args, width, height, near, far, eps2d, aa, model)
        c_, n = viewmats.shape[0], means.shape[0]
        out = (
            chk.from_numpy(m2, (c_, n, 2), means.dtype),
            chk.from_numpy(co, (c_, n, 3), means.dtype),
            chk.from_numpy(de, (c_, n), means.dtype),
            chk.from_numpy(ra, (c_, n, 2)),
            chk.from_numpy(cp, (c_, n), means.dtype),
        )
        ctx.save_for_backward(means, quats, scales, opacities, viewmats, Ks, out[3])
        ctx.mark_non_differentiable(out[3])
        ctx.cfg = (width, height, eps2d, dt, model)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, v_means2d, v_conics, v_depths, _v_radii, v_compensations):
        means, quats, scales, opacities, viewmats, Ks, radii = ctx.saved_tensors
        width, height, eps2d, dt, model = ctx.cfg
        gm, gq, gs, gv = _core.splat_project_backward(
            _np("means", means, dt),
            _np("quats", quats, dt),
            _np("scales", scales, dt),
            _np("opacities", opacities, dt),
            _np("viewmats", viewmats, dt),
            _np("Ks", Ks, dt),
            width,
            height,
            eps2d,
            radii.numpy(),
            _np("v_means2d", v_means2d, dt),
            _np("v_conics", v_conics, dt),
            _np("v_depths", v_depths, dt),
            _np("v_compensations", v_compensations, dt),
            model,
            ctx.needs_input_grad[4],
        )
        return (
            chk.from_numpy(gm, means.shape, means.dtype),
            chk.from_numpy(gq, quats.shape, quats.dtype),
            chk.from_numpy(gs, scales.shape, scales.dtype),
            None,
            None if gv is None else chk.from_numpy(gv, viewmats.shape, viewmats.dtype),
            *([None] * 8),
        )


class _SH(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree, coeffs, means, campos):
        dt = chk.float_dtype_of(coeffs)
        k = coeffs.shape[1]
        out = _core.splat_sh(
            degree, _np("colors", coeffs, dt), k, _np("means", means, dt), _np("campos", campos, dt)
        )
        ctx.save_for_backward(coeffs, means, campos)
        ctx.cfg = (degree, dt)
        return chk.from_numpy(out, (campos.shape[0], means.shape[0], 3), coeffs.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, v_colors):
        coeffs, means, campos = ctx.saved_tensors
        degree, dt = ctx.cfg
        args = (_np("colors", coeffs, dt), coeffs.shape[1], _np("means", means, dt))
        if not ctx.needs_input_grad[3]:
            gc, gm = _core.splat_sh_backward(
                degree, *args, _np("campos", campos, dt), _np("v_colors", v_colors, dt)
            )
            return (
                None,
                chk.from_numpy(gc, coeffs.shape, coeffs.dtype),
                chk.from_numpy(gm, means.shape, means.dtype),
                None,
            )
        # Camera positions need the per-camera sums of the direction gradients: one call per
        # camera (dirs = means - campos, so v_campos[c] = -sum_n v_means[c, n]).
        gc_t = torch.zeros_like(coeffs)
        gm_t = torch.zeros_like(means)
        gp_t = torch.zeros_like(campos)
        for c in range(campos.shape[0]):
            gc, gm = _core.splat_sh_backward(
                degree,
                *args,
                _np("campos", campos[c : c + 1], dt),
                _np("v_colors", v_colors[c : c + 1], dt),
            )
            gc_c = chk.from_numpy(gc, coeffs.shape, coeffs.dtype)
            gm_c = chk.from_numpy(gm, means.shape, means.dtype)
            gc_t += gc_c
            gm_t += gm_c
            gp_t[c] = -gm_c.sum(0)
        return None, gc_t, gm_t, gp_t


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, radii, depths, width, height, absgrad):
        dt = chk.float_dtype_of(means2d)
        c_, n, d = colors.shape
        img, alp, trans, last, offsets, flat, tpg = _core.splat_rasterize(
            _np("means2d", means2d, dt),
            _np("conics", conics, dt),
            _np("colors", colors, dt),
            _np("opacities", opacities, dt),
            radii.contiguous().numpy(),
            _np("depths", depths, dt),
            c_,
            width,
            height,
            d,
        )
        trans_t, last_t = (
            chk.from_numpy(trans, (c_, height, width)),
            chk.from_numpy(last, (c_, height, width)),
        )
        ctx.save_for_backward(means2d, conics, colors, opacities, trans_t, last_t)
        ctx.tiles = (offsets, flat)
        ctx.cfg = (width, height, dt, absgrad)
        ctx.means2d = means2d if absgrad else None
        offsets_t, flat_t = chk.from_numpy(offsets, offsets.shape), chk.from_numpy(flat, flat.shape)
        tpg_t = chk.from_numpy(tpg, (c_, n))
        ctx.mark_non_differentiable(offsets_t, flat_t, tpg_t)
        return (
            chk.from_numpy(img, (c_, height, width, d), means2d.dtype),
            chk.from_numpy(alp, (c_, height, width, 1), means2d.dtype),
            offsets_t,
            flat_t,
            tpg_t,
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, v_colors, v_alphas, *_):
        means2d, conics, colors, opacities, trans, last = ctx.saved_tensors
        width, height, dt, absgrad = ctx.cfg
        c_, n, d = colors.shape
        gm, gc, gcol, gop, gabs = _core.splat_rasterize_backward(
            _np("means2d", means2d, dt),
            _np("conics", conics, dt),
            _np("colors", colors, dt),
            _np("opacities", opacities, dt),
            c_,
            width,
            height,
            d,
            ctx.tiles[0],
            ctx.tiles[1],
            trans.numpy(),
            last.numpy(),
            _np("v_colors", v_colors, dt),
            _np("v_alphas", v_alphas, dt),
            absgrad,
        )
        if absgrad and ctx.means2d is not None:
            ctx.means2d.absgrad = chk.from_numpy(gabs, (c_, n, 2), means2d.dtype)
        return (
            chk.from_numpy(gm, (c_, n, 2), means2d.dtype),
            chk.from_numpy(gc, (c_, n, 3), conics.dtype),
            chk.from_numpy(gcol, (c_, n, d), colors.dtype),
            chk.from_numpy(gop, (c_, n), opacities.dtype),
            *([None] * 5),
        )


def _validate(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, backgrounds, rust
):
    chk.tensor("means", means, ndim=2, last=3, finite=not rust)
    n = means.shape[0]
    chk.tensor("quats", quats, ndim=2, last=4, finite=not rust)
    chk.tensor("scales", scales, ndim=2, last=3, finite=not rust)
    chk.tensor("opacities", opacities, ndim=1, finite=not rust)
    for name, x in (("quats", quats), ("scales", scales), ("opacities", opacities)):
        if x.shape[0] != n:
            raise ValueError(f"{name} must have {n} Gaussians (like means), got shape {tuple(x.shape)}")
    chk.tensor("viewmats", viewmats, ndim=3, finite=True)
    if tuple(viewmats.shape[1:]) != (4, 4):
        raise ValueError(f"viewmats must have shape [C, 4, 4], got {tuple(viewmats.shape)}")
    c_ = viewmats.shape[0]
    if c_ == 0:
        raise ValueError("viewmats must hold at least one camera")
    chk.tensor("Ks", Ks, ndim=3, finite=True)
    if tuple(Ks.shape) != (c_, 3, 3):
        raise ValueError(f"Ks must have shape [{c_}, 3, 3] (one per viewmat), got {tuple(Ks.shape)}")
    if not bool((Ks[:, 0, 0] > 0).all() and (Ks[:, 1, 1] > 0).all()):
        raise ValueError("Ks: focal lengths must be positive")
    chk.positive_int("width", width)
    chk.positive_int("height", height)
    chk.tensor("colors", colors, finite=not rust)
    if sh_degree is None:
        if colors.dim() == 2:
            if colors.shape[0] != n:
                raise ValueError(
                    f"colors must have shape [N, D] or [C, N, D] with N={n}, got {tuple(colors.shape)}"
                )
        elif colors.dim() == 3:
            if tuple(colors.shape[:2]) != (c_, n):
                raise ValueError(f"colors must have shape [{c_}, {n}, D], got {tuple(colors.shape)}")
        else:
            raise ValueError(f"colors must have shape [N, D] or [C, N, D], got {tuple(colors.shape)}")
        if colors.shape[-1] == 0:
            raise ValueError("colors must have at least one channel")
    else:
        if isinstance(sh_degree, bool) or not isinstance(sh_degree, int):
            raise TypeError(f"sh_degree must be an int or None, got {type(sh_degree).__name__}")
        if not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be in [0, 3], got {sh_degree}")
        k = (sh_degree + 1) ** 2
        if colors.dim() != 3 or colors.shape[0] != n or colors.shape[2] != 3 or colors.shape[1] < k:
            raise ValueError(
                f"colors must be SH coefficients [N, K, 3] with N={n} and K >= {k} "
                f"for sh_degree={sh_degree}, "
                f"got {tuple(colors.shape)}"
            )
    if backgrounds is not None:
        chk.tensor("backgrounds", backgrounds, ndim=(1, 2), finite=True)
    chk.same_device(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=colors,
        viewmats=viewmats,
        Ks=Ks,
        backgrounds=backgrounds,
    )
    return n, c_


_GSPLAT_DEFAULTS = {
    "distributed": False,
    "segmented": False,
    "with_ut": False,
    "with_eval3d": False,
    "radial_coeffs": None,
    "tangential_coeffs": None,
    "thin_prism_coeffs": None,
    "ftheta_coeffs": None,
    "viewmats_rs": None,
}


def _unsupported_gsplat_keywords(**given) -> None:
    """gsplat 1.5 keywords raysplat accepts only at their defaults: anything else is a one-line
    ``ValueError`` naming the keyword (a call copied from gsplat never meets a bare TypeError)."""
    for name, value in given.items():
        default = _GSPLAT_DEFAULTS[name]
        if value is None and default is None:
            continue
        if default is False and value is False:
            continue
        raise ValueError(f"{name}: not supported by raysplat.rasterization (only {default!r})")


def _check_rolling_shutter(rolling_shutter: object) -> None:
    """Accepts ``None``, ``"global"`` or gsplat's ``RollingShutterType.GLOBAL``."""
    if rolling_shutter is None:
        return
    label = getattr(rolling_shutter, "name", rolling_shutter)
    if isinstance(label, str) and label.lower() == "global":
        return
    raise ValueError(f"rolling_shutter: only the global shutter is supported, got {rolling_shutter!r}")


def covars_to_quats_scales(covars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotations (wxyz) and scales with ``R diag(s^2) R^T == covars`` (gsplat's ``covars``).

    ``covars``: [N, 3, 3] (symmetrised) or [N, 6] upper triangles ``(xx, xy, xz, yy, yz, zz)``.
    An eigendecomposition gives the axes (columns of ``R``, made a proper rotation) and
    ``s = sqrt(max(eigenvalue, 0))``; the quaternion comes from ``R`` by Shepperd's method (the
    best-conditioned of the four formulas per Gaussian). Differentiable, except where two
    eigenvalues coincide (an axis-symmetric Gaussian: the eigenvector gradient is undefined).
    """
    chk.tensor("covars", covars, ndim=(2, 3), finite=True)
    if covars.dim() == 2:
        if covars.shape[1] != 6:
            raise ValueError(f"covars must have shape [N, 3, 3] or [N, 6], got {tuple(covars.shape)}")
        xx, xy, xz, yy, yz, zz = covars.unbind(-1)
        cov = torch.stack([xx, xy, xz, xy, yy, yz, xz, yz, zz], -1).reshape(-1, 3, 3)
    else:
        if tuple(covars.shape[1:]) != (3, 3):
            raise ValueError(f"covars must have shape [N, 3, 3] or [N, 6], got {tuple(covars.shape)}")
        cov = 0.5 * (covars + covars.transpose(-1, -2))
    evals, rot = torch.linalg.eigh(cov)
    scales = evals.clamp_min(1e-30).sqrt()
    sign = torch.where(torch.linalg.det(rot.detach()) < 0, -1.0, 1.0).to(rot.dtype)
    rot = torch.cat([rot[..., :2], rot[..., 2:] * sign[:, None, None]], -1)
    m = rot
    t = torch.stack(
        [
            1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2],
            1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
            1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
            1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2],
        ],
        -1,
    )
    a = m[:, 2, 1] - m[:, 1, 2]
    b = m[:, 0, 2] - m[:, 2, 0]
    c = m[:, 1, 0] - m[:, 0, 1]
    d = m[:, 0, 1] + m[:, 1, 0]
    e = m[:, 0, 2] + m[:, 2, 0]
    f = m[:, 1, 2] + m[:, 2, 1]
    cand = (
        torch.stack(
            [
                torch.stack([t[:, 0], a, b, c], -1),
                torch.stack([a, t[:, 1], d, e], -1),
                torch.stack([b, d, t[:, 2], f], -1),
                torch.stack([c, e, f, t[:, 3]], -1),
            ],
            1,
        )
        / (2 * t.clamp_min(1e-12).sqrt())[..., None]
    )
    best = t.detach().argmax(-1)
    quats = cand[torch.arange(cand.shape[0], device=cand.device), best]
    return quats, scales


class _Packed:
    """gsplat's packed layout: the visible (camera, Gaussian) pairs in row-major order."""

    def __init__(self, means2d, conics, depths, radii, comps, opac):
        c_, n = depths.shape
        with torch.no_grad():
            # The one host sync of the packed path: the number of visible pairs sizes the output.
            idx = torch.nonzero((radii > 0).any(-1).reshape(-1)).squeeze(1)
            lookup = torch.full((c_ * n,), -1, dtype=torch.long, device=idx.device)
            lookup[idx] = torch.arange(idx.numel(), device=idx.device)
        self.idx, self.lookup = idx, lookup
        self.camera_ids, self.gaussian_ids = idx // n, idx % n
        self.radii = radii.reshape(-1, 2)[idx]
        self.means2d = means2d.reshape(-1, 2)[idx]
        self.conics = conics.reshape(-1, 3)[idx]
        self.depths = depths.reshape(-1)[idx]
        self.opacities = opac.reshape(-1)[idx]
        self.compensations = comps.reshape(-1)[idx]

        def dense(x, fill):
            shape = (c_ * n,) + tuple(x.shape[1:])
            return fill.reshape(shape).index_copy(0, idx, x).reshape((c_, n) + tuple(x.shape[1:]))

        # The rasterizer reads the packed tensors scattered back into [C, N] (culled pairs are
        # zeros there, as the dense projection leaves them), so gradients reach the packed meta.
        self.dense = (
            dense(self.means2d, torch.zeros_like(means2d)),
            dense(self.conics, torch.zeros_like(conics)),
            dense(self.depths, torch.zeros_like(depths)),
            dense(self.opacities, opac.detach().contiguous()),
        )


def rasterization(
    means: torch.Tensor,
    quats: torch.Tensor | None,
    scales: torch.Tensor | None,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    packed: bool = False,
    tile_size: int = 16,
    backgrounds: torch.Tensor | None = None,
    render_mode: str = "RGB",
    sparse_grad: bool = False,
    absgrad: bool = False,
    rasterize_mode: str = "classic",
    channel_chunk: int = 32,
    distributed: bool = False,
    camera_model: str = "pinhole",
    segmented: bool = False,
    covars: torch.Tensor | None = None,
    with_ut: bool = False,
    with_eval3d: bool = False,
    radial_coeffs: torch.Tensor | None = None,
    tangential_coeffs: torch.Tensor | None = None,
    thin_prism_coeffs: torch.Tensor | None = None,
    ftheta_coeffs: object | None = None,
    rolling_shutter: object | None = None,
    viewmats_rs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Renders 3D Gaussians into ``C`` cameras (``gsplat.rasterization``'s signature).

    Args:
        means: [N, 3] centres. quats: [N, 4] wxyz rotations (need not be normalised).
        scales: [N, 3] activated scales. opacities: [N] activated opacities.
        colors: [N, D] or [C, N, D] features, or SH coefficients [N, K, 3] when ``sh_degree``
            is set (the first ``(sh_degree + 1)^2`` are used; colours are ``SH + 0.5``, clamped at 0).
        viewmats: [C, 4, 4] world-to-camera (OpenCV). Ks: [C, 3, 3] intrinsics.
        width, height: image size in pixels.
        near_plane, far_plane: depth clipping. eps2d: blur added to the 2D covariance.
        backgrounds: [C, D] or [D] colour composited behind (zeros for depth channels).
        render_mode: "RGB", "D" (accumulated depth), "ED" (expected depth), "RGB+D", "RGB+ED".
        absgrad: store the per-pixel absolute 2D-mean gradients in ``meta["means2d"].absgrad``.
        rasterize_mode: "classic" or "antialiased" (opacity times ``compensations``).
        packed: return gsplat's packed ``meta`` (the visible pairs only: ``camera_ids``,
            ``gaussian_ids`` [nnz], ``radii`` [nnz, 2], ``means2d``, ``depths``, ``conics``,
            ``opacities``, ``compensations``, ``tiles_per_gauss`` [nnz, ...], ``flatten_ids``
            indexing them). The kernels still project densely; the images are the same.
        camera_model: "pinhole", "ortho" (``(fx x + cx, fy y + cy)``) or "fisheye" (equidistant,
            gsplat's ``fisheye_proj``); ``viewmats`` get gradients (camera pose refinement) on
            every path.
        radius_clip, tile_size, sparse_grad: gsplat options; only the defaults (0, 16, False)
            are supported.
        covars: [N, 3, 3] world covariances, or [N, 6] upper triangles (xx, xy, xz, yy, yz, zz),
            instead of ``quats`` / ``scales`` (which may then be ``None``); converted to a rotation
            and scales by an eigendecomposition (differentiable; gsplat 1.5's keyword).
        channel_chunk: accepted and ignored (all channels are composited in one pass).
        distributed, segmented, with_ut, with_eval3d, rolling_shutter (other than global),
            radial / tangential / thin-prism / ftheta coefficients, viewmats_rs: gsplat 1.5
            keywords that raysplat does not support; only their defaults are accepted, anything
            else raises a ``ValueError`` naming the keyword.

    Returns:
        ``(render_colors [C, H, W, D'], render_alphas [C, H, W, 1], meta)``; ``meta`` holds
        ``means2d`` (call ``.retain_grad()`` on it to read the 2D mean gradients, as gsplat's
        densification does), ``radii`` [C, N, 2] int32, ``depths``, ``conics``, ``opacities``,
        ``tiles_per_gauss``, ``isect_offsets``, ``flatten_ids``, sizes and ``n_cameras``.
    """
    _unsupported_gsplat_keywords(
        distributed=distributed,
        segmented=segmented,
        with_ut=with_ut,
        with_eval3d=with_eval3d,
        radial_coeffs=radial_coeffs,
        tangential_coeffs=tangential_coeffs,
        thin_prism_coeffs=thin_prism_coeffs,
        ftheta_coeffs=ftheta_coeffs,
        viewmats_rs=viewmats_rs,
    )
    _check_rolling_shutter(rolling_shutter)
    if isinstance(channel_chunk, bool) or not isinstance(channel_chunk, int) or channel_chunk < 1:
        raise ValueError(f"channel_chunk must be a positive int, got {channel_chunk!r}")
    if covars is not None:
        quats, scales = covars_to_quats_scales(covars)
    elif quats is None or scales is None:
        raise ValueError("quats and scales are required unless covars is given")
    chk.choice("render_mode", render_mode, RENDER_MODES)
    chk.choice("rasterize_mode", rasterize_mode, RASTERIZE_MODES)
    chk.choice("camera_model", camera_model, ref.CAMERA_MODELS)
    if tile_size != 16:
        raise ValueError(f"tile_size: only 16 is supported, got {tile_size}")
    if radius_clip != 0.0:
        raise ValueError(f"radius_clip: only 0.0 is supported, got {radius_clip}")
    if sparse_grad:
        raise ValueError("sparse_grad: not supported")
    for name, v in (("near_plane", near_plane), ("far_plane", far_plane), ("eps2d", eps2d)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(v).__name__}")
    if not 0 < near_plane < far_plane:
        raise ValueError(
            f"near_plane and far_plane must satisfy 0 < near < far, got {near_plane}, {far_plane}"
        )
    if not eps2d >= 0:
        raise ValueError(f"eps2d must be non-negative, got {eps2d}")
    rust = chk.use_rust(means, quats, scales, opacities, colors, viewmats, Ks, backgrounds)
    n, c_ = _validate(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, sh_degree, backgrounds, rust
    )
    if (gs := _peers.select("gsplat", means, quats, scales, opacities, colors, viewmats, Ks)) is not None:
        return gs.rasterization(
            means,
            quats,
            scales,
            opacities,
            colors,
            viewmats,
            Ks,
            width,
            height,
            near_plane=near_plane,
            far_plane=far_plane,
            eps2d=eps2d,
            sh_degree=sh_degree,
            packed=packed,
            backgrounds=backgrounds,
            render_mode=render_mode,
            absgrad=absgrad,
            rasterize_mode=rasterize_mode,
            camera_model=camera_model,
        )
    dtype = torch.float64 if means.dtype == torch.float64 else torch.float32
    quats, scales, opacities, colors = (x.to(dtype) for x in (quats, scales, opacities, colors))
    means, viewmats, Ks = means.to(dtype), viewmats.to(dtype), Ks.to(dtype)
    aa = rasterize_mode == "antialiased"
    proj_args = (
        means,
        quats,
        scales,
        opacities,
        viewmats,
        Ks,
        width,
        height,
        near_plane,
        far_plane,
        eps2d,
        aa,
        camera_model,
    )
    if rust:
        means2d, conics, depths, radii, comps = _Project.apply(*proj_args)
    else:
        means2d, conics, depths, radii, comps = ref.project(*proj_args)
    opac = opacities[None, :] * comps if aa else opacities[None, :].expand(c_, n)
    pk = _Packed(means2d, conics, depths, radii, comps, opac) if packed else None
    if pk is not None:
        means2d, conics, depths, opac = pk.dense

    if sh_degree is not None:
        campos = torch.linalg.inv(viewmats)[:, :3, 3].contiguous()
        if rust:
            raw = _SH.apply(sh_degree, colors, means, campos)
        else:
            raw = ref.sh_colors(sh_degree, colors, means, campos)
        feats = torch.clamp_min(raw + 0.5, 0.0)
    else:
        feats = colors if colors.dim() == 3 else colors[None].expand(c_, -1, -1)
    if backgrounds is not None:
        backgrounds = backgrounds.to(dtype)
        if backgrounds.dim() == 1:
            backgrounds = backgrounds[None].expand(c_, -1)
        if render_mode in ("D", "ED"):
            backgrounds = backgrounds.new_zeros(c_, 1)
        elif tuple(backgrounds.shape) != (c_, feats.shape[-1]):
            raise ValueError(
                f"backgrounds must have shape [{c_}, {feats.shape[-1]}], got {tuple(backgrounds.shape)}"
            )
    if render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, depths[..., None]], -1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(c_, 1)], -1)
    elif render_mode in ("D", "ED"):
        feats = depths[..., None]

    if rust:
        img, alphas, offsets, flatten_ids, tpg = _Rasterize.apply(
            means2d, conics, feats.contiguous(), opac.contiguous(), radii, depths, width, height, absgrad
        )
    else:
        offsets, flatten_ids, tpg = ref.bin_tiles(means2d, radii, depths, width, height)
        absbuf = None
        if absgrad and means2d.requires_grad:
            absbuf = means2d.new_zeros(c_ * n, 2)
            means2d.register_hook(lambda g, m=means2d, b=absbuf: setattr(m, "absgrad", b.reshape(c_, n, 2)))
        img, alphas = ref.rasterize(
            means2d, conics, feats, opac, offsets, flatten_ids, width, height, absbuf=absbuf
        )
    if backgrounds is not None:
        img = img + (1.0 - alphas) * backgrounds[:, None, None, :]
    if render_mode in ("ED", "RGB+ED"):
        img = torch.cat([img[..., :-1], img[..., -1:] / alphas.clamp_min(1e-10)], -1)
    tw, th = -(-width // 16), -(-height // 16)
    if pk is not None:
        if absgrad and pk.means2d.requires_grad:
            pk.means2d.register_hook(
                lambda g, d=means2d, p=pk: setattr(
                    p.means2d, "absgrad", getattr(d, "absgrad", torch.zeros_like(d)).reshape(-1, 2)[p.idx]
                )
            )
        meta = {
            "camera_ids": pk.camera_ids,
            "gaussian_ids": pk.gaussian_ids,
            "radii": pk.radii,
            "means2d": pk.means2d,
            "depths": pk.depths,
            "conics": pk.conics,
            "opacities": pk.opacities,
            "compensations": pk.compensations if aa else None,
            "tile_width": tw,
            "tile_height": th,
            "tiles_per_gauss": tpg.reshape(-1)[pk.idx],
            "isect_offsets": offsets[:-1].reshape(c_, th, tw),
            "flatten_ids": pk.lookup[flatten_ids],
            "width": width,
            "height": height,
            "tile_size": 16,
            "n_cameras": c_,
        }
        return img, alphas, meta
    meta = {
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opac,
        "compensations": comps if aa else None,
        "tile_width": tw,
        "tile_height": th,
        "tiles_per_gauss": tpg,
        "isect_offsets": offsets[:-1].reshape(c_, th, tw),
        "flatten_ids": flatten_ids,
        "width": width,
        "height": height,
        "tile_size": 16,
        "n_cameras": c_,
    }
    return img, alphas, meta
