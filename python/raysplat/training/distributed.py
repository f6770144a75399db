"""Data-parallel training on ``torch.distributed`` (``torchrun --nproc_per_node N -m raysplat ...``).

Every rank holds the whole model and draws the same *shared* random choices (which rays or which
cameras make the step's global batch, backgrounds, grid updates, densification noise) from the
same seeded generator; each rank processes its :func:`shard` of the global batch, weights its
loss by its share of the batch, and :func:`all_reduce_grads` sums the gradients (one flat
buffer), so every rank takes the same optimizer step as a single process on the concatenated
batch (to float rounding). Parameters whose gradient is ``None`` on every rank stay ``None``
(Adam skips them exactly as it would in one process).

Only rank 0 writes (checkpoints, ``metrics.json``, images, progress); every rank reads a
checkpoint to resume. The process group is created from torchrun's environment by
:func:`init_from_env` (NCCL for CUDA devices, gloo on CPU), or by the caller beforehand: the
trainers only check :func:`world_size`.

Why not ``DistributedDataParallel``: the trainers' models are not one ``nn.Module`` whose
``forward`` is the step (a NeRF sampler calls the field several times; 3DGS changes its
parameter shapes when it densifies), so the gradients are all-reduced explicitly, once per step,
after ``backward``.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist

#: environment variables torchrun sets for every worker
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Ranks in the default process group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """Whether this process writes outputs (rank 0, or no process group)."""
    return rank() == 0


def local_rank() -> int:
    """The rank on this machine (torchrun's ``LOCAL_RANK``; else the global rank)."""
    return int(os.environ.get("LOCAL_RANK", rank()))


def backend_for(device: str | torch.device) -> str:
    """``"nccl"`` for CUDA devices (when built with NCCL), ``"gloo"`` otherwise."""
    dev = torch.device(device)
    if dev.type == "cuda" and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def launched_by_torchrun() -> bool:
    """Whether torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...) is set."""
    return all(k in os.environ for k in TORCHRUN_ENV)


def local_device(device: str) -> str:
    """The device this rank trains on: ``"cuda"`` without an index becomes ``cuda:<local rank>``
    under a process group (one GPU per process); anything else is unchanged."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and is_distributed():
        n = max(torch.cuda.device_count(), 1)
        return f"cuda:{local_rank() % n}"
    return device


def init_from_env(device: str = "cpu") -> bool:
    """Initialises the default process group from torchrun's environment when the process was
    launched by torchrun with ``WORLD_SIZE > 1`` and no group exists yet (backend:
    :func:`backend_for` ``device``; the CUDA device is set to ``cuda:<LOCAL_RANK>``). Returns
    whether this call created the group."""
    if not dist.is_available() or dist.is_initialized() or not launched_by_torchrun():
        return False
    if int(os.environ["WORLD_SIZE"]) < 2:
        return False
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]) % max(torch.cuda.device_count(), 1))
    dist.init_process_group(backend=backend)
    return True


def shutdown(created: bool) -> None:
    """Destroys the process group when :func:`init_from_env` created it, after a barrier: a rank
    that tears its gloo connections down while a peer is still finishing can make the peer's
    transport thread abort the process at exit (SIGABRT, "terminate called without an active
    exception")."""
    if created and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def finish_worker(created: bool, rc: int = 0) -> int:
    """Ends a torchrun worker: :func:`shutdown`, then, when :func:`init_from_env` created the
    group, flushes stdout/stderr and exits the process at once with status ``rc``.

    Interpreter finalisation after a gloo group can abort the process (SIGABRT, "terminate called
    without an active exception": gloo's worker threads outlive the group), which torchrun
    reports as a failed run; call this last, after every output is written and closed. Without a
    group it only returns ``rc``."""
    shutdown(created)
    if created:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def shard(n: int, r: int | None = None, world: int | None = None) -> slice:
    """Rank ``r``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    r = rank() if r is None else r
    world = world_size() if world is None else world
    base, extra = divmod(n, world)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def check_batch(name: str, n: int) -> None:
    """A ``ValueError`` when a global batch of ``n`` cannot give every rank at least one item."""
    w = world_size()
    if n < w:
        raise ValueError(f"{name} must be >= the world size ({w}) under torch.distributed, got {n}")


def all_reduce_grads(
    params: Sequence[torch.Tensor], extra: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Sums the gradients of ``params`` over all ranks in place, in one collective (a flat
    buffer; ``None`` gradients count as zeros, and stay ``None`` only where they are ``None`` on
    every rank). ``extra`` (a 1-D float tensor, e.g. loss terms and statistics) is summed in the
    same buffer; its sum is returned. Without a process group: nothing, ``extra`` returned."""
    if not is_distributed():
        return extra
    if not params and extra is None:
        return None
    dev = params[0].device if params else extra.device
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    parts = []
    for p in params:
        g = p.grad
        parts.append(
            torch.zeros(p.numel(), device=dev, dtype=dtype) if g is None else g.detach().reshape(-1).to(dtype)
        )
    n_extra = 0 if extra is None else extra.numel()
    if extra is not None:
        parts.append(extra.detach().reshape(-1).to(dev, dtype))
    parts.append(torch.tensor([0.0 if p.grad is None else 1.0 for p in params], device=dev, dtype=dtype))
    flat = torch.cat(parts)
    dist.all_reduce(flat)
    total = sum(p.numel() for p in params)
    has_grad = (flat[total + n_extra :] > 0).tolist()  # one device sync
    off = 0
    for p, keep in zip(params, has_grad, strict=True):
        n = p.numel()
        if keep:
            g = flat[off : off + n].view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        else:
            p.grad = None
        off += n
    if extra is None:
        return None
    return flat[total : total + n_extra].to(extra.dtype)


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    """The element-wise maximum of ``x`` over all ranks (``x`` itself without a group)."""
    if not is_distributed():
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.MAX)
    return y


def broadcast_tensors(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    """Overwrites ``tensors`` (in place) with rank ``src``'s values."""
    if not is_distributed():
        return
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def run_on_main(fn, *args, **kwargs) -> Any:
    """Runs ``fn`` on rank 0 only and returns its result on every rank; an exception on rank 0
    is raised on every rank (the same exception, or a ``RuntimeError`` with its message when it
    cannot be pickled), so no rank is left waiting in a collective."""
    if not is_distributed():
        return fn(*args, **kwargs)
    result, error = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
            error = e
            try:
                pickle.dumps(e)
            except Exception:  # noqa: BLE001 - any unpicklable exception is sent as text
                error = RuntimeError(f"rank 0 failed: {type(e).__name__}: {e}")
    error, result = broadcast_object((error, result))
    if error is not None:
        raise error
    return result


def barrier() -> None:
    """Waits for every rank (nothing without a group)."""
    if is_distributed():
        dist.barrier()


def sync_clock(trainer) -> None:
    """Sets ``trainer``'s training-time counters to rank 0's, so time budgets and time-based
    schedules decide the same on every rank."""
    if not is_distributed():
        return
    dev = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([trainer.train_seconds, trainer.cpu_seconds], dtype=torch.float64, device=dev)
    dist.broadcast(t, 0)
    trainer.train_seconds, trainer.cpu_seconds = float(t[0]), float(t[1])
