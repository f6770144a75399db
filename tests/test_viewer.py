"""``raysplat view``: the editor's actions without a browser, the viser server's page and, with a
headless chromium, a frame arriving in a real browser."""

from __future__ import annotations

import base64
import io
import json
import shutil
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image
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


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class _Browser:
    """A headless chromium driven over the DevTools protocol (its websocket, with the
    ``websockets`` package viser already needs): software WebGL (SwiftShader), since viser's
    client draws the frames with WebGL."""

    def __init__(self, exe: str, profile):
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
             "--window-size=800,600", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             "--no-first-run", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        active = profile / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (active.is_file() and active.read_text().count("\n") >= 1):
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.2)
        port = int(active.read_text().split()[0])
        tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10))
        page = next(t for t in tabs if t["type"] == "page")
        from websockets.sync.client import connect

        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.id = 0

    def call(self, method: str, **params) -> dict:
        self.id += 1
        self.ws.send(json.dumps({"id": self.id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.id:
                assert "error" not in msg, msg
                return msg["result"]

    def js(self, expr: str):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in r, (expr, r["result"].get("description"))
        return r["result"].get("value")

    def wait_js(self, expr: str, timeout: float = 60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {expr}")

    def key(self, key: str, code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def type_into(self, element_js: str, text: str) -> None:
        """Focuses the element, clears it and types ``text`` like a user, then Enter."""
        self.js(f"(() => {{ const e = {element_js}; e.focus(); e.select(); return true; }})()")
        self.key("Backspace", 8)
        for ch in text:  # one key at a time, as typed
            self.call("Input.insertText", text=ch)
        self.key("Enter", 13)

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.kill()
            self.proc.wait()


#: the inputs of a viser GUI field, found by its label's text
_FIELD = (
    "(() => {{ const l = Array.from(document.querySelectorAll('label'))"
    ".find(l => l.innerText.trim() === {label!r}); if (!l) return null;"
    " let e = l;"
    " while (e && e.querySelectorAll('input').length < {n}) e = e.parentElement;"
    " return e ? Array.from(e.querySelectorAll('input')) : null; }})()"
)


def _field(label: str, i: int = 0, n: int = 1) -> str:
    return f"{_FIELD.format(label=label, n=n)}[{i}]"


def test_headless_browser_frame_selection_and_save(plys, tmp_path):
    """A real browser: the page loads, a frame rendered for the browser's camera arrives and is
    drawn, then the box selection is typed into the GUI and Save is clicked: the PLY written is
    the target plus exactly the selected source Gaussians."""
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium on this machine (.ci/run installs it; apt-get install chromium)")
    port = _free_port()
    ed = Editor(plys / "t.ply", plys / "s.ply")
    server = serve(ed, "127.0.0.1", port, 64, 48)
    (tmp_path / "prof").mkdir()
    browser = _Browser(exe, tmp_path / "prof")
    try:
        browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/")
        # the GUI arrived over viser's websocket, and the client sent its camera: a frame
        browser.wait_js(f"{_FIELD.format(label='select min', n=3)} !== null")
        deadline = time.time() + 60
        while server.raysplat_frames == 0 and time.time() < deadline:
            time.sleep(0.2)
        assert server.raysplat_frames > 0, "no frame was rendered for the browser's camera"
        # ... and the browser draws it: the sphere's colours appear on the page
        model, _ = ed.composite()
        sphere = torch.tensor(ed.render(c2w_to_viewmat(look_at((3.0, 0, 0), (0.0, 0, 0))).float(),
                                        0.8, 64, 48).reshape(-1, 3), dtype=torch.float32)  # fmt: skip
        colour = sphere[(sphere < 230).any(1)].mean(0)
        deadline = time.time() + 60
        while True:
            png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
            shot = torch.tensor(np.array(Image.open(io.BytesIO(png)).convert("RGB")), dtype=torch.float32)
            hits = int(((shot - colour).abs().max(-1).values < 40).sum())
            if hits > 500 or time.time() > deadline:
                break
            time.sleep(0.5)
        assert hits > 500, f"the frame is not drawn in the page ({hits} sphere-coloured pixels)"

        # box selection typed into the GUI: x >= 0.5 of the source. One field at a time, waiting
        # for the server to see it (viser's client throttles all GUI updates through one 50 ms
        # sender that keeps only the latest message, so fast typing across fields drops some)
        lo, hi = (0.5, -1.5, -1.5), (1.5, 1.5, 1.5)
        for j, (label, values) in enumerate((("select min", lo), ("select max", hi))):
            for i, v in enumerate(values):
                browser.type_into(_field(label, i, 3), str(v))
                deadline = time.time() + 30
                while ed.selection.values[3 * j + i : 3 * j + i + 1] != (v,) and time.time() < deadline:
                    time.sleep(0.1)
        shown = browser.js(f"{_FIELD.format(label='select min', n=3)}.map(e => e.value)")
        assert ed.selection.kind == "box" and ed.selection.values == (*lo, *hi), (shown, ed.selection.values)

        out = tmp_path / "from_browser.ply"
        browser.type_into(_field("save to"), str(out))
        save_path = server.raysplat_gui["save_path"]
        deadline = time.time() + 30
        while save_path.value != str(out) and time.time() < deadline:
            time.sleep(0.1)
        assert save_path.value == str(out)
        browser.js(
            "Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() === 'Save').click()"
        )
        deadline = time.time() + 60
        while not (out.is_file() and out.with_suffix(".labels.npy").is_file()) and time.time() < deadline:
            time.sleep(0.2)
        back = load_ply(out)
        target, source = load_ply(plys / "t.ply"), load_ply(plys / "s.ply")
        sel = (source.means >= torch.tensor(lo)).all(1) & (source.means <= torch.tensor(hi)).all(1)
        assert 0 < int(sel.sum()) < len(source)
        assert len(back) == len(target) + int(sel.sum())
        for k in back.params:
            want = torch.cat([target.params[k].detach(), source.params[k].detach()[sel]])
            assert torch.equal(back.params[k], want), k
        labels = np.load(out.with_suffix(".labels.npy"))
        assert labels.tolist() == [0] * len(target) + [1] * int(sel.sum())
    finally:
        browser.close()
        server.stop()
