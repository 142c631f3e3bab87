"""Recorded drives -> screened frames (components/ingest): every storage read back to what the generator wrote
(points through the PointCloud2 field table, images, intrinsics, the tf tree's poses and extrinsics), the pairing of
cameras to LiDAR scans, each screening rule with a control, the unlabeled version iterate reads, and bad
recordings refused with the file, topic and time (exit 3, nothing written)."""
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from admlops import catalog
from admlops.components.ingest.ingest import ingest
from admlops.components.ingest.screen import screen
from admlops.components.iterate.infer import pool_frames
from admlops.components.synth.kitti import BASE_CALIB, render_frame
from admlops.components.synth.recording import SPEED, Events, default_topics, synth_recording
from admlops.dataset_formats import kitti
from admlops.errors import InputError
from admlops.localfs import file_sha256
from admlops.objectstore import open_store
from conftest import admlops

ROAD = Path(__file__).resolve().parent.parent / "configs" / "datasets" / "road-3class.yaml"


def definition(tmp_path: Path, recording: dict, name: str = "drive.yaml") -> Path:
    """road-3class with ``recording`` as its recording section."""
    raw = yaml.safe_load(ROAD.read_text())
    raw["recording"] = recording
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def bag_path(tmp_path: Path, storage: str) -> Path:
    return tmp_path / ("drive.bag" if storage == "ros1" else "drive")


def expected_pose(t_s: float, stop: tuple[int, int] | None = None) -> np.ndarray:
    """map <- base_link at t (seconds from the start): the generator's motion written out independently."""
    if stop:
        a, b = stop[0] * 0.1, stop[1] * 0.1
        t_s -= max(0.0, min(t_s, b) - a) if t_s > a else 0.0
    yaw = 0.02 * t_s
    odom = np.eye(4)
    odom[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
    odom[:3, 3] = [SPEED * t_s * math.cos(yaw / 2), SPEED * t_s * math.sin(yaw / 2), 0]
    world = np.eye(4)
    world[:3, :3] = [[math.cos(0.1), -math.sin(0.1), 0], [math.sin(0.1), math.cos(0.1), 0], [0, 0, 1]]
    world[:3, 3] = [1.0, -2.0, 0.0]
    return world @ odom


@pytest.mark.parametrize("storage,layout,compressed", [("mcap", "xyzi", True), ("sqlite3", "ouster", False),
                                                       ("ros1", "reordered", True)])
def test_every_storage_reads_back_what_was_recorded(storage, layout, compressed, tmp_path):
    topics = default_topics(1)
    topics["lidar"]["topic"] = "/points_raw"  # the definition, not the generator, says which topic is which
    topics["frames"] = {"world": "map", "base": "base_link"}
    defn = definition(tmp_path, topics)
    synth_recording(bag_path(tmp_path, storage), frames=6, storage=storage, topics=topics, layout=layout,
                    compressed=compressed, seed=3)
    summary = ingest(bag_path(tmp_path, storage), str(defn), tmp_path / "frames")
    record = json.loads((tmp_path / "frames" / "frames.json").read_text())
    assert summary["frames"] == 6 and summary["scans"] == 6
    rec = summary["recordings"][0]
    assert rec["storage"] == {"mcap": "rosbag2-mcap", "sqlite3": "rosbag2-sqlite3", "ros1": "rosbag1"}[storage]
    on_disk = [bag_path(tmp_path, storage)] if storage == "ros1" else sorted(bag_path(tmp_path, storage).iterdir())
    assert sorted(rec["sha256"].values()) == sorted(file_sha256(p) for p in on_disk)
    velo_from_cam_expected = kitti.to_homogeneous(np.asarray(BASE_CALIB["Tr_velo_to_cam"]))
    for i, frame in enumerate(record["frames"]):
        image, _, calib, points = render_frame(3, i * 8)
        got = np.fromfile(tmp_path / "frames" / frame["lidar"], dtype=np.float32).reshape(-1, 4)
        np.testing.assert_array_equal(got, points)  # every field found through the layout, none shifted
        np.testing.assert_allclose(frame["ego_pose"], expected_pose(i * 0.1), atol=1e-6)
        assert abs(frame["speed"] - SPEED) < 1e-3
        cam = frame["cameras"]["front"]
        np.testing.assert_allclose(cam["K"], np.asarray(calib["P2"])[:, :3])
        np.testing.assert_allclose(cam["camera_from_lidar"], velo_from_cam_expected, atol=1e-6)
        assert abs(cam["offset_ms"]) < 12 and cam["image"].endswith(".jpg")
        # compressed: the recorded JPEG's bytes untouched; raw (bgr8): the exact pixels, encoded as JPEG 95 by ingest
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90 if compressed else 95)
        assert (tmp_path / "frames" / cam["image"]).read_bytes() == buf.getvalue()


