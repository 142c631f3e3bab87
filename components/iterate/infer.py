"""Run a trained 2D detector over an unlabeled pool: boxes with scores and per-class score vectors, the same on
the mirror image (test-time augmentation), and an image embedding per frame. Writes a predictions directory
(layout in ``predictions.py``).

The model is train's output (``model.pth`` + ``config.py``) or a zoo model ``NAME@VERSION`` / ``NAME@ALIAS``
pulled from the store. The pool is a folder of images or a converted dataset (annotations/*.json + images/).

How, for an mmdet single-stage detector (RTMDet): images go through the config's test pipeline and data
preprocessor in batches (each frame with its mirror image); backbone -> neck -> head; the boxes are the head's
own ``predict_by_feat`` with ``score_thr`` lowered to ``SCORE_THR`` (the uncertainty signals need the
low-confidence boxes) and rescaled to the original image, i.e. exactly what ``model.predict`` returns.
mmdet keeps only each box's winning score, so the per-class vector of each box is read back from the head's
outputs at the prior the box was decoded from (the prior whose decoded box and class score equal the kept
one's).

Two embeddings per frame, for two questions:

* ``embedding`` (novelty: does the frame look unlike the data?): every backbone stage, global-average pooled and
  L2-normalised, concatenated (and normalised again). The early stages keep what the last one is trained to be
  invariant to: exposure, colour, noise, weather. Measured on bench/iterate_bench.py's pool: dark frames (pixels
  x 0.3) sit at cosine distance ~0.001 from a daylight train frame in the last stage alone (not novel), and at
  0.29 with every stage (over 3x the train split's own 90th-percentile nearest-neighbour distance).
* ``content`` (diversity in ``select``: do two frames show the same scene?): the backbone's last stage on the
  exposure-equalised image (each channel standardised per image before the test pipeline), pooled and
  L2-normalised. Without equalising, every dark frame embeds alike (mean pairwise distance 0.006 against 0.64
  between daylight frames), so the first dark frame chosen would make every other one a near-copy; equalised,
  dark frames are as far apart as daylight ones (0.46 against 0.58). It costs one more backbone pass per frame.

With ``reference`` (the current dataset, convert's output), the frames of its train split are embedded too
(``reference.npy``), so ``score`` can measure novelty against what the model learned from. Not its val split: val
frames teach the model nothing, and a team's val split often holds, on purpose, the rare cases the model lacks
(measured in bench/iterate_bench.py: with val among the reference, every dark pool frame sat at cosine distance
~0 from a dark val frame and scored novelty 0, though the train split has no dark frame).

With a converted ``reference``, the same backbone pass also takes the features of its train split's labeled boxes,
and a class-balanced probe is fitted on them (``probe.py``: the evidence for a class the model has seen too few
of); every detection then carries the probe's class probabilities (``probe_scores``) beside the head's, and the
summary records the exemplars per class, the chosen penalty and the held-out balanced accuracy (or why no probe
was fitted: too few labeled boxes of a class, or a reference without labels).
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from admlops.components.iterate import probe as class_probe
from admlops.components.iterate.predictions import Detections, FramePrediction, write_predictions
from admlops.components.iterate.probe import Probe, roi_features
from admlops.errors import InputError, UsageError
from admlops.localfs import atomic_dir

SCORE_THR = 0.005
BATCH = 4
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def pool_frames(pool: str | Path, splits: tuple[str, ...] | None = None) -> tuple[list[tuple[str, Path]], str]:
    """(frame id, image) of every pool frame, and the pool's kind: a converted dataset (the images its
    annotations list: every split, or ``splits``) or a folder of images (searched recursively; the id is the
    file's stem)."""
    pool = Path(pool)
    if not pool.is_dir():
        raise InputError(pool, "pool not found: expected a folder of images or a converted dataset")
    if (pool / "annotations").is_dir():
        files = []
        for ann in sorted((pool / "annotations").glob("*.json")):
            if splits and ann.stem not in splits:
                continue
            try:
                files += [pool / im["file_name"] for im in json.loads(ann.read_text())["images"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(ann, f"not a COCO annotation file ({exc})") from None
        kind = "dataset"
    else:
        files, kind = sorted(p for p in pool.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES), "images"
    frames, seen = [], {}
    for path in files:
        if path.stem in seen:
            raise InputError(path, f"two pool images have the frame id {path.stem!r} (the other: {seen[path.stem]})")
        seen[path.stem] = path
        frames.append((path.stem, path))
    return frames, kind


def resolve_model(model: str | Path, store: str, cache: Path) -> tuple[Path, dict]:
    """The model directory and its record: a directory as it is (with model.pth's sha256), or a zoo model
    ``NAME@VERSION|ALIAS`` pulled (verified) from ``store`` (name, version, manifest sha256, the reference)."""
    from admlops import refs

    path, version = refs.fetch(store, "models", model, cache / "model", directory=True)
    if version is not None:
        return path, version.ref() | {"ref": str(model)}
    if not (path / "model.pth").is_file() or not (path / "config.py").is_file():
        raise InputError(path, "not a model directory: expected model.pth and config.py (train's output)")
    return path, {"path": str(path.resolve()), "sha256": hashlib.sha256((path / "model.pth").read_bytes()).hexdigest()}


class Detector:
    """An mmdet detector loaded from a model directory, with its test pipeline fed from arrays."""

    def __init__(self, model_dir: Path, device: str | None = None):
        from admlops import compat

        compat.apply()
        import torch
        from mmcv.transforms import Compose
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
        from mmengine.config import Config

        register_all_modules()
        cfg = Config.fromfile(str(model_dir / "config.py"))
        checkpoint = torch.load(model_dir / "model.pth", map_location="cpu", weights_only=True)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = MODELS.build(cfg.model)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.to(self.device).eval()
        meta = (checkpoint.get("meta") or {}).get("dataset_meta") or {}
        self.classes = list(meta.get("classes") or cfg.test_dataloader.dataset.metainfo.classes)
        steps = [dict(s) for s in cfg.test_dataloader.dataset.pipeline if s["type"] != "LoadAnnotations"]
        steps[0] = dict(type="mmdet.LoadImageFromNDArray")  # images come as arrays (the frame and its mirror)
        self.pipeline = Compose(steps)
        self.test_cfg = cfg.model.test_cfg
        self.probe: Probe | None = None  # fitted by infer on the reference's labeled boxes (probe.py)

    def _batch(self, images: list[np.ndarray]):
        from mmengine.dataset import pseudo_collate

        data = self.model.data_preprocessor(pseudo_collate([self.pipeline(dict(img=im, img_id=0)) for im in images]), False)
        return data["inputs"], [s.metainfo for s in data["data_samples"]]

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """[len(images), D] appearance embeddings (novelty): every backbone stage pooled (``_stages``)."""
        return self.embed_boxes(images, [np.zeros((0, 4))] * len(images))[0]

    def embed_boxes(self, images: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """The images' appearance embeddings and, from the same backbone pass, the probe's features of each
        image's ``boxes`` (original pixels; probe.roi_features)."""
        import torch

        inputs, metas = self._batch(images)
        with torch.no_grad():
            stages = self.model.backbone(inputs)
        feats = roi_features(stages, boxes, [m["scale_factor"] for m in metas], inputs.shape[-1]) if any(map(len, boxes)) else []
        return _stages(stages), feats

    def content(self, images: list[np.ndarray]) -> np.ndarray:
        """[len(images), D'] content embeddings (diversity): the last stage on the exposure-equalised images."""
        import torch

        inputs, _ = self._batch([equalise(im) for im in images])
        with torch.no_grad():
            return _pool(self.model.backbone(inputs)[-1])

    def detect(self, images: list[np.ndarray], score_thr: float = SCORE_THR) -> tuple[list[Detections], np.ndarray]:
        """Detections on each image (original pixels) and the images' appearance embeddings."""
        import torch
        from mmengine.config import ConfigDict

        inputs, metas = self._batch(images)
        head = self.model.bbox_head
        cfg = ConfigDict(dict(self.test_cfg, score_thr=score_thr))
        with torch.no_grad():
            stages = self.model.backbone(inputs)
            outs = head(self.model.neck(stages) if self.model.with_neck else stages)
            results = head.predict_by_feat(*outs, batch_img_metas=metas, cfg=cfg, rescale=True)
            vectors = _class_vectors(head, outs, metas, results)
        boxes = [r.bboxes.cpu().numpy() for r in results]
        probed = [None] * len(boxes)
        if self.probe is not None and any(map(len, boxes)):
            probed = [self.probe(f) for f in roi_features(stages, boxes, [m["scale_factor"] for m in metas], inputs.shape[-1])]
        dets = [Detections.of(b, r.scores.cpu().numpy(), r.labels.cpu().numpy(), v, p)
                for b, r, v, p in zip(boxes, results, vectors, probed, strict=True)]
        return dets, _stages(stages)


def _pool(feature) -> np.ndarray:
    emb = feature.mean(dim=(2, 3))
    return (emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


def _stages(stages) -> np.ndarray:
    """Every stage pooled and L2-normalised, concatenated, normalised again: each stage weighs the same."""
    return np.concatenate([_pool(s) for s in stages], axis=1) / np.sqrt(len(stages))


def equalise(image: np.ndarray) -> np.ndarray:
    """The image with each channel standardised (mean 128, standard deviation 48): exposure and white balance
    removed, what the scene shows kept."""
    x = image.astype(np.float32)
    mean, std = x.reshape(-1, x.shape[-1]).mean(0), x.reshape(-1, x.shape[-1]).std(0)
    return np.clip((x - mean) / np.maximum(std, 1.0) * 48.0 + 128.0, 0, 255).astype(np.uint8)


def _class_vectors(head, outs, metas, results) -> list[np.ndarray | None]:
    """Per kept box, the class scores at the prior it was decoded from (None where the head is not a one-prior
    dense head whose outputs are (cls_scores, bbox_preds), e.g. anchor-based heads with several priors)."""
    import torch

    if len(outs) != 2 or getattr(head, "num_base_priors", 1) != 1 or not hasattr(head, "prior_generator"):
        return [None] * len(results)
    cls_scores, bbox_preds = outs
    priors = torch.cat(head.prior_generator.grid_priors([c.shape[-2:] for c in cls_scores], dtype=cls_scores[0].dtype,
                                                        device=cls_scores[0].device))
    out = []
    for i, (meta, r) in enumerate(zip(metas, results, strict=True)):
        logits = torch.cat([c[i].permute(1, 2, 0).reshape(-1, head.cls_out_channels) for c in cls_scores])
        probs = logits.sigmoid() if head.use_sigmoid_cls else logits.softmax(-1)[:, :-1]
        reg = torch.cat([b[i].permute(1, 2, 0).reshape(-1, head.bbox_coder.encode_size) for b in bbox_preds])
        boxes = head.bbox_coder.decode(priors, reg, max_shape=meta["img_shape"])
        boxes = boxes / boxes.new_tensor(meta["scale_factor"]).repeat(2)
        if not len(r.bboxes):
            out.append(np.zeros((0, probs.shape[1])))
            continue
        cost = torch.cdist(r.bboxes, boxes, p=1) + 1e3 * (probs[:, r.labels].T - r.scores[:, None]).abs()
        out.append(probs[cost.argmin(dim=1)].cpu().numpy())
    return out


def _read_image(path: Path) -> np.ndarray:
    import mmcv

    try:
        img = mmcv.imread(str(path))  # BGR, as the config's LoadImageFromFile reads it
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad image
        raise InputError(path, f"unreadable image: {exc}") from None
    if img is None:
        raise InputError(path, "unreadable image")
    return img


def _batches(frames: list[tuple[str, Path]], size: int) -> Iterator[list[tuple[str, Path, np.ndarray]]]:
    for lo in range(0, len(frames), size):
        yield [(f, p, _read_image(p)) for f, p in frames[lo : lo + size]]


def _unflip(d: Detections, width: int) -> Detections:
    boxes = d.boxes.copy()
    boxes[:, [0, 2]] = width - d.boxes[:, [2, 0]]
    return Detections(boxes, d.scores, d.labels, d.class_scores, d.probe_scores)


def infer(model: str | Path, pool: str | Path, out: str | Path, reference: str | Path | None = None, store: str = "",
          batch_size: int = BATCH, score_thr: float = SCORE_THR, flip: bool = True, device: str | None = None) -> dict:
    """Predict every frame of ``pool`` with ``model`` (a model directory or a zoo ``NAME@VERSION|ALIAS`` in
    ``store``), also on the mirror image when ``flip``; embed ``reference``'s frames (the current dataset's train
    split; every image of a folder) when given. Publishes a predictions directory at ``out``; returns its summary."""
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    frames, kind = pool_frames(pool)
    if not frames:
        raise UsageError(f"{pool}: the pool has no images ({', '.join(IMAGE_SUFFIXES)}): nothing to infer")
    ref_frames = pool_frames(reference, splits=("train",))[0] if reference else []
    with tempfile.TemporaryDirectory(prefix="admlops-infer-") as cache:
        model_dir, model_record = resolve_model(model, store, Path(cache))
        det = Detector(model_dir, device)
    summary = {
        "classes": det.classes, "model": model_record, "score_thr": score_thr, "flip": flip, "device": det.device,
        "pool": {"path": str(Path(pool).resolve()), "name": Path(pool).resolve().name, "kind": kind, "frames": len(frames)},
        "reference": None if not reference else {"path": str(Path(reference).resolve()), "frames": len(ref_frames)},
        "embedding": "every backbone stage, global average pool, L2-normalised, concatenated (novelty)",
        "content": "backbone last stage of the exposure-equalised image, global average pool, L2-normalised (diversity)",
    }
    with atomic_dir(out) as tmp:
        ref = None
        if ref_frames:
            exemplars = _exemplar_boxes(Path(reference), det.classes)
            batches = tqdm(_batches(ref_frames, batch_size), total=-(-len(ref_frames) // batch_size), desc="embed reference",
                           unit="batch")
            embs, feats, labels = [], [], []
            for b in batches:
                labeled = [exemplars.get(f, (np.zeros((0, 4)), np.zeros(0, dtype=np.int64))) for f, _, _ in b]
                e, f = det.embed_boxes([im for _, _, im in b], [x for x, _ in labeled])
                embs.append(e)
                feats += [x for x in f if len(x)]
                labels += [y for _, y in labeled]
            ref = ([f for f, _ in ref_frames], np.concatenate(embs))
            det.probe, why = class_probe.fit(np.concatenate(feats) if feats else np.zeros((0, 0)),
                                             np.concatenate(labels).astype(np.int64), det.classes)
            summary["probe"] = {"exemplars": dict(zip(det.classes, det.probe.exemplars, strict=True)),
                                "penalty": det.probe.penalty, "held_out_balanced_accuracy":
                                round(det.probe.balanced_accuracy, 4)} if det.probe else {"skipped": why}
        count = write_predictions(tmp, _predict(det, frames, batch_size, score_thr, flip), summary, ref)
    return summary | {"frames": count}


def _exemplar_boxes(reference: Path, classes: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The probe's exemplars: frame id -> (boxes x1 y1 x2 y2, class indices) of the labeled boxes of the model's
    classes in the reference dataset's train split (no crowd or ignore regions), at most ``MAX_PER_CLASS`` per
    class (probe.sample_exemplars); empty for a folder of images (no labels)."""
    ann_path = reference / "annotations" / "train.json"
    if not ann_path.is_file():
        return {}
    try:
        coco = json.loads(ann_path.read_text())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        stems = {im["id"]: Path(im["file_name"]).stem for im in coco["images"]}
        rows = [(stems[a["image_id"]], [float(v) for v in a["bbox"]], classes.index(names[a["category_id"]]))
                for a in coco["annotations"] if not a.get("iscrowd") and names.get(a["category_id"]) in classes]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(ann_path, f"not a COCO annotation file ({type(exc).__name__}: {exc})") from None
    labels = np.array([c for _, _, c in rows], dtype=np.int64)
    out: dict[str, tuple[list, list]] = {}
    for i in class_probe.sample_exemplars(labels, len(classes)):
        frame, (x, y, w, h), c = rows[i]
        boxes, labs = out.setdefault(frame, ([], []))
        boxes.append([x, y, x + w, y + h])
        labs.append(c)
    return {f: (np.array(b, dtype=np.float64), np.array(c, dtype=np.int64)) for f, (b, c) in out.items()}


def _predict(det: Detector, frames: list[tuple[str, Path]], batch_size: int, score_thr: float,
             flip: bool) -> Iterator[FramePrediction]:
    """The pool's predictions, batch by batch (streamed to disk: memory does not grow with the pool)."""
    for batch in tqdm(_batches(frames, batch_size), total=-(-len(frames) // batch_size), desc="infer", unit="batch"):
        images = [im for _, _, im in batch]
        dets, emb = det.detect(images + [np.ascontiguousarray(im[:, ::-1]) for im in images] if flip else images, score_thr)
        content = det.content(images)
        for k, (frame, path, im) in enumerate(batch):
            h, w = im.shape[:2]
            mirror = _unflip(dets[len(batch) + k], w) if flip else None
            yield FramePrediction(frame, str(path.resolve()), w, h, dets[k], mirror, emb[k], content[k])
