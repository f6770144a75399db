"""The ``raysplat`` command line: ``make-scene`` in-process and as a subprocess, and ``--mesh``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import raysplat
from PIL import Image
from raysplat import cli
from raysplat.datasets import load
from raysplat.datasets.generate import load_mesh_part


def test_make_scene_in_process(tmp_path, capsys):
    out = tmp_path / "llff"
    assert cli.main(["make-scene", str(out), "--format", "llff", "--size", "16", "--views", "3", "-q"]) == 0
    assert "wrote a llff scene" in capsys.readouterr().out
    sc = load(out)
    assert sc.format == "llff" and sc.images.shape == (3, 12, 16, 3)
    # a non-empty output directory is refused (exit status 2, one line on stderr) unless --force
    assert cli.main(["make-scene", str(out), "--format", "llff", "--size", "16", "--views", "3", "-q"]) == 2
    assert "not empty" in capsys.readouterr().err
    args = ["make-scene", str(out), "--format", "llff", "--size", "16", "--views", "3", "-q", "--force"]
    assert cli.main(args) == 0


def test_bad_arguments_exit_with_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["make-scene", str(tmp_path / "x"), "--format", "nerf"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([])
    assert cli.main(["make-scene", str(tmp_path / "y"), "--views", "0", "-q"]) == 2
    assert "views" in capsys.readouterr().err


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "make-scene" in capsys.readouterr().out


def test_make_scene_subprocess(tmp_path):
    env = dict(os.environ)
    pkg_root = str(Path(raysplat.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, env.get("PYTHONPATH", "")])
    out = tmp_path / "colmap"
    cmd = [sys.executable, "-m", "raysplat.cli", "make-scene", str(out)]
    cmd += ["--format", "colmap", "--size", "16", "--views", "3", "--seed", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "colmap" in res.stderr  # the tqdm progress bar
    sc = load(out)
    assert sc.format == "colmap" and sc.images.shape == (5, 16, 16, 3)


def _meshes(tmp_path: Path) -> dict[str, Path]:
    import trimesh

    box = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    box.visual.vertex_colors = np.tile(np.array([[200, 30, 30, 255]], np.uint8), (len(box.vertices), 1))
    box.export(tmp_path / "red.ply")
    ball = trimesh.creation.icosphere(subdivisions=2)
    tex = Image.fromarray(np.full((8, 8, 3), (20, 200, 40), np.uint8))
    ball.visual = trimesh.visual.TextureVisuals(uv=(ball.vertices[:, :2] + 1) / 2, image=tex)
    ball.export(tmp_path / "green.glb")
    trimesh.creation.cylinder(radius=0.5, height=1.0).export(tmp_path / "plain.obj")
    return {"red": tmp_path / "red.ply", "green": tmp_path / "green.glb", "plain": tmp_path / "plain.obj"}


def test_make_scene_from_mesh(tmp_path):
    for name, path in _meshes(tmp_path).items():
        out = tmp_path / f"scene-{name}"
        args = ["make-scene", str(out), "--mesh", str(path), "--size", "24", "--views", "2", "-q"]
        assert cli.main(args) == 0
        sc = load(out, background="none")
        fg = sc.images[..., 3] > 0.99
        assert fg.float().mean() > 0.05, name  # the mesh is in view
        rgb = sc.images[..., :3][fg].mean(0)
        assert float(sc.points.abs().max()) <= 1.5
        if name == "red":
            assert rgb[0] > 2 * rgb[1] and rgb[0] > 2 * rgb[2]
        elif name == "green":
            assert rgb[1] > 1.5 * rgb[0] and rgb[1] > 1.5 * rgb[2]
        else:  # the default checker: both light and dark texels
            assert sc.images[..., :3][fg].std() > 0.1
    assert cli.main(["make-scene", str(tmp_path / "bad"), "--mesh", str(tmp_path / "nope.obj"), "-q"]) == 2
    with pytest.raises(ValueError, match="cannot load mesh"):
        load_mesh_part(tmp_path / "nope.obj")
