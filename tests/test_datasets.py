"""Dataset loaders on the sample-scene generator's output, and on hand-broken files."""

from __future__ import annotations

import json
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from raysplat import datasets
from raysplat.datasets import DatasetError, generate, load
from raysplat.datasets import colmap as colmap_io
from raysplat.datasets.llff import average_pose

SIZE, VIEWS = 32, 10


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scenes")
    return {f: generate.make_scene(root / f, f, size=SIZE, views=VIEWS, seed=0) for f in generate.FORMATS}


@pytest.fixture
def copy(scenes, tmp_path):
    """A fresh, writable copy of a generated scene."""

    def make(fmt: str) -> Path:
        return Path(shutil.copytree(scenes[fmt], tmp_path / fmt))

    return make


def project(scene, points: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates [P, 2] and depths [P] of world points in (OpenGL) camera ``i``."""
    c2w, K = scene.c2w[i].double(), scene.K[i].double()
    cam = (points.double() - c2w[:, 3]) @ c2w[:, :3]
    z = -cam[:, 2]
    x = K[0, 0] * cam[:, 0] / z + K[0, 2]
    y = -K[1, 1] * cam[:, 1] / z + K[1, 2]
    return torch.stack([x, y], -1), z


# ------------------------------------------------------------------------------ generator output


def test_generated_layouts(scenes):
    b = scenes["blender"]
    for s in ("train", "val", "test"):
        data = json.loads((b / f"transforms_{s}.json").read_text())
        assert set(data) == {"camera_angle_x", "frames"}
        fr = data["frames"][0]
        assert fr["file_path"] == f"./{s}/r_0" and np.asarray(fr["transform_matrix"]).shape == (4, 4)
        with Image.open(b / s / "r_0.png") as im:
            assert im.mode == "RGBA" and im.size == (SIZE, SIZE)
            alpha = np.asarray(im)[..., 3]
        assert alpha[0, 0] == 0 and alpha.max() == 255  # transparent background, opaque object
    pb = np.load(scenes["llff"] / "poses_bounds.npy")
    w, h = generate.llff_size(SIZE)
    assert pb.shape == (VIEWS, 17) and pb.dtype == np.float64
    assert np.allclose(pb[:, :15].reshape(-1, 3, 5)[:, :, 4], [h, w, 0.5 * w / np.tan(np.pi / 6)])
    for sub, f in (("images", 1), ("images_2", 2), ("images_4", 4)):
        files = sorted((scenes["llff"] / sub).iterdir())
        assert len(files) == VIEWS
        with Image.open(files[0]) as im:
            assert im.size == (w // f, h // f) and im.mode == "RGB"
    ns = json.loads((scenes["nerfstudio"] / "transforms.json").read_text())
    assert ns["camera_model"] == "OPENCV" and ns["w"] == ns["h"] == SIZE
    assert ns["frames"][0]["file_path"] == "images/frame_00001.png"
    sparse = scenes["colmap"] / "sparse" / "0"
    assert sorted(p.name for p in sparse.iterdir()) == ["cameras.txt", "images.txt", "points3D.txt"]
    assert (sparse / "cameras.txt").read_text().splitlines()[-1].startswith(f"1 PINHOLE {SIZE} {SIZE} ")


def test_generation_is_deterministic(tmp_path):
    for fmt in generate.FORMATS:
        a = generate.make_scene(tmp_path / f"{fmt}-a", fmt, size=16, views=3, seed=3)
        b = generate.make_scene(tmp_path / f"{fmt}-b", fmt, size=16, views=3, seed=3)
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        for f in files:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f"{fmt}: {f} differs"
    c = generate.make_scene(tmp_path / "seed4", "blender", size=16, views=3, seed=4)
    a = tmp_path / "blender-a"
    assert (a / "transforms_train.json").read_bytes() != (c / "transforms_train.json").read_bytes()


def test_make_scene_refuses_non_empty_dir_and_bad_args(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    with pytest.raises(FileExistsError, match="not empty"):
        generate.make_scene(tmp_path / "x", "blender", size=16, views=2)
    with pytest.raises(ValueError, match="format"):
        generate.make_scene(tmp_path / "y", "nerf", size=16, views=2)
    with pytest.raises(ValueError, match="views"):
        generate.make_scene(tmp_path / "y", "blender", size=16, views=0)


def test_sample_scene_caches_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYSPLAT_CACHE", str(tmp_path))
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(datasets.sample_scene("llff", 16, 3)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = tmp_path / "scenes" / f"llff-16-3-v{generate.VERSION}"
    assert results == [expected, expected]
    assert [p.name for p in (tmp_path / "scenes").iterdir()] == [expected.name]  # no temp dirs left
    assert datasets.sample_scene("llff", 16, 3) == expected
    assert load(expected).images.shape[0] == 3


# ------------------------------------------------------------------------------------ blender


def test_blender_loader(scenes):
    sc = load(scenes["blender"])
    n_eval = max(1, VIEWS // 5)
    assert sc.format == "blender" and sc.images.shape == (VIEWS + 2 * n_eval, SIZE, SIZE, 3)
    assert sc.images.dtype == torch.float32 and 0 <= float(sc.images.min()) and float(sc.images.max()) <= 1
    assert [len(sc.indices(s)) for s in ("train", "val", "test")] == [VIEWS, n_eval, n_eval]
    f = 0.5 * SIZE / np.tan(0.5 * generate.CAMERA_ANGLE_X)
    assert torch.allclose(sc.K[0], torch.tensor([[f, 0, SIZE / 2], [0, f, SIZE / 2], [0, 0, 1]]).float())
    assert (sc.near, sc.far) == (2.0, 6.0) and sc.aabb.tolist() == [-1.5] * 3 + [1.5] * 3
    cams = generate.object_cameras(VIEWS, 0)
    assert torch.allclose(sc.c2w, torch.from_numpy(np.concatenate(list(cams.values()))).float(), atol=1e-6)
    assert torch.allclose(sc.c2w[:, :, 3].norm(dim=-1), torch.tensor(generate.RADIUS))
    # the whole scene lies inside the box and in front of the cameras within [near, far]
    assert sc.points is not None and bool((sc.points.abs() <= 1.5).all())
    rgba = load(scenes["blender"], background="none")
    assert rgba.images.shape[-1] == 4
    a = rgba.images[..., 3:]
    assert torch.allclose(sc.images, rgba.images[..., :3] * a + (1 - a), atol=1e-6)
    black = load(scenes["blender"], background="black")
    assert torch.allclose(black.images, rgba.images[..., :3] * a, atol=1e-6)
    rnd = load(scenes["blender"], background="random", seed=1)
    corner = rnd.images[:, 0, 0]  # transparent corner = the image's random colour
    assert corner.std(0).min() > 0.05
    assert torch.equal(rnd.images, load(scenes["blender"], background="random", seed=1).images)
    with pytest.raises(ValueError, match="background"):
        load(scenes["blender"], background="grey")


def test_points_project_onto_the_foreground(scenes):
    """Round trip of the poses: the generator's surface points land on the alpha mask."""
    sc = load(scenes["blender"], background="none")
    assert sc.points.shape == (2000, 3) and sc.point_colors.shape == (2000, 3)
    for i in range(sc.images.shape[0]):
        xy, z = project(sc, sc.points, i)
        assert bool((z > sc.near).all()) and bool((z < sc.far).all())
        inside = (xy >= 0).all(-1) & (xy < SIZE).all(-1)
        assert inside.float().mean() > 0.99
        px = xy[inside].long()
        alpha = sc.images[i, px[:, 1], px[:, 0], 3]
        assert float((alpha > 0).float().mean()) > 0.95, i  # misses: silhouette-edge points only
        grown = torch.nn.functional.max_pool2d(sc.images[i, None, None, :, :, 3], 3, 1, 1)[0, 0]
        assert bool((grown[px[:, 1], px[:, 0]] > 0).all()), i


def test_object_formats_agree(scenes):
    b, n, c = load(scenes["blender"]), load(scenes["nerfstudio"]), load(scenes["colmap"])
    assert n.format == "nerfstudio" and c.format == "colmap"
    for other in (n, c):
        assert torch.allclose(b.c2w, other.c2w, atol=1e-5)
        assert torch.allclose(b.K, other.K, atol=1e-4)
        assert other.images.shape == b.images.shape
    for s in ("train", "val", "test"):  # nerfstudio's *_filenames reproduce the blender splits
        assert torch.equal(n.split[s], b.split[s])
    assert torch.equal(c.split["test"], torch.arange(0, c.images.shape[0], 8))
    # the foreground colours agree where the blender image is opaque
    opaque = load(scenes["blender"], background="none").images[..., 3] > 0.999
    assert float((b.images - n.images).abs().amax(-1)[opaque].mean()) < 2 / 255
    assert torch.equal(n.images, c.images)
    # COLMAP keeps the surface points seen twice or more; they are among nerfstudio's
    d = torch.cdist(c.points.double(), n.points.double()).min(1).values
    assert c.points.shape[0] > 500 and float(d.max()) < 1e-5
    for sc in (n, c):
        z = torch.cat([project(sc, sc.points, i)[1] for i in range(sc.images.shape[0])])
        assert sc.near < float(z.quantile(0.01)) and float(z.quantile(0.99)) < sc.far


def test_colmap_observations_match_projections(scenes):
    """The 2D points written to images.txt agree with the loaded cameras and points."""
    sc = load(scenes["colmap"])
    sparse = scenes["colmap"] / "sparse" / "0"
    images = colmap_io.read_images_text(sparse / "images.txt")
    ids, xyz, _, err, tracks = colmap_io.read_points3d_text(sparse / "points3D.txt")
    assert (err > 0).all() and (err < 2).all() and all(len(t) >= 2 for t in tracks)
    pos = {int(p): j for j, p in enumerate(ids)}
    for i, img_id in enumerate(sc.meta["image_ids"]):
        im = images[img_id]
        keep = im.point3d_ids >= 0
        assert keep.sum() > 10
        pts = torch.from_numpy(xyz[[pos[int(p)] for p in im.point3d_ids[keep]]])
        xy, _ = project(sc, pts, i)
        assert float((xy - torch.from_numpy(im.xys[keep])).norm(dim=-1).max()) < 2.0


# ------------------------------------------------------------------------------------- llff


def test_llff_loader_matches_generator(scenes):
    sc = load(scenes["llff"])
    w, h = generate.llff_size(SIZE)
    assert sc.format == "llff" and sc.forward_facing and sc.meta["ndc"] and sc.meta["factor"] == 1
    assert sc.images.shape == (VIEWS, h, w, 3)
    f = 0.5 * w / np.tan(np.pi / 6)
    assert torch.allclose(sc.K[0], torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]).float(), atol=1e-4)
    # generator cameras -> scale by 1 / (0.75 * min bound) -> recentre on the average pose
    raw = generate.llff_cameras(VIEWS, 0)
    bounds = np.load(scenes["llff"] / "poses_bounds.npy")[:, 15:]
    s = 1 / (0.75 * bounds.min())
    assert sc.meta["scale"] == pytest.approx(s)
    T = sc.meta["transform"].numpy()
    want = np.concatenate([T[:3, :3] / s @ raw[:, :, :3], (T[:3, :3] @ raw[:, :, 3:] + T[:3, 3:])], 2)
    assert np.allclose(sc.c2w.numpy(), want, atol=1e-5)
    assert np.allclose(average_pose(sc.c2w.double().numpy()), np.eye(4)[:3], atol=1e-5)
    assert float(sc.meta["bounds"].min()) == pytest.approx(1 / 0.75, rel=1e-5)
    assert sc.near == pytest.approx(0.9 / 0.75, rel=1e-5) and sc.far > sc.near
    assert torch.equal(sc.split["test"], torch.arange(0, VIEWS, 8))
    assert sorted(torch.cat([sc.split["train"], sc.split["test"]]).tolist()) == list(range(VIEWS))
    rc = sc.render_c2w
    assert rc.shape == (120, 3, 4)
    assert torch.allclose(
        rc[:, :, :3].transpose(1, 2) @ rc[:, :, :3], torch.eye(3).expand(120, 3, 3), atol=1e-5
    )
    # cameras look down -z of the recentred world, towards the content
    assert bool((sc.c2w[:, 2, 2] > 0.95).all())
    assert bool((sc.aabb[:3] < sc.aabb[3:]).all())


