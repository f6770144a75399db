"""NeRF training: :class:`Trainer` fits a hash-grid radiance field to a :class:`~raysplat.datasets.Scene`
with one of three samplers, evaluates PSNR / SSIM on the test views, renders images and videos,
and saves checkpoints that resume exactly."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F

import raysplat as rs
from raysplat.datasets import Scene
from raysplat.nerf.field import RadianceField
from raysplat.nerf.metrics import psnr, ssim
from raysplat.nerf.samplers import SAMPLERS, HierarchicalSampler, OccGridSampler, ProposalSampler, Rays

#: the box forward-facing (NDC) scenes are modelled in
NDC_AABB = (-1.5, -1.5, -1.0, 1.5, 1.5, 1.0)


@dataclass
class NerfConfig:
    """Training settings (defaults: CPU-sized Instant-NGP-style training)."""

    sampler: str = "occgrid"
    steps: int = 2000
    seed: int = 0
    device: str = "cpu"
    #: rays per step (occgrid adapts it so that a step evaluates about ``target_samples``)
    batch_rays: int = 1024
    target_samples: int = 1 << 15
    max_batch_rays: int = 4096
    lr: float = 1e-2
    warmup_steps: int = 100
    weight_decay: float = 1e-6
    #: radiance field
    n_levels: int = 16
    log2_table: int = 15
    max_res: int = 1024
    hidden: int = 64
    #: occgrid
    grid_resolution: int = 64
    render_step_size: float | None = None
    #: proposal: samples of each proposal level, then of the radiance field
    prop_samples: tuple[int, ...] = (64,)
    num_samples: int = 32
    #: hierarchical
    n_coarse: int = 32
    n_fine: int = 48
    #: rays per chunk when rendering full images
    chunk: int = 4096
    #: test views evaluated (None: all)
    eval_views: int | None = None
    #: stop training after this many seconds; the learning-rate decay then follows
    #: ``max(step / steps, seconds / max_seconds)`` (wall-clock dependent: not reproducible)
    max_seconds: float | None = None
    #: what ``max_seconds`` measures: ``"wall"`` time, or ``"cpu"``: this process's CPU time over
    #: the torch thread count (an estimate of wall time on an otherwise idle machine)
    clock: str = "wall"
    progress: bool = True

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        self.prop_samples = tuple(int(s) for s in self.prop_samples)
        if self.clock not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {self.clock!r}")

    @classmethod
    def from_dict(cls, d: dict) -> NerfConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class SceneInfo:
    """What a checkpoint keeps of the scene (enough to render without the dataset)."""

    c2w: torch.Tensor
    K: torch.Tensor
    width: int
    height: int
    split: dict
    near: float
    far: float
    aabb: torch.Tensor
    format: str
    forward_facing: bool
    render_c2w: torch.Tensor | None = None
    ndc_near: float = 1.0
    rgba: bool = False
    path: str | None = None
    meta: dict = field(default_factory=dict)

    @classmethod
    def of(cls, scene: Scene, path: str | None) -> SceneInfo:
        return cls(
            c2w=scene.c2w.float().clone(),
            K=scene.K.float().clone(),
            width=scene.width,
            height=scene.height,
            split={k: v.clone() for k, v in scene.split.items()},
            near=float(scene.near),
            far=float(scene.far),
            aabb=scene.aabb.float().clone(),
            format=scene.format,
            forward_facing=bool(scene.forward_facing),
            render_c2w=None if scene.render_c2w is None else scene.render_c2w.float().clone(),
            ndc_near=float(scene.meta.get("ndc_near", 1.0)) if isinstance(scene.meta, dict) else 1.0,
            rgba=scene.images.shape[-1] == 4,
            path=path,
        )


def load_scene(path: str | Path, **options) -> Scene:
    """Loads a dataset for training: Blender scenes keep their alpha (background augmentation)."""
    from raysplat.datasets import detect_format, load

    fmt = options.pop("format", None) or detect_format(path)
    if fmt == "blender":
        options.setdefault("background", "none")
    return load(path, format=fmt, **options)


def _lr_factor(step: int, warmup: int, progress: float) -> float:
    """Linear warm-up from 1 % over ``warmup`` steps, then x0.33 at 50 / 75 / 90 % ``progress``
    (nerfacc's schedule)."""
    f = 0.01 + 0.99 * min(step / warmup, 1.0) if warmup > 0 else 1.0
    for m in (0.5, 0.75, 0.9):
        if progress >= m:
            f *= 0.33
    return f


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """OpenGL camera-to-world [3, 4] at ``eye`` looking at ``target``."""
    fwd = F.normalize(target - eye, dim=0)
    right = F.normalize(torch.linalg.cross(fwd, up), dim=0)
    true_up = torch.linalg.cross(right, fwd)
    return torch.stack([right, true_up, -fwd, eye], 1)


class Trainer:
    """Trains a NeRF on ``scene`` (a :class:`~raysplat.datasets.Scene` or a dataset path).

    Example::

        trainer = raysplat.nerf.Trainer("data/lego", raysplat.nerf.NerfConfig(steps=2000))
        trainer.train()
        print(trainer.evaluate())
        trainer.save_checkpoint("out/ckpt.pt")
    """

    def __init__(self, scene: Scene | str | Path | None, config: NerfConfig | None = None, *, info=None):
        self.config = cfg = config or NerfConfig()
        self.device = torch.device(cfg.device)
        path = None
        if isinstance(scene, (str, Path)):
            path = str(Path(scene).resolve())
            scene = load_scene(scene)
        self.scene = scene
        self.info: SceneInfo = info if info is not None else SceneInfo.of(scene, path)
        inf = self.info
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator(self.device).manual_seed(cfg.seed)
        init_gen = torch.Generator().manual_seed(cfg.seed)
        if inf.forward_facing:
            aabb, contraction, near, far, spacing = NDC_AABB, None, 0.0, 1.0, "linear"
        elif inf.format == "blender":
            aabb, contraction, near, far, spacing = inf.aabb.tolist(), None, inf.near, inf.far, "linear"
        else:  # unbounded real capture: contract space beyond the content box
            aabb, contraction = inf.aabb.tolist(), "linf"
            near, far, spacing = max(inf.near * 0.5, 1e-2), 1e3, "lindisp"
        self.near, self.far = near, far
        self.field = RadianceField(
            aabb,
            contraction,
            n_levels=cfg.n_levels,
            log2_table=cfg.log2_table,
            max_res=cfg.max_res,
            hidden=cfg.hidden,
            generator=init_gen,
        )
        if cfg.sampler == "occgrid":
            levels = 1 if contraction is None else 4
            if contraction is not None:
                far = math.inf
            self.sampler = OccGridSampler(
                aabb,
                resolution=cfg.grid_resolution,
                levels=levels,
                render_step_size=cfg.render_step_size,
                cone_angle=0.0 if contraction is None else 0.004,
                alpha_thre=0.0 if contraction is None else 1e-2,
            )
            self.far = 1e10 if contraction is not None else self.far
        elif cfg.sampler == "proposal":
            self.sampler = ProposalSampler(
                aabb,
                contraction,
                cfg.prop_samples,
                cfg.num_samples,
                "lindisp" if spacing == "lindisp" else "uniform",
                generator=init_gen,
            )
        else:
            self.sampler = HierarchicalSampler(
                aabb,
                contraction,
                cfg.n_coarse,
                cfg.n_fine,
                "disparity" if spacing == "lindisp" else "linear",
                generator=init_gen,
            )
        self.field.to(self.device)
        self.sampler.to(self.device)
        grids = [p for n, p in self.named_parameters() if n.endswith("grid.table")]
        others = [p for n, p in self.named_parameters() if not n.endswith("grid.table")]
        self.optimizer = torch.optim.Adam(
            [{"params": grids}, {"params": others, "weight_decay": cfg.weight_decay}], lr=cfg.lr, eps=1e-15
        )
        self.step = 0
        self.batch_rays = cfg.batch_rays
        self.train_seconds = 0.0
        self.cpu_seconds = 0.0
        self.stats = {"rays": 0, "samples": 0}
        self._train_data = None

    def elapsed(self) -> float:
        """Training time so far on ``config.clock``."""
        if self.config.clock == "cpu":
            return self.cpu_seconds / max(torch.get_num_threads(), 1)
        return self.train_seconds

    def named_parameters(self):
        yield from (("field." + n, p) for n, p in self.field.named_parameters())
        yield from (("sampler." + n, p) for n, p in self.sampler.named_parameters())

    # ------------------------------------------------------------------ rays
    def make_rays(self, c2w: torch.Tensor, K: torch.Tensor, pixels: torch.Tensor | None = None) -> Rays:
        """Rays of cameras ``c2w`` [C, 3, 4] at flat ``pixels`` (all pixels when None)."""
        inf = self.info
        o, d = rs.generate_rays(c2w.to(self.device), K.to(self.device), inf.width, inf.height, pixels=pixels)
        o, d = o.reshape(-1, 3), d.reshape(-1, 3)
        if inf.forward_facing:
            k0 = K.reshape(-1, 3, 3)[0]
            on, dn = rs.ndc_rays(o, d, k0, inf.width, inf.height, near=inf.ndc_near)
            return Rays(on, dn, d, self.near, self.far)
        return Rays(o, d, d, self.near, self.far)

    def _training_set(self):
        if self._train_data is None:
            if self.scene is None:
                raise ValueError("this trainer has no scene data (load the checkpoint with a scene to train)")
            idx = self.scene.indices("train")
            imgs = self.scene.images[idx].to(self.device).float()
            self._train_data = (self.info.c2w[idx], self.info.K[idx], imgs.reshape(-1, imgs.shape[-1]))
        return self._train_data

    def eval_background(self) -> torch.Tensor | None:
        """White for object scenes (Blender), none (black) for captures."""
        if self.info.format == "blender" or self.info.rgba:
            return torch.ones(3, device=self.device)
        return None

    # ------------------------------------------------------------------ training
    def train_step(self) -> dict:
        """One optimisation step on a random batch of rays from all training images."""
        cfg, g = self.config, self.gen
        c2w, K, pix = self._training_set()
        self.field.train()
        progress = self.step / max(cfg.steps, 1)
        if cfg.max_seconds:
            progress = max(progress, self.elapsed() / cfg.max_seconds)
        factor = _lr_factor(self.step, cfg.warmup_steps, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * factor
        self.sampler.update(self.step, self.field, generator=g)
        n_rays = self.batch_rays
        idx = torch.randint(0, pix.shape[0], (n_rays,), generator=g, device=self.device)
        rays = self.make_rays(c2w, K, idx)
        target = pix[idx]
        if target.shape[-1] == 4:  # background augmentation: a random colour per ray
            bkgd = torch.rand((n_rays, 3), generator=g, device=self.device)
            target = target[:, :3] * target[:, 3:] + bkgd * (1.0 - target[:, 3:])
        else:
            bkgd = self.eval_background()
        out = self.sampler.render(self.field, rays, bkgd, train=True, generator=g, step=self.step)
        mse = F.mse_loss(out.rgb, target)
        loss = mse
        for aux in out.aux_rgb:
            loss = loss + F.mse_loss(aux, target)
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        self.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            self.optimizer.step()
        self.step += 1
        self.stats["rays"] += n_rays
        self.stats["samples"] += out.n_samples
        if isinstance(self.sampler, OccGridSampler):  # nerfacc's dynamic batch size
            spr = max(out.n_samples, 1) / n_rays
            self.batch_rays = int(min(max(cfg.target_samples / spr, 256), cfg.max_batch_rays))
        return {
            "loss": float(loss.detach()),
            "mse": float(mse.detach()),
            "psnr": -10 * math.log10(max(float(mse.detach()), 1e-10)),
        }

    def train(self, steps: int | None = None, callback=None, until_seconds: float | None = None) -> dict:
        """Trains until step ``steps`` (default ``config.steps``), ``config.max_seconds`` or
        ``until_seconds`` of training time; returns the last step's stats."""
        steps = self.config.steps if steps is None else steps
        last: dict = {}
        bar = None
        if self.config.progress:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=self.step, desc=f"nerf/{self.config.sampler}", unit="step")
        t0, c0 = time.perf_counter(), time.process_time()
        base, cbase = self.train_seconds, self.cpu_seconds
        limits = [x for x in (self.config.max_seconds, until_seconds) if x]
        limit = min(limits) if limits else None
        while self.step < steps and not (limit and self.elapsed() >= limit):
            last = self.train_step()
            self.train_seconds = base + time.perf_counter() - t0
            self.cpu_seconds = cbase + time.process_time() - c0
            if bar is not None:
                bar.update(1)
                if self.step % 10 == 0 or self.step == steps:
                    bar.set_postfix(
                        loss=f"{last['loss']:.4f}", psnr=f"{last['psnr']:.2f}", rays=self.batch_rays
                    )
            if callback is not None:
                callback(self, last)
        if bar is not None:
            bar.close()
        return last

    # ------------------------------------------------------------------ rendering
    @torch.no_grad()
    def render_rays(self, rays: Rays, bkgd=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Renders rays in chunks of ``config.chunk`` (bounded memory): rgb, opacity, depth, samples."""
        self.field.eval()
        outs, n_samples = [], 0
        for s in range(0, len(rays), self.config.chunk):
            sl = slice(s, s + self.config.chunk)
            sub = Rays(rays.origins[sl], rays.directions[sl], rays.viewdirs[sl], rays.near, rays.far)
            b = bkgd if bkgd is None or bkgd.dim() == 1 else bkgd[sl]
            o = self.sampler.render(self.field, sub, b, train=False)
            outs.append((o.rgb, o.opacity, o.depth))
            n_samples += o.n_samples
        rgb, acc, depth = (torch.cat(x) for x in zip(*outs, strict=True))
        return rgb, acc, depth, n_samples

    @torch.no_grad()
    def render_image(self, c2w: torch.Tensor, K: torch.Tensor | None = None) -> dict:
        """Renders one camera [3, 4]: ``rgb`` [H, W, 3], ``opacity``/``depth`` [H, W]."""
        inf = self.info
        K = inf.K[0] if K is None else K
        rays = self.make_rays(c2w.reshape(1, 3, 4), K.reshape(1, 3, 3))
        rgb, acc, depth, n = self.render_rays(rays, self.eval_background())
        hw = (inf.height, inf.width)
        return {
            "rgb": rgb.reshape(*hw, 3).cpu(),
            "opacity": acc.reshape(hw).cpu(),
            "depth": depth.reshape(hw).cpu(),
            "samples_per_ray": n / max(len(rays), 1),
        }

    def _gt(self, i: int) -> torch.Tensor:
        img = self.scene.images[i].float()
        if img.shape[-1] == 4:
            bk = self.eval_background()
            bk = torch.ones(3) if bk is None else bk.cpu()
            img = img[..., :3] * img[..., 3:] + bk * (1.0 - img[..., 3:])
        return img

    @torch.no_grad()
    def evaluate(self, split: str = "test", out_dir: str | Path | None = None) -> dict:
        """PSNR / SSIM on ``split`` (white background for RGBA data); writes PNGs
        (render | ground truth) to ``out_dir`` when given."""
        if self.scene is None:
            raise ValueError("evaluation needs the scene's images")
        idx = self.scene.indices(split).tolist()
        if self.config.eval_views is not None:
            idx = idx[: self.config.eval_views]
        ps, ss, spr = [], [], []
        t0 = time.perf_counter()
        for j, i in enumerate(idx):
            r = self.render_image(self.info.c2w[i], self.info.K[i])
            gt = self._gt(i)
            ps.append(psnr(r["rgb"], gt))
            ss.append(ssim(r["rgb"].clamp(0, 1), gt))
            spr.append(r["samples_per_ray"])
            if out_dir is not None:
                _save_png(Path(out_dir) / f"{split}_{j:03d}.png", torch.cat([r["rgb"], gt], 1))
        base = [psnr(self._gt(i).mean((0, 1), keepdim=True).expand_as(self._gt(i)), self._gt(i)) for i in idx]
        return {
            "split": split,
            "views": len(idx),
            "psnr": sum(ps) / len(ps),
            "ssim": sum(ss) / len(ss),
            "mean_color_psnr": sum(base) / len(base),
            "eval_samples_per_ray": sum(spr) / len(spr),
            "render_seconds": time.perf_counter() - t0,
            "per_view_psnr": ps,
        }

    def camera_path(self, kind: str = "turntable", frames: int = 60) -> torch.Tensor:
        """[frames, 3, 4] cameras: ``turntable`` (orbit at the training cameras' mean distance and
        elevation), ``spiral`` (the dataset's render path, e.g. LLFF's spiral, else an orbit with
        oscillating elevation) or ``test`` (the test cameras)."""
        inf = self.info
        if kind == "test":
            return inf.c2w[inf.split["test"]]
        if kind == "spiral" and inf.render_c2w is not None:
            return inf.render_c2w
        if kind not in ("turntable", "spiral"):
            raise ValueError(f"path must be 'turntable', 'spiral' or 'test', got {kind!r}")
        train = inf.c2w[inf.split.get("train", torch.arange(inf.c2w.shape[0]))]
        up = F.normalize(train[:, :, 1].mean(0), dim=0)
        center = inf.aabb.reshape(2, 3).mean(0) if inf.format != "blender" else torch.zeros(3)
        if inf.forward_facing:  # orbit in front of the scene: small circle of the mean camera
            mean = train.mean(0)
            out = []
            for k in range(frames):
                a = 2 * math.pi * k / frames
                shift = 0.3 * (math.cos(a) * mean[:, 0] + math.sin(a) * mean[:, 1])
                c = mean.clone()
                c[:, 3] = mean[:, 3] + shift
                out.append(c)
            return torch.stack(out)
        rel = train[:, :, 3] - center
        radius = float(rel.norm(dim=-1).mean())
        elev = float(torch.asin((F.normalize(rel, dim=-1) @ up).clamp(-1, 1)).mean())
        e1 = F.normalize(
            torch.linalg.cross(
                up, torch.tensor([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
            ),
            dim=0,
        )
        e2 = torch.linalg.cross(up, e1)
        cams = []
        for k in range(frames):
            a = 2 * math.pi * k / frames
            el = elev + (0.25 * math.sin(2 * a) if kind == "spiral" else 0.0)
            eye = center + radius * (math.cos(el) * (math.cos(a) * e1 + math.sin(a) * e2) + math.sin(el) * up)
            cams.append(look_at(eye, center, up))
        return torch.stack(cams)

    @torch.no_grad()
    def render_path(self, kind: str, out_dir: str | Path, frames: int = 60, fps: int = 20) -> Path:
        """Renders a camera path to ``out_dir``: one PNG per frame and ``<kind>.gif``; returns the GIF."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        imgs = []
        for j, c in enumerate(self.camera_path(kind, frames)):
            rgb = self.render_image(c)["rgb"]
            img = Image.fromarray((rgb.clamp(0, 1) * 255 + 0.5).byte().numpy())
            img.save(out / f"{kind}_{j:03d}.png")
            imgs.append(img)
        gif = out / f"{kind}.gif"
        imgs[0].save(gif, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
        return gif

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "format": "raysplat-nerf-1",
            "config": asdict(self.config),
            "scene": asdict(self.info),
            "field": self.field.state_dict(),
            "sampler": self.sampler.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "batch_rays": self.batch_rays,
            "train_seconds": self.train_seconds,
            "cpu_seconds": self.cpu_seconds,
            "stats": dict(self.stats),
            "rng": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        """Saves model, optimizer, occupancy grid / proposal nets, step and RNG states."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

    @classmethod
    def load_checkpoint(
        cls, path: str | Path, scene: Scene | str | Path | None = None, **overrides
    ) -> Trainer:
        """Restores a trainer from ``save_checkpoint`` (training continues bit-identically on CPU).

        ``scene`` supplies the images (needed to train or evaluate; default: the checkpoint's
        dataset path when it still exists); ``overrides`` replace config values (e.g. ``steps``).
        """
        ck = torch.load(Path(path), map_location="cpu", weights_only=False)
        if not isinstance(ck, dict) or ck.get("format") != "raysplat-nerf-1":
            raise ValueError(f"{path}: not a raysplat NeRF checkpoint")
        cfg = NerfConfig.from_dict({**ck["config"], **overrides})
        info = SceneInfo(**ck["scene"])
        if scene is None and info.path is not None and Path(info.path).exists():
            scene = info.path
        if isinstance(scene, (str, Path)):
            scene = load_scene(scene)
        t = cls(scene, cfg, info=info)
        t.field.load_state_dict(ck["field"])
        t.sampler.load_state_dict(ck["sampler"])
        t.optimizer.load_state_dict(ck["optimizer"])
        t.step, t.batch_rays = int(ck["step"]), int(ck["batch_rays"])
        t.train_seconds, t.stats = float(ck["train_seconds"]), dict(ck["stats"])
        t.cpu_seconds = float(ck.get("cpu_seconds", 0.0))
        t.gen.set_state(ck["rng"])
        torch.set_rng_state(ck["torch_rng"])
        return t

    # ------------------------------------------------------------------ all together
    def run(self, out_dir: str | Path, video: str | None = "turntable", frames: int = 40) -> dict:
        """Trains, saves ``ckpt.pt``, evaluates the test views (``renders/test_*.png``), renders a
        video path (``renders/<video>.gif``) and writes ``metrics.json``; returns the metrics."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.train()
        self.save_checkpoint(out / "ckpt.pt")
        ev = self.evaluate("test", out / "renders")
        m = {
            "sampler": self.config.sampler,
            "scene": self.info.path or self.info.format,
            "steps": self.step,
            "train_seconds": round(self.train_seconds, 2),
            "train_cpu_seconds": round(self.cpu_seconds, 2),
            "test_psnr": round(ev["psnr"], 3),
            "test_ssim": round(ev["ssim"], 4),
            "mean_color_psnr": round(ev["mean_color_psnr"], 3),
            "train_samples_per_ray": round(self.stats["samples"] / max(self.stats["rays"], 1), 2),
            "eval_samples_per_ray": round(ev["eval_samples_per_ray"], 2),
            "train_rays_per_second": round(self.stats["rays"] / max(self.train_seconds, 1e-9), 1),
            "threads": torch.get_num_threads(),
            "per_view_psnr": [round(p, 3) for p in ev["per_view_psnr"]],
            "config": asdict(self.config),
        }
        if video:
            m["video"] = str(self.render_path(video, out / "renders", frames=frames))
        (out / "metrics.json").write_text(json.dumps(m, indent=2))
        return m


def _save_png(path: Path, rgb: torch.Tensor) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rgb.clamp(0, 1) * 255 + 0.5).byte().cpu().numpy()).save(path)
