"""ROS-agnostic SLAM core: frames, SE(3), the Gaussian map, renderers, tracking, pipeline.

Depends on torch and numpy only; everything above (io, eval, ros, cli) drives it.
"""
