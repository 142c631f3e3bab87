"""admlops.geometry.box_iou: the one IoU of 2D boxes (the analysis report's duplicates, the tests' box checks)."""
import numpy as np

from admlops.geometry import box_iou


def test_box_iou_matrix():
    a = [[0, 0, 10, 10], [5, 5, 15, 15]]
    b = [[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [10, 0, 20, 10]]
    iou = box_iou(a, b)
    assert iou.shape == (2, 4) and iou.dtype == np.float64
    np.testing.assert_allclose(iou, [[1.0, 0.5, 0.0, 0.0],            # same, half, apart, touching at an edge
                                     [25 / 175, 0.0, 0.0, 25 / 175]])  # 5x5 overlaps; [0, 0, 10, 5] only touches
    np.testing.assert_allclose(box_iou(b, a), iou.T)


def test_box_iou_of_empty_boxes_is_zero_not_nan():
    point, inverted = [3, 3, 3, 3], [10, 10, 0, 0]
    iou = box_iou([point, inverted], [point, inverted, [0, 0, 10, 10]])
    assert not np.isnan(iou).any() and (iou == 0).all()
    assert box_iou(np.zeros((0, 4)), [[0, 0, 1, 1]]).shape == (0, 1)


def test_the_tests_use_it():
    import conftest

    assert conftest.box_iou is box_iou
