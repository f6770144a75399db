"""The texture space of TexGen: a mesh with a UV atlas, its chart mask and seams, cameras around
it, and the per-view buffers (UV, normal, depth, triangle id, visibility) from
:func:`raysplat.rasterize_mesh`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raysplat.bake import view_weights
from raysplat.cameras import look_at
from raysplat.mesh import interpolate, rasterize_mesh

__all__ = [
    "UVMesh",
    "ViewBuffers",
    "camera_ring",
    "chart_mask",
    "load_mesh",
    "texel_positions",
    "unwrap",
    "view_buffers",
]


@dataclass
class UVMesh:
    """A triangle mesh with one UV per vertex (vertices split along the UV seams).

    ``vertices [V, 3]`` float32 are normalised (centred, in the unit sphere) for rendering;
    ``original_vertices`` keeps the input coordinates for export. ``vmapping [V]`` maps each
    vertex to the input vertex it came from; ``welded_faces [F, 3]`` are the faces on vertices
    welded by position (the topology without UV seams), used to find seam edges."""

    vertices: torch.Tensor
    faces: torch.Tensor
    uv: torch.Tensor
    vmapping: torch.Tensor
    original_vertices: torch.Tensor
    welded_faces: torch.Tensor
    had_uv: bool

    @property
    def face_normals(self) -> torch.Tensor:
        tri = self.vertices[self.faces]
        n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
        return torch.nn.functional.normalize(n, dim=-1)

    def seam_edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs of UV edges that are the same mesh edge on two charts: ``(a [E, 2, 2], b [E, 2,
        2])`` UV endpoints, ``a[e, k]`` and ``b[e, k]`` the same 3-D point."""
        wf = self.welded_faces.numpy()
        f = self.faces.numpy()
        uv = self.uv.numpy()
        edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for fi in range(len(wf)):
            for k in range(3):
                a, b = int(wf[fi, k]), int(wf[fi, (k + 1) % 3])
                ua, ub = int(f[fi, k]), int(f[fi, (k + 1) % 3])
                key = (a, b) if a < b else (b, a)
                edges.setdefault(key, []).append((ua, ub) if a < b else (ub, ua))
        sa, sb = [], []
        for pairs in edges.values():
            if len(pairs) != 2:
                continue
            (a0, a1), (b0, b1) = pairs
            if np.allclose(uv[a0], uv[b0]) and np.allclose(uv[a1], uv[b1]):
                continue
            sa.append(uv[[a0, a1]])
            sb.append(uv[[b0, b1]])
        if not sa:
            return torch.zeros(0, 2, 2), torch.zeros(0, 2, 2)
        return torch.from_numpy(np.stack(sa)).float(), torch.from_numpy(np.stack(sb)).float()


def _weld(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    scale = max(float(np.abs(vertices).max()), 1e-12)
    key = np.round(vertices / scale * 1e6).astype(np.int64)
    _, inv = np.unique(key, axis=0, return_inverse=True)
    return inv.reshape(-1)[faces]


def _check_geometry(vertices: np.ndarray, faces: np.ndarray, name: str) -> np.ndarray:
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"{name}: the mesh has no faces")
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ValueError(f"{name}: the mesh has no vertices")
    if not np.isfinite(vertices).all():
        raise ValueError(f"{name}: the mesh has NaN or infinite vertex coordinates")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"{name}: face indices outside 0..{len(vertices)}")
    welded = _weld(vertices, faces)
    e = np.sort(np.concatenate([welded[:, [0, 1]], welded[:, [1, 2]], welded[:, [2, 0]]]), axis=1)
    e = e[e[:, 0] != e[:, 1]]
    _, counts = np.unique(e, axis=0, return_counts=True)
    if (counts > 2).any():
        raise ValueError(
            f"{name}: the mesh is non-manifold ({int((counts > 2).sum())} edges shared by more than "
            "two faces)"
        )
    return welded