def test_six_cameras_pair_within_the_tolerance_and_missing_images_drop_their_scans(tmp_path):
    topics = default_topics(6)
    defn = definition(tmp_path, {**topics, "sync_tolerance": 0.02})
    events = Events(missing={"back": (2,), "front_left": (2, 4)})
    synth_recording(tmp_path / "drive", frames=6, cameras=6, topics=topics, events=events, seed=5)
    summary = ingest(tmp_path / "drive", str(defn), tmp_path / "frames")
    assert summary["dropped"]["sync"] == {"front": 0, "front_left": 2, "back_left": 0, "back": 1, "back_right": 0,
                                          "front_right": 0}
    frames = json.loads((tmp_path / "frames" / "frames.json").read_text())["frames"]
    assert [f["id"] for f in frames] == [f"drive_{i:06d}" for i in (0, 1, 3, 5)]
    tr = kitti.to_homogeneous(np.asarray(BASE_CALIB["Tr_velo_to_cam"]))
    for k, name in enumerate(["front", "front_left", "back_left", "back", "back_right", "front_right"]):
        yaw = np.eye(4)
        yaw[:2, :2] = [[math.cos(k * math.pi / 3), -math.sin(k * math.pi / 3)],
                       [math.sin(k * math.pi / 3), math.cos(k * math.pi / 3)]]
        np.testing.assert_allclose(frames[0]["cameras"][name]["camera_from_lidar"], tr @ np.linalg.inv(yaw), atol=1e-6)
        assert all(abs(f["cameras"][name]["offset_ms"]) <= 20 for f in frames)
    # control: a tolerance below the cameras' own offsets (8-14 ms) pairs nothing
    strict = definition(tmp_path, {**topics, "sync_tolerance": 0.004}, "strict.yaml")
    assert ingest(tmp_path / "drive", str(strict), tmp_path / "strict")["frames"] == 0


def screened(tmp_path: Path, screening: dict, events: Events, frames: int = 30) -> tuple[dict, list[dict]]:
    topics = default_topics(1)
    defn = definition(tmp_path, {**topics, "screening": screening}, "screen.yaml")
    bag = tmp_path / "drive"
    if not bag.exists():
        synth_recording(bag, frames=frames, topics=topics, events=events, seed=1)
    shutil.rmtree(tmp_path / "frames", ignore_errors=True)
    ingest(bag, str(defn), tmp_path / "frames")
    out = tmp_path / f"screened-{len(list(tmp_path.glob('screened-*')))}"
    summary = screen(tmp_path / "frames", str(defn), out, str(tmp_path / "store"))
    return summary, json.loads((out / "frames.json").read_text())["frames"]


def test_each_screening_rule_drops_its_frames_and_a_clean_drive_keeps_all(tmp_path):
    events = Events(blurred=(4,), dark=(6,), bright=(7,), stop=(12, 22))
    summary, kept = screened(tmp_path, {}, events)
    d = summary["dropped"]
    assert (d["exposure"], d["blur"], d["standstill"], d["duplicate"]) == (2, 1, 9, 0)
    ids = {int(f["id"][-6:]) for f in kept}
    assert not ids & {4, 6, 7} and not ids & set(range(13, 22)) and 12 in ids and summary["kept"] == 30 - 12
    # standstill off: the frozen frames are near-duplicates of the one kept before them (sensor noise aside)
    summary, kept = screened(tmp_path, {"standstill": False}, events)
    assert summary["dropped"]["duplicate"] == 9 and "standstill" not in summary["dropped"]
    # every rule off: nothing dropped; the thresholds decide, not the data alone
    summary, _ = screened(tmp_path, {r: False for r in ("blur", "exposure", "duplicate", "standstill")}, events)
    assert summary["kept"] == 30
    # a drive without events keeps every frame under the default thresholds
    clean = tmp_path / "clean"
    clean.mkdir()
    summary, _ = screened(clean, {}, Events())
    assert summary["kept"] == 30 and sum(v for k, v in summary["dropped"].items() if k != "sync") == 0


