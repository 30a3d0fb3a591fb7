"""gs4_ros: GS4-style RGB-D semantic Gaussian-splatting SLAM (core, io, eval, ros, cli)."""

__version__ = "0.1.0"
