"""admlops.compat's CPU stand-in for mmdet3d's rotated-box IoU CUDA kernel (KITTI BEV/3D evaluation): known
overlaps, the kernel's own numbers (mmdet3d's kernel source run in numba's CUDA simulator) for every criterion,
and that the shim is needed and reaches kitti_eval."""
import importlib.util
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from admlops import compat
from admlops.compat import rotate_iou_cpu_eval

IOU, OVER_QUERY, OVER_BOX, INTERSECTION = -1, 0, 1, 2  # the kernel's criterion argument


def _box(x=0.0, y=0.0, dx=4.0, dy=2.0, angle=0.0):
    return np.array([[x, y, dx, dy, angle]], dtype=np.float32)


def _iou(a, b, criterion=IOU) -> float:
    return float(rotate_iou_cpu_eval(a, b, criterion)[0, 0])


def test_identical_boxes_overlap_fully():
    box = _box(1.5, -2.0, 3.9, 1.6, 0.7)
    assert _iou(box, box) == pytest.approx(1.0, abs=1e-6)
    assert _iou(box, box, OVER_QUERY) == pytest.approx(1.0, abs=1e-6)
    assert _iou(box, box, INTERSECTION) == pytest.approx(3.9 * 1.6, rel=1e-5)


def test_disjoint_boxes_do_not_overlap():
    assert _iou(_box(0, 0), _box(10, 0)) == 0.0
    assert _iou(_box(0, 0, angle=0.3), _box(0, 5, angle=-1.2), INTERSECTION) == 0.0


def test_box_and_its_copy_turned_a_quarter_about_the_centre():
    # a 3 x 1 box and the same box turned 90 degrees overlap in a 1 x 1 square: 1 / (3 + 3 - 1)
    assert _iou(_box(2, 3, 3, 1), _box(2, 3, 3, 1, math.pi / 2)) == pytest.approx(1 / 5, abs=1e-6)


@pytest.mark.parametrize("angle", [0.0, math.pi / 4, -1.1])
def test_box_shifted_by_half_its_length_along_its_heading(angle):
    # the kernel turns a box's local x axis to (cos a, -sin a) (mmcv's box_iou_rotated calls that counterclockwise):
    # half of each box lies in the other, 2 / (4 + 4 - 2) = 1/3; a shift the other way round would overlap less
    box = _box(1, 1, 4, 2, angle)
    shifted = _box(1 + 2 * math.cos(angle), 1 - 2 * math.sin(angle), 4, 2, angle)
    assert _iou(box, shifted) == pytest.approx(1 / 3, abs=1e-5)
    assert _iou(box, shifted, OVER_BOX) == pytest.approx(0.5, abs=1e-5)
    if angle:
        wrong_way = _box(1 + 2 * math.cos(angle), 1 + 2 * math.sin(angle), 4, 2, angle)
        assert _iou(box, wrong_way) < 0.3


def test_criteria_divide_by_the_query_box_or_the_box():
    small, large = _box(0, 0, 2, 2), _box(0, 0, 4, 4)  # small inside large: the intersection is 4
    assert _iou(small, large, IOU) == pytest.approx(4 / 16, abs=1e-6)
    assert _iou(small, large, OVER_QUERY) == pytest.approx(4 / 16, abs=1e-6)  # [n, k]: over the query box k
    assert _iou(small, large, OVER_BOX) == pytest.approx(1.0, abs=1e-6)  # over box n
    assert _iou(small, large, INTERSECTION) == pytest.approx(4.0, abs=1e-5)
    assert rotate_iou_cpu_eval(np.zeros((0, 5)), large).shape == (0, 1)


def _kernel_source() -> Path:
    spec = importlib.util.find_spec("mmdet3d")  # finds the package without importing it
    return Path(spec.submodule_search_locations[0]) / "evaluation" / "functional" / "kitti_utils" / "rotate_iou.py"


SIMULATED = textwrap.dedent(
    """
    import importlib.util, sys
    import numpy as np
    spec = importlib.util.spec_from_file_location("rotate_iou", sys.argv[1])
    kernel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernel)
    data = np.load(sys.argv[2])
    out = {str(c): kernel.rotate_iou_gpu_eval(data["boxes"], data["query"], c) for c in (-1, 0, 1, 2)}
    out["truth"] = kernel.rotate_iou_gpu_eval(data["truth"], data["predicted"], -1)
    np.savez(sys.argv[3], **out)
    """
)


def test_matches_mmdet3d_cuda_kernel_in_numbas_simulator(tmp_path):
    """mmdet3d's kernel source, unchanged, run by numba's CUDA simulator on the CPU, against the stand-in on boxes
    that overlap in every way (centres within a few metres, KITTI-like sizes, any heading); and the one place
    they differ on purpose, boxes whose edges coincide."""
    rng = np.random.default_rng(0)

    def boxes(n):
        return np.column_stack([rng.uniform(-3, 3, (n, 2)), rng.uniform(0.5, 5, (n, 2)),
                                rng.uniform(-math.pi, math.pi, n)]).astype(np.float32)

    data = dict(boxes=boxes(14), query=boxes(9))
    # and a prediction equal to its ground truth after a float32 round trip: edges (nearly) coincide
    truth = np.array([[-5.38, 37.6, 1.81, 0.6, -1.64], [-1.89, 26.79, 3.85, 1.64, 1.57],
                      [3.88, 30.47, 1.62, 0.56, 0.12]])
    data.update(truth=truth, predicted=truth + np.array([1e-7, -1e-7, 1e-7, 0, 1e-7]))
    np.savez(tmp_path / "in.npz", **data)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    res = subprocess.run([sys.executable, "-c", SIMULATED, str(_kernel_source()), str(tmp_path / "in.npz"),
                          str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    reference = np.load(tmp_path / "out.npz")
    assert (reference["-1"] > 0.05).mean() > 0.3  # the boxes do overlap, and not only trivially
    for criterion in (-1, 0, 1, 2):
        ours = rotate_iou_cpu_eval(data["boxes"], data["query"], criterion)
        assert ours.dtype == np.float32 and ours.shape == (14, 9)
        np.testing.assert_allclose(ours, reference[str(criterion)], atol=2e-5, err_msg=f"criterion {criterion}")
    # where edges coincide the kernel loses area (0 or 1/3 for a box and itself); the stand-in does not
    assert reference["truth"].diagonal().min() < 0.5
    np.testing.assert_allclose(rotate_iou_cpu_eval(data["truth"], data["predicted"]).diagonal(), 1.0, atol=1e-5)


def test_kernel_module_fails_without_cuda_and_the_shim_reaches_kitti_eval():
    import torch

    if torch.cuda.is_available():
        pytest.skip("the failure the shim prevents happens without CUDA")
    code = "import mmdet3d.evaluation.functional.kitti_utils.rotate_iou"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and "CudaSupportError" in res.stderr  # compiled at import: needs the driver

    compat.apply()
    from mmdet3d.evaluation.functional.kitti_utils.eval import bev_box_overlap, d3_box_overlap

    a, b = _box(0, 0, 4, 2), _box(2, 0, 4, 2)
    assert bev_box_overlap(a, b)[0, 0] == pytest.approx(1 / 3, abs=1e-5)
    # camera boxes (x, y, z, l, h, w, ry), y pointing down: equal heights, half shifted along x -> 1/3 in 3D
    cam = np.array([[0, 1.5, 10, 4, 1.5, 2, 0], [2, 1.5, 10, 4, 1.5, 2, 0]], dtype=np.float64)
    assert d3_box_overlap(cam[:1], cam[1:])[0, 0] == pytest.approx(1 / 3, abs=1e-5)