def test_the_definitions_threshold_values_decide_and_the_report_counts_each_rule(tmp_path):
    """The thresholds are the definition's numbers, not switches: while standing, one frame per keep_every seconds
    (0.5 s keeps frame 17 beside 12, the last moving one, where the default 5 s drops all 9 at rest: the first test);
    the report's table gives each rule's count with its thresholds. A malformed screening or recording section is an InputError naming the
    definition file and the key."""
    from admlops.components.ingest.spec import recording_spec
    from admlops.definition import load_definition

    events = Events(stop=(12, 22))
    summary, kept = screened(tmp_path, {"standstill": {"keep_every": 0.5}, "duplicate": False}, events)
    ids = sorted(int(f["id"][-6:]) for f in kept)
    assert summary["dropped"]["standstill"] == 8 and [i for i in ids if 12 <= i < 22] == [12, 17]
    report = (tmp_path / "screened-0" / "report" / "screening.md").read_text()
    assert "| dropped: standstill (min_speed 0.5, keep_every 0.5) | 8 |" in report and "| kept | 22 |" in report
    topics = default_topics(1)
    for section, key in (({**topics, "screening": {"blur": {"min_relative_sharpness": -1}}}, "screening.blur"),
                         ({**topics, "screening": {"glare": {}}}, "screening"),
                         ({**topics, "sync_tolerance": 2}, "sync_tolerance"),
                         ({**topics, "frames": {"world": "map"}}, "frames")):
        defn = definition(tmp_path, section, "bad.yaml")
        with pytest.raises(InputError) as err:
            recording_spec(load_definition(str(defn)))
        assert err.value.path == str(defn) and f"recording.{key}: expected" in str(err.value), str(err.value)


def test_the_version_is_iterates_pool_with_the_recordings_lineage(tmp_path):
    events = Events(blurred=(3,))
    summary, kept = screened(tmp_path, {}, events, frames=8)
    v = summary["dataset_version"]
    info = catalog.show(open_store(tmp_path / "store"), "datasets", v["name"], v["version"]).info
    recording = info["lineage"]["recordings"][0]
    assert recording["sha256"] == {p.name: file_sha256(p) for p in sorted((tmp_path / "drive").iterdir())}
    assert info["unlabeled"] is True
    out = Path(v["uri"].removeprefix("file://"))
    pulled = tmp_path / "pulled"
    catalog.pull(open_store(tmp_path / "store"), "datasets", v["name"], v["version"], pulled)
    frames, kind = pool_frames(pulled)
    assert kind == "dataset" and sorted(fid for fid, _ in frames) == sorted(f"{f['id']}_front" for f in kept)
    assert len(kept) == 7 and all(p.is_file() for _, p in frames) and out.name == v["version"]
    html = (pulled / "report" / "screening.html").read_text()
    assert "Dropped for blur" in html and "drive_000003" in html and "data:image/png;base64" in html


def test_the_collection_analysis_covers_the_route_the_kept_frames_drove(tmp_path):
    """analyze on screen's version: the distance along the kept frames is the generator's motion between them
    (written out independently), the time is theirs, the speed the generator's; a collection standing still is
    warned of (the same frames with every speed 0 as the control)."""
    from admlops.components.analyze.report import analyze

    _, kept = screened(tmp_path, {}, Events(blurred=(3,)), frames=8)
    version = tmp_path / "screened-0"
    report = analyze(version, tmp_path / "analysis")
    steps = [int(f["id"][-6:]) for f in kept]
    assert steps == [0, 1, 2, 4, 5, 6, 7]
    expected = sum(np.linalg.norm(expected_pose(b * 0.1)[:3, 3] - expected_pose(a * 0.1)[:3, 3])
                   for a, b in zip(steps, steps[1:]))
    assert abs(report["distance_m"] - expected) < 1e-3 and abs(report["duration_s"] - 0.7) < 1e-6
    assert abs(report["speed_m_s"]["median"] - SPEED) < 0.05 and report["frames"] == 7 and report["warnings"] == []
    html = (tmp_path / "analysis" / "report.html").read_text()
    assert "Route of the kept frames" in html and html.count("data:image/png;base64") == 2
    standing = tmp_path / "standing"
    shutil.copytree(version, standing)
    record = json.loads((standing / "frames.json").read_text())
    for f in record["frames"]:
        f["speed"] = 0.0
    (standing / "frames.json").write_text(json.dumps(record))
    warned = analyze(standing, tmp_path / "analysis-standing")["warnings"]
    assert warned == ["7 of 7 frames with the ego below 1 m/s: a collection of standing scenes"]


