"""Text-to-texture for meshes (TexGen, Huo et al. ECCV 2024): the texture space."""

from raysplat.texgen.atlas import UVMesh, ViewBuffers, camera_ring, chart_mask, load_mesh, unwrap, view_buffers

__all__ = ["UVMesh", "ViewBuffers", "camera_ring", "chart_mask", "load_mesh", "unwrap", "view_buffers"]
