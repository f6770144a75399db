"""Attention guidance across views: self-attention key/value sharing through custom diffusers
attention processors.

Layers: every *self*-attention (``attn1``) of every transformer block of the UNet (down, mid and
up blocks; for SD 1.x / 2.x that is 16 layers, for the tiny test UNet 2). Cross-attention
(``attn2``, the text) is untouched.

Mixing rule (ours; TexGen's paper does not give one): while view ``i`` is denoised at a step,
each shared layer computes

    out = (1 - λ) · Attn(Q_i, K_i, V_i) + λ · Attn(Q_i, [K_i; K_<i], [V_i; V_<i])

where ``K_<i`` / ``V_<i`` are the keys / values projected from the layer inputs recorded for the
views already denoised at this step (the ``max_refs`` most recent ones, default all), and the
concatenation is along the token axis ("extended" self-attention, as in Tune-A-Video / SyncMVD's
reference attention). λ = 0 is the plain UNet; λ = 1 attends to all views jointly. The bank is
cleared at every step, so a view only sees views denoised at the same noise level. Each batch
item (unconditional / conditional half of classifier-free guidance) attends to the same half of
the references.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

__all__ = ["KVBank", "SharedSelfAttnProcessor", "share_views", "shared_attention", "supports_view_sharing"]


class KVBank:
    """The recorded layer inputs of the views denoised so far at the current step."""

    def __init__(self, weight: float = 0.5, max_refs: int | None = None):
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"kv_share must be in [0, 1], got {weight}")
        self.weight, self.max_refs = float(weight), max_refs
        self.store: dict[str, list[torch.Tensor]] = {}
        self.recording = True
        #: index (in recording order) of a view to leave out of :meth:`refs`: the view itself,
        #: when the resampling re-estimates it against all the views of the step
        self.exclude: int | None = None

    def clear(self) -> None:
        self.store = {}

    def refs(self, name: str, batch: int) -> list[torch.Tensor]:
        got = [r for j, r in enumerate(self.store.get(name, [])) if r.shape[0] == batch and j != self.exclude]
        return got if self.max_refs is None else got[-self.max_refs :]


class SharedSelfAttnProcessor:
    """AttnProcessor2_0 for a self-attention layer, with the extended attention above."""

    def __init__(self, bank: KVBank, name: str):
        self.bank, self.name = bank, name

    def _attend(self, attn, query_states, kv_states, batch):
        q = attn.to_q(query_states)
        k, v = attn.to_k(kv_states), attn.to_v(kv_states)
        head = k.shape[-1] // attn.heads
        q = q.view(batch, -1, attn.heads, head).transpose(1, 2)
        k = k.view(batch, -1, attn.heads, head).transpose(1, 2)
        v = v.view(batch, -1, attn.heads, head).transpose(1, 2)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        return out.transpose(1, 2).reshape(batch, -1, attn.heads * head).to(q.dtype)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        ndim = hidden_states.ndim
        if ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        out = self._attend(attn, hidden_states, hidden_states, batch)
        refs = self.bank.refs(self.name, batch)
        lam = self.bank.weight
        if refs and lam > 0:
            ext = self._attend(attn, hidden_states, torch.cat([hidden_states, *refs], 1), batch)
            out = (1 - lam) * out + lam * ext
        if self.bank.recording:
            self.bank.store.setdefault(self.name, []).append(hidden_states.detach())
        out = attn.to_out[1](attn.to_out[0](out))
        if ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@contextlib.contextmanager
def shared_attention(unet, bank: KVBank):
    """Installs :class:`SharedSelfAttnProcessor` on every ``attn1`` of ``unet`` (restoring the
    previous processors afterwards); yields the names of the shared layers."""
    previous = dict(unet.attn_processors)
    procs = {}
    shared = []
    for name, proc in previous.items():
        if name.endswith("attn1.processor"):
            procs[name] = SharedSelfAttnProcessor(bank, name)
            shared.append(name)
        else:
            procs[name] = proc
    unet.set_attn_processor(procs)
    try:
        yield shared
    finally:
        unet.set_attn_processor(previous)


def supports_view_sharing(prior) -> bool:
    """Whether ``prior`` can share information across views: a diffusers UNet (``prior.unet``,
    shared self-attention) or a prior with its own ``shared_views(bank)`` context manager (e.g.
    :class:`raysplat.guidance.TextureMixturePrior`)."""
    return callable(getattr(prior, "shared_views", None)) or hasattr(prior, "unet")


def share_views(prior, bank: KVBank):
    """The context that shares the views denoised so far at a step with the next one: the
    prior's own ``shared_views(bank)`` when it defines one, else :func:`shared_attention` on its
    UNet."""
    own = getattr(prior, "shared_views", None)
    return own(bank) if callable(own) else shared_attention(prior.unet, bank)
