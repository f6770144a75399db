"""The sample-scene generator: a deterministic procedural scene written in real dataset layouts.

The scene (world z up, all objects inside a sphere of radius 1.3 around the origin, resting on
the plane ``z = FLOOR_Z = -0.715``) holds four primitives, each with its own procedural texture mapped
through UVs and sampled with :func:`raysplat.sample_texture`:

* a box with a checker texture, each face tinted differently (so the faces are distinguishable),
* a sphere with diagonal red / yellow stripes,
* a standing torus with tileable fractal value noise (green / brown, seeded),
* a cylinder with a hue-by-angle, brightness-by-height gradient (caps: a radial gradient).

Shading is Lambertian with one fixed directional light plus ambient light (view-independent).
Images are rendered with :func:`raysplat.rasterize_mesh` at twice the resolution and averaged
over 2x2 blocks (anti-aliasing; coverage becomes alpha). Formats:

* ``blender``: transparent background, cameras on the upper hemisphere (radius 4) looking at the
  origin, ``views`` train + ``max(1, views // 5)`` val (random) + as many test views (a turntable
  at 30 degrees elevation); ``size`` x ``size`` RGBA PNGs; ``points3d.ply`` (surface samples).
* ``nerfstudio`` / ``colmap``: the same cameras and image order as ``blender`` (train, val, test),
  opaque: a tiled ground plane and a sky gradient behind; ``frame_00001.png`` ... in ``images/``.
* ``llff``: ``views`` forward-facing cameras on a sunflower pattern in an ellipse, looking at the
  objects in front of a brick back wall over a tiled ground; width ``size`` and height about
  3/4 of it (both multiples of 4), ``images/``, ``images_2/``, ``images_4/``.

Everything derives from ``seed`` (camera jitter, the noise texture, surface points), so equal
arguments give byte-identical files.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raysplat import cameras
from raysplat.datasets._io import write_ply_points

#: The supported output formats.
FORMATS = ("blender", "llff", "nerfstudio", "colmap")
#: Bump when the generated content changes (part of the cache directory name).
VERSION = 1
#: Horizontal field of view of the object-centric cameras (the Blender "lego" value).
CAMERA_ANGLE_X = 0.6911112070083618
#: Distance of the object-centric cameras from the origin.
RADIUS = 4.0
#: Scale of the procedural layout: the objects fit in a sphere of radius 1.3 (inside [-1.5, 1.5]^3).
SCALE = 1.3
#: Height of the plane the objects stand on.
FLOOR_Z = -0.55 * SCALE
#: Direction towards the light (world, z up), ambient and diffuse weights.
LIGHT = np.array([0.5, -0.4, 0.75]) / np.linalg.norm([0.5, -0.4, 0.75])
AMBIENT, DIFFUSE = 0.35, 0.65

_TEX = 128


# ----------------------------------------------------------------------------------- geometry


@dataclass
class Part:
    """One textured triangle mesh of the scene."""

    name: str
    vertices: np.ndarray  # [V, 3] float64
    faces: np.ndarray  # [F, 3] int64
    uv: np.ndarray  # [V, 2]
    normals: np.ndarray  # [V, 3] unit
    colors: np.ndarray  # [V, 3] tint multiplied with the texture
    texture: np.ndarray  # [T, T, 3] float32 in [0, 1]

    def transformed(self, R: np.ndarray, t: np.ndarray, scale: float = 1.0) -> Part:
        return Part(
            self.name,
            self.vertices @ R.T * scale + t,
            self.faces,
            self.uv,
            self.normals @ R.T,
            self.colors,
            self.texture,
        )


def _grid(fn, nu: int, nv: int):
    """Samples ``fn(u, v) -> (pos, normal, uv)`` on a ``(nv + 1) x (nu + 1)`` grid of [0, 1]^2."""
    u, v = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1))
    pos, nrm, uv = fn(u, v)
    i = np.arange(nv)[:, None] * (nu + 1) + np.arange(nu)[None, :]
    a, b, c, d = i, i + 1, i + nu + 1, i + nu + 2
    faces = np.concatenate([np.stack([a, b, d], -1), np.stack([a, d, c], -1)], 0).reshape(-1, 3)
    nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-12)
    return pos.reshape(-1, 3), faces.astype(np.int64), uv.reshape(-1, 2), nrm.reshape(-1, 3)


def _merge(name: str, pieces, texture: np.ndarray, tints=None) -> Part:
    verts, faces, uvs, nrms, cols, off = [], [], [], [], [], 0
    for k, (p, f, uv, n) in enumerate(pieces):
        verts.append(p)
        faces.append(f + off)
        uvs.append(uv)
        nrms.append(n)
        tint = np.ones(3) if tints is None else np.asarray(tints[k], np.float64)
        cols.append(np.broadcast_to(tint, p.shape).copy())
        off += len(p)
    return Part(
        name,
        np.concatenate(verts),
        np.concatenate(faces),
        np.concatenate(uvs),
        np.concatenate(nrms),
        np.concatenate(cols),
        texture,
    )


def _stack(*xs):
    return np.stack(np.broadcast_arrays(*xs), -1)


def box(size: float, texture: np.ndarray, tints) -> Part:
    """An axis-aligned cube of edge ``size`` centred at 0; UVs span [0, 1] on every face."""
    pieces = []
    axes = np.eye(3)
    for k in range(6):
        ax, sign = k // 2, 1.0 if k % 2 == 0 else -1.0
        n = axes[ax] * sign
        e1 = axes[(ax + 1) % 3] * sign
        e2 = axes[(ax + 2) % 3]

        def fn(u, v, n=n, e1=e1, e2=e2):
            p = (u[..., None] - 0.5) * e1 + (v[..., None] - 0.5) * e2 + 0.5 * n
            return p * size, np.broadcast_to(n, p.shape), _stack(u, v)

        pieces.append(_grid(fn, 2, 2))
    return _merge("box", pieces, texture, tints)


def sphere(radius: float, texture: np.ndarray, n: int = 48) -> Part:
    """A UV sphere (u: azimuth, v: from the south to the north pole)."""

    def fn(u, v):
        phi, theta = 2 * np.pi * u, np.pi * v
        d = _stack(np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), -np.cos(theta))
        return d * radius, d, _stack(u, v)

    return _merge("sphere", [_grid(fn, n, n // 2)], texture)


def torus(major: float, minor: float, texture: np.ndarray, n: int = 48) -> Part:
    """A torus around the z axis (u: around the ring, v: around the tube)."""

    def fn(u, v):
        phi, psi = 2 * np.pi * u, 2 * np.pi * v
        nrm = _stack(np.cos(psi) * np.cos(phi), np.cos(psi) * np.sin(phi), np.sin(psi))
        centre = _stack(major * np.cos(phi), major * np.sin(phi), 0 * phi)
        return centre + minor * nrm, nrm, _stack(u, v)

    return _merge("torus", [_grid(fn, n, n // 2)], texture)


def cylinder(radius: float, height: float, texture: np.ndarray, n: int = 40) -> Part:
    """A capped cylinder around the z axis centred at 0 (side: u angle, v height; caps: polar)."""

    def side(u, v):
        phi = 2 * np.pi * u
        nrm = _stack(np.cos(phi), np.sin(phi), 0 * phi)
        return nrm * radius + _stack(0 * u, 0 * u, (v - 0.5) * height), nrm, _stack(u, v)

    def cap(sign):
        def fn(u, v):
            phi = 2 * np.pi * u
            p = _stack(radius * v * np.cos(phi), radius * v * np.sin(phi), 0 * u + sign * height / 2)
            uv = _stack(0.5 + 0.5 * v * np.cos(phi), 0.5 + 0.5 * v * np.sin(phi))
            return p, np.broadcast_to(np.array([0.0, 0.0, sign]), p.shape), uv

        return fn

    return _merge("cylinder", [_grid(side, n, 4), _grid(cap(1.0), n, 2), _grid(cap(-1.0), n, 2)], texture)


def plane(origin, e1, e2, texture: np.ndarray, name: str, n: int = 8) -> Part:
    """The parallelogram ``origin + u e1 + v e2`` (UVs = (u, v)); normal ``e1 x e2``."""
    o, e1, e2 = (np.asarray(x, np.float64) for x in (origin, e1, e2))
    nrm = np.cross(e1, e2)

    def fn(u, v):
        p = o + u[..., None] * e1 + v[..., None] * e2
        return p, np.broadcast_to(nrm, p.shape), _stack(u, v)

    return _merge(name, [_grid(fn, n, n)], texture)


def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# ----------------------------------------------------------------------------------- textures


def _uv_grid(n: int = _TEX):
    """Texel-centre coordinates (u right, v up) of an ``n x n`` texture (row 0 is v = 1)."""
    c = (np.arange(n) + 0.5) / n
    return np.meshgrid(c, c[::-1])


def checker_texture(n: int = _TEX, cells: int = 6) -> np.ndarray:
    u, v = _uv_grid(n)
    on = ((np.floor(u * cells) + np.floor(v * cells)) % 2)[..., None]
    return (on * np.array([0.95, 0.93, 0.85]) + (1 - on) * np.array([0.12, 0.18, 0.55])).astype(np.float32)


def stripes_texture(n: int = _TEX) -> np.ndarray:
    u, v = _uv_grid(n)
    s = np.clip(0.5 + 2.5 * np.sin(2 * np.pi * (8 * u + 3 * v)), 0, 1)[..., None]
    return (s * np.array([0.85, 0.12, 0.1]) + (1 - s) * np.array([0.98, 0.82, 0.2])).astype(np.float32)


def gradient_texture(n: int = _TEX) -> np.ndarray:
    u, v = _uv_grid(n)
    hsv = np.vectorize(colorsys.hsv_to_rgb, otypes=[float, float, float])
    r, g, b = hsv(u, 0.75, 0.35 + 0.65 * v)
    return np.stack([r, g, b], -1).astype(np.float32)


def _tileable_noise(rng: np.random.Generator, n: int, octaves: int = 4, base: int = 4) -> np.ndarray:
    """Fractal value noise on an ``n x n`` torus (tiles seamlessly), in [0, 1]."""
    out = np.zeros((n, n))
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base * 2**o
        lattice = rng.random((cells, cells))
        x = np.arange(n) * cells / n
        i0 = np.floor(x).astype(int)
        f = x - i0
        f = f * f * (3 - 2 * f)
        i1 = (i0 + 1) % cells
        rows = lattice[i0] * (1 - f)[:, None] + lattice[i1] * f[:, None]
        out += amp * (rows[:, i0] * (1 - f)[None] + rows[:, i1] * f[None])
        total += amp
        amp *= 0.5
    return out / total


def noise_texture(rng: np.random.Generator, n: int = _TEX) -> np.ndarray:
    t = np.clip((_tileable_noise(rng, n) - 0.5) * 2.2 + 0.5, 0, 1)[..., None]
    return (t * np.array([0.2, 0.7, 0.25]) + (1 - t) * np.array([0.45, 0.25, 0.1])).astype(np.float32)


def tiles_texture(n: int = 256, cells: int = 10) -> np.ndarray:
    u, v = _uv_grid(n)
    fu, fv = (u * cells) % 1, (v * cells) % 1
    grout = ((np.minimum(fu, 1 - fu) < 0.05) | (np.minimum(fv, 1 - fv) < 0.05))[..., None]
    alt = ((np.floor(u * cells) + 2 * np.floor(v * cells)) % 3)[..., None] / 2
    tile = alt * np.array([0.78, 0.74, 0.66]) + (1 - alt) * np.array([0.62, 0.58, 0.5])
    return np.where(grout, np.array([0.3, 0.3, 0.32]), tile).astype(np.float32)


def bricks_texture(n: int = 256, rows: int = 12, cols: int = 6) -> np.ndarray:
    u, v = _uv_grid(n)
    r = np.floor(v * rows)
    x = u * cols + 0.5 * (r % 2)
    fx, fy = x % 1, (v * rows) % 1
    mortar = ((np.minimum(fx, 1 - fx) < 0.04) | (np.minimum(fy, 1 - fy) < 0.08))[..., None]
    shade = (0.8 + 0.2 * ((np.floor(x) * 7 + r * 3) % 5) / 4)[..., None]
    return np.where(mortar, np.array([0.85, 0.83, 0.8]), shade * np.array([0.66, 0.3, 0.22])).astype(
        np.float32
    )


# ----------------------------------------------------------------------------------- scenes


def procedural_objects(seed: int = 0) -> list[Part]:
    """The four textured primitives of the sample scene (world z up, on ``z = FLOOR_Z``)."""
    rng = np.random.default_rng([seed, 1])
    tints = [
        [1.0, 1.0, 1.0],
        [1.0, 0.75, 0.75],
        [0.75, 1.0, 0.75],
        [0.8, 0.85, 1.0],
        [1.0, 1.0, 0.6],
        [0.85, 0.7, 1.0],
    ]
    a, z0 = 0.55, -0.55  # laid out around a floor at z0, then scaled by SCALE about the origin
    parts = [
        box(a, checker_texture(), tints).transformed(_rot("z", 25), np.array([-0.35, -0.3, z0 + a / 2])),
        sphere(0.35, stripes_texture()).transformed(_rot("z", 10), np.array([0.4, -0.3, z0 + 0.35])),
        torus(0.3, 0.1, noise_texture(rng)).transformed(
            _rot("z", -20) @ _rot("x", 90), np.array([0.25, 0.45, z0 + 0.4])
        ),
        cylinder(0.18, 0.9, gradient_texture()).transformed(np.eye(3), np.array([-0.45, 0.4, z0 + 0.45])),
    ]
    parts = [p.transformed(np.eye(3), np.zeros(3), SCALE) for p in parts]
    return parts


def load_mesh_part(path: str | os.PathLike, up: str = "y") -> Part:
    """Loads any mesh trimesh reads (OBJ, GLB, PLY, ...), turned z-up (from ``up``), normalised
    into the box [-1, 1]^3 (and a sphere of radius 1.2) with its lowest point on ``FLOOR_Z``.
    Colours: its texture, else its vertex / face colours, else a default procedural checker."""
    import trimesh

    try:
        mesh = trimesh.load(str(path), force="mesh")
    except Exception as e:  # noqa: BLE001 - trimesh raises many types
        raise ValueError(f"{path}: cannot load mesh ({type(e).__name__}: {e})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{path}: no triangles found")
    verts = np.asarray(mesh.vertices, np.float64)
    faces = np.asarray(mesh.faces, np.int64)
    visual = mesh.visual
    kind = getattr(visual, "kind", None)
    texture = np.ones((1, 1, 3), np.float32)
    uv = np.zeros((len(verts), 2))
    colors = np.ones((len(verts), 3))
    normals = np.asarray(mesh.vertex_normals, np.float64)
    image = None
    if kind == "texture" and getattr(visual, "uv", None) is not None:
        material = visual.material
        image = getattr(material, "image", None) or getattr(material, "baseColorTexture", None)
        factor = getattr(material, "baseColorFactor", None)
        if factor is not None:
            colors = colors * np.asarray(factor, np.float64)[:3] / (255.0 if np.max(factor) > 1 else 1.0)
    if image is not None:
        texture = np.asarray(image.convert("RGB"), np.float32) / 255.0
        uv = np.asarray(visual.uv, np.float64)
    elif kind == "vertex":
        colors = np.asarray(visual.vertex_colors, np.float64)[:, :3] / 255.0
    elif kind == "face":
        fc = np.asarray(visual.face_colors, np.float64)[:, :3] / 255.0
        verts, faces = verts[faces].reshape(-1, 3), np.arange(faces.size).reshape(-1, 3)
        normals = np.repeat(np.asarray(mesh.face_normals, np.float64), 3, 0)
        colors = np.repeat(fc, 3, 0)
    else:
        # flat-shaded box projection of a checker onto the dominant axis plane of each face
        fn = np.asarray(mesh.face_normals, np.float64)
        verts, faces = verts[faces].reshape(-1, 3), np.arange(faces.size).reshape(-1, 3)
        normals = np.repeat(fn, 3, 0)
        colors = np.ones((len(verts), 3))
        texture = checker_texture(cells=8)
    if up == "y":
        R = _rot("x", 90)
    elif up == "z":
        R = np.eye(3)
    else:
        raise ValueError(f"up must be 'y' or 'z', got {up!r}")
    verts, normals = verts @ R.T, normals @ R.T
    lo, hi = verts.min(0), verts.max(0)
    centre = (lo + hi) / 2
    scale = min(
        2.0 / max(float((hi - lo).max()), 1e-12),
        1.2 / max(np.linalg.norm(verts - centre, axis=1).max(), 1e-12),
    )
    verts = (verts - centre) * scale
    verts[:, 2] += FLOOR_Z - verts[:, 2].min()
    if image is None and kind not in ("vertex", "face"):
        ax = np.abs(normals).argmax(1)
        other = np.array([[1, 2], [0, 2], [0, 1]])[ax]
        uv = (np.take_along_axis(verts, other, 1) + 1.0) / 2.0
    nrm = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return Part("mesh", verts, faces, uv, nrm, colors, texture)


def _backdrop(kind: str, floor_z: float) -> list[Part]:
    if kind == "ground":
        return [plane([-3, -3, floor_z], [6, 0, 0], [0, 6, 0], tiles_texture(), "ground")]
    # forward-facing: a wide floor and a back wall (the cameras look along +y)
    return [
        plane([-5, -6, floor_z], [10, 0, 0], [0, 8.5, 0], tiles_texture(cells=14), "ground"),
        plane([-5, 2.5, floor_z], [10, 0, 0], [0, 0, 4.5], bricks_texture(), "wall"),
    ]


# ----------------------------------------------------------------------------------- cameras


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenGL camera-to-world ``[3, 4]`` (float64 NumPy) at ``eye`` looking at ``target``
    (:func:`raysplat.cameras.look_at`)."""
    as64 = lambda x: torch.as_tensor(np.asarray(x, np.float64))  # noqa: E731
    return cameras.look_at(as64(eye), as64(target), as64(up)).numpy()


