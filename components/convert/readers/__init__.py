"""Dataset readers, one module per format: each yields ``Frame`` records from a dataset laid out as its real
specification says. A bad sample raises an InputError naming its file and line; with a non-strict ``skips`` it is
recorded there and left out instead (a bad dataset-level file, like an unparsable annotation json, always raises).

* ``kitti``   KITTI object: ``training/{image_2,label_2,calib,velodyne}`` (devkit_object readme)
* ``coco``    COCO detection: one annotation json (``bbox`` = [x, y, w, h]) and an image folder
* ``voc``     Pascal VOC: ``Annotations/*.xml`` (1-based pixel ``bndbox``) and ``JPEGImages/``
* ``yolo``    YOLO/Ultralytics: ``images/**``, ``labels/**/*.txt`` ("class cx cy w h", normalised), ``data.yaml`` names
* ``bdd100k`` BDD100K detection json (a list of frames with ``labels[].box2d``) and its image folder
* ``nuscenes`` nuScenes v1.0 tables + samples/: one frame per keyframe camera image, boxes projected from 3D

Each registers itself in ``records.READERS`` (an admlops.registry.Registry: a format name resolves to its module);
``fields`` holds the checks of label-file values they share. A new format is a module here plus its line in
``READERS``.
"""
from admlops.components.convert.readers.bdd100k import read_bdd100k
from admlops.components.convert.readers.coco import read_coco
from admlops.components.convert.readers.kitti import kitti_frames, kitti_split_ids, read_kitti, read_kitti_frame
from admlops.components.convert.readers.nuscenes import read_nuscenes
from admlops.components.convert.readers.voc import read_voc
from admlops.components.convert.readers.yolo import read_yolo

__all__ = ["kitti_frames", "kitti_split_ids", "read_bdd100k", "read_coco", "read_kitti", "read_kitti_frame", "read_nuscenes",
           "read_voc", "read_yolo"]
