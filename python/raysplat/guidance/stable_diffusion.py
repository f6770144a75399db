"""Stable Diffusion as a :class:`~raysplat.guidance.base.DiffusionPrior` (diffusers), and a tiny
randomly initialised one written in the same on-disk layout for tests and CPU demos.

Latent diffusion (Rombach et al. 2022): ``z = vae.encode(2x - 1).mean * scaling_factor``; the
UNet predicts ε or v (read from ``scheduler/scheduler_config.json``'s ``prediction_type``; v is
converted with ε = sqrt(ᾱ_t) v + sqrt(1 - ᾱ_t) z_t); ᾱ_t comes from the scheduler's β schedule.
Text conditioning is the CLIP text encoder's last hidden state on 77 padded tokens, as in
diffusers' ``StableDiffusionPipeline`` and threestudio's ``stable_diffusion_guidance.py``.

Geometry conditioning: an optional depth ControlNet (Zhang et al. 2023), loaded from
``DIR/controlnet/`` when present or from ``controlnet=PATH``. Then ``accepts_control`` is true and
``predict_noise(..., control=depth)`` takes ``[B, 3, H, W]`` depth images in [0, 1] at the pixel
resolution of the latents (``H = h * vae_scale``); the ControlNet's down / mid residuals
(times ``controlnet_scale``) are added to the UNet's skip connections, as in diffusers'
``StableDiffusionControlNetPipeline``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from raysplat._extras import require
from raysplat.guidance.base import DiffusionPrior, check_images, v_to_eps

__all__ = ["StableDiffusionPrior", "tiny_stable_diffusion"]

_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def _check_layout(path: Path) -> None:
    if not path.is_dir():
        raise ValueError(f"path {str(path)!r} is not a directory (nor a cached hub id)")
    missing = [p for p in ("model_index.json", *_PARTS) if not (path / p).exists()]
    if missing:
        raise ValueError(
            f"path {str(path)!r} is not a diffusers Stable Diffusion layout: missing {', '.join(missing)}"
        )


class StableDiffusionPrior(DiffusionPrior):
    """A Stable Diffusion checkpoint (SD 1.x / 2.x, ε- or v-prediction) through diffusers.

    Build it with :meth:`from_pretrained`. ``unet``, ``vae``, ``text_encoder``, ``tokenizer``
    and ``prediction_type`` are public attributes; all modules are frozen (``requires_grad``
    off) — VSD adds a LoRA to ``unet`` itself (:mod:`raysplat.distill`).
    """

    def __init__(
        self,
        unet,
        vae,
        text_encoder,
        tokenizer,
        alphas_cumprod,
        prediction_type="epsilon",
        controlnet=None,
        controlnet_scale: float = 1.0,
    ):
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.controlnet, self.controlnet_scale = controlnet, float(controlnet_scale)
        #: a depth ControlNet is attached: ``predict_noise`` accepts ``control=``
        self.accepts_control = controlnet is not None
        for m in (unet, vae, text_encoder, controlnet):
            if m is not None:
                m.requires_grad_(False)
                m.eval()
        self.prediction_type = prediction_type
        self.dtype = next(unet.parameters()).dtype
        self.alphas_cumprod = alphas_cumprod.to(device=next(unet.parameters()).device, dtype=torch.float32)
        self.scaling_factor = float(getattr(vae.config, "scaling_factor", 0.18215))
        #: VAE downsampling factor (8 for SD)
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        attention_slicing: bool = False,
        local_files_only: bool | None = None,
        controlnet: str | os.PathLike | None = None,
        controlnet_scale: float = 1.0,
    ) -> StableDiffusionPrior:
        """Loads ``path_or_id`` (a local diffusers directory or a hub id in the local cache /
        reachable hub). ``dtype=torch.float16`` halves memory on GPUs; ``attention_slicing``
        trades speed for memory. A depth ControlNet is loaded from ``controlnet`` (a diffusers
        ControlNet directory) or else from ``path_or_id/controlnet/`` when that exists. Raises
        ``ValueError`` naming the problem when a local directory is not a Stable Diffusion
        layout or ``controlnet`` is not a ControlNet."""
        diffusers = require("diffusers")
        transformers = require("transformers")
        path = Path(path_or_id)
        local = path.exists() or str(path_or_id).startswith((".", "/", "~"))
        if local:
            path = path.expanduser()
            _check_layout(path)
            src, kw = str(path), {}
        else:
            src, kw = str(path_or_id), {"local_files_only": bool(local_files_only)}
        try:
            unet = diffusers.UNet2DConditionModel.from_pretrained(
                src, subfolder="unet", torch_dtype=dtype, **kw
            )
            vae = diffusers.AutoencoderKL.from_pretrained(src, subfolder="vae", torch_dtype=dtype, **kw)
            text_encoder = transformers.CLIPTextModel.from_pretrained(
                src, subfolder="text_encoder", torch_dtype=dtype, **kw
            )
            tokenizer = transformers.CLIPTokenizer.from_pretrained(src, subfolder="tokenizer", **kw)
            scheduler = diffusers.DDPMScheduler.from_pretrained(src, subfolder="scheduler", **kw)
        except (OSError, ValueError, json.JSONDecodeError) as e:
            first = next(iter(f"{e}".strip().splitlines()), type(e).__name__)  # one-line message
            raise ValueError(
                f"path_or_id {str(path_or_id)!r}: cannot load Stable Diffusion ({first})"
            ) from None
        cn_src = None
        if controlnet is not None:
            cn_src = Path(controlnet).expanduser()
            if not (cn_src / "config.json").is_file():
                raise ValueError(f"controlnet {str(controlnet)!r} is not a diffusers ControlNet directory")
        elif local and (path / "controlnet" / "config.json").is_file():
            cn_src = path / "controlnet"
        cn = None
        if cn_src is not None:
            try:
                cn = diffusers.ControlNetModel.from_pretrained(str(cn_src), torch_dtype=dtype)
            except (OSError, ValueError, json.JSONDecodeError) as e:
                first = next(iter(f"{e}".strip().splitlines()), type(e).__name__)
                raise ValueError(f"controlnet {str(cn_src)!r}: cannot load ({first})") from None
        if attention_slicing:
            unet.set_attention_slice("auto")
        device = torch.device(device)
        unet, vae, text_encoder = unet.to(device), vae.to(device), text_encoder.to(device)
        cn = cn.to(device) if cn is not None else None
        prediction = scheduler.config.get("prediction_type", "epsilon")
        return cls(
            unet, vae, text_encoder, tokenizer, scheduler.alphas_cumprod, prediction, cn, controlnet_scale
        )

    # ------------------------------------------------------------------ DiffusionPrior

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        check_images("images", images)
        if images.shape[-1] % self.vae_scale or images.shape[-2] % self.vae_scale:
            raise ValueError(
                f"images height and width must be multiples of {self.vae_scale}, "
                f"got {tuple(images.shape[-2:])}"
            )
        x = (2 * images - 1).to(self.dtype)
        return self.vae.encode(x).latent_dist.mean * self.scaling_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.vae.decode((z / self.scaling_factor).to(self.dtype)).sample
        return ((x.float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be a list of strings")
        device = self.alphas_cumprod.device
        tok = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return self.text_encoder(tok.input_ids.to(device))[0]

    def unet_eps(self, z_t, t, cond, **unet_kwargs) -> torch.Tensor:
        """The UNet's output converted to ε (float32)."""
        out = self.unet(
            z_t.to(self.dtype), t, encoder_hidden_states=cond.to(self.dtype), **unet_kwargs
        ).sample
        out = out.float()
        if self.prediction_type == "v_prediction":
            out = v_to_eps(self.alphas_cumprod, out, z_t.float(), t)
        return out

    def _control_residuals(self, z_t, t, cond, control) -> dict:
        if control is None:
            return {}
        if self.controlnet is None:
            raise ValueError("control: this prior has no ControlNet (accepts_control is False)")
        want = (z_t.shape[0], 3, z_t.shape[2] * self.vae_scale, z_t.shape[3] * self.vae_scale)
        if not isinstance(control, torch.Tensor) or tuple(control.shape) != want:
            got = tuple(control.shape) if isinstance(control, torch.Tensor) else type(control).__name__
            raise ValueError(f"control must be a tensor of shape {list(want)}, got {got}")
        down, mid = self.controlnet(
            z_t.to(self.dtype),
            t,
            encoder_hidden_states=cond.to(self.dtype),
            controlnet_cond=control.to(z_t.device, self.dtype),
            conditioning_scale=self.controlnet_scale,
            return_dict=False,
        )
        return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}

    def predict_noise(self, z_t, t, cond, c2w=None, K=None, control=None) -> torch.Tensor:
        if z_t.ndim != 4 or z_t.shape[1] != self.unet.config.in_channels:
            raise ValueError(
                f"z_t must have shape [B, {self.unet.config.in_channels}, h, w], got {tuple(z_t.shape)}"
            )
        t = torch.as_tensor(t, device=z_t.device).long().reshape(-1).expand(z_t.shape[0])
        extra = self._control_residuals(z_t, t, cond, control)
        adapters = getattr(self.unet, "_hf_peft_config_loaded", False)
        if adapters:  # the pretrained score: LoRA (VSD's ε_φ) off
            self.unet.disable_adapters()
        try:
            return self.unet_eps(z_t, t, cond, **extra)
        finally:
            if adapters:
                self.unet.enable_adapters()


