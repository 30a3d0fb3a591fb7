"""The node's RViz markers. ~/keyframe_graph: where the back-end's keyframes are and which
edges hold them, so a loop closure, or one the graph rejected, can be seen on the map
while the robot runs (rtabmap shows its graph the same way; RViz has no display for a
pose graph, so markers it is). ~/query/markers: a box and a label per object an
open-vocabulary query found. Each array starts with a DELETEALL, so what a newer state no
longer has does not linger in RViz."""
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


def _marker(header, ns: str, kind: int, rgba, marker_id: int = 0) -> Marker:
    """An ADD marker, identity orientation; position and scale are the caller's."""
    m = Marker()
    m.header = header
    m.ns, m.id, m.type, m.action = ns, marker_id, kind, Marker.ADD
    m.pose.orientation.w = 1.0
    m.color.r, m.color.g, m.color.b, m.color.a = (float(c) for c in rgba)
    return m


def _cleared(header) -> MarkerArray:
    """An array whose first marker deletes everything shown before."""
    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    return out


def keyframe_graph_markers(poses: Dict[int, np.ndarray], edges: Iterable, header,
                           keyframe_size: float = 0.03) -> MarkerArray:
    """Markers of a KeyframeGraph.snapshot(): a sphere per keyframe (its camera centre in
    the map frame) and a line list per edge kind (an edge kind that disappears, a loop
    later rejected, goes from RViz too)."""
    out = _cleared(header)
    if poses:
        kf = _marker(header, "keyframes", Marker.SPHERE_LIST, KEYFRAME_RGBA)
        kf.scale.x = kf.scale.y = kf.scale.z = float(keyframe_size)
        kf.points = [_point(poses[k][:3, 3]) for k in sorted(poses)]
        out.markers.append(kf)
    by_kind: Dict[str, list] = {}
    for e in edges:
        if e.i in poses and e.j in poses:
            by_kind.setdefault(e.kind, []).extend((_point(poses[e.i][:3, 3]), _point(poses[e.j][:3, 3])))
    for kind, pts in by_kind.items():
        rgba, width = EDGE_STYLE.get(kind, ((1.0, 1.0, 1.0, 0.8), 0.004))
        m = _marker(header, f"edges/{kind}", Marker.LINE_LIST, rgba)
        m.scale.x = m.scale.y = m.scale.z = float(width)
        m.points = pts
        out.markers.append(m)
    return out


def query_object_markers(objects, text: str, header) -> MarkerArray:
    """A translucent box and a label per object of a query (boxes of an earlier query or
    map state go)."""
    out = _cleared(header)
    for k, o in enumerate(objects):
        size = np.maximum(o.bbox_max - o.bbox_min, 0.02)
        centre = (o.bbox_max + o.bbox_min) / 2
        box = _marker(header, "query_objects", Marker.CUBE, (1.0, 0.86, 0.0, 0.35), k)
        box.pose.position.x, box.pose.position.y, box.pose.position.z = (float(v) for v in centre)
        box.scale.x, box.scale.y, box.scale.z = (float(v) for v in size)
        label = _marker(header, "query_labels", Marker.TEXT_VIEW_FACING, (1.0, 1.0, 1.0, 1.0), k)
        label.pose.position.x, label.pose.position.y = float(centre[0]), float(centre[1])
        label.pose.position.z = float(o.bbox_max[2] + 0.1)
        label.scale.z = 0.12
        label.text = f"{text} {k + 1} ({o.count})"
        out.markers += [box, label]
    return out
