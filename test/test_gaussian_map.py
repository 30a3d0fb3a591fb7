"""GaussianMap: insert / keep / prune keep rows aligned across every field, freezing after
8 updates, keyframe corrections as rigid motions, and the activations renderers see."""
import pytest
import torch

from gs4_ros.core import se3
from gs4_ros.core.gaussian_map import GaussianMap


def test_insert_defaults_and_indices():
    gm = GaussianMap(num_classes=5, feature_dim=3)
    idx = gm.insert(torch.randn(4, 3), torch.zeros(4, 3), torch.randn(4, 4), torch.zeros(4, 1),
                    torch.rand(4, 3), birth_frame=7, keyframe_id=2)
    assert idx.tolist() == [0, 1, 2, 3]
    idx = gm.insert(torch.randn(2, 3), torch.zeros(2, 3), torch.randn(2, 4), torch.zeros(2),
                    torch.rand(2, 3), sem_logits=torch.randn(2, 5), features=torch.randn(2, 3))
    assert idx.tolist() == [4, 5] and len(gm) == 6
    assert not gm.sem_logits[:4].any() and not gm.features[:4].any()
    assert gm.birth_frame.tolist() == [7] * 4 + [0] * 2
    assert gm.keyframe_id.tolist() == [2] * 4 + [-1] * 2
    assert not gm.frozen.any() and not gm.update_count.any()
    assert gm.means.dtype == torch.float32 and gm.update_count.dtype == torch.int32
    # Inserted tensors are detached copies, not views of the caller's autograd graph.
    m = torch.randn(1, 3, requires_grad=True)
    gm.insert(m * 2, torch.zeros(1, 3), torch.randn(1, 4), torch.zeros(1), torch.rand(1, 3))
    assert not gm.means.requires_grad
    assert gm.nbytes() == sum(t.numel() * t.element_size() for t in gm.state().values())


def test_insert_rejects_wrong_shapes():
    gm = GaussianMap(num_classes=5, feature_dim=3)
    with pytest.raises(ValueError, match="sem_logits"):
        gm.insert(torch.randn(2, 3), torch.zeros(2, 3), torch.randn(2, 4), torch.zeros(2),
                  torch.rand(2, 3), sem_logits=torch.randn(2, 4))
    with pytest.raises(ValueError, match="quats"):
        gm.insert(torch.randn(2, 3), torch.zeros(2, 3), torch.randn(2, 3), torch.zeros(2), torch.rand(2, 3))
    assert len(gm) == 0


def test_prune_and_keep_keep_rows_aligned(random_map):
    gm = random_map(n=40)
    gm.birth_frame = torch.arange(40, dtype=torch.int32)  # a row tag
    gm.opacity_logits[::3] = -8.0  # sigmoid < 0.005
    before = {k: v.clone() for k, v in gm.state().items()}
    removed = gm.prune(0.005)
    keep = torch.sigmoid(before["opacity_logits"]) >= 0.005
    assert removed == int((~keep).sum()) == 14 and len(gm) == 26
    for k, v in gm.state().items():
        assert torch.equal(v, before[k][keep]), k
    assert gm.prune(0.005) == 0
    mask = gm.birth_frame % 2 == 0
    tags = gm.birth_frame[mask].clone()
    gm.keep(mask)
    assert torch.equal(gm.birth_frame, tags)
    assert all(v.shape[0] == len(gm) for v in gm.state().values())
    assert GaussianMap().prune() == 0


def test_freeze_after_eight_updates():
    gm = GaussianMap(num_classes=0)
    gm.insert(torch.randn(5, 3), torch.zeros(5, 3), torch.randn(5, 4), torch.zeros(5), torch.rand(5, 3))
    idx = torch.tensor([0, 2, 3])
    for k in range(1, 8):
        gm.mark_updated(idx)
        assert not gm.frozen.any(), f"frozen after {k} updates"
    gm.mark_updated(idx[:2])
    assert gm.frozen.tolist() == [True, False, True, False, False]
    assert gm.update_count.tolist() == [8, 0, 8, 7, 0]
    gm.mark_updated(torch.tensor([3]), freeze_after=8)
    assert gm.frozen.tolist() == [True, False, True, True, False]
    gm.mark_updated(torch.tensor([], dtype=torch.long))  # no-op


