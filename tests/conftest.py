"""Shared fixtures: pinned seeds, two torch threads, packed-layout builders."""

from __future__ import annotations

import random

import numpy as np
import pytest
import raysplat as rs
import torch

torch.set_num_threads(2)

#: per-ray sample counts with empty and single-sample rays (the last ray is empty, too)
COUNTS = [3, 0, 1, 5, 0, 2, 1, 4, 0]


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(params=["auto", "torch"])
def op_backend(request):
    """Runs a test under ``backend("auto")`` (Rust for CPU tensors) and ``backend("torch")``
    (the public torch branch that CUDA tensors take, with its own validation)."""
    with rs.backend(request.param):
        yield request.param


@pytest.fixture
def gen():
    """A seeded torch generator."""
    g = torch.Generator()
    g.manual_seed(1234)
    return g


class Packed:
    """A packed layout: counts, sorted ray_indices, offsets and n_rays."""

    def __init__(self, counts: list[int]):
        self.counts = torch.tensor(counts, dtype=torch.long)
        self.n_rays = len(counts)
        self.ray_indices = torch.repeat_interleave(torch.arange(self.n_rays), self.counts)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), self.counts.cumsum(0)])
        self.n = int(self.counts.sum())
        self.packed_info = torch.stack([self.offsets[:-1], self.counts], -1)


@pytest.fixture
def packed():
    return Packed(COUNTS)


def make_intervals(shape, dtype=torch.float32, requires_grad=False):
    """Sorted-ish random (t_starts, t_ends, sigmas) of the given shape (dense or packed)."""
    t_starts = torch.rand(shape, dtype=dtype) * 2.0
    dt = torch.rand(shape, dtype=dtype) * 0.5 + 0.05
    t_ends = t_starts + dt
    sigmas = torch.rand(shape, dtype=dtype) * 3.0
    return tuple(x.clone().requires_grad_(requires_grad) for x in (t_starts, t_ends, sigmas))


@pytest.fixture
def intervals():
    return make_intervals
