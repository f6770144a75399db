"""The training layer every method shares: configs (:class:`Config`, :class:`TrainingConfig`),
the trainer lifecycle (:class:`Trainer`), checkpoints (:func:`load_checkpoint`), the output
layout (:mod:`raysplat.training.outputs`), scene loading (:func:`load_scene`) and progress."""

from raysplat.training.config import Config, TrainingConfig, check_device, option
from raysplat.training.data import BACKGROUNDS, check_same_scene, load_scene
from raysplat.training.progress import Progress
from raysplat.training.trainer import (
    METHODS,
    TestView,
    Trainer,
    load_checkpoint,
    read_checkpoint,
    trainer_class,
)

__all__ = [
    "BACKGROUNDS",
    "METHODS",
    "Config",
    "Progress",
    "TestView",
    "Trainer",
    "TrainingConfig",
    "check_device",
    "check_same_scene",
    "load_checkpoint",
    "load_scene",
    "option",
    "read_checkpoint",
    "trainer_class",
]