# ---------------------------------------------------------------------- the tiny random model


def _char_tokenizer_files(folder: Path) -> None:
    chars = [chr(c) for c in range(33, 127)]
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def tiny_stable_diffusion(
    out_dir: str | os.PathLike, seed: int = 0, prediction_type: str = "epsilon", controlnet: bool = True
) -> Path:
    """Writes a randomly initialised, few-MB Stable Diffusion to ``out_dir`` in the diffusers
    layout (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
    ``scheduler/``) and returns the path. The VAE has 4 blocks (8x downsampling, as SD), the
    UNet 2 blocks with cross-attention, the CLIP text model 2 layers of width 32 on a
    character-level vocabulary; the scheduler is SD's scaled-linear DDPM schedule. It loads with
    :meth:`StableDiffusionPrior.from_pretrained` (and with diffusers' own pipeline). With
    ``controlnet`` (the default) a tiny random depth ControlNet with the UNet's layout is written
    to ``out_dir/controlnet/`` (its zero-initialised output convolutions are randomised too, so
    the control image changes the prediction); ``from_pretrained`` then attaches it."""
    diffusers = require("diffusers")
    transformers = require("transformers")
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction', got {prediction_type!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = out / "tokenizer"
    _char_tokenizer_files(tok_dir)
    tokenizer = transformers.CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"))
    tokenizer.model_max_length = 77
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = diffusers.UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        vae = diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 32, 32),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=64,
        )
        text_config = transformers.CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
        text_encoder = transformers.CLIPTextModel(text_config)
    scheduler = diffusers.DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out))
    if controlnet:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            cn = diffusers.ControlNetModel.from_unet(
                unet, conditioning_embedding_out_channels=(8, 16, 32, 32)
            )
            zero_convs = [
                *cn.controlnet_down_blocks,
                cn.controlnet_mid_block,
                cn.controlnet_cond_embedding.conv_out,
            ]
            for conv in zero_convs:
                torch.nn.init.normal_(conv.weight, std=0.02)
                torch.nn.init.normal_(conv.bias, std=0.02)
        cn.save_pretrained(str(out / "controlnet"))
    return out
