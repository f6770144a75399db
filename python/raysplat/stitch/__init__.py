"""3D Gaussian stitching: paste a part of one 3DGS model into another without a visible seam.

:mod:`raysplat.stitch.compose` selects, transforms (SH rotated), merges and finds the boundary;
:mod:`raysplat.stitch.optimize` runs the two-phase colour optimisation (:func:`stitch`).
"""

from raysplat.stitch.compose import (
    SOURCE,
    TARGET,
    Selection,
    Similarity,
    StitchError,
    find_boundary,
    load_model,
    merge,
    object_size,
    pad_sh,
    parse_selection,
    sh_rotation,
    transform_model,
)
from raysplat.stitch.optimize import (
    LABELS_FILE,
    PLY_FILE,
    StitchConfig,
    StitchResult,
    prepare,
    sobel,
    stitch,
    streaming_palette,
)

__all__ = [
    "LABELS_FILE",
    "PLY_FILE",
    "SOURCE",
    "TARGET",
    "Selection",
    "Similarity",
    "StitchConfig",
    "StitchError",
    "StitchResult",
    "find_boundary",
    "load_model",
    "merge",
    "object_size",
    "pad_sh",
    "parse_selection",
    "prepare",
    "sh_rotation",
    "sobel",
    "stitch",
    "streaming_palette",
    "transform_model",
]
