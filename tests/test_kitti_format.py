import numpy as np
import pytest

from admlops.dataset_formats import kitti
from admlops.errors import InputError

LINE = "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59"


def test_label_roundtrip(tmp_path):
    obj = kitti.parse_label_line(LINE, "x.txt", 1)
    assert obj.type == "Car" and obj.bbox == (587.01, 173.33, 614.12, 200.12)
    assert obj.dimensions == (1.65, 1.67, 3.64) and obj.location == (-0.65, 1.71, 46.70)
    path = tmp_path / "000000.txt"
    kitti.write_label(path, [obj, kitti.dontcare((1.0, 2.0, 30.0, 40.0))])
    back = kitti.read_label(path)
    assert back[0] == obj and back[1].type == "DontCare"


@pytest.mark.parametrize(
    "line, message",
    [
        (LINE.rsplit(" ", 1)[0], "expected 15 fields, got 14"),
        (LINE.replace("-1.58", "abc"), "field 4 is not a number: 'abc'"),
        (LINE.replace("-1.58", "nan"), "field 4 is not finite"),
        (LINE.replace("Car", "Spaceship"), "unknown class 'Spaceship'"),
        (LINE.replace("1.65 1.67", "-1.65 1.67"), "3D dimensions must be positive"),
        (LINE.replace("614.12", "500.00"), "degenerate 2D box"),
    ],
)
def test_bad_label_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "000001.txt"
    path.write_text(LINE + "\n\n" + line + "\n")
    with pytest.raises(InputError) as err:
        kitti.read_label(path)
    assert err.value.line == 3 and err.value.path == str(path)
    assert message in str(err.value) and str(err.value).startswith(f"{path}:3: ")


def test_calib_roundtrip_and_missing_entry(tmp_path):
    calib = {k: np.arange(np.prod(s), dtype=float).reshape(s) + 0.5 for k, s in kitti.CALIB_SHAPES.items()}
    path = tmp_path / "c.txt"
    kitti.write_calib(path, calib)
    back = kitti.read_calib(path)
    for key in calib:
        np.testing.assert_allclose(back[key], calib[key], rtol=1e-12)
    path.write_text("\n".join(l for l in path.read_text().splitlines() if not l.startswith("R0_rect")))
    with pytest.raises(InputError, match="missing calibration entries: R0_rect"):
        kitti.read_calib(path)
    path.write_text("P0: 1 2 3\n")
    with pytest.raises(InputError, match=r"c.txt:1: P0: expected 12 finite numbers, got 3"):
        kitti.read_calib(path)


def test_box_corners_and_alpha():
    corners = kitti.box3d_corners((1.5, 2.0, 4.0), (1.0, 1.6, 10.0), 0.0)
    assert corners[:, 0].min() == pytest.approx(-1.0) and corners[:, 0].max() == pytest.approx(3.0)
    assert corners[:, 1].max() == pytest.approx(1.6) and corners[:, 1].min() == pytest.approx(0.1)
    assert corners[:, 2].min() == pytest.approx(9.0) and corners[:, 2].max() == pytest.approx(11.0)
    # straight ahead, alpha equals rotation_y
    assert kitti.alpha_from_rotation(0.3, 0.0, 10.0) == pytest.approx(0.3)
