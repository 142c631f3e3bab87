import json
import shutil

import pytest
from PIL import Image

from admlops.components.convert.to_coco import hash_split, kitti_to_coco
from admlops.dataset_formats import kitti
from admlops.errors import InputError
from admlops.pipelines.cli import main


def test_coco_content_matches_labels(kitti_root, coco_dir):
    summary = json.loads((coco_dir / "summary.json").read_text())
    assert summary["categories"] == ["Car", "Pedestrian", "Cyclist"]
    assert summary["split"]["method"] == "ImageSets"
    val_ids = (kitti_root / "ImageSets" / "val.txt").read_text().split()
    assert (coco_dir / "splits" / "val.txt").read_text().split() == val_ids
    total = 0
    for split in ("train", "val"):
        coco = json.loads((coco_dir / "annotations" / f"{split}.json").read_text())
        cats = {c["id"]: c["name"] for c in coco["categories"]}
        assert cats == {1: "Car", 2: "Pedestrian", 3: "Cyclist"}
        by_image = {im["id"]: im for im in coco["images"]}
        for im in coco["images"]:
            assert (coco_dir / im["file_name"]).is_file() and (im["width"], im["height"]) == (1242, 375)
        for image in coco["images"]:
            frame = image["file_name"].split("/")[1][:-4]
            objs = kitti.read_label(kitti_root / "training" / "label_2" / f"{frame}.txt")
            anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
            positives = [o for o in objs if o.type in ("Car", "Pedestrian", "Cyclist")]
            ignored = [o for o in objs if o.type not in ("Car", "Pedestrian", "Cyclist")]
            assert len([a for a in anns if not a["iscrowd"]]) == len(positives)
            # each ignore region is repeated for every category so COCOeval ignores any class inside it
            assert len([a for a in anns if a["iscrowd"]]) == 3 * len(ignored)
            for obj, ann in zip(objs, [a for a in anns if not a["iscrowd"] or a["category_id"] == 1], strict=True):
                x1, y1, x2, y2 = obj.bbox
                assert ann["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
                assert ann["source"]["label"] == obj.type
                if not ann["iscrowd"]:
                    assert cats[ann["category_id"]] == obj.type
            total += len(positives)
        assert all(a["image_id"] in by_image for a in coco["annotations"])
    assert total == sum(sum(v for k, v in c.items() if k != "ignore") for c in summary["objects"].values())


def _split_of(out) -> dict[str, str]:
    return {f: name for name in ("train", "val") for f in (out / "splits" / f"{name}.txt").read_text().split()}


def _add_frames(kitti_root, dest, new_ids) -> None:
    """Copies of ``kitti_root``'s frame 000000 under new ids in ``dest`` (a frame's split depends on its id alone)."""
    for new in new_ids:
        for sub, ext in (("label_2", "txt"), ("image_2", "png"), ("calib", "txt"), ("velodyne", "bin")):
            if (kitti_root / "training" / sub / f"000000.{ext}").is_file():
                shutil.copy(kitti_root / "training" / sub / f"000000.{ext}", dest / "training" / sub / f"{new}.{ext}")


def test_hash_split_is_reproducible_and_stable(kitti_root, tmp_path):
    src = tmp_path / "k"
    shutil.copytree(kitti_root, src)
    shutil.rmtree(src / "ImageSets")
    a = kitti_to_coco(src, tmp_path / "a", val_fraction=0.3, seed=1)
    kitti_to_coco(src, tmp_path / "b", val_fraction=0.3, seed=1)
    assert a["split"] == {"method": "sha256", "val_fraction": 0.3, "seed": 1}
    assert (tmp_path / "a" / "splits" / "val.txt").read_text() == (tmp_path / "b" / "splits" / "val.txt").read_text()
    full = _split_of(tmp_path / "a")
    assert len(full) == 20 and set(full.values()) == {"train", "val"}
    # a frame's split depends on its id alone: removing other frames, or adding new ones, moves none of the rest
    removed = sorted(full)[::3]  # 7 of the 20, from both splits
    assert {full[f] for f in removed} == {"train", "val"}
    for f in removed:
        (src / "training" / "label_2" / f"{f}.txt").unlink()
        (src / "training" / "image_2" / f"{f}.png").unlink()
    kitti_to_coco(src, tmp_path / "fewer", val_fraction=0.3, seed=1)
    fewer = _split_of(tmp_path / "fewer")
    assert set(fewer) == set(full) - set(removed) and fewer == {f: full[f] for f in fewer}
    added = [f"{i:06d}" for i in range(500, 530)]
    _add_frames(kitti_root, src, added)
    kitti_to_coco(src, tmp_path / "more", val_fraction=0.3, seed=1)
    more = _split_of(tmp_path / "more")
    assert set(more) == set(fewer) | set(added) and {f: more[f] for f in fewer} == fewer
    assert {more[f] for f in added} == {"train", "val"}
    # the control: a split by position in the sorted frame list (the usual "last 30% is val") moves frames
    # under exactly these removals and additions, so the comparisons above would catch it
    def by_position(frames):
        frames = sorted(frames)
        return {f: "val" if k >= len(frames) * 0.7 else "train" for k, f in enumerate(frames)}

    pos_full, pos_fewer, pos_more = by_position(full), by_position(fewer), by_position(more)
    assert any(pos_fewer[f] != pos_full[f] for f in pos_fewer) and any(pos_more[f] != pos_fewer[f] for f in pos_fewer)
    # and the fraction holds over many ids
    frames = [f"{i:06d}" for i in range(1000)]
    share = sum(hash_split(f, 0.3, 1) == "val" for f in frames) / len(frames)
    assert 0.25 < share < 0.35
    # the seed matters: another seed puts a different set of frames into val
    assert {f for f in frames if hash_split(f, 0.3, 1) == "val"} != {f for f in frames if hash_split(f, 0.3, 2) == "val"}


def _corrupt(kitti_root, tmp_path, how):
    src = tmp_path / "src"
    shutil.copytree(kitti_root, src)
    label = src / "training" / "label_2" / "000003.txt"
    lines = label.read_text().splitlines()
    if how == "fields":
        lines[1] = " ".join(lines[1].split()[:14])
    elif how == "number":
        parts = lines[1].split()
        parts[5] = "12.x"
        lines[1] = " ".join(parts)
    elif how == "class":
        lines[1] = "Hovercraft " + lines[1].split(" ", 1)[1]
    elif how in ("nan", "negative"):
        parts = lines[1].split()
        parts[8] = "nan" if how == "nan" else "-1.50"  # height of the 3D box
        lines[1] = " ".join(parts)
    elif how == "no-image":
        (src / "training" / "image_2" / "000003.png").unlink()
    elif how == "bad-image":
        img = src / "training" / "image_2" / "000003.png"
        img.unlink()  # break the hard link before truncating
        img.write_bytes((kitti_root / "training" / "image_2" / "000003.png").read_bytes()[:2000])
    label.write_text("\n".join(lines) + "\n")
    return src, label


@pytest.mark.parametrize(
    "how, where, message",
    [
        ("fields", "label_2/000003.txt:2", "expected 15 fields, got 14"),
        ("number", "label_2/000003.txt:2", "field 6 is not a number: '12.x'"),
        ("class", "label_2/000003.txt:2", "unknown class 'Hovercraft'"),
        ("nan", "label_2/000003.txt:2", "field 9 is not finite"),
        ("negative", "label_2/000003.txt:2", "3D dimensions must be positive"),
        ("no-image", "label_2/000003.txt", "label without image"),
        ("bad-image", "image_2/000003.png", "unreadable image"),
    ],
)
def test_bad_input_names_file_and_leaves_no_output(kitti_root, tmp_path, capsys, how, where, message):
    src, _ = _corrupt(kitti_root, tmp_path, how)
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        kitti_to_coco(src, out)
    assert where in str(err.value) and message in str(err.value)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    # the CLI: same message, exit code 3, and a previous good output left untouched
    out.mkdir()
    (out / "keep").write_text("previous run")
    assert main(["data", "convert", "--strict", str(src), str(out)]) == 3
    stderr = capsys.readouterr().err
    assert where in stderr and message in stderr
    assert [p.name for p in out.iterdir()] == ["keep"]
    # the default: the bad frame is skipped and reported, everything else converted
    assert main(["data", "convert", str(src), str(out)]) == 0
    assert "1 bad samples skipped" in capsys.readouterr().err
    report = json.loads((out / "skipped.json").read_text())
    assert report["skipped"] == len(report["samples"]) == 1
    entry = report["samples"][0]
    assert entry["sample"] == "000003" and message in entry["message"] and where.split(":")[0] in entry["file"]
    assert entry["line"] == (int(where.split(":")[1]) if ":" in where else None)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == 1 and sum(summary["frames"].values()) == 19


def test_missing_dataset_directory(tmp_path):
    with pytest.raises(InputError, match="not a KITTI object dataset"):
        kitti_to_coco(tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_class_without_mapping_in_definition(kitti_root, tmp_path):
    definition = tmp_path / "cars.yaml"
    definition.write_text(
        "name: cars\ntask: detection2d\ncategories:\n  - {id: 1, name: Car, color: [1, 2, 3]}\n"
        "sources:\n  kitti: {Car: Car, DontCare: ignore}\n"
    )
    with pytest.raises(InputError, match=r"label_2/\d{6}\.txt:\d+: unknown class '(Pedestrian|Cyclist|Van|Truck)'"):
        kitti_to_coco(kitti_root, tmp_path / "out", definition)
    definition.write_text(definition.read_text().replace("DontCare: ignore", "DontCare: Bus"))
    with pytest.raises(InputError, match=r"cars.yaml: sources.kitti.DontCare: expected one of"):
        kitti_to_coco(kitti_root, tmp_path / "out", definition)


def test_image_size_read_from_file(kitti_root, tmp_path):
    src = tmp_path / "small"
    shutil.copytree(kitti_root, src)
    for p in (src / "training" / "image_2").glob("*.png"):
        with Image.open(p) as im:
            big = im.copy()
        p.unlink()
        big.resize((1240, 376)).save(p)
    kitti_to_coco(src, tmp_path / "out")
    coco = json.loads((tmp_path / "out" / "annotations" / "train.json").read_text())
    assert {(i["width"], i["height"]) for i in coco["images"]} == {(1240, 376)}


def test_annotation_index_parquet(kitti_root, coco_dir):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(coco_dir / "index.parquet")
    summary = json.loads((coco_dir / "summary.json").read_text())
    assert table.num_rows == sum(sum(c.values()) for c in summary["objects"].values())
    cars = table.filter(pc.equal(table["category"], "Car"))
    assert cars.num_rows == summary["objects"]["train"]["Car"] + summary["objects"]["val"]["Car"]
    row = cars.slice(0, 1).to_pylist()[0]
    label = kitti.read_label(kitti_root / "training" / "label_2" / f"{row['frame']}.txt")
    match = [o for o in label if o.type == "Car" and abs(o.bbox[0] - row["x1"]) < 1e-6]
    assert match and row["loc_z"] == match[0].location[2] and row["dim_l"] == match[0].dimensions[2]
    assert row["distance"] == pytest.approx((row["loc_x"] ** 2 + row["loc_z"] ** 2) ** 0.5)
    dontcare = table.filter(pc.equal(table["source_label"], "DontCare")).to_pylist()
    assert dontcare and all(r["ignore"] and r["loc_z"] is None and r["num_lidar_pts"] is None for r in dontcare)
    points = cars.column("num_lidar_pts").to_pylist()  # exact counts are checked against mmdet3d in test_mmdet3d_infos
    assert all(isinstance(n, int) and n >= 0 for n in points) and max(points) > 0
    assert set(table.column("split").to_pylist()) == {"train", "val"}