def test_llff_factor_and_options(scenes):
    w, h = generate.llff_size(SIZE)
    full = load(scenes["llff"], factor=1)
    for f in (2, 4):
        sc = load(scenes["llff"], factor=f)
        assert sc.images.shape[1:3] == (h // f, w // f)
        assert torch.allclose(sc.K[:, :2], full.K[:, :2] / f, atol=1e-4)
        assert torch.allclose(sc.c2w, full.c2w)
        small = full.images.reshape(VIEWS, h // f, f, w // f, f, 3).mean((2, 4))
        assert float((sc.images - small).abs().max()) < 1.5 / 255
    assert load(scenes["llff"], factor=8).meta["resized"]  # no images_8: downscaled here
    plain = load(scenes["llff"], bd_factor=None, recenter=False, llffhold=0, ndc=False)
    raw = generate.llff_cameras(VIEWS, 0)
    assert np.allclose(plain.c2w.numpy(), raw, atol=1e-5)
    assert len(plain.split["test"]) == 0 and not plain.meta["ndc"]


# ------------------------------------------------------------------------------- nerfstudio


def test_nerfstudio_per_frame_intrinsics_and_holdout(copy):
    root = copy("nerfstudio")
    jp = root / "transforms.json"
    data = json.loads(jp.read_text())
    for k in ("train_filenames", "val_filenames", "test_filenames", "fl_y"):
        data.pop(k, None)
    data["frames"][3].update(fl_x=50.0, cx=15.0)
    data["frames"] = data["frames"][::-1]  # sorted by file name on load
    jp.write_text(json.dumps(data))
    sc = load(root)
    assert sc.K[3, 0, 0] == 50.0 and sc.K[3, 1, 1] == 50.0 and sc.K[3, 0, 2] == 15.0
    assert sc.K[2, 0, 0] == pytest.approx(data["fl_x"])
    assert sc.meta["files"][0].endswith("frame_00001.png")
    n = sc.images.shape[0]
    assert torch.equal(sc.split["test"], torch.arange(0, n, 8))
    assert len(sc.split["train"]) + len(sc.split["test"]) == n
    assert sc.meta["distortion"][0] == {
        "model": "OPENCV",
        "k1": 0.0,
        "k2": 0.0,
        "k3": 0.0,
        "k4": 0.0,
        "p1": 0.0,
        "p2": 0.0,
    }
    assert load(jp, holdout=0).split["test"].numel() == 0


# ------------------------------------------------------------------------------------ colmap


def write_binary_model(model: colmap_io.Model, out: Path) -> None:
    """Writes ``model`` as cameras.bin / images.bin / points3D.bin (COLMAP's binary layout)."""
    out.mkdir(parents=True, exist_ok=True)
    ids = {name: mid for mid, (name, _) in colmap_io.CAMERA_MODELS.items()}
    with open(out / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", len(model.cameras)))
        for c in model.cameras.values():
            f.write(struct.pack("<iiQQ", c.id, ids[c.model], c.width, c.height))
            f.write(struct.pack(f"<{len(c.params)}d", *c.params))
    with open(out / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(model.images)))
        for im in model.images.values():
            f.write(struct.pack("<i7di", im.id, *im.qvec, *im.tvec, im.camera_id))
            f.write(im.name.encode() + b"\0")
            f.write(struct.pack("<Q", len(im.xys)))
            for (x, y), p in zip(im.xys, im.point3d_ids, strict=True):
                f.write(struct.pack("<ddq", x, y, p))
    with open(out / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", len(model.points)))
        for pid, xyz, rgb, err, tr in zip(
            model.point_ids, model.points, model.colors, model.errors, model.tracks, strict=True
        ):
            f.write(struct.pack("<Q3d3Bd", pid, *xyz, *rgb, err))
            f.write(struct.pack("<Q", len(tr)))
            f.write(tr.astype("<i4").tobytes())


def test_colmap_binary_model_equals_text(copy):
    root = copy("colmap")
    sparse = root / "sparse" / "0"
    text = load(root)
    model = colmap_io.read_model(sparse, "text")
    write_binary_model(model, sparse)
    for name in ("cameras.txt", "images.txt", "points3D.txt"):
        (sparse / name).unlink()
    binary = load(root)
    for k in ("images", "c2w", "K", "points", "point_colors", "aabb"):
        assert torch.equal(getattr(text, k), getattr(binary, k)), k
    assert (text.near, text.far) == (binary.near, binary.far)
    assert text.meta["image_ids"] == binary.meta["image_ids"]
    reread = colmap_io.read_model(sparse, "binary")
    assert all(np.array_equal(a, b) for a, b in zip(reread.tracks, model.tracks, strict=True))


@pytest.mark.parametrize(
    "line, K, dist",
    [
        ("SIMPLE_PINHOLE {w} {h} 40 16 15", [[40, 0, 16], [0, 40, 15]], {}),
        ("PINHOLE {w} {h} 40 41 16 15", [[40, 0, 16], [0, 41, 15]], {}),
        ("SIMPLE_RADIAL {w} {h} 40 16 15 0.1", [[40, 0, 16], [0, 40, 15]], {"k1": 0.1}),
        (
            "OPENCV {w} {h} 40 41 16 15 0.1 0.2 0.01 0.02",
            [[40, 0, 16], [0, 41, 15]],
            {"k1": 0.1, "k2": 0.2, "p1": 0.01, "p2": 0.02},
        ),
    ],
)
def test_colmap_camera_models(copy, line, K, dist):
    root = copy("colmap")
    (root / "sparse" / "0" / "cameras.txt").write_text("# c\n1 " + line.format(w=SIZE, h=SIZE) + "\n")
    sc = load(root, format="colmap")
    assert torch.allclose(sc.K[0, :2], torch.tensor(K, dtype=torch.float32))
    assert sc.meta["distortion"][0] == {"model": line.split()[0], **dist}


def test_colmap_blank_point_lines_and_factor(copy):
    root = copy("colmap")
    images = root / "sparse" / "0" / "images.txt"
    lines = images.read_text().splitlines()
    lines = [ln if i < 4 or i % 2 == 0 else "" for i, ln in enumerate(lines)]  # empty 2D-point lines
    images.write_text("\n".join(lines) + "\n")
    sc = load(root)
    assert sc.images.shape[0] == VIEWS + 2 * max(1, VIEWS // 5)
    shutil.copytree(root / "images", root / "images_2")
    for p in (root / "images_2").iterdir():
        with Image.open(p) as im:
            im.resize((SIZE // 2, SIZE // 2), Image.Resampling.BOX).save(p)
    half = load(root, factor=2)
    assert half.images.shape[1:3] == (SIZE // 2, SIZE // 2)
    assert torch.allclose(half.K[:, :2], sc.K[:, :2] / 2)


# ------------------------------------------------------------------------------ detection


def test_detect_format(scenes, tmp_path):
    for fmt, path in scenes.items():
        assert datasets.detect_format(path) == fmt
        assert load(path).format == fmt
    assert datasets.detect_format(scenes["nerfstudio"] / "transforms.json") == "nerfstudio"
    assert load(scenes["llff"] / "poses_bounds.npy").format == "llff"
    with pytest.raises(DatasetError, match="cannot detect"):
        load(tmp_path)
    with pytest.raises(DatasetError, match="no such file"):
        load(tmp_path / "missing")
    with pytest.raises(ValueError, match="format"):
        load(scenes["llff"], format="nerf")


# ------------------------------------------------------------------------------ malformed input


def _edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _resize(path: Path, size=(7, 5)) -> None:
    with Image.open(path) as im:
        im.resize(size).save(path)


def _truncate(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 9 if keep is None else keep])


def _break_points_line(path: Path) -> None:
    lines = path.read_text().splitlines()
    lines[5] = "1.5 2.5"  # the first image's 2D points: not (X, Y, POINT3D_ID) triples
    path.write_text("\n".join(lines) + "\n")


def _binary(root: Path) -> Path:
    sparse = root / "sparse" / "0"
    write_binary_model(colmap_io.read_model(sparse, "text"), sparse)
    return sparse


def _blender_cases():
    tr = "transforms_train.json"
    return [
        (
            "missing camera_angle_x",
            lambda r: _edit_json(r / tr, lambda d: d.pop("camera_angle_x")),
            tr,
            "camera_angle_x",
        ),
        ("missing frames", lambda r: _edit_json(r / tr, lambda d: d.pop("frames")), tr, "'frames'"),
        (
            "missing transform_matrix",
            lambda r: _edit_json(r / tr, lambda d: d["frames"][1].pop("transform_matrix")),
            tr,
            r"frames\[1\]",
        ),
        (
            "3x3 transform_matrix",
            lambda r: _edit_json(
                r / tr, lambda d: d["frames"][0].update(transform_matrix=np.eye(3).tolist())
            ),
            tr,
            "shape",
        ),
        ("missing image", lambda r: (r / "train" / "r_2.png").unlink(), "r_2.png", "not found"),
        ("inconsistent sizes", lambda r: _resize(r / "val" / "r_0.png"), "r_0.png", "inconsistent"),
        ("bad json", lambda r: (r / "transforms_val.json").write_text("{"), "transforms_val.json", "JSON"),
        (
            "missing split file",
            lambda r: (r / "transforms_test.json").unlink(),
            "transforms_test.json",
            "not found",
        ),
    ]


def _llff_cases():
    pb = "poses_bounds.npy"
    return [
        ("N x 15 array", lambda r: np.save(r / pb, np.load(r / pb)[:, :15]), pb, "N x 17"),
        ("1-D array", lambda r: np.save(r / pb, np.load(r / pb).ravel()), pb, "N x 17"),
        ("missing poses", lambda r: (r / pb).unlink(), pb, "not found"),
        ("fewer poses", lambda r: np.save(r / pb, np.load(r / pb)[:-1]), "images", "poses"),
        ("missing image", lambda r: (r / "images" / "image004.png").unlink(), "images", "holds 9 images"),
        (
            "inconsistent sizes",
            lambda r: _resize(r / "images" / "image004.png"),
            "image004.png",
            "inconsistent",
        ),
        ("bad bounds", lambda r: np.save(r / pb, np.load(r / pb) * np.r_[np.ones(15), -1, 1]), pb, "bounds"),
    ]


def _nerfstudio_cases():
    tj = "transforms.json"
    return [
        ("missing fl_x", lambda r: _edit_json(r / tj, lambda d: d.pop("fl_x")), tj, "fl_x"),
        ("missing frames", lambda r: _edit_json(r / tj, lambda d: d.pop("frames")), tj, "frames"),
        (
            "2x4 transform_matrix",
            lambda r: _edit_json(
                r / tj, lambda d: d["frames"][2].update(transform_matrix=[[1, 0, 0, 0]] * 2)
            ),
            tj,
            r"frames\[2\].transform_matrix",
        ),
        (
            "missing image",
            lambda r: (r / "images" / "frame_00003.png").unlink(),
            "frame_00003.png",
            "not found",
        ),
        (
            "inconsistent sizes",
            lambda r: _resize(r / "images" / "frame_00003.png"),
            "frame_00003.png",
            "inconsistent",
        ),
        (
            "unknown camera model",
            lambda r: _edit_json(r / tj, lambda d: d.update(camera_model="EQUIRECTANGULAR")),
            tj,
            "EQUIRECTANGULAR",
        ),
        (
            "unknown split file",
            lambda r: _edit_json(r / tj, lambda d: d["test_filenames"].append("images/nope.png")),
            tj,
            "nope.png",
        ),
        ("missing ply", lambda r: (r / "sparse_pc.ply").unlink(), "sparse_pc.ply", "not found"),
    ]


def _colmap_cases():
    sp = Path("sparse") / "0"
    return [
        (
            "unknown model",
            lambda r: (r / sp / "cameras.txt").write_text("1 FOO 32 32 1 2 3\n"),
            "cameras.txt",
            "FOO",
        ),
        (
            "unsupported model",
            lambda r: (r / sp / "cameras.txt").write_text("1 OPENCV_FISHEYE 32 32 40 40 16 16 0 0 0 0\n"),
            "cameras.txt",
            "OPENCV_FISHEYE",
        ),
        (
            "wrong parameter count",
            lambda r: (r / sp / "cameras.txt").write_text("1 PINHOLE 32 32 40 40 16\n"),
            "cameras.txt",
            "4 parameters",
        ),
        ("missing points3D", lambda r: (r / sp / "points3D.txt").unlink(), "points3D.txt", "not found"),
        (
            "missing image",
            lambda r: (r / "images" / "frame_00002.png").unlink(),
            "frame_00002.png",
            "not found",
        ),
        (
            "inconsistent sizes",
            lambda r: _resize(r / "images" / "frame_00002.png"),
            "frame_00002.png",
            "inconsistent",
        ),
        (
            "camera size differs",
            lambda r: (r / sp / "cameras.txt").write_text("1 PINHOLE 30 32 40 40 16 16\n"),
            "frame_00001.png",
            "inconsistent",
        ),
        (
            "2D points not triples",
            lambda r: _break_points_line(r / sp / "images.txt"),
            "images.txt",
            "triples",
        ),
        ("truncated images.bin", lambda r: _truncate(_binary(r) / "images.bin"), "images.bin", "truncated"),
        (
            "truncated points3D.bin",
            lambda r: _truncate(_binary(r) / "points3D.bin"),
            "points3D.bin",
            "truncated",
        ),
        (
            "truncated cameras.bin",
            lambda r: _truncate(_binary(r) / "cameras.bin", 20),
            "cameras.bin",
            "truncated",
        ),
        (
            "unknown model id in cameras.bin",
            lambda r: (_binary(r) / "cameras.bin").write_bytes(
                struct.pack("<QiiQQ3d", 1, 1, 99, SIZE, SIZE, 40, 16, 16)
            ),
            "cameras.bin",
            "unknown camera model id 99",
        ),
    ]


CASES = [
    (fmt, *case)
    for fmt, cases in (
        ("blender", _blender_cases()),
        ("llff", _llff_cases()),
        ("nerfstudio", _nerfstudio_cases()),
        ("colmap", _colmap_cases()),
    )
    for case in cases
]


@pytest.mark.parametrize("fmt, name, breaker, file, problem", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_malformed_input_raises_dataset_error(copy, fmt, name, breaker, file, problem):
    root = copy(fmt)
    breaker(root)
    with pytest.raises(DatasetError, match=problem) as info:
        load(root, format=fmt)
    assert isinstance(info.value, ValueError)
    assert file in str(info.value), str(info.value)
