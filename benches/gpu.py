"""raysplat on CUDA, side by side with nerfacc, gsplat and the pure-torch twin (issue 14 §2).

Run: ``python benches/gpu.py --device cuda`` (``scripts/gpu_check.sh`` does, after the CUDA
tests), or ``--device cpu --tiny`` for a dry run of the same code on a machine without a GPU.

Implementations per case: ``raysplat`` (``backend("auto")``: what a user's call runs, which on CUDA
is gsplat for ``rasterization`` when gsplat is importable, else the twin), ``twin``
(``backend("torch")``), and ``nerfacc`` / ``gsplat`` called directly when importable. Sizes are
the wave-1 bench sizes: 65,536 rays x 64 samples; 100k Gaussians at 256x256 forward + backward;
1M Gaussians at 1920x1080 forward only; plus NeRF and 3DGS training throughput on a generated
Blender scene, NeRF also with ``precision="bf16"`` and ``"fp16"`` (mixed precision: the field
MLPs under autocast). Every (case, implementation) is capped: it repeats until ``--time-cap`` seconds
(at most ``--repeats`` times) and one call longer than twice the cap is abandoned (SIGALRM);
the whole run stops starting new cases after ``--budget`` seconds. Times are CUDA-synchronised
wall times in ms (best and median); the ratio column is time / raysplat's time.

Unlike the CPU benches this one runs in-process (one CUDA context; the harness's process
isolation would pay a CUDA start-up per case, beyond the 4-minute budget).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import tempfile
import time
from pathlib import Path


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _peer(name: str):
    """The peer when it imports and its CUDA extension loads (raysplat's own dispatch rule)."""
    from raysplat import _peers

    try:
        return _peers.peer(name)
    except Exception:  # noqa: BLE001 - a broken peer just skips its columns
        return None


class Bench:
    def __init__(self, args):
        import torch

        self.torch = torch
        self.dev = torch.device(args.device)
        self.cap = args.time_cap
        self.repeats = args.repeats
        self.deadline = time.perf_counter() + args.budget
        self.rows: list[dict] = []
        self.out = args.out
        self.env = ""

    def save(self) -> None:
        """(Re)writes the table so far: a run killed by its timeout still leaves its rows."""
        if self.out:
            Path(self.out).parent.mkdir(parents=True, exist_ok=True)
            Path(self.out).write_text(f"# benches/gpu.py, {self.env}\n{self.table()}\n")

    def sync(self):
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize(self.dev)

    def time(self, fn) -> dict:
        """Warm-up, then repeats until the cap; a call past 2x the cap raises ``_Timeout``."""
        use_alarm = hasattr(signal, "SIGALRM")
        if use_alarm:
            signal.signal(signal.SIGALRM, _alarm)
            signal.alarm(max(1, int(math.ceil(2 * self.cap))))
        try:
            t0 = time.perf_counter()
            fn()
            self.sync()
            times = [time.perf_counter() - t0]
            start = time.perf_counter()
            while len(times) < self.repeats + 1 and time.perf_counter() - start < self.cap:
                t0 = time.perf_counter()
                fn()
                self.sync()
                times.append(time.perf_counter() - t0)
        finally:
            if use_alarm:
                signal.alarm(0)
        measured = times[1:] or times
        return {"best_ms": 1e3 * min(measured), "median_ms": 1e3 * sorted(measured)[len(measured) // 2]}

    def case(self, name: str, impls: dict) -> None:
        """``impls``: implementation name -> zero-argument callable, or a string saying why skipped."""
        results = {}
        for impl, fn in impls.items():
            if time.perf_counter() > self.deadline:
                results[impl] = {"skipped": "run budget spent"}
            elif isinstance(fn, str):
                results[impl] = {"skipped": fn}
            else:
                try:
                    results[impl] = self.time(fn)
                except _Timeout:
                    results[impl] = {"skipped": f"one call over {2 * self.cap:g} s"}
                except Exception as e:  # noqa: BLE001 - OOM or a peer's error is a table entry
                    results[impl] = {"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"}
                finally:
                    if self.dev.type == "cuda":
                        self.torch.cuda.empty_cache()
        base = results.get("raysplat", {}).get("best_ms")
        for impl, r in results.items():
            ratio = r["best_ms"] / base if base and "best_ms" in r else None
            self.rows.append({"case": name, "impl": impl, **r, "ratio_to_raysplat": ratio})
            if "best_ms" in r:
                print(
                    f"{name:34s} {impl:9s} {r['best_ms']:10.2f} {r['median_ms']:10.2f} "
                    f"{(f'{ratio:.2f}x' if ratio else '-'):>8s}",
                    flush=True,
                )
            else:
                print(f"{name:34s} {impl:9s} skipped ({r['skipped']})", flush=True)
        self.save()

    def table(self) -> str:
        lines = [f"{'case':34s} {'impl':9s} {'best ms':>10s} {'median ms':>10s} {'ratio':>8s}"]
        for r in self.rows:
            if "best_ms" in r:
                ratio = f"{r['ratio_to_raysplat']:.2f}x" if r["ratio_to_raysplat"] else "-"
                lines.append(
                    f"{r['case']:34s} {r['impl']:9s} {r['best_ms']:10.2f} {r['median_ms']:10.2f} {ratio:>8s}"
                )
            else:
                lines.append(f"{r['case']:34s} {r['impl']:9s} skipped ({r['skipped']})")
        return "\n".join(lines)


def _with_backend(name: str, fn):
    import raysplat as rs

    def run():
        with rs.backend(name):
            return fn()

    return run


def bench_volrend(b: Bench, r: int, s: int, nerfacc) -> None:
    import raysplat as rs

    torch, dev = b.torch, b.dev
    g = torch.Generator(device=dev).manual_seed(0)
    t0 = torch.sort(torch.rand(r, s, device=dev, generator=g) * 4, dim=-1).values
    t1 = t0 + 4.0 / s
    sig = (torch.rand(r, s, device=dev, generator=g) * 2).requires_grad_(True)
    rgb = torch.rand(r, s, 3, device=dev, generator=g).requires_grad_(True)

    def ours():
        color, opacity, depth, _ = rs.volume_render(t0, t1, sig, rgb)
        (color.sum() + opacity.sum()).backward()

    def peer():
        w, _, _ = nerfacc.render_weight_from_density(t0, t1, sig)
        color = nerfacc.accumulate_along_rays(w, rgb)
        opacity = nerfacc.accumulate_along_rays(w, None)
        (color.sum() + opacity.sum()).backward()

    b.case(f"volume_render {r}x{s} fwd+bwd", {
        "raysplat": ours,
        "twin": _with_backend("torch", ours),
        "nerfacc": peer if nerfacc else "nerfacc not importable",
    })  # fmt: skip

    x = torch.rand(r * s, device=dev, generator=g).requires_grad_(True)
    packed_info = torch.stack([torch.arange(r, device=dev) * s, torch.full((r,), s, device=dev)], -1).long()

    def scan_ours():
        rs.exclusive_prod(x, packed_info=packed_info).sum().backward()

    def scan_peer():
        nerfacc.exclusive_prod(x, packed_info).sum().backward()

    b.case(f"exclusive_prod packed {r}x{s}", {
        "raysplat": scan_ours,
        "twin": _with_backend("torch", scan_ours),
        "nerfacc": scan_peer if nerfacc else "nerfacc not importable",
    })  # fmt: skip

    # packed volume rendering (nerfacc's layout; raysplat dispatches it to nerfacc when it loads)
    ri = torch.arange(r, device=dev).repeat_interleave(s)
    t0p, t1p = t0.reshape(-1), t1.reshape(-1)
    sig_p = sig.detach().reshape(-1).clone().requires_grad_(True)
    rgb_p = rgb.detach().reshape(-1, 3).clone().requires_grad_(True)

    def packed_ours():
        color, opacity, _, _ = rs.volume_render(t0p, t1p, sig_p, rgb_p, ri, r)
        (color.sum() + opacity.sum()).backward()

    def packed_peer():
        w, _, _ = nerfacc.render_weight_from_density(t0p, t1p, sig_p, packed_info=packed_info)
        color = nerfacc.accumulate_along_rays(w, rgb_p, ri, r)
        opacity = nerfacc.accumulate_along_rays(w, None, ri, r)
        (color.sum() + opacity.sum()).backward()

    b.case(f"volume_render packed {r}x{s} fwd+bwd", {
        "raysplat": packed_ours,
        "twin": _with_backend("torch", packed_ours),
        "nerfacc": packed_peer if nerfacc else "nerfacc not importable",
    })  # fmt: skip


def bench_sampling(b: Bench, r: int, s: int, nerfacc) -> None:
    import raysplat as rs

    torch, dev = b.torch, b.dev
    g = torch.Generator(device=dev).manual_seed(1)
    edges = torch.sort(torch.rand(r, s + 1, device=dev, generator=g) * 4, dim=-1).values
    w = torch.rand(r, s, device=dev, generator=g)

    def ours():
        return rs.importance_sampling(edges, w, s, generator=g)

    b.case(
        f"importance_sampling {r}x{s} (generator)", {"raysplat": ours, "twin": _with_backend("torch", ours)}
    )

    def no_gen():  # no generator: raysplat dispatches to nerfacc when it loads
        return rs.importance_sampling(edges, w, s, stratified=True)

    def peer():
        cdfs = torch.cat([torch.zeros_like(w[:, :1]), torch.cumsum(w, -1)], -1)
        return nerfacc.importance_sampling(nerfacc.RayIntervals(vals=edges), cdfs, s, True)

    b.case(f"importance_sampling {r}x{s}", {
        "raysplat": no_gen,
        "twin": _with_backend("torch", no_gen),
        "nerfacc": peer if nerfacc else "nerfacc not importable",
    })  # fmt: skip

    def strat():
        return rs.stratified_samples(
            torch.full((r,), 0.1, device=dev), torch.full((r,), 4.0, device=dev), s, generator=g
        )

    b.case(f"stratified_samples {r}x{s}", {"raysplat": strat, "twin": _with_backend("torch", strat)})


def bench_grid(b: Bench, r: int, res: int, nerfacc) -> None:
    import raysplat as rs

    torch, dev = b.torch, b.dev
    g = torch.Generator(device=dev).manual_seed(2)
    grid = rs.OccupancyGrid([-1, -1, -1, 1, 1, 1], res, 1).to(dev)
    grid.binaries.copy_(torch.rand(grid.binaries.shape, device=dev, generator=g) < 0.3)
    o = torch.randn(r, 3, device=dev, generator=g) * 0.3 + torch.tensor([0.0, 0.0, -2.5], device=dev)
    d = torch.nn.functional.normalize(torch.rand(r, 3, device=dev, generator=g) * 1.6 - 0.8 - o, dim=-1)
    step = 2 * math.sqrt(3) / 512

    def ours():
        return grid.sampling(o, d, near=0.0, far=8.0, render_step_size=step)

    impls = {"raysplat": ours, "twin": _with_backend("torch", ours), "nerfacc": "nerfacc not importable"}
    if nerfacc:
        try:
            est = nerfacc.OccGridEstimator(
                torch.tensor([-1.0, -1, -1, 1, 1, 1]), resolution=res, levels=1
            ).to(dev)
            est.binaries.copy_(grid.binaries)
            impls["nerfacc"] = lambda: est.sampling(
                o, d, near_plane=0.0, far_plane=8.0, render_step_size=step
            )
        except Exception as e:  # noqa: BLE001
            impls["nerfacc"] = f"{type(e).__name__}: {e}"
    b.case(f"occgrid march {r} rays {res}^3", impls)


def _gaussians(torch, n: int, size: tuple[int, int], dev, grad: bool):
    g = torch.Generator(device=dev).manual_seed(0)
    w, h = size
    lo, hi = math.log(0.004), math.log(0.02)
    p = {
        "means": torch.rand(n, 3, device=dev, generator=g) * 2 - 1,
        "quats": torch.randn(n, 4, device=dev, generator=g),
        "scales": torch.exp(lo + torch.rand(n, 3, device=dev, generator=g) * (hi - lo)),
        "opacities": 0.05 + 0.9 * torch.rand(n, device=dev, generator=g),
        "colors": torch.randn(n, 16, 3, device=dev, generator=g) * 0.3,
    }
    if grad:
        p = {k: v.requires_grad_(True) for k, v in p.items()}
    viewmats = torch.eye(4, device=dev)[None].clone()
    viewmats[0, 2, 3] = 3.0
    f = 256.0 * w / 256
    Ks = torch.tensor([[[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]], device=dev)
    return p, {"viewmats": viewmats, "Ks": Ks, "width": w, "height": h, "sh_degree": 3}


def bench_raster(
    b: Bench, n: int, size: tuple[int, int], backward: bool, gsplat, compat: bool = False
) -> None:
    """``compat``: gsplat 1.5's camera-pose-refinement call: ``packed=True`` and gradients w.r.t.
    ``viewmats`` too."""
    import raysplat as rs

    torch = b.torch
    p, cam = _gaussians(torch, n, size, b.dev, backward)
    if compat:
        cam = {**cam, "viewmats": cam["viewmats"].clone().requires_grad_(True), "packed": True}

    def run(fn):
        def call():
            if backward:
                img, alpha, _ = fn(**p, **cam)
                (img.sum() + alpha.sum()).backward()
            else:
                with torch.no_grad():
                    fn(**p, **cam)

        return call

    label = f"rasterization {n // 1000}k {size[0]}x{size[1]} {'fwd+bwd' if backward else 'fwd'}"
    if compat:
        label += " packed+pose"
    b.case(label, {
        "raysplat": run(rs.rasterization),
        "twin": _with_backend("torch", run(rs.rasterization)),
        "gsplat": run(gsplat.rasterization) if gsplat else "gsplat not importable",
    })  # fmt: skip


def bench_misc(b: Bench, n: int, tiny: bool) -> None:
    import raysplat as rs

    torch, dev = b.torch, b.dev
    g = torch.Generator(device=dev).manual_seed(3)
    pts = torch.rand(n, 3, device=dev, generator=g)

    def knn():
        return rs.knn_scale_init(pts)

    b.case(f"knn_scale_init {n} pts k=3", {"raysplat": knn, "twin": _with_backend("torch", knn)})
    x = torch.rand(n, 3, device=dev, generator=g)
    levels = 4 if tiny else 16
    table = (torch.randn(levels, 2**14 if tiny else 2**19, 2, device=dev, generator=g) * 1e-2).requires_grad_(
        True
    )
    resolutions = [int(16 * 1.4**i) for i in range(levels)]

    def enc():
        rs.hashgrid_encode(x, table, resolutions).sum().backward()

    b.case(
        f"hashgrid_encode {n} x {levels} lv fwd+bwd", {"raysplat": enc, "twin": _with_backend("torch", enc)}
    )


def bench_training(b: Bench, tiny: bool) -> None:
    from raysplat.datasets import load, make_scene
    from raysplat.gs import GSConfig
    from raysplat.gs import Trainer as GSTrainer
    from raysplat.nerf import NerfConfig, load_scene
    from raysplat.nerf import Trainer as NerfTrainer

    size, views = (32, 8) if tiny else (100, 30)
    root = Path(tempfile.mkdtemp(prefix="raysplat-gpu-bench-"))
    scene_dir = make_scene(root / "scene", "blender", size=size, views=views, seed=0)
    dev = str(b.dev)
    # NeRF at fp32, 3DGS, then NeRF with mixed precision (the field MLPs under autocast)
    for method, precision in (("nerf", "fp32"), ("gs", "fp32"), ("nerf", "bf16"), ("nerf", "fp16")):
        name = method if precision == "fp32" else f"{method} {precision}"
        if time.perf_counter() > b.deadline:
            b.rows.append({"case": f"train {name}", "impl": "raysplat", "skipped": "run budget spent"})
            continue
        try:
            if method == "nerf":
                extra = dict(batch_rays=512, target_samples=1 << 14, grid_resolution=32) if tiny else {}
                cfg = NerfConfig(steps=10_000, device=dev, precision=precision, **extra)
                tr = NerfTrainer(load_scene(scene_dir), cfg)
            else:
                tr = GSTrainer(load(scene_dir, background="none"), GSConfig.fast(steps=10_000, device=dev))
            tr.train(steps=3, progress=False)  # warm-up (allocations, first grid update)
            b.sync()
            t0, s0 = time.perf_counter(), tr.step
            while time.perf_counter() - t0 < b.cap:
                tr.train(steps=tr.step + 5, progress=False)
            b.sync()
            dt, steps = time.perf_counter() - t0, tr.step - s0
            row = {"case": f"train {name} {size}px", "impl": "raysplat", "steps_per_s": steps / dt,
                   "best_ms": 1e3 * dt / max(steps, 1), "median_ms": 1e3 * dt / max(steps, 1),
                   "ratio_to_raysplat": None}  # fmt: skip
            print(f"train {name} {size}px: {steps / dt:.1f} steps/s ({steps} steps)", flush=True)
        except Exception as e:  # noqa: BLE001
            row = {"case": f"train {name}", "impl": "raysplat", "skipped": f"{type(e).__name__}: {e}"[:120]}
            print(f"train {name}: skipped ({row['skipped']})", flush=True)
        b.rows.append(row)
        b.save()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    ap.add_argument("--tiny", action="store_true", help="small sizes (dry run)")
    ap.add_argument("--time-cap", type=float, default=8.0, help="seconds per (case, implementation)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--budget", type=float, default=130.0, help="start no case after this many seconds")
    ap.add_argument("--no-training", action="store_true")
    ap.add_argument("--out", help="write the table here (text)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benches/gpu.py: no CUDA device on this machine (use --device cpu --tiny for a dry run)")
        return
    torch.manual_seed(0)
    nerfacc, gsplat = _peer("nerfacc"), _peer("gsplat")
    if args.device == "cpu":
        nerfacc = gsplat = None  # the peers' kernels are CUDA-only
    b = Bench(args)
    b.env = f"device {args.device}"
    if b.dev.type == "cuda":
        b.env += f" ({torch.cuda.get_device_name(b.dev)}), torch {torch.__version__}"
    from raysplat import _peers

    if args.device == "cpu":
        b.env += "; nerfacc and gsplat not used (CUDA-only)"
    else:
        b.env += "; " + ", ".join(f"{k}: {v}" for k, v in _peers.status().items())
    r, s = (256, 16) if args.tiny else (65_536, 64)
    print(f"{'case':34s} {'impl':9s} {'best ms':>10s} {'median ms':>10s} {'ratio':>8s}", flush=True)
    bench_volrend(b, r, s, nerfacc)
    bench_sampling(b, r, s, nerfacc)
    bench_grid(b, r, 32 if args.tiny else 128, nerfacc)
    bench_raster(b, 2_000 if args.tiny else 100_000, (64, 64) if args.tiny else (256, 256), True, gsplat)
    bench_raster(
        b, 2_000 if args.tiny else 100_000, (64, 64) if args.tiny else (256, 256), True, gsplat, compat=True
    )
    bench_raster(
        b, 5_000 if args.tiny else 1_000_000, (128, 72) if args.tiny else (1920, 1080), False, gsplat
    )
    bench_misc(b, 2_000 if args.tiny else 100_000, args.tiny)
    if not args.no_training:
        bench_training(b, args.tiny)
    b.save()
    if args.json:
        Path(args.json).write_text(json.dumps({"env": b.env, "rows": b.rows}, indent=1))
    print(f"# benches/gpu.py, {b.env}\n{b.table()}")


if __name__ == "__main__":
    sys.exit(main())