def corrupt(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst)
    (mcap,) = dst.glob("*.mcap")
    data = bytearray(mcap.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3: len(data) // 3 + 4096] = bytes(range(256)) * 16
    mcap.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def good_bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bag") / "drive"
    synth_recording(path, frames=6, seed=2)
    return path


@pytest.mark.parametrize("case", ["truncated", "corrupt", "missing topic", "unknown type", "out of order", "no z",
                                  "no tf"])
def test_bad_recordings_name_file_topic_and_time_and_write_nothing(case, good_bag, tmp_path):
    topics = default_topics(1)
    defn = definition(tmp_path, topics)
    bag = good_bag
    expect = [good_bag.name]
    if case in ("truncated", "corrupt"):  # cut: MCAP's footer is gone; corrupt: a message's bytes are overwritten
        bag = corrupt(good_bag, tmp_path / "bad", case)
        expect = ["bad", "before any message was read" if case == "truncated" else " s (1700000000"]
    elif case == "missing topic":
        defn = definition(tmp_path, {**topics, "cameras": {"front": {"image": "/camera/front/image",
                                                                     "info": topics["cameras"]["front"]["info"]}}})
        expect = ["/camera/front/image", "not in the recording"]
    elif case == "unknown type":
        defn = definition(tmp_path, {**topics, "lidar": {"topic": topics["cameras"]["front"]["image"]},
                                     "cameras": {"front": {"image": topics["lidar"]["topic"],
                                                           "info": topics["cameras"]["front"]["info"]}}})
        expect = ["sensor_msgs/msg/CompressedImage", topics["cameras"]["front"]["image"]]
    elif case == "out of order":
        bag = tmp_path / "jump"
        synth_recording(bag, frames=6, seed=2, events=Events(clock_jump=(3,)))
        expect = [topics["lidar"]["topic"], "out of order", "1700000000.15"]
    elif case == "no z":
        bag = tmp_path / "noz"
        synth_recording(bag, frames=3, seed=2, layout="no-z")
        expect = [topics["lidar"]["topic"], "no z field", "1700000000.000"]
    elif case == "no tf":
        defn = definition(tmp_path, {**topics, "frames": {"world": "earth", "base": "base_link"}})
        expect = ["'earth' is not in the transform tree", topics["lidar"]["topic"]]
    out = tmp_path / "frames"
    with pytest.raises(InputError) as err:
        ingest(bag, str(defn), out)
    assert all(e in str(err.value) for e in expect), str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".frames*"))


def test_cli_ingests_and_exits_3_on_a_bad_recording(good_bag, tmp_path):
    res = admlops("data", "ingest", good_bag, tmp_path / "out", "--store", tmp_path / "store")
    assert json.loads(res.stdout)["kept"] >= 1 and (tmp_path / "out" / "annotations" / "pool.json").is_file()
    bad = corrupt(good_bag, tmp_path / "bad", "truncated")
    res = admlops("data", "ingest", bad, tmp_path / "out2", "--store", tmp_path / "store2", check=False)
    assert res.returncode == 3 and "bad" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out2").exists() and not catalog.names(open_store(tmp_path / "store2"), "datasets")


