"""The CUDA peers raysplat dispatches to: nerfacc and gsplat kernels for CUDA tensors.

Order on CUDA tensors (``backend("auto")``): a peer's kernel when the peer is importable and its
CUDA extension loads, else raysplat's pure-torch twin. ``backend("nerfacc")`` /
``backend("gsplat")`` force the peer (an error when it cannot load), ``backend("torch")`` the
twins. A peer that is installed but whose extension fails to build or load (no CUDA toolkit,
a stale JIT cache, a torch/CUDA mismatch) falls back to the twins with exactly one
:class:`PeerFallbackWarning` per process, never an exception; a peer that is simply not
installed falls back silently.

Which ops a peer serves (the others always run the twins on CUDA):

* nerfacc: occupancy-grid marching (``traverse_grids``), packed volume-rendering weights
  (``render_weight_from_density`` / ``render_weight_from_alpha``; ``volume_render`` composes
  them with ``accumulate_along_rays``), importance sampling (``importance_sampling``, only
  without an explicit ``generator``: nerfacc draws its own jitter) and packed scans. Only
  float32 inputs (nerfacc's kernels are float32). Dense ``[R, S]`` inputs stay on the twins:
  nerfacc itself runs them with plain ``cumsum`` / ``cumprod``. The occupancy-grid update has
  no nerfacc kernel (nerfacc's is torch code, the same algorithm as raysplat's).
* gsplat: ``rasterization``.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import torch

from raysplat import _checks as chk

PEERS = ("nerfacc", "gsplat")

#: where each peer keeps its compiled extension (``None`` there = it did not load)
_EXTENSION = {"nerfacc": "nerfacc.cuda._backend", "gsplat": "gsplat.cuda._backend"}

#: name -> (module or None, reason it is unavailable or "")
_STATE: dict[str, tuple[ModuleType | None, str]] = {}


class PeerFallbackWarning(RuntimeWarning):
    """A peer is installed but its CUDA extension did not load: the torch twins run instead."""


def _load(name: str) -> tuple[ModuleType | None, str]:
    try:
        mod = importlib.import_module(name)
    except ImportError as e:
        return None, f"not installed ({e})"
    except Exception as e:  # noqa: BLE001 - a broken install must not break raysplat
        return None, _fallback(name, f"importing it failed: {type(e).__name__}: {e}")
    try:
        ext = importlib.import_module(_EXTENSION[name])
        ok = getattr(ext, "_C", None) is not None
        why = "" if ok else "its CUDA extension is unavailable (no CUDA toolkit to build it?)"
    except Exception as e:  # noqa: BLE001 - a failed JIT build raises anything
        ok, why = False, f"its CUDA extension failed to load: {type(e).__name__}: {e}"
    if not ok:
        return None, _fallback(name, why)
    return mod, ""


def _fallback(name: str, why: str) -> str:
    """Warns (once: the result is cached) and returns the reason for :func:`status`."""
    why = f"installed, but {why}".splitlines()[0]
    msg = f"raysplat: {name} is {why}; CUDA tensors use raysplat's torch twins instead"
    warnings.warn(msg, PeerFallbackWarning, stacklevel=4)
    return why


def peer(name: str) -> ModuleType | None:
    """The peer module when it is importable and its CUDA extension loads (cached per process)."""
    chk.choice("peer", name, PEERS)
    if name not in _STATE:
        _STATE[name] = _load(name)
    return _STATE[name][0]


def status() -> dict[str, str]:
    """``{peer: "available" | why not}`` (loads each peer once)."""
    return {name: ("available" if peer(name) is not None else _STATE[name][1]) for name in PEERS}


def reset() -> None:
    """Forgets the cached load results (tests)."""
    _STATE.clear()


def on_cuda(t: torch.Tensor) -> bool:
    """Whether ``t`` lives on a CUDA device (the tests patch this to exercise dispatch on CPU)."""
    return t.device.type == "cuda"


def select(name: str, *tensors: torch.Tensor | None, float32: bool = False) -> ModuleType | None:
    """The peer to run for these tensors, or ``None`` for the twins.

    ``backend("auto")``: the peer when every tensor is on CUDA (and float32 where the peer only
    has float32 kernels) and it loads. ``backend(name)``: the peer, or a ``ValueError`` saying why
    it cannot run. Any other backend: ``None``.
    """
    mode = chk._BACKEND[0]
    if mode not in ("auto", name):
        return None
    ts = [t for t in tensors if isinstance(t, torch.Tensor)]
    fits = bool(ts) and all(on_cuda(t) for t in ts)
    if float32:
        fits = fits and all(t.dtype == torch.float32 for t in ts if t.is_floating_point())
    if not fits:
        if mode == name:
            need = "float32 CUDA tensors" if float32 else "CUDA tensors"
            raise ValueError(f"backend({name!r}) needs {need} for this op")
        return None
    mod = peer(name)
    if mod is None and mode == name:
        raise ValueError(f"backend({name!r}): {name} is {_STATE[name][1]}")
    return mod
