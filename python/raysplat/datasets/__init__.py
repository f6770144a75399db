"""Datasets: the :class:`Scene` representation, loaders and the sample-scene generator."""

from raysplat.datasets.scene import Scene

__all__ = ["Scene"]
