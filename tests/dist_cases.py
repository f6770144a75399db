"""The tiny training settings shared by tests/test_distributed.py and its torchrun worker."""

from __future__ import annotations

from raysplat.gs import GSConfig
from raysplat.gs.strategy import DensifyConfig
from raysplat.nerf import NerfConfig

#: steps before the checkpoint, and after it when resuming
K_STEPS, RESUME_STEPS = 4, 2


def nerf_config() -> NerfConfig:
    """A tiny occupancy-grid NeRF; no jitter, so two ranks equal one process on the same rays
    (an odd batch: unequal shares, weighted by their size)."""
    return NerfConfig(
        steps=K_STEPS,
        seed=3,
        batch_rays=97,  # odd: the ranks get 49 and 48 rays
        stratified=False,
        n_levels=4,
        log2_table=10,
        max_res=64,
        hidden=16,
        grid_resolution=16,
        warmup_steps=2,
        eval_views=1,
    )


def gs_config() -> GSConfig:
    """Tiny 3DGS with 4 cameras a step and a densification (grow + prune) at step 3."""
    return GSConfig(
        steps=K_STEPS,
        seed=3,
        batch_cameras=4,
        init="random",
        init_random=300,
        sh_degree=1,
        sh_every=2,
        densify=DensifyConfig(
            refine_start=1, refine_every=3, refine_stop=100, reset_every=0, grow_grad2d=1e-5, prune_opa=0.09
        ),
    )
