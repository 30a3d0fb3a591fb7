"""The semantic scores the evaluation reports: mIoU over the classes present in the ground
truth, pixels the map left unlabelled counted against their class, and what each class
was taken for."""
import numpy as np
import pytest

from gs4_ros.eval.image_metrics import ConfusionMatrix


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