@pytest.mark.parametrize("storage", ["ros1", "sqlite3"])
def test_a_truncated_ros1_or_sqlite3_bag_exits_3_naming_it_and_writes_nothing(storage, tmp_path):
    """The other storages cut at 60%: the CLI exits 3 naming the file and that no message could be read, writes no
    frames and publishes no version; the whole bag ingests (the control)."""
    whole = bag_path(tmp_path / "whole", storage)
    synth_recording(whole, frames=6, storage=storage, seed=2)
    bag = bag_path(tmp_path / "cut", storage)
    if storage == "ros1":
        bag.parent.mkdir()
        data = whole.read_bytes()
        bag.write_bytes(data[: len(data) * 6 // 10])
        named = bag
    else:
        shutil.copytree(whole, bag)
        (named,) = bag.glob("*.db3")
        data = named.read_bytes()
        named.write_bytes(data[: len(data) * 6 // 10])
    res = admlops("data", "ingest", bag, tmp_path / "out", "--store", tmp_path / "store", check=False)
    assert res.returncode == 3 and str(bag) in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    # both keep their index at the end (a ROS 1 bag's index records, sqlite3's page structure): read at open
    assert "cannot read the recording before any message was read" in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "out").exists() and not catalog.names(open_store(tmp_path / "store"), "datasets")
    assert ingest(whole, "road-3class", tmp_path / "control")["frames"] == 6


def test_the_collect_pipeline_takes_a_drive_to_a_labeling_task(learned_model, tmp_path):
    """``admlops run collect --local``: a recording -> ingest -> screen -> the frames version -> analyze -> infer /
    score / select with a zoo model -> a labeling task of frames from the drive (kfp.local, one store)."""
    from admlops import zoo
    from admlops.components.convert.lake import COCO_ROLES

    store_dir = tmp_path / "store"
    store = open_store(store_dir)
    current = catalog.push(store, "datasets", "kitti-coco", learned_model.dataset, roles=COCO_ROLES)
    model = tmp_path / "model"
    shutil.copytree(learned_model.model, model, ignore=shutil.ignore_patterns("work"))
    first = zoo.publish(store, "det", model, zoo.lineage(current.ref(), model / "config.py"),
                        gates={"passed": True, "gates": []})
    zoo.promote(store, "det", first.version, "production")
    synth_recording(tmp_path / "drive", frames=10, seed=4, events=Events(blurred=(2,)))
    res = admlops("run", "collect", "--local", "--store", store_dir, "--param", f"recordings={tmp_path / 'drive'}",
                  "--param", "model=det@production", "--param", f"dataset=kitti-coco@{current.version}",
                  "--param", "budget=3", "--param", f"store={store_dir}", "--param", "frames_name=drive-frames")
    (run_line,) = [line for line in res.stdout.splitlines() if line.startswith("run: ")]
    run = Path(run_line.removeprefix("run: "))
    summary = json.loads((run / "screen" / "dataset" / "summary.json").read_text())
    assert summary["kept"] == 9 and summary["dropped"]["blur"] == 1
    analysis = json.loads((run / "analyze" / "report" / "summary.json").read_text())
    assert analysis["frames"] == 9 and analysis["kind"] == "unlabeled collection"
    task = json.loads((run / "export-task" / "task" / "task.json").read_text())
    chosen = [f["frame"] for f in task["frames"]]
    assert len(chosen) == 3 and all(c.startswith("drive_") and c != "drive_000002_front" for c in chosen)
    (version,) = catalog.list_versions(store, "datasets", "drive-frames")
    info = catalog.show(store, "datasets", *version).info
    assert info["lineage"]["recordings"][0]["sha256"]["drive.mcap"] == file_sha256(tmp_path / "drive" / "drive.mcap")


def test_a_dead_camera_is_not_waited_for():
    """Scans are decided while the drive streams even when a camera never sends an image (memory holds seconds,
    not the drive); the live camera's images pair, the dead camera's scans are counted out at the end."""
    from admlops.components.ingest.ingest import MAX_LAG, Pending, Synchroniser

    sync = Synchroniser(["front", "dead"], 50_000_000)
    decided = []
    for i in range(60):  # 6 s at 10 Hz
        t = i * 100_000_000
        decided += sync.image("front", t + 5_000_000, f"img{i}", "cam")
        decided += sync.scan(Pending(t, i, np.zeros((1, 4), np.float32), "lidar"))
        assert len(sync.scans) <= (MAX_LAG + 50_000_000) // 100_000_000 + 2  # bounded while streaming
    decided += sync.finish()
    assert [s.index for s in decided] == list(range(60))
    assert all("front" in s.images and "dead" not in s.images for s in decided)
    assert all(len(q) <= MAX_LAG // 100_000_000 + 2 for q in sync.images.values())


def test_pointcloud_fields_are_read_by_their_table_and_nan_returns_dropped():
    from types import SimpleNamespace as Msg

    from admlops.components.ingest.messages import pointcloud_xyzi

    pts = np.array([[1, 2, 3, 0.5], [np.nan, 0, 0, 0.1], [4, 5, 6, 0.9], [7, 8, 9, 0.2]], np.float32)
    fields = [Msg(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate(("x", "y", "z", "intensity"))]
    for big in (False, True):  # the packed little-endian fast path, and a big-endian cloud through the field table
        data = np.frombuffer(pts.astype(">f4" if big else "<f4").tobytes(), np.uint8)
        # two rows of two points, each row padded to 40 bytes (row_step > width * point_step)
        rows = np.concatenate([np.concatenate([data[r * 32:(r + 1) * 32], np.zeros(8, np.uint8)]) for r in (0, 1)])
        msg = Msg(fields=fields, is_bigendian=big, point_step=16, row_step=40, width=2, height=2, data=rows)
        np.testing.assert_array_equal(pointcloud_xyzi(msg), pts[[0, 2, 3]])
    # a vendor naming its intensity otherwise (uint16 "reflectivity" after x, y, z and a float "t"): the definition's
    # intensity_field picks it; a cloud without that field reads intensity 0 (the control: the default name)
    layout = np.dtype({"names": ["x", "y", "z", "t", "reflectivity"], "formats": ["<f4"] * 4 + ["<u2"],
                       "offsets": [0, 4, 8, 12, 16], "itemsize": 20})
    cloud = np.zeros(2, layout)
    cloud["x"], cloud["y"], cloud["z"], cloud["t"], cloud["reflectivity"] = [1, 2], [3, 4], [5, 6], [0.1, 0.2], [7, 900]
    fields = [Msg(name=n, offset=layout.fields[n][1], datatype={"reflectivity": 4}.get(n, 7), count=1)
              for n in layout.names]
    msg = Msg(fields=fields, is_bigendian=False, point_step=20, row_step=40, width=2, height=1,
              data=np.frombuffer(cloud.tobytes(), np.uint8))
    np.testing.assert_array_equal(pointcloud_xyzi(msg, "reflectivity"), [[1, 3, 5, 7], [2, 4, 6, 900]])
    np.testing.assert_array_equal(pointcloud_xyzi(msg)[:, 3], [0, 0])


def test_a_raw_sensors_bayer_mosaic_and_packed_yuv_decode_to_its_colours():
    """A smooth RGB image sampled as each Bayer pattern and as UYVY / YUY2 decodes back to itself (mean error a few
    levels: demosaicing interpolates); decoded with the wrong pattern or byte order it does not (the controls)."""
    from types import SimpleNamespace as Msg

    from admlops.components.ingest.messages import image_array

    h, w = 48, 64
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([40 + 3 * xx, 200 - 2 * yy, 60 + xx + yy], axis=-1).clip(0, 255).astype(np.uint8)

    def error(msg) -> float:
        return float(np.abs(image_array(msg).astype(int) - rgb.astype(int))[2:-2, 2:-2].mean())

    at = {"r": 0, "g": 1, "b": 2}
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):
        mosaic = np.zeros((h, w), np.uint8)
        for k, colour in enumerate(pattern):  # the 2x2 cell: (0,0), (0,1), (1,0), (1,1)
            mosaic[k // 2::2, k % 2::2] = rgb[k // 2::2, k % 2::2, at[colour]]
        msg = Msg(encoding=f"bayer_{pattern}8", height=h, width=w, step=w, is_bigendian=False, data=mosaic.ravel())
        assert error(msg) < 4, pattern
        swapped = {"rggb": "bggr", "bggr": "rggb", "gbrg": "grbg", "grbg": "gbrg"}[pattern]
        assert error(Msg(**{**vars(msg), "encoding": f"bayer_{swapped}8"})) > 20, pattern
    n = rgb / 255.0  # BT.601 at video range (Y 16-235), as cameras send it; chroma of each pair's first pixel
    y = 16 + 65.481 * n[..., 0] + 128.553 * n[..., 1] + 24.966 * n[..., 2]
    u = (128 - 37.797 * n[..., 0] - 74.203 * n[..., 1] + 112.0 * n[..., 2])[:, ::2]
    v = (128 + 112.0 * n[..., 0] - 93.786 * n[..., 1] - 18.214 * n[..., 2])[:, ::2]
    uyvy = np.stack([u, y[:, ::2], v, y[:, 1::2]], axis=-1).round().clip(0, 255).astype(np.uint8).reshape(h, 2 * w)
    msg = Msg(encoding="yuv422", height=h, width=w, step=2 * w, is_bigendian=False, data=uyvy.ravel())
    assert error(msg) < 2
    assert error(Msg(**{**vars(msg), "encoding": "yuv422_yuy2"})) > 20
