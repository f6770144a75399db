"""Pure-torch reference implementations ("twins") of raysplat's Rust kernels.

They run on any device (the public API uses them for non-CPU tensors) and serve as the tests'
oracles. They favour clarity over speed.
"""