def test_keyframe_corrections_move_rows_rigidly(random_map):
    gm = random_map(n=30)  # keyframe 0 for rows 0..14, keyframe 1 for 15..29
    old = {k: v.clone() for k, v in gm.state().items()}
    T_old = se3.se3_exp(torch.tensor([0.5, -0.2, 1.0, 0.1, 0.4, -0.3]))
    T_new = se3.se3_exp(torch.tensor([0.6, -0.1, 0.9, 0.2, 0.3, -0.1]))
    delta = T_new @ se3.inv(T_old)
    gm.apply_keyframe_corrections({1: delta})
    a, b = slice(0, 15), slice(15, 30)
    for k in old:  # keyframe 0 untouched, nothing but means/quats changed
        assert torch.equal(gm.state()[k][a], old[k][a]), k
        if k not in ("means", "quats"):
            assert torch.equal(gm.state()[k][b], old[k][b]), k
    # Seen from the corrected keyframe, the Gaussians are where they were before.
    local_old = se3.transform_points(se3.inv(T_old), old["means"][b])
    local_new = se3.transform_points(se3.inv(T_new), gm.means[b])
    torch.testing.assert_close(local_new, local_old, atol=1e-5, rtol=0)
    R_old = se3.quat_to_rotmat(old["quats"][b])
    R_new = se3.quat_to_rotmat(gm.quats[b])
    torch.testing.assert_close(R_new, delta[:3, :3] @ R_old, atol=1e-5, rtol=0)
    # Quaternion norms (raw parameters) are preserved, so scales/opacity semantics hold.
    torch.testing.assert_close(gm.quats[b].norm(dim=-1), old["quats"][b].norm(dim=-1))
    gm.apply_keyframe_corrections({7: delta})  # unknown keyframe: nothing moves


def test_params_activations(random_map):
    gm = random_map(n=12, num_classes=6)
    gm.colors[0] = torch.tensor([-0.5, 0.3, 1.7])
    p = gm.params()
    torch.testing.assert_close(p.scales, gm.log_scales.exp())
    torch.testing.assert_close(p.opacities, torch.sigmoid(gm.opacity_logits))
    torch.testing.assert_close(p.quats.norm(dim=-1), torch.ones(12))
    torch.testing.assert_close(se3.quat_to_rotmat(p.quats), se3.quat_to_rotmat(gm.quats))
    assert p.colors[0].tolist() == pytest.approx([0.0, 0.3, 1.0])
    assert p.sem_probs is None and len(p) == 12
    ps = gm.params(with_semantics=True)
    torch.testing.assert_close(ps.sem_probs, torch.softmax(gm.sem_logits, -1))
    assert torch.equal(gm.labels(), gm.sem_logits.argmax(-1))
    idx = torch.tensor([3, 5])
    sub = gm.params(idx, with_semantics=True)
    torch.testing.assert_close(sub.means, gm.means[idx])
    torch.testing.assert_close(sub.sem_probs, ps.sem_probs[idx])
    assert GaussianMap(num_classes=0).params(with_semantics=True).sem_probs is None


def test_params_are_differentiable_in_raw_space(random_map):
    """The joint optimiser puts requires_grad on the raw fields and steps them."""
    gm = random_map(n=6)
    for name in ("means", "log_scales", "quats", "opacity_logits", "colors"):
        getattr(gm, name).requires_grad_(True)
    p = gm.params()
    (p.means.sum() + p.scales.sum() + p.quats[:, 1].sum() + p.opacities.sum() + p.colors.sum()).backward()
    torch.testing.assert_close(gm.log_scales.grad, gm.log_scales.detach().exp())
    s = torch.sigmoid(gm.opacity_logits.detach())
    torch.testing.assert_close(gm.opacity_logits.grad, s * (1 - s))
    assert all(getattr(gm, n).grad is not None for n in ("means", "quats", "colors"))


def test_labelled_tells_class_evidence_from_flat_logits():
    gm = GaussianMap(num_classes=4)
    z3 = torch.zeros(3, 3)
    sem = torch.tensor([[0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    gm.insert(z3, z3, torch.tensor([[1.0, 0, 0, 0]] * 3), torch.zeros(3), z3, sem_logits=sem)
    assert gm.labelled().tolist() == [True, False, False]
    assert gm.bank_id.tolist() == [-1, -1, -1]                  # no bank entry until a keyframe gives one
    assert GaussianMap(num_classes=0).labelled().numel() == 0


def test_reference_scale_shrinks_the_tracking_render_only(random_map):
    """tracking.reference_scale draws the tracker's reference with smaller Gaussians; the
    map itself and every other render keep their extent."""
    gm = random_map(n=12)
    full = gm.params(measured_only=True)
    small = gm.params(measured_only=True, scale=0.8)
    torch.testing.assert_close(small.scales, 0.8 * full.scales)
    torch.testing.assert_close(small.means, full.means)
    torch.testing.assert_close(gm.params().scales, torch.exp(gm.log_scales))
