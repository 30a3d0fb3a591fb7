"""Semantic fusion: later keyframes' class evidence overrules a Gaussian's birth class
where they see it, and only there (out of view, occluded, unlabelled, or inserted by the
same keyframe: unchanged); the count caps; a pipeline run fuses labels across keyframes."""
import numpy as np
import torch

from gs4_ros.core.config import MappingConfig
from gs4_ros.core.gaussian_map import GaussianMap
from gs4_ros.core.initializer import labels_to_logits
from gs4_ros.core.semantic_fusion import fuse_semantics

K = torch.tensor([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])
STRIDE, GRID = 8, (6, 8)      # a 64x48 image in 8x8 blocks


def fuse(gm, pose, depth, evidence, num_rows, max_views):
    """fuse_semantics on the 64x48 grid, blocks with depth > 0 valid, a 5 cm gate."""
    cfg = MappingConfig(stride=STRIDE, semantic_fusion_gate=0.05, semantic_fusion_max_views=max_views)
    return fuse_semantics(gm, pose, K, cfg, GRID, depth, depth > 0, evidence, num_rows)


def block_centre_ray(row: int, col: int) -> torch.Tensor:
    u, v = col * STRIDE + 3.5, row * STRIDE + 3.5
    return torch.tensor([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])


def make_map(points, label: int, num_classes: int = 5) -> GaussianMap:
    gm = GaussianMap(num_classes=num_classes)
    n = len(points)
    gm.insert(torch.stack(points), torch.full((n, 3), -4.0), torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
              torch.zeros(n), torch.rand(n, 3),
              sem_logits=labels_to_logits(torch.full((n,), label), num_classes))
    return gm


def test_views_overrule_the_birth_class_only_where_they_see():
    ray = block_centre_ray(2, 3)
    seen = ray * 2.0                       # on the observed surface of block (2, 3)
    hidden = ray * 3.0                     # behind it
    outside = torch.tensor([5.0, 0.0, 2.0])  # projects outside the image
    newer = ray * 2.0                      # a row this keyframe inserted itself
    gm = make_map([seen, hidden, outside, newer], label=0)
    depth = torch.zeros(GRID[0] * GRID[1])
    depth[2 * GRID[1] + 3] = 2.0
    labels = torch.full((GRID[0] * GRID[1],), 3, dtype=torch.long)
    before = gm.sem_logits.clone()
    for k in range(3):
        n = fuse(gm, torch.eye(4), depth, labels, num_rows=3, max_views=20)
        assert int(n) == 1
    assert gm.labels()[0].item() == 3
    assert gm.sem_count.tolist() == [4, 1, 1, 1]
    assert torch.equal(gm.sem_logits[1:], before[1:])
    # The fused logits are the mean of the four views' log-probabilities.
    lp = torch.log_softmax(labels_to_logits(torch.tensor([0, 3, 3, 3]), 5), -1)
    assert torch.allclose(torch.log_softmax(gm.sem_logits[0], -1), torch.log_softmax(lp.mean(0), -1), atol=1e-5)


def test_unlabelled_blocks_and_logit_evidence_and_the_cap():
    ray = block_centre_ray(4, 6)
    gm = make_map([ray * 1.5], label=1)
    depth = torch.full((GRID[0] * GRID[1],), 1.5)
    unknown = torch.full((GRID[0] * GRID[1],), 255, dtype=torch.long)
    assert int(fuse(gm, torch.eye(4), depth, unknown, 1, 3)) == 0
    assert gm.sem_count.tolist() == [1]
    logits = torch.zeros(GRID[0] * GRID[1], 5)
    logits[:, 4] = 6.0
    for _ in range(5):
        fuse(gm, torch.eye(4), depth, logits, 1, 3)
    assert gm.sem_count.tolist() == [3] and gm.labels().tolist() == [4]


def test_a_moved_camera_fuses_the_block_the_gaussian_projects_into():
    pose = torch.eye(4)
    pose[0, 3] = 0.5                                     # camera 0.5 m along world x
    gm = make_map([torch.tensor([0.5, 0.0, 0.0]) + block_centre_ray(2, 4) * 2.0], label=0)
    depth = torch.full((GRID[0] * GRID[1],), 2.0)
    labels = torch.zeros(GRID, dtype=torch.long)
    labels[2, 4] = 2
    for _ in range(2):
        fuse(gm, pose, depth, labels.flatten(), 1, 20)
    assert gm.labels().tolist() == [2]
    # Seen from the origin instead, the same point falls into another block (label 0).
    gm2 = make_map([torch.tensor([0.5, 0.0, 0.0]) + block_centre_ray(2, 4) * 2.0], label=1)
    for _ in range(2):
        fuse(gm2, torch.eye(4), depth, labels.flatten(), 1, 20)
    assert gm2.labels().tolist() == [0]


def test_pipeline_keyframes_fuse_frame_labels(tmp_path):
    """Through the pipeline: Gaussians seen by several keyframes average several views."""
    from gs4_ros.core.config import PipelineConfig
    from gs4_ros.core.pipeline import SLAMPipeline
    from gs4_ros.io.datasets import open_dataset

    ds = open_dataset("synthetic:seed=3,frames=20", width=160, height=120, device="cpu")
    counts = {}
    for views in (0, 20):
        cfg = PipelineConfig(device="cpu")
        cfg.mapping.semantic_fusion_max_views = views
        pipe = SLAMPipeline(cfg, device="cpu")
        for i in range(len(ds)):
            pipe.process(ds[i])
        counts[views] = pipe.map.sem_count.numpy()
        assert len(pipe.keyframes) >= 3
    assert np.all(counts[0] == 1)
    assert (counts[20] > 1).mean() > 0.3
