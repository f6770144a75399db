"""``raysplat view``: the editor's actions without a browser, the viser server's page and, with a
headless chromium, a frame arriving in a real browser."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
import torch
from raysplat.cameras import c2w_to_viewmat, look_at
from raysplat.gs.ply import load_ply, save_ply
from raysplat.stitch.demo import demo_problem

viser = pytest.importorskip("viser", reason="viser (raysplat[viewer]) is not installed")
from raysplat.stitch.viewer import Editor, serve  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def plys(tmp_path_factory):
    d = tmp_path_factory.mktemp("view")
    target, source, _, _ = demo_problem(800, seed=11)
    save_ply(target, d / "t.ply")
    save_ply(source, d / "s.ply")
    return d


def test_editor_select_transform_erase_save_round_trip(plys, tmp_path):
    ed = Editor(plys / "t.ply", plys / "s.ply")
    ed.set_box((0.5, -1, -1), (1.5, 1, 1))
    ed.set_transform((1.0, 0, 0, 0), (0.0, 0.0, 0.5))
    n_sel = int((ed.source.means[:, 0] >= 0.5).sum())
    gone = ed.erase((-1.0, 0.0, 0.0), 0.3)
    assert gone > 0
    out = ed.save(tmp_path / "e.ply")
    back = load_ply(out)
    model, labels = ed.composite()
    assert len(back) == 800 - gone + n_sel == len(model)
    for k in back.params:
        assert torch.equal(back.params[k], model.params[k].detach())
    assert torch.allclose(
        back.means[800 - gone :], ed.source.means[ed.source.means[:, 0] >= 0.5] + torch.tensor([0, 0, 0.5])
    )
    img = ed.render(c2w_to_viewmat(look_at((3.0, 0, 0), (0.0, 0, 0))).float(), 0.8, 64, 48)
    assert img.shape == (48, 64, 3) and img.min() < 200  # the sphere is in view


def test_server_serves_its_page(plys):
    port = _free_port()
    server = serve(Editor(plys / "t.ply", plys / "s.ply"), "127.0.0.1", port, 64, 48)
    try:
        html = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
        assert b"<html" in html.lower()
    finally:
        server.stop()


def test_headless_browser_gets_a_frame(plys, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        pytest.skip("no chromium on this machine (apt-get install chromium to run this test)")
    port = _free_port()
    ed = Editor(plys / "t.ply", plys / "s.ply")
    server = serve(ed, "127.0.0.1", port, 64, 48)
    try:
        proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'prof'}",
             "--virtual-time-budget=15000", "--dump-dom", f"http://127.0.0.1:{port}/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.time() + 60
        while server.raysplat_frames == 0 and time.time() < deadline:
            time.sleep(0.2)
        proc.kill()
        proc.wait()
        assert server.raysplat_frames > 0, "no frame was rendered for the browser's camera"
        ed.set_box((0.5, -1, -1), (1.5, 1, 1))
        out = ed.save(tmp_path / "sel.ply")
        assert len(load_ply(out)) == len(ed.composite()[0])
    finally:
        server.stop()
