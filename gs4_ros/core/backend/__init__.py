"""Back-end (issue 4): keyframe graph, loop closure, gtsam pose graph, joint optimisation.

One module, one job: keyframe_graph (nodes and edges), loop_detector (candidates and
verification), pose_graph (gtsam), joint_optimizer (few Adam steps on Gaussians and
poses), backend (the thread and the hand-over to the pipeline).
"""
from .backend import Backend, BackendStats, GraphUpdate
from .joint_optimizer import JointOptimizer, JointResult, JointView
from .keyframe_graph import Edge, KeyframeGraph, KeyframeNode

__all__ = ["Backend", "BackendStats", "GraphUpdate", "JointOptimizer", "JointResult", "JointView",
           "Edge", "KeyframeGraph", "KeyframeNode"]