def unwrap(
    vertices: np.ndarray, faces: np.ndarray, resolution: int = 256, padding: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UV-unwraps a mesh with xatlas (``raysplat[gen]``) for a ``resolution``² texture, charts
    ``padding`` texels apart (bilinear splats and lookups at a chart's edge then never reach
    another chart): ``(vmapping [V'], faces [F, 3], uv [V', 2])``."""
    from raysplat._extras import require

    xatlas = require("xatlas")
    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.uint32))
    po = xatlas.PackOptions()
    po.resolution, po.padding, po.bilinear = int(resolution), int(padding), True
    atlas.generate(pack_options=po)
    if atlas.atlas_count != 1:  # charts did not fit one atlas: let xatlas pick the scale
        vmapping, indices, uvs = xatlas.parametrize(
            np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.uint32)
        )
    else:
        vmapping, indices, uvs = atlas[0]
    return vmapping.astype(np.int64), indices.astype(np.int64), uvs.astype(np.float64)


def load_mesh(
    mesh: str | os.PathLike | tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray],
    force_unwrap: bool = False,
    texture_size: int = 256,
) -> UVMesh:
    """Loads a mesh (an OBJ / GLB / PLY path, or ``(vertices, faces[, uv])`` arrays) and gives it
    a UV atlas: its own UVs when present (and inside [0, 1]), else an xatlas unwrap packed for a
    ``texture_size``² texture.

    Raises ``ValueError`` for a missing / unreadable file, no faces, NaN vertices or a
    non-manifold mesh (an edge shared by more than two faces)."""
    uv = None
    if isinstance(mesh, (str, os.PathLike)):
        import trimesh

        path = Path(mesh)
        name = str(path)
        if not path.is_file():
            raise ValueError(f"mesh {name!r} does not exist")
        try:
            loaded = trimesh.load(str(path), force="mesh", process=False)
        except Exception as e:  # noqa: BLE001 - trimesh raises many types
            raise ValueError(f"mesh {name!r}: cannot load ({type(e).__name__}: {e})") from None
        if not isinstance(loaded, trimesh.Trimesh):
            raise ValueError(f"mesh {name!r}: the mesh has no faces")
        vertices = np.asarray(loaded.vertices, np.float64)
        faces = np.asarray(loaded.faces, np.int64).reshape(-1, 3)
        vis_uv = getattr(loaded.visual, "uv", None)
        if vis_uv is not None and len(vis_uv) == len(vertices):
            uv = np.asarray(vis_uv, np.float64)
    elif isinstance(mesh, (tuple, list)) and len(mesh) in (2, 3):
        name = "mesh"
        vertices = np.asarray(mesh[0], np.float64)
        faces = np.asarray(mesh[1], np.int64)
        if faces.size == 0:
            faces = faces.reshape(0, 3)
        uv = None if len(mesh) == 2 or mesh[2] is None else np.asarray(mesh[2], np.float64)
    else:
        raise TypeError("mesh must be a path or a (vertices, faces[, uv]) tuple")
    welded = _check_geometry(vertices, faces, name)
    if uv is not None and (uv.shape != (len(vertices), 2) or not np.isfinite(uv).all()):
        uv = None
    if uv is not None and (uv.min() < -1e-6 or uv.max() > 1 + 1e-6):
        uv = None  # wrapping UVs: one texel would serve several surface points
    had_uv = uv is not None and not force_unwrap
    if had_uv:
        vmapping = np.arange(len(vertices))
        new_faces = faces
    else:
        vmapping, new_faces, uv = unwrap(vertices, faces, texture_size)
    verts = vertices[vmapping]
    centre = (verts.min(0) + verts.max(0)) / 2
    radius = max(float(np.linalg.norm(verts - centre, axis=1).max()), 1e-12)
    return UVMesh(
        vertices=torch.from_numpy((verts - centre) / radius).float(),
        faces=torch.from_numpy(np.ascontiguousarray(new_faces)).long(),
        uv=torch.from_numpy(np.ascontiguousarray(uv)).float(),
        vmapping=torch.from_numpy(vmapping).long(),
        original_vertices=torch.from_numpy(verts).double(),
        welded_faces=torch.from_numpy(welded).long(),
        had_uv=had_uv,
    )


def _uv_raster(mesh: UVMesh, size: int, attributes: torch.Tensor | None = None):
    v3 = torch.cat([mesh.uv, torch.ones(len(mesh.uv), 1)], 1).float()
    K = torch.tensor([[float(size), 0, 0], [0, -float(size), float(size)], [0, 0, 1]])
    return rasterize_mesh(
        v3,
        mesh.faces,
        viewmat=torch.eye(4),
        K=K,
        width=size,
        height=size,
        convention="opencv",
        attributes=attributes,
    )


def chart_mask(mesh: UVMesh, size: int) -> torch.Tensor:
    """``[size, size]`` bool: the texels whose centre lies inside a UV triangle (the charts),
    rasterized with :func:`raysplat.rasterize_mesh` as an orthographic view of the UV plane."""
    return _uv_raster(mesh, size).triangle_id >= 0


def texel_positions(mesh: UVMesh, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions [size, size, 3], inside [size, size])``: the (normalised) surface point of
    every texel centre inside a chart, zeros outside. A texture ``f(positions)`` is seamless."""
    r = _uv_raster(mesh, size, mesh.vertices)
    return r.attributes, r.triangle_id >= 0


def camera_ring(
    n: int,
    elevations: tuple[float, ...] = (20.0, -10.0),
    fovy: float = 40.0,
    size: int = 64,
    distance: float | None = None,
    azimuth_offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` cameras around the unit sphere looking at the origin (+y up, azimuth 0 on +z, the
    front): azimuth ``offset + 360 i / n``, elevation ``elevations[i % len]``. Returns OpenGL
    ``c2w [n, 4, 4]``, ``K [n, 3, 3]`` (square ``size`` images) and the azimuths in degrees."""
    if n < 1:
        raise ValueError(f"views must be >= 1, got {n}")
    half = math.radians(fovy) / 2
    dist = distance if distance is not None else 1.1 / math.sin(half)
    azim = torch.tensor([azimuth_offset + 360.0 * i / n for i in range(n)], dtype=torch.float64)
    elev = torch.tensor([elevations[i % len(elevations)] for i in range(n)], dtype=torch.float64)
    e, a = torch.deg2rad(elev), torch.deg2rad(azim)
    eye = torch.stack([dist * e.cos() * a.sin(), dist * e.sin(), dist * e.cos() * a.cos()], -1)
    c2w = look_at(
        eye, torch.zeros(3, dtype=torch.float64), torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    )
    c2w = torch.cat([c2w, torch.tensor([0.0, 0, 0, 1], dtype=torch.float64).expand(n, 1, 4)], 1).float()
    f = 0.5 * size / math.tan(half)
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], dtype=torch.float32).expand(n, 3, 3)
    return c2w, K.clone(), azim.float()


@dataclass
class ViewBuffers:
    """Per-view rasterization buffers, all ``[N, S, S, ...]``."""

    uv: torch.Tensor  # [N, S, S, 2]
    normal: torch.Tensor  # [N, S, S, 3] face normals (world)
    depth: torch.Tensor  # [N, S, S] view-axis depth, +inf where empty
    triangle_id: torch.Tensor  # [N, S, S] int64, -1 where empty
    visible: torch.Tensor  # [N, S, S] bool
    view_dir: torch.Tensor  # [N, S, S, 3] unit rays from the camera

    def weights(self, exponent: float) -> torch.Tensor:
        """``visible · max(0, cos θ)^exponent`` ``[N, S, S]``."""
        return view_weights(self.normal, self.view_dir, self.visible, exponent)

    def control(self) -> torch.Tensor:
        """Depth-ControlNet images ``[N, 3, S, S]`` in [0, 1]: inverse depth normalised per view
        (near = 1, far object points = 0.1, background = 0), MiDaS' convention."""
        inv = torch.where(self.visible, 1.0 / self.depth.clamp(min=1e-6), torch.zeros_like(self.depth))
        out = []
        for i in range(inv.shape[0]):
            vis = self.visible[i]
            if bool(vis.any()):
                lo, hi = float(inv[i][vis].min()), float(inv[i][vis].max())
                x = 0.1 + 0.9 * (inv[i] - lo) / max(hi - lo, 1e-8)
                out.append(torch.where(vis, x, torch.zeros_like(x)))
            else:
                out.append(torch.zeros_like(inv[i]))
        return torch.stack(out)[:, None].expand(-1, 3, -1, -1).contiguous()


def view_buffers(mesh: UVMesh, c2w: torch.Tensor, K: torch.Tensor, size: int) -> ViewBuffers:
    """Rasterizes ``mesh`` into every camera (``c2w [N, 4, 4]`` OpenGL, ``K [N, 3, 3]``)."""
    uvs, normals, depths, tids, dirs = [], [], [], [], []
    fn = mesh.face_normals
    for i in range(c2w.shape[0]):
        r = rasterize_mesh(
            mesh.vertices, mesh.faces, c2w=c2w[i], K=K[i], width=size, height=size, attributes=mesh.uv
        )
        hit = r.triangle_id >= 0
        uvs.append(r.attributes)
        normals.append(torch.where(hit[..., None], fn[r.triangle_id.clamp(min=0)], 0.0))
        pos = interpolate(mesh.vertices, mesh.faces, r.triangle_id, r.barycentrics)
        d = torch.nn.functional.normalize(pos - c2w[i, :3, 3], dim=-1)
        dirs.append(torch.where(hit[..., None], d, 0.0))
        depths.append(r.depth)
        tids.append(r.triangle_id)
    tid = torch.stack(tids)
    return ViewBuffers(
        uv=torch.stack(uvs),
        normal=torch.stack(normals),
        depth=torch.stack(depths),
        triangle_id=tid,
        visible=tid >= 0,
        view_dir=torch.stack(dirs),
    )
