"""benchmarks/footprint.py: the predicted Gaussians' size per networks file."""
from conftest import load_script
from gs4_ros.core.nets.weights import DEFAULT_WEIGHTS
from gs4_ros.train.calibrate import write_scaled
from gs4_ros.train.data import synthetic_sequences

def test_a_file_scaled_by_half_has_half_the_footprint(tmp_path):
    mod = load_script("benchmarks/footprint.py")
    seqs = synthetic_sequences([961], 2, 5, 128, 96, "cpu", workers=0, targets=False)
    half = write_scaled(DEFAULT_WEIGHTS, tmp_path / "h.pt", 0.5)
    a, b = mod.footprint(DEFAULT_WEIGHTS, seqs), mod.footprint(half, seqs)
    assert a["tokens"] == b["tokens"] > 0
    assert abs(b["big_median"] / a["big_median"] - 0.5) < 0.05     # short of the clamp
    assert abs(b["opacity_mean"] - a["opacity_mean"]) < 1e-6
