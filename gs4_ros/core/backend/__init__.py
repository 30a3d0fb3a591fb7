"""Back-end (issue 4): keyframe graph, loop closure, gtsam pose graph, joint optimisation.

One module, one job: keyframe_graph (nodes and edges), loop_detector (candidates and
verification), pose_graph (gtsam, optionally in a child process), joint_optimizer (few
Adam steps on Gaussians and poses), backend (the thread and the hand-over to the
pipeline). Names are imported lazily so the pose-graph child process loads numpy and
gtsam only, not torch.
"""
import importlib

_NAMES = {
    "Backend": "backend", "BackendStats": "backend", "GraphUpdate": "backend",
    "Relocalization": "backend",
    "JointOptimizer": "joint_optimizer", "JointResult": "joint_optimizer", "JointView": "joint_optimizer",
    "Edge": "keyframe_graph", "KeyframeGraph": "keyframe_graph", "KeyframeNode": "keyframe_graph",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
