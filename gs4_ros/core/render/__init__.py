"""Gaussian rasterisers behind one interface: gsplat on CUDA, pure PyTorch anywhere.

Both implement the same image formation (EWA splatting with a 0.3 px blur, alpha capped
at 0.999, contributions under 1/255 skipped, a pixel stops at transmittance 1e-4, pixel
centres at +0.5) so they agree to float precision; `benchmarks/compare_renderers.py`
checks values and gradients on a GPU.
"""
from .base import RasterOutput, RenderOutput, Rasterizer, blend_surface_colour, render_views, make_rasterizer

__all__ = ["RasterOutput", "RenderOutput", "Rasterizer", "blend_surface_colour", "render_views", "make_rasterizer"]
