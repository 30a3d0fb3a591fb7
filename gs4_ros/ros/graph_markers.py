"""The back-end's keyframe graph as RViz markers (~/keyframe_graph): where the keyframes
are and which edges hold them, so a loop closure, or one the graph rejected, can be seen
on the map while the robot runs. rtabmap shows its graph the same way; RViz has no display
for a pose graph, so markers it is."""
from __future__ import annotations

from typing import Dict, Iterable

import numpy as np
from geometry_msgs.msg import Point
from visualization_msgs.msg import Marker, MarkerArray

KEYFRAME_RGBA = (0.25, 0.55, 1.0, 1.0)
# Edge kind (keyframe_graph.Edge.kind) -> (rgba, line width m). One namespace per kind, so
# RViz can show or hide the tracker's, the external odometry's and the loops separately.
EDGE_STYLE = {
    "odom": ((0.2, 0.85, 0.2, 0.9), 0.006),
    "odom_prior": ((1.0, 0.6, 0.0, 0.9), 0.003),
    "loop": ((1.0, 0.1, 0.1, 1.0), 0.012),
    "rejected": ((0.55, 0.55, 0.55, 0.7), 0.006),
}


def _point(p) -> Point:
    return Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))


def _marker(header, ns: str, kind: int, rgba, scale: float) -> Marker:
    m = Marker()
    m.header = header
    m.ns, m.id, m.type, m.action = ns, 0, kind, Marker.ADD
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = float(scale)
    m.color.r, m.color.g, m.color.b, m.color.a = (float(c) for c in rgba)
    return m


def keyframe_graph_markers(poses: Dict[int, np.ndarray], edges: Iterable, header,
                           keyframe_size: float = 0.03) -> MarkerArray:
    """Markers of a KeyframeGraph.snapshot(): a sphere per keyframe (its camera centre in
    the map frame) and a line list per edge kind. Starts with DELETEALL, so an edge kind
    that disappears (a loop later rejected) does not linger."""
    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    if poses:
        kf = _marker(header, "keyframes", Marker.SPHERE_LIST, KEYFRAME_RGBA, keyframe_size)
        kf.points = [_point(poses[k][:3, 3]) for k in sorted(poses)]
        out.markers.append(kf)
    by_kind: Dict[str, list] = {}
    for e in edges:
        if e.i in poses and e.j in poses:
            by_kind.setdefault(e.kind, []).extend((_point(poses[e.i][:3, 3]), _point(poses[e.j][:3, 3])))
    for kind, pts in by_kind.items():
        rgba, width = EDGE_STYLE.get(kind, ((1.0, 1.0, 1.0, 0.8), 0.004))
        m = _marker(header, f"edges/{kind}", Marker.LINE_LIST, rgba, width)
        m.points = pts
        out.markers.append(m)
    return out