def object_cameras(views: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Blender-style cameras: ``train`` (``views``) and ``val`` (``max(1, views // 5)``) uniform on
    the upper hemisphere (elevation about 6 to 72 degrees), ``test`` (as many as val) a turntable
    at 30 degrees elevation; radius :data:`RADIUS`, looking at the origin. ``[n, 3, 4]`` each."""
    rng = np.random.default_rng([seed, 2])
    n_eval = max(1, views // 5)

    def random_views(n):
        z = rng.uniform(0.1, 0.95, n)
        phi = rng.uniform(0, 2 * np.pi, n)
        r = np.sqrt(1 - z * z)
        eyes = RADIUS * np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)
        return np.stack([look_at(e, [0, 0, 0]) for e in eyes]) if n else np.zeros((0, 3, 4))

    train, val = random_views(views), random_views(n_eval)
    el = math.radians(30)
    phi = np.linspace(0, 2 * np.pi, n_eval, endpoint=False) + 0.3
    eyes = RADIUS * np.stack(
        [math.cos(el) * np.cos(phi), math.cos(el) * np.sin(phi), 0 * phi + math.sin(el)], 1
    )
    test = np.stack([look_at(e, [0, 0, 0]) for e in eyes])
    return {"train": train, "val": val, "test": test}


def llff_size(size: int) -> tuple[int, int]:
    """``(width, height)`` of the LLFF full-resolution images for ``--size``."""
    w = max(4, 4 * round(size / 4))
    return w, max(4, 4 * round(0.75 * w / 4))


def llff_cameras(views: int, seed: int = 0) -> np.ndarray:
    """Forward-facing cameras ``[views, 3, 4]`` (OpenGL c2w, world z up): a sunflower pattern in an
    ellipse (0.6 x 0.3) in the plane ``y = -3.2``, jittered, all looking at ``(0, 0.5, -0.2)``."""
    rng = np.random.default_rng([seed, 3])
    i = np.arange(views)
    r = np.sqrt((i + 0.5) / views)
    th = i * math.pi * (3 - math.sqrt(5))
    eyes = np.stack([0.6 * r * np.cos(th), np.full(views, -3.2), 0.4 + 0.3 * r * np.sin(th)], 1)
    eyes += rng.normal(0, 0.01, eyes.shape)
    targets = np.array([0.0, 0.5, -0.2]) + rng.normal(0, 0.03, (views, 3))
    return np.stack([look_at(e, t) for e, t in zip(eyes, targets, strict=True)])


def intrinsics(width: int, height: int, fov_x: float) -> np.ndarray:
    f = 0.5 * width / math.tan(0.5 * fov_x)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)


# ----------------------------------------------------------------------------------- rendering


class Renderer:
    """Renders a list of :class:`Part` with Lambertian shading, 2x2 supersampled."""

    def __init__(self, parts: list[Part]):
        offs = np.cumsum([0] + [len(p.vertices) for p in parts])
        self.parts = parts
        self.vertices = torch.from_numpy(np.concatenate([p.vertices for p in parts])).float()
        self.faces = torch.from_numpy(
            np.concatenate([p.faces + o for p, o in zip(parts, offs, strict=False)])
        )
        attrs = np.concatenate([np.concatenate([p.uv, p.normals, p.colors], 1) for p in parts])
        self.attributes = torch.from_numpy(attrs).float()
        self.face_part = torch.from_numpy(np.repeat(np.arange(len(parts)), [len(p.faces) for p in parts]))
        self.textures = [torch.from_numpy(np.ascontiguousarray(p.texture)) for p in parts]
        self.light = torch.tensor(LIGHT, dtype=torch.float32)

    def shade(self, part: torch.Tensor, uv: torch.Tensor, normal: torch.Tensor, tint: torch.Tensor):
        """Lambertian colour ``[M, 3]`` of surface samples (unit ``normal`` facing the viewer)."""
        from raysplat.mesh import sample_texture

        albedo = torch.zeros_like(normal)
        for k, tex in enumerate(self.textures):
            m = part == k
            if bool(m.any()):
                albedo[m] = sample_texture(tex, uv[m])
        lam = (normal @ self.light).clamp(min=0)[:, None]
        return (albedo * tint * (AMBIENT + DIFFUSE * lam)).clamp(0, 1)

    def render(self, c2w: np.ndarray, K: np.ndarray, width: int, height: int, sky: bool):
        """``(rgb [H, W, 3], alpha [H, W], depth [2H, 2W])`` float32 NumPy: straight (not
        premultiplied) colour, coverage alpha (1 everywhere with ``sky``) and supersampled depth."""
        from raysplat.mesh import rasterize_mesh
        from raysplat.rays import generate_rays

        Ks = K.copy()
        Ks[:2] *= 2
        c2w_t, K_t = torch.from_numpy(np.asarray(c2w, np.float32)), torch.from_numpy(Ks.astype(np.float32))
        W2, H2 = 2 * width, 2 * height
        r = rasterize_mesh(self.vertices, self.faces, c2w=c2w_t, K=K_t, width=W2, height=H2)
        _, dirs = generate_rays(c2w_t, K_t, W2, H2)
        tid = r.triangle_id.reshape(-1)
        hit = tid >= 0
        faces = tid[hit]
        corners = self.faces[faces]  # interpolate the attributes of covered samples only
        a = (self.attributes[corners] * r.barycentrics.reshape(-1, 3)[hit][:, :, None]).sum(1)
        d = dirs.reshape(-1, 3)
        n = torch.nn.functional.normalize(a[:, 2:5], dim=-1)
        n = torch.where(((n * d[hit]).sum(-1) > 0)[:, None], -n, n)
        part = self.face_part[faces]
        rgb = torch.zeros((H2 * W2, 3))
        rgb[hit] = self.shade(part, a[:, :2], n, a[:, 5:8])
        cover = hit.float()
        if sky:
            rgb[~hit] = sky_color(d[~hit])
            cover = torch.ones_like(cover)
        rgb_np = rgb.numpy().reshape(height, 2, width, 2, 3)
        cov_np = cover.numpy().reshape(height, 2, width, 2, 1)
        alpha = cov_np.mean((1, 3))
        rgb_out = (rgb_np * cov_np).sum((1, 3)) / np.maximum(cov_np.sum((1, 3)), 1e-8)
        return rgb_out.astype(np.float32), alpha[..., 0].astype(np.float32), r.depth.numpy()


def sky_color(d: torch.Tensor) -> torch.Tensor:
    """Background colour of view directions ``[M, 3]``: a sky gradient above the horizon."""
    t = d[:, 2:3].clamp(0, 1) ** 0.5
    horizon, zenith = torch.tensor([0.88, 0.9, 0.95]), torch.tensor([0.3, 0.5, 0.85])
    below = torch.tensor([0.45, 0.43, 0.4])
    return torch.where(d[:, 2:3] < 0, below, horizon * (1 - t) + zenith * t)


def sample_surface(parts: list[Part], counts: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted random points ``[P, 3]`` on the parts (``counts[k]`` on part ``k``) and their
    shaded colours ``[P, 3]`` (outward normals)."""
    rng = np.random.default_rng([seed, 4])
    renderer = Renderer(parts)
    pts, parts_idx, uvs, nrms, tints = [], [], [], [], []
    for k, (p, cnt) in enumerate(zip(parts, counts, strict=True)):
        if cnt == 0:
            continue
        tri = p.vertices[p.faces]
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        f = rng.choice(len(p.faces), cnt, p=area / area.sum())
        r1, r2 = np.sqrt(rng.random(cnt)), rng.random(cnt)
        w = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], 1)[:, :, None]
        corners = p.faces[f]
        pts.append((p.vertices[corners] * w).sum(1))
        uvs.append((p.uv[corners] * w).sum(1))
        nrms.append((p.normals[corners] * w).sum(1))
        tints.append((p.colors[corners] * w).sum(1))
        parts_idx.append(np.full(cnt, k))
    points = np.concatenate(pts)
    n = torch.nn.functional.normalize(torch.from_numpy(np.concatenate(nrms)).float(), dim=-1)
    col = renderer.shade(
        torch.from_numpy(np.concatenate(parts_idx)),
        torch.from_numpy(np.concatenate(uvs)).float(),
        n,
        torch.from_numpy(np.concatenate(tints)).float(),
    )
    return points, col.numpy().astype(np.float64)


# ----------------------------------------------------------------------------------- writers


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _save_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_to_u8(img)).save(path, format="PNG", compress_level=6)


