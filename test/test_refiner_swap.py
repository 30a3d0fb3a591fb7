"""benchmarks/refiner_swap.py: the diagnostic file that puts one run's refinement side on
another run's predictor (which stage carries a difference between two training runs)."""

import pytest
import torch

from gs4_ros.core.nets import GaussianPredictor, GaussianRefiner, load_networks, save_networks
from conftest import load_script

refiner_swap = load_script("benchmarks/refiner_swap.py")
CLASSES = [f"c{i}" for i in range(20)]


def _file(path, seed, width=32):
    torch.manual_seed(seed)
    p, r = GaussianPredictor(width=width, feature_dim=8), GaussianRefiner(feature_dim=8, hidden=32)
    save_networks(path, p, r, CLASSES)
    return p, r


def test_predictor_from_one_file_refiner_side_from_the_other(tmp_path):
    pa, _ = _file(tmp_path / "a.pt", 1)
    pb, rb = _file(tmp_path / "b.pt", 2)
    n = refiner_swap.swap(str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), str(tmp_path / "mix.pt"))
    pm, rm, _ = load_networks(tmp_path / "mix.pt")
    assert n == sum(1 for k in pa.state_dict() if k.startswith("feat_head."))
    sa, sb, sm = pa.state_dict(), pb.state_dict(), pm.state_dict()
    for k in sm:
        want = sb[k] if k.startswith("feat_head.") else sa[k]
        assert torch.equal(sm[k], want), k
    # The backbone really differs between the two files, so the check above could fail.
    assert not torch.equal(sa["backbone.stem.0.0.weight"], sb["backbone.stem.0.0.weight"])
    for k, v in rm.state_dict().items():
        assert torch.equal(v, rb.state_dict()[k]), k


def test_files_of_different_architectures_are_refused(tmp_path):
    _file(tmp_path / "a.pt", 1, width=32)
    _file(tmp_path / "b.pt", 2, width=16)
    with pytest.raises(SystemExit):
        refiner_swap.swap(str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), str(tmp_path / "mix.pt"))
    assert not (tmp_path / "mix.pt").exists()
