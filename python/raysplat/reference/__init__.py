"""Pure-torch reference implementations of raysplat's kernels: test oracles and the
fallback for tensors on devices the Rust kernels do not run on (CUDA, MPS...)."""
