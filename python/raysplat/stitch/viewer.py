"""``raysplat view``: a browser viewer and stitching editor on viser (``pip install raysplat[viewer]``).

The server renders the composite with :func:`raysplat.rasterization` (Rust on the CPU) for each
client's camera and sends the frame as the page's background image; viser serves its bundled web
client, so it runs offline and headless (``--port``, then open ``http://HOST:PORT``). With two
models, the second is the SOURCE: a box selects its part (GUI fields), a transform gizmo moves it,
"Stitch" runs :func:`raysplat.stitch.stitch` (progress in the GUI) and "Save" writes the composite
as a 3DGS PLY. A brush (a sphere at a point with a radius) erases target Gaussians.

:class:`Editor` holds the state and every action without a browser (tests drive it directly);
:func:`serve` wires it to viser.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np
import torch

from raysplat.gs.model import GaussianModel
from raysplat.gs.ply import save_ply
from raysplat.splat import rasterization
from raysplat.stitch.compose import (
    Selection,
    Similarity,
    clone_model,
    load_model,
    merge,
    parse_selection,
    quat_to_matrix,
    transform_model,
)


class Editor:
    """The viewer's state: a target, an optional source with a selection and a transform, and the
    erased target Gaussians."""

    def __init__(self, target: str | os.PathLike | GaussianModel, source=None):
        self.target = load_model(target, "target")
        self.source = load_model(source, "source") if source is not None else None
        self.selection = Selection("all")
        self.transform = Similarity.identity()
        self.keep = torch.ones(len(self.target), dtype=torch.bool)
        self.stitched: GaussianModel | None = None
        self.lock = threading.Lock()
        self._cache: tuple | None = None  # (model, labels, render parts) until the next edit

    def _changed(self) -> None:
        """Drops the cached composite (call with the lock held, after every edit)."""
        self._cache = None

    def _build(self) -> tuple[GaussianModel, torch.Tensor]:
        if self.stitched is not None:
            return self.stitched, self._labels
        tgt = clone_model(self.target, self.keep.nonzero()[:, 0])
        if self.source is None:
            return tgt, torch.zeros(len(tgt), dtype=torch.uint8)
        mask = self.selection.mask(self.source.means)
        if not mask.any():
            return tgt, torch.zeros(len(tgt), dtype=torch.uint8)
        part = transform_model(clone_model(self.source, mask.nonzero()[:, 0]), self.transform)
        return merge(tgt, part)

    def _current(self) -> tuple:
        with self.lock:
            if self._cache is None:
                model, labels = self._build()
                with torch.no_grad():
                    parts = (
                        model.means.detach(), model.params["quats"].detach(), model.scales.detach(),
                        model.opacities.detach(), model.colors.detach(), model.sh_degree,
                    )  # fmt: skip
                self._cache = (model, labels, parts)
            return self._cache

    def composite(self) -> tuple[GaussianModel, torch.Tensor]:
        """The current model (stitched result if any, else the paste) and its labels; built once
        per edit, so rendering a new camera costs only the rasterization."""
        model, labels, _ = self._current()
        return model, labels

    def set_box(self, lo, hi) -> None:
        v = (*map(float, lo), *map(float, hi))
        if not all(v[i] <= v[i + 3] for i in range(3)):
            raise ValueError("box: min must be <= max on every axis")
        with self.lock:
            self.selection, self.stitched = Selection("box", v), None
            self._changed()

    def set_selection(self, selection: str | Selection) -> None:
        """Selects the source part by a selection string (``box:...``, ``sphere:...``, ...)."""
        sel = parse_selection(selection)
        with self.lock:
            self.selection, self.stitched = sel, None
            self._changed()

    def set_transform(self, wxyz, position, scale: float = 1.0) -> None:
        rot = quat_to_matrix(torch.as_tensor(wxyz, dtype=torch.float64))
        with self.lock:
            self.transform = Similarity(rot, torch.as_tensor(position, dtype=torch.float64), float(scale))
            self.stitched = None
            self._changed()

    def erase(self, centre, radius: float) -> int:
        """Erases the target Gaussians within ``radius`` of ``centre``; returns how many."""
        hit = Selection("sphere", (*map(float, centre), float(radius))).mask(self.target.means) & self.keep
        with self.lock:
            self.keep &= ~hit
            self.stitched = None
            self._changed()
        return int(hit.sum())

    def stitch(self, config=None) -> dict:
        """Runs the stitch on the current selection and transform; returns its metrics."""
        from raysplat.stitch.optimize import StitchConfig, stitch  # noqa: PLC0415

        tgt = clone_model(self.target, self.keep.nonzero()[:, 0])
        res = stitch(tgt, self.source, self.selection, self.transform, config or StitchConfig(progress=False))
        with self.lock:
            self.stitched, self._labels = res.model, res.labels
            self._changed()
        return res.metrics

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the composite as a 3DGS PLY (atomically) and its labels beside it (``.labels.npy``)."""
        model, labels = self.composite()
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        save_ply(model, tmp)
        tmp.replace(p)
        np.save(p.with_suffix(".labels.npy"), labels.numpy())
        return p

    def render(self, viewmat: torch.Tensor, fov_y: float, width: int, height: int) -> np.ndarray:
        """``[H, W, 3]`` uint8 render for an OpenCV world-to-camera ``viewmat`` [4, 4]."""
        means, quats, scales, opacities, colors, degree = self._current()[2]
        f = 0.5 * height / math.tan(fov_y / 2)
        K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)
        with torch.no_grad():
            img, _, _ = rasterization(
                means, quats, scales, opacities, colors, viewmat[None].float(), K[None],
                width, height, sh_degree=degree, backgrounds=torch.ones(1, 3),
            )  # fmt: skip
        return (img[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def viewmat_from_viser(wxyz, position) -> torch.Tensor:
    """OpenCV world-to-camera [4, 4] of a viser camera (its ``wxyz`` / ``position`` are the
    camera-to-world pose in OpenCV axes)."""
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = quat_to_matrix(torch.as_tensor(np.asarray(wxyz), dtype=torch.float64))
    c2w[:3, 3] = torch.as_tensor(np.asarray(position), dtype=torch.float64)
    return torch.linalg.inv(c2w)


def serve(editor: Editor, host: str = "127.0.0.1", port: int = 8080, width: int = 512, height: int = 384):
    """Starts the viser server for ``editor``; returns the server (``server.stop()`` ends it).
    ``server.raysplat_frames`` counts the frames sent."""
    from raysplat._extras import require  # noqa: PLC0415

    viser = require("viser")
    server = viser.ViserServer(host=host, port=port, verbose=False)
    server.raysplat_frames = 0  # type: ignore[attr-defined]

    def send(client) -> None:
        cam = client.camera
        img = editor.render(viewmat_from_viser(cam.wxyz, cam.position), float(cam.fov), width, height)
        client.scene.set_background_image(img, format="jpeg")
        server.raysplat_frames += 1  # type: ignore[attr-defined]

    def refresh() -> None:
        for client in server.get_clients().values():
            send(client)

    @server.on_client_connect
    def _(client) -> None:
        client.camera.on_update(lambda cam: send(cam.client))
        send(client)

    means = editor.target.means.detach()
    lo, hi = means.min(0).values.tolist(), means.max(0).values.tolist()
    if editor.source is not None:
        smeans = editor.source.means.detach()
        box_lo = server.gui.add_vector3("select min", tuple(smeans.min(0).values.tolist()))
        box_hi = server.gui.add_vector3("select max", tuple(smeans.max(0).values.tolist()))

        def on_box(_) -> None:
            try:
                editor.set_box(box_lo.value, box_hi.value)
            except ValueError:
                return
            refresh()

        box_lo.on_update(on_box)
        box_hi.on_update(on_box)
        size = float(np.linalg.norm(np.subtract(hi, lo)))
        gizmo = server.scene.add_transform_controls("/source", scale=0.3 * size)

        def on_gizmo(_) -> None:
            editor.set_transform(gizmo.wxyz, gizmo.position)
            refresh()

        gizmo.on_update(on_gizmo)
        status = server.gui.add_markdown("ready")
        stitch_btn = server.gui.add_button("Stitch")

        def on_stitch(_) -> None:
            status.content = "stitching..."
            try:
                m = editor.stitch()
                status.content = f"stitched: {m['n_boundary']} boundary points, {m['steps']} steps"
            except ValueError as e:
                status.content = f"error: {e}"
            refresh()

        stitch_btn.on_click(on_stitch)
    brush_c = server.gui.add_vector3("brush centre", tuple((np.add(lo, hi) / 2).tolist()))
    brush_r = server.gui.add_number("brush radius", 0.05 * float(np.linalg.norm(np.subtract(hi, lo))))
    erase_btn = server.gui.add_button("Erase")
    erase_btn.on_click(lambda _: (editor.erase(brush_c.value, brush_r.value), refresh()))
    save_path = server.gui.add_text("save to", "edited.ply")
    save_btn = server.gui.add_button("Save")
    save_btn.on_click(lambda _: editor.save(save_path.value))
    server.raysplat_gui = {"save_path": save_path, "save": save_btn}  # type: ignore[attr-defined]
    return server


__all__ = ["Editor", "serve", "viewmat_from_viser"]
