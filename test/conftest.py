"""Shared test fixtures: the repository on sys.path (tests run from a plain clone), a
random, fully populated Gaussian map, and scripts imported by path."""
import importlib.util
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gs4_ros.core.gaussian_map import GaussianMap  # noqa: E402


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(rel: str):
    """A file of the repository that is a script, not a package module (benchmarks/*.py,
    launch/*.py), imported by its path relative to the repository."""
    path = os.path.join(REPO, rel)
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(rel))[0].replace(".", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_random_map(n=50, num_classes=20, feature_dim=8, seed=0) -> GaussianMap:
    """A map with every field non-trivial (so a dropped or swapped field shows up)."""
    g = torch.Generator().manual_seed(seed)
    gm = GaussianMap(num_classes=num_classes, feature_dim=feature_dim)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    half = n // 2
    for part, (lo, hi) in enumerate(((0, half), (half, n))):
        m = hi - lo
        gm.insert(means=r(m, 3) * 2, log_scales=r(m, 3) * 0.5 - 3, quats=r(m, 4),
                  opacity_logits=r(m), colors=torch.rand(m, 3, generator=g),
                  sem_logits=r(m, num_classes) * 3, features=r(m, feature_dim),
                  birth_frame=10 + part, keyframe_id=part)
    gm.update_count = torch.randint(0, 9, (n,), generator=g, dtype=torch.int32)
    gm.frozen = gm.update_count >= 8
    gm.track_colors = torch.rand(n, 3, generator=g)     # as after joint steps: not the colours
    gm.obs_weight = torch.rand(n, generator=g) * 10
    return gm


@pytest.fixture
def random_map():
    return make_random_map


@pytest.fixture(scope="module")
def frame():
    """One 128x96 synthetic frame with labels, for the semantic passes' tests."""
    from gs4_ros.io.synthetic import SyntheticSequence

    return SyntheticSequence(seed=3, n_frames=20, width=128, height=96)[4]


@pytest.fixture(scope="module")
def frames160():
    """Every second frame of a short synthetic room at 160x120, for pipeline runs."""
    from gs4_ros.io.synthetic import SyntheticSequence

    seq = SyntheticSequence(seed=2, n_frames=40, width=160, height=120)
    return [seq[i] for i in range(0, 16, 2)]


def network_run(frames, **sets):
    """A CPU pipeline on the shipped networks over frames (the first placed at its true
    pose), with pipeline settings `sets`; every frame must track."""
    from gs4_ros.core.config import PipelineConfig
    from gs4_ros.core.pipeline import SLAMPipeline

    cfg = PipelineConfig()
    cfg.override({"initializer": "network", "tracking.min_inlier_fraction": 0.05, **sets})
    pipe = SLAMPipeline(cfg, device="cpu")
    frames[0].meta["initial_pose"] = frames[0].gt_pose
    for f in frames:
        assert pipe.process(f).ok
    return pipe


@pytest.fixture
def run_network():
    return network_run
