"""Rust kernels vs their pure-torch twins (and nerfacc where it runs on CPU), side by side.

Run: ``.venv/bin/python benches/sampling.py`` (or ``make bench``). Every case runs in its own
subprocess on 2 threads; "peak" is the growth of that process's peak RSS while the case runs
(inputs excluded). Sizes follow the issue: 65,536 rays x 64 samples, a 128^3 occupancy grid.
"""

from __future__ import annotations

import argparse

from harness import format_target, header, in_subprocess, report, set_threads, time_call, write_json

RAYS, SAMPLES = 65_536, 64


def _case_inputs(name: str, torch):
    g = torch.Generator().manual_seed(0)
    if name in ("importance_sampling", "stratified_samples"):
        edges = torch.linspace(2.0, 6.0, SAMPLES + 1).expand(RAYS, -1).contiguous()
        weights = torch.rand(RAYS, SAMPLES, generator=g)
        return {
            "edges": edges,
            "weights": weights,
            "near": torch.full((RAYS,), 2.0),
            "far": torch.full((RAYS,), 6.0),
        }
    if name.startswith("volume_render") or name == "render_weight_from_density":
        edges = torch.linspace(2.0, 6.0, SAMPLES + 1).expand(RAYS, -1).contiguous()
        return {
            "t_starts": edges[:, :-1].contiguous(),
            "t_ends": edges[:, 1:].contiguous(),
            "sigmas": torch.rand(RAYS, SAMPLES, generator=g) * 2,
            "rgbs": torch.rand(RAYS, SAMPLES, 3, generator=g),
        }
    if name.startswith("render_distribution"):
        return {"coeffs": torch.randn(RAYS, 4, 24, generator=g) * 0.5}
    if name == "occgrid_march":
        import raysplat as rs

        grid = rs.OccupancyGrid([-1.5, -1.5, -1.5, 1.5, 1.5, 1.5], 128)
        centers = grid.cell_centers(0, torch.arange(grid.cells_per_level))
        grid.binaries.copy_((centers.norm(dim=-1) < 0.5).view_as(grid.binaries))
        a = torch.rand(RAYS, generator=g) * 6.2832
        origins = torch.stack([4 * a.cos(), 4 * a.sin(), torch.full_like(a, 0.5)], -1)
        target = torch.cat([torch.rand(RAYS, 2, generator=g) * 2 - 1, torch.zeros(RAYS, 1)], -1)
        dirs = torch.nn.functional.normalize(target - origins, dim=-1)
        return {"grid": grid, "origins": origins, "dirs": dirs}
    raise KeyError(name)


def _public_call(name: str, inp, rs):
    """The public raysplat call for ``name`` (same call for both backends)."""
    if name == "importance_sampling":
        return lambda: rs.importance_sampling(inp["edges"], inp["weights"], SAMPLES, stratified=True)
    if name == "stratified_samples":
        return lambda: rs.stratified_samples(inp["near"], inp["far"], SAMPLES)
    if name == "render_weight_from_density":
        return lambda: rs.render_weight_from_density(inp["t_starts"], inp["t_ends"], inp["sigmas"])
    if name == "volume_render_fwd_bwd":
        # Leaf tensors made once; each call clears their gradients (no per-call copies).
        sg = inp["sigmas"].clone().requires_grad_(True)
        rgb = inp["rgbs"].clone().requires_grad_(True)

        def run():
            sg.grad = rgb.grad = None
            color, opacity, depth, _ = rs.volume_render(inp["t_starts"], inp["t_ends"], sg, rgb)
            (color.sum() + opacity.sum() + depth.sum()).backward()

        return run
    if name == "render_distribution_fwd":  # inference: shared linspace samples
        c = inp["coeffs"]
        return lambda: rs.render_distribution(c, SAMPLES, 2.0, 6.0)
    if name == "render_distribution_fwd_bwd":  # training: stratified per ray, sigmas returned
        c = inp["coeffs"].clone().requires_grad_(True)
        g = __import__("torch").Generator()

        def run():
            c.grad = None
            g.manual_seed(0)
            o = rs.render_distribution(
                c, SAMPLES, 2.0, 6.0, stratified=True, generator=g, return_samples=True
            )
            (o.colors.sum() + o.opacities.sum() + o.depths.sum() + o.sigmas.sum()).backward()

        return run
    if name == "occgrid_march":
        return lambda: inp["grid"].sampling(inp["origins"], inp["dirs"], render_step_size=3**0.5 * 3 / 1024)
    raise KeyError(name)


