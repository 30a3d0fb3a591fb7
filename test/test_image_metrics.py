"""The semantic scores the evaluation reports: mIoU over the classes present in the ground
truth, pixels the map left unlabelled counted against their class, and what each class
was taken for."""
import numpy as np
import pytest

from gs4_ros.eval.image_metrics import ConfusionMatrix, classes_lowest_first, pooled_miou


def test_miou_over_present_classes_with_missed_and_ignored_pixels():
    cm = ConfusionMatrix(4)
    gt = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [255, 255, 2, 2]])
    pred = np.array([[0, 0, 0, 1], [1, 1, 0, 4], [3, 3, 2, 2]])   # 4: nothing rendered
    cm.add(pred, gt)
    s = cm.miou()
    # class 0: 3 hits, 4 gt, 4 predicted -> 3/5; class 1: 2 hits, 4 gt (one missed),
    # 3 predicted -> 2/5; class 2: 2/2; class 3 absent from the ground truth: left out
    # (its two predicted pixels sit on ignored ground truth, 255).
    assert s["per_class_iou"] == pytest.approx({0: 0.6, 1: 0.4, 2: 1.0})
    assert s["miou"] == pytest.approx((0.6 + 0.4 + 1.0) / 3)
    assert s["pixel_accuracy"] == pytest.approx(7 / 10)


def test_confusions_say_what_a_class_was_taken_for():
    cm = ConfusionMatrix(3)
    gt = np.array([0] * 10 + [1] * 4)
    pred = np.array([2] * 6 + [0] * 3 + [1] + [1] * 4)
    cm.add(pred, gt)
    c = cm.confusions(top=2)
    assert c[0] == [(2, pytest.approx(0.6)), (0, pytest.approx(0.3))]
    assert c[1] == [(1, pytest.approx(1.0))]
    assert 2 not in c


def test_pooled_miou_weighs_each_class_by_its_pixels_over_all_rooms():
    """Room A: 100 wall pixels right, a 4-pixel chair all wrong; room B: 100 wall, 100
    chair, all right. The mean of the rooms' mIoUs counts A's chair as half of A (0.5,
    1.0: 0.75); pooled, the chair has 100 of 104 pixels right."""
    rows = []
    for gt, pred in ((np.array([0] * 100 + [1] * 4), np.array([0] * 104)),
                     (np.array([0] * 100 + [1] * 100), np.array([0] * 100 + [1] * 100))):
        cm = ConfusionMatrix(3)
        cm.add(pred, gt)
        rows.append({"miou": cm.miou()["miou"],
                     "confusion_counts": {"classes": ["wall", "chair", "door"], "matrix": cm.m.tolist(),
                                          "missed": cm.missed.tolist()}})
    assert np.mean([r["miou"] for r in rows]) == pytest.approx((0.5 * (100 / 104 + 0) + 1.0) / 2)
    pooled = pooled_miou(rows + [{"miou": 0.0}])            # a row without counts is left out
    assert pooled["per_class_iou"] == pytest.approx({0: 200 / 204, 1: 100 / 104})
    assert pooled["miou"] == pytest.approx((200 / 204 + 100 / 104) / 2)
    assert [n for n, _ in classes_lowest_first(pooled)] == ["chair", "wall"]
    assert pooled_miou([{"miou": 0.3}]) is None
