"""Procedural RGB-D indoor scenes with exact poses, depth and ScanNet-20 labels.

    seq = SyntheticSequence(seed=3, n_frames=300, width=320, height=240)
    frame = seq[0]   # RGBDFrame with noisy rgb/depth, clean labels, meta['depth_clean']

Layers: scene (primitives), layout (rooms and furniture), textures, raycast, render
(clean views), camera_path, sensor (noise), sequence (ties them together).
"""
from .classes import CLASS_ID, PALETTE, SCANNET20_CLASSES, UNLABELLED, colorize_labels
from .layout import ROOM_TYPES, generate_scene
from .scene import Scene
from .sensor import SensorModel, depth_sigma
from .sequence import BASE_INTRINSICS, SyntheticSequence

__all__ = ["SCANNET20_CLASSES", "CLASS_ID", "PALETTE", "UNLABELLED", "colorize_labels", "ROOM_TYPES",
           "generate_scene", "Scene", "SensorModel", "depth_sigma", "SyntheticSequence", "BASE_INTRINSICS"]