def _mat4(c2w: np.ndarray) -> list[list[float]]:
    m = np.eye(4)
    m[:3] = c2w
    return [[float(x) for x in row] for row in m]


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` (Hamilton, ``w >= 0``) of a rotation matrix."""
    m = np.asarray(R, np.float64)
    t = np.trace(m)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="view")


def _render_all(renderer, cams, K, w, h, sky, out_paths, progress, desc, keep_depth=False):
    depths = []
    for c2w, path in _progress(zip(cams, out_paths, strict=True), len(cams), desc, progress):
        rgb, alpha, depth = renderer.render(c2w, K, w, h, sky)
        _save_png(path, rgb if sky else np.concatenate([rgb * (alpha[..., None] > 0), alpha[..., None]], -1))
        if keep_depth:
            depths.append(depth)
    return depths


def _write_blender(out, parts, seed, size, views, progress):
    cams = object_cameras(views, seed)
    K = intrinsics(size, size, CAMERA_ANGLE_X)
    renderer = Renderer(parts)
    for split, c2ws in cams.items():
        frames, paths = [], []
        for i, c2w in enumerate(c2ws):
            frames.append(
                {
                    "file_path": f"./{split}/r_{i}",
                    "rotation": 0.012566370614359171,
                    "transform_matrix": _mat4(c2w),
                }
            )
            paths.append(out / split / f"r_{i}.png")
        _render_all(renderer, c2ws, K, size, size, False, paths, progress, f"blender {split}")
        _write_json(out / f"transforms_{split}.json", {"camera_angle_x": CAMERA_ANGLE_X, "frames": frames})
    pts, cols = sample_surface(parts, _counts(parts, 2000, 0), seed)
    write_ply_points(out / "points3d.ply", pts, cols)


def _counts(parts, n_objects: int, n_backdrop: int) -> list[int]:
    obj = [p for p in parts if p.name not in ("ground", "wall")]
    areas = []
    for p in obj:
        tri = p.vertices[p.faces]
        areas.append(
            0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
        )
    share = np.floor(n_objects * np.array(areas) / sum(areas)).astype(int)
    share[0] += n_objects - share.sum()
    it = iter(share)
    return [n_backdrop if p.name in ("ground", "wall") else int(next(it)) for p in parts]


def _object_views(views, seed):
    cams = object_cameras(views, seed)
    c2ws = np.concatenate([cams["train"], cams["val"], cams["test"]])
    names = [f"frame_{i + 1:05d}.png" for i in range(len(c2ws))]
    splits, start = {}, 0
    for s in ("train", "val", "test"):
        splits[s] = names[start : start + len(cams[s])]
        start += len(cams[s])
    return c2ws, names, splits


def _write_nerfstudio(out, parts, seed, size, views, progress):
    c2ws, names, splits = _object_views(views, seed)
    K = intrinsics(size, size, CAMERA_ANGLE_X)
    renderer = Renderer(parts)
    _render_all(
        renderer, c2ws, K, size, size, True, [out / "images" / n for n in names], progress, "nerfstudio"
    )
    pts, cols = sample_surface(parts, _counts(parts, 1500, 500), seed)
    write_ply_points(out / "sparse_pc.ply", pts, cols)
    data = {
        "w": size,
        "h": size,
        "fl_x": float(K[0, 0]),
        "fl_y": float(K[1, 1]),
        "cx": float(K[0, 2]),
        "cy": float(K[1, 2]),
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "camera_model": "OPENCV",
        "frames": [
            {"file_path": f"images/{n}", "transform_matrix": _mat4(c), "colmap_im_id": i + 1}
            for i, (n, c) in enumerate(zip(names, c2ws, strict=True))
        ],
        "ply_file_path": "sparse_pc.ply",
    }
    for s, lst in splits.items():
        data[f"{s}_filenames"] = [f"images/{n}" for n in lst]
    _write_json(out / "transforms.json", data)


def _f(x: float) -> str:
    return repr(float(x))


def _write_colmap(out, parts, seed, size, views, progress):
    c2ws, names, _ = _object_views(views, seed)
    K = intrinsics(size, size, CAMERA_ANGLE_X)
    renderer = Renderer(parts)
    depths = _render_all(
        renderer,
        c2ws,
        K,
        size,
        size,
        True,
        [out / "images" / n for n in names],
        progress,
        "colmap",
        keep_depth=True,
    )
    pts, cols = sample_surface(parts, _counts(parts, 1500, 500), seed)
    rng = np.random.default_rng([seed, 5])
    flip = np.diag([1.0, -1.0, -1.0])
    obs: list[list[tuple[float, float, int]]] = [[] for _ in names]  # per image: (x, y, point index)
    tracks: list[list[tuple[int, int]]] = [[] for _ in pts]  # per point: (image index, 2D index)
    errors: list[list[float]] = [[] for _ in pts]
    w2cs = []
    for i, (c2w, depth) in enumerate(zip(c2ws, depths, strict=True)):
        R = c2w[:3, :3] @ flip  # OpenCV camera axes
        Rw, tw = R.T, -R.T @ c2w[:3, 3]
        w2cs.append((Rw, tw))
        cam = pts @ Rw.T + tw
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = K[0, 0] * cam[:, 0] / z + K[0, 2]
            y = K[1, 1] * cam[:, 1] / z + K[1, 2]
        inside = (z > 1e-3) & (x >= 0) & (x < size) & (y >= 0) & (y < size)
        xi = np.clip((2 * np.nan_to_num(x)).astype(int), 0, 2 * size - 1)
        yi = np.clip((2 * np.nan_to_num(y)).astype(int), 0, 2 * size - 1)
        seen = inside & (z <= depth[yi, xi] * 1.01 + 0.01)
        for p in np.nonzero(seen)[0]:
            noise = rng.normal(0, 0.3, 2)
            tracks[p].append((i, len(obs[i])))
            errors[p].append(float(np.linalg.norm(noise)))
            obs[i].append((x[p] + noise[0], y[p] + noise[1], p))
    keep = [p for p in range(len(pts)) if len(tracks[p]) >= 2]
    pid = {p: j + 1 for j, p in enumerate(keep)}
    sp = out / "sparse" / "0"
    sp.mkdir(parents=True, exist_ok=True)
    cam_line = f"1 PINHOLE {size} {size} {_f(K[0, 0])} {_f(K[1, 1])} {_f(K[0, 2])} {_f(K[1, 2])}"
    (sp / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n"
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"# Number of cameras: 1\n{cam_line}\n"
    )
    n_obs = sum(len(o) for o in obs)
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        f"# Number of images: {len(names)}, mean observations per image: {n_obs / max(len(names), 1)}",
    ]
    for i, ((Rw, tw), name) in enumerate(zip(w2cs, names, strict=True)):
        q = rotmat_to_qvec(Rw)
        lines.append(" ".join([str(i + 1), *(_f(v) for v in q), *(_f(v) for v in tw), "1", name]))
        lines.append(" ".join(f"{_f(x)} {_f(y)} {pid.get(p, -1)}" for x, y, p in obs[i]))
    (sp / "images.txt").write_text("\n".join(lines) + "\n")
    mean_track = sum(len(tracks[p]) for p in keep) / max(len(keep), 1)
    lines = [
        "# 3D point list with one line of data per point:",
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)",
        f"# Number of points: {len(keep)}, mean track length: {mean_track}",
    ]
    for p in keep:
        rgb = _to_u8(cols[p])
        track = " ".join(f"{i + 1} {j}" for i, j in tracks[p])
        err = float(np.mean(errors[p]))
        lines.append(
            f"{pid[p]} {' '.join(_f(v) for v in pts[p])} {rgb[0]} {rgb[1]} {rgb[2]} {_f(err)} {track}"
        )
    (sp / "points3D.txt").write_text("\n".join(lines) + "\n")


def _write_llff(out, parts, seed, size, views, progress):
    w, h = llff_size(size)
    c2ws = llff_cameras(views, seed)
    K = intrinsics(w, h, math.radians(60))
    renderer = Renderer(parts)
    rows = []
    for i, c2w in enumerate(_progress(c2ws, len(c2ws), "llff", progress)):
        rgb, _, depth = renderer.render(c2w, K, w, h, True)
        name = f"image{i:03d}.png"
        _save_png(out / "images" / name, rgb)
        for f in (2, 4):
            _save_png(out / f"images_{f}" / name, rgb.reshape(h // f, f, w // f, f, 3).mean((1, 3)))
        d = depth[np.isfinite(depth)]
        near, far = (np.percentile(d, 0.1), np.percentile(d, 99.9)) if d.size else (1.0, 10.0)
        # LLFF columns: down, right, back (= -up, right, back of the OpenGL c2w), camera centre, hwf
        pose = np.stack([-c2w[:, 1], c2w[:, 0], c2w[:, 2], c2w[:, 3], np.array([h, w, K[0, 0]])], 1)
        rows.append(np.concatenate([pose.reshape(-1), [near, far]]))
    np.save(out / "poses_bounds.npy", np.asarray(rows, np.float64))


def scene_parts(
    format: str, seed: int = 0, mesh: str | os.PathLike | None = None, up: str = "y"
) -> list[Part]:
    """The parts rendered for ``format``: the objects (or ``mesh``) plus the format's backdrop."""
    objects = procedural_objects(seed) if mesh is None else [load_mesh_part(mesh, up)]
    if format == "blender":
        return objects
    floor = min(float(p.vertices[:, 2].min()) for p in objects)
    return objects + _backdrop("ground" if format in ("nerfstudio", "colmap") else "forward", floor)


def make_scene(
    out: str | os.PathLike,
    format: str = "blender",
    size: int = 100,
    views: int = 100,
    seed: int = 0,
    mesh: str | os.PathLike | None = None,
    up: str = "y",
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Renders the sample scene (or ``mesh``) into the directory ``out`` in ``format``'s layout.

    Args:
        out: output directory (created; must be empty unless ``overwrite``).
        format: ``"blender"``, ``"llff"``, ``"nerfstudio"`` or ``"colmap"``.
        size: image width (and height, except LLFF: about 3/4 of it) in pixels.
        views: training views (blender; nerfstudio / colmap add the same val / test views), or
            all views (llff).
        seed: seeds camera jitter, the noise texture and the surface points.
        mesh: optional OBJ / GLB / PLY / ... replacing the procedural objects (see
            :func:`load_mesh_part`); ``up`` is its up axis (``"y"`` or ``"z"``).
        progress: show tqdm progress bars.

    Returns:
        The output directory.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, got {format!r}")
    for name, v, lo in (("size", size, 4), ("views", views, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: directory is not empty (pass overwrite=True / --force)")
    out.mkdir(parents=True, exist_ok=True)
    parts = scene_parts(format, seed, mesh, up)
    writer = {
        "blender": _write_blender,
        "llff": _write_llff,
        "nerfstudio": _write_nerfstudio,
        "colmap": _write_colmap,
    }
    writer[format](out, parts, seed, size, views, progress)
    return out


def cache_root() -> Path:
    """``$RAYSPLAT_CACHE/scenes`` or ``~/.cache/raysplat/scenes``."""
    base = os.environ.get("RAYSPLAT_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "raysplat") / "scenes"


def sample_scene(format: str = "blender", size: int = 100, views: int = 100, progress: bool = False) -> Path:
    """The directory of a cached generated sample scene (seed 0), generating it on first use.

    The cache entry is ``<cache_root()>/<format>-<size>-<views>-v<VERSION>``; it is rendered into a
    temporary sibling directory and renamed into place, so concurrent callers are safe.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}, got {format!r}")
    root = cache_root()
    final = root / f"{format}-{size}-{views}-v{VERSION}"
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        make_scene(tmp, format, size, views, seed=0, progress=progress, overwrite=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
