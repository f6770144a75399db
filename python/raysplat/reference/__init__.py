"""Pure-torch twins of every raysplat kernel.

They run on any device (raysplat uses them for CUDA tensors) and are the oracle the tests
compare the Rust kernels against. Arguments are already validated and batched by the public
functions; these take the same flat layouts the Rust kernels take.
"""