def _nerfacc_call(name: str, inp):
    """nerfacc's CPU-capable (batched, pure-torch) equivalent, where one exists."""
    import nerfacc

    ts, te = inp.get("t_starts"), inp.get("t_ends")
    if name == "render_weight_from_density":
        return lambda: nerfacc.render_weight_from_density(ts, te, inp["sigmas"])
    if name == "volume_render_fwd_bwd":
        sg = inp["sigmas"].clone().requires_grad_(True)
        rgb = inp["rgbs"].clone().requires_grad_(True)

        def run():
            sg.grad = rgb.grad = None
            w, _, _ = nerfacc.render_weight_from_density(ts, te, sg)
            mid = (0.5 * (ts + te))[..., None]
            acc = nerfacc.accumulate_along_rays
            (acc(w, rgb).sum() + acc(w, None).sum() + acc(w, mid).sum()).backward()

        return run
    return None


def _runner(name: str, impl: str, inp, torch, rs):
    """A zero-argument callable running ``name`` with implementation ``impl``."""
    if impl == "nerfacc":
        return _nerfacc_call(name, inp)
    call = _public_call(name, inp, rs)

    def run():
        with rs.backend(impl):
            return call()

    return run


def _child(name: str, impl: str, threads: int, repeats: int, queue) -> None:
    torch, rs = set_threads(threads)
    try:
        inp = _case_inputs(name, torch)
        fn = _runner(name, impl, inp, torch, rs)
    except ImportError as err:
        queue.put({"skipped": f"{impl}: {err}"})
        return
    if fn is None:
        queue.put({"skipped": f"{impl}: not applicable"})
        return
    result = time_call(fn, repeats)
    if name == "occgrid_march" and impl == "rust":
        result["samples_emitted"] = int(fn()[0].numel())
    queue.put(result)


def measure(name: str, impl: str, threads: int, repeats: int) -> dict:
    return in_subprocess(_child, name, impl, threads, repeats)


CASES = [
    "importance_sampling",
    "stratified_samples",
    "render_weight_from_density",
    "volume_render_fwd_bwd",
    "occgrid_march",
    "render_distribution_fwd",
    "render_distribution_fwd_bwd",
]


#: (case, what, threshold): the speed targets this bench checks and prints
TARGETS = [
    ("importance_sampling", "torch twin / rust >=", 10.0),
    ("volume_render_fwd_bwd", "min(torch twin, nerfacc) / rust >=", 4.0),
    ("occgrid_march", "rust best ms <", 50.0),
]


def check_targets(rows: list) -> list[dict]:
    """Evaluates :data:`TARGETS` on the measured rows (missing cases are left out)."""
    by = {(r["case"], r["impl"]): r for r in rows}
    out = []
    for case, what, threshold in TARGETS:
        if (case, "rust") not in by:
            continue
        if case == "occgrid_march":
            value = by[(case, "rust")]["best_ms"]
            ok = value < threshold
        else:
            impls = ["torch"] if case == "importance_sampling" else ["torch", "nerfacc"]
            ratios = [by[(case, i)]["rust_speedup"] for i in impls if (case, i) in by]
            if not ratios:
                continue
            value = min(ratios)
            ok = value >= threshold
        out.append({"case": case, "target": f"{what} {threshold:g}", "value": value, "holds": ok})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", help="also write the results here (scripts/readme_tables.py reads them)")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=CASES, help="run only these cases")
    args = ap.parse_args()
    rows = []
    title = f"{RAYS} rays x {SAMPLES} samples, {args.threads} threads, best of {args.repeats}"
    print(title + "\n")
    header(30)
    for case in args.cases:
        results = {
            impl: measure(case, impl, args.threads, args.repeats) for impl in ("rust", "torch", "nerfacc")
        }
        report(case, results, rows, 30)
    emitted = {r["case"]: r["samples_emitted"] for r in rows if "samples_emitted" in r}
    for case, n in emitted.items():
        print(f"\n{case}: {n:,} samples emitted")
    targets = check_targets(rows)
    for t in targets:
        print(format_target(t))
    write_json(args.json, title, rows, samples_emitted=emitted, targets=targets)


if __name__ == "__main__":
    main()
