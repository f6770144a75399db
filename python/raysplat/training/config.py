"""The configuration base every method's ``<Method>Config`` derives from.

A config is a dataclass whose fields carry their documentation (:func:`option`), are validated
in ``__post_init__`` (subclasses add their own checks in :meth:`Config.validate`), and convert
to and from plain dicts strictly: :meth:`Config.from_dict` rejects unknown keys by name, so a
typo in a JSON file or a ``--set`` flag never passes silently. Nested configs (dataclasses
deriving from :class:`Config`) round-trip as nested dicts.

:class:`TrainingConfig` holds the fields every trainer shares: ``steps`` / ``seconds`` (the
budget; with only ``seconds`` given, steps are unbounded), ``seed``, ``device`` and ``precision``
(a method lists the precisions it supports in ``PRECISIONS``; see :mod:`raysplat.training.precision`).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar

import torch

C = TypeVar("C", bound="Config")


def option(default: Any = MISSING, doc: str = "", *, factory: Any = MISSING) -> Any:
    """A dataclass field with its documentation (``doc``); ``factory`` for mutable defaults."""
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


def check_device(device: str) -> torch.device:
    """``device`` as a :class:`torch.device`, or a ``ValueError`` naming the problem: an unknown
    device type (``"gpu"``) or a CUDA device on a machine without one."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no CUDA device is available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type not in ("cpu", "mps"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return dev


@dataclass
class Config:
    """Base of every config: documented fields, validation, strict dict conversion."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises ``ValueError`` naming the field for an invalid value (extended by subclasses,
        which call ``super().validate()``)."""

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """``{field name: documentation}``."""
        return {f.name: f.metadata.get("doc", "") for f in fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (nested configs as dicts, tuples as lists): JSON-serialisable."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, Config) else list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        """The config with the values of ``d``; an unknown key is a ``ValueError`` naming it."""
        if not isinstance(d, dict):
            raise TypeError(f"{cls.__name__}.from_dict needs a dict, got {type(d).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} key(s): {', '.join(unknown)} (known: {', '.join(known)})"
            )
        hints = typing.get_type_hints(cls)
        kw = {}
        for k, v in d.items():
            sub = _config_type(hints.get(k))
            kw[k] = sub.from_dict(v) if sub is not None and isinstance(v, dict) else v
        return cls(**kw)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` (validated; unknown names are a ``ValueError``)."""
        return type(self).from_dict({**self.to_dict(), **changes})


def _config_type(hint: Any) -> type[Config] | None:
    if isinstance(hint, type) and issubclass(hint, Config):
        return hint
    return None


@dataclass
class TrainingConfig(Config):
    """Fields every trainer shares."""

    steps: int | None = option(
        None, "optimisation steps (None: the method's default, or unbounded with `seconds`)"
    )
    seconds: float | None = option(None, "training time budget in seconds (None: no time limit)")
    seed: int = option(0, "random seed (everything random draws from it; CPU runs are bit-identical)")
    device: str = option("cpu", "torch device: 'cpu' (Rust kernels), 'cuda' or 'cuda:N'")
    precision: str = option(
        "fp32",
        "'fp32', or 'bf16' / 'fp16': the networks under torch.autocast (fp16 with loss scaling); "
        "rendering, losses and hash tables stay fp32 (raysplat.training.precision)",
    )

    #: the method's default number of steps when neither ``steps`` nor ``seconds`` is given
    DEFAULT_STEPS: typing.ClassVar[int] = 1000
    #: the precisions the method supports (``"fp32"`` only: it has no network to run in 16 bits)
    PRECISIONS: typing.ClassVar[tuple[str, ...]] = ("fp32",)
    #: why a method without mixed precision refuses it (the error message's reason)
    PRECISION_NOTE: typing.ClassVar[str] = "this method has no network to run in reduced precision"

    def validate(self) -> None:
        super().validate()
        if self.steps is None and self.seconds is None:
            self.steps = self.DEFAULT_STEPS
        if self.steps is not None and (isinstance(self.steps, bool) or int(self.steps) != self.steps):
            raise ValueError(f"steps must be an integer or None, got {self.steps!r}")
        if self.steps is not None and self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"seconds must be > 0, got {self.seconds}")
        if self.steps is not None:
            self.steps = int(self.steps)
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}") from e
        if torch.device(self.device).type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {self.precision!r}")
        if self.precision not in self.PRECISIONS:
            raise ValueError(
                f"precision {self.precision!r}: {type(self).__name__} supports "
                f"{', '.join(repr(p) for p in self.PRECISIONS)} only ({self.PRECISION_NOTE})"
            )

    def schedule_steps(self) -> int:
        """The length of step-based schedules: ``steps``, or the default when unbounded."""
        return self.steps if self.steps else self.DEFAULT_STEPS
