"""Container images of the components, defined once: ``image_for(step, gpu)`` is the one place a step's image
is chosen. The pipelines read it at compile time.

Each image is built from ``images/<name>/Dockerfile`` (versions from admlops/pins.py; see images/README.md).
Its tag is ``src-<digest>``: the first 12 hex digits of a SHA-256 over every file the images are built from
(``IMAGE_INPUTS``: the package sources, configs, install scripts, Dockerfiles and pins; not the compiled
pipeline YAML nor the manifests, which name the tag). So a tag is immutable — the same tag always holds the
same source, a branch that changes any input gets a new one, and no build overwrites another's image — and
a compiled pipeline names exactly the images built from its own tree (CI builds, pushes and compiles from
one checkout; the commit goes into the image's ``org.opencontainers.image.revision`` label).
"""
from __future__ import annotations

import functools
import hashlib
import re
import subprocess
from pathlib import Path

REGISTRY = "ghcr.io/admlops"
ROOT = Path(__file__).resolve().parent.parent

# What the images are built from (paths relative to the repository root; directories recursively).
IMAGE_INPUTS = ("admlops", "components", "pipelines", "configs", "scripts", "images", "pyproject.toml")
# ... except what names the tag itself (compiled pipelines) or is not code.
_EXCLUDED_SUFFIXES = (".yaml", ".yml", ".md", ".pyc")
_INCLUDED_YAML_DIRS = ("configs",)  # dataset definitions and cluster profiles are inputs

# image name -> what it holds
IMAGE_CONTENTS = {
    "cpu": "the CPU closed loop: torch (CPU), mmcv with CPU ops, mmdet, mmdet3d, mmdeploy, ONNX Runtime, OpenVINO, kfp",
    "train": "CUDA training and evaluation: torch (CUDA), mmcv with CUDA ops, mmdet, mmdet3d, kfp",
    "deploy": "the train image + TensorRT 10, ONNX Runtime (CUDA)",
}

# step -> (image without a GPU, image when the step is given a GPU). Every step that may hold a GPU names a
# CUDA image for that case, so a GPU is never held by CPU-only torch.
COMPONENT_IMAGES: dict[str, tuple[str, str]] = {
    "convert": ("cpu", "cpu"),  # merges the shards into the COCO dataset
    "convert-plan": ("cpu", "cpu"),  # the shard indices
    "convert-shard": ("cpu", "cpu"),  # a frame range read
    "infos": ("cpu", "cpu"),  # KITTI / nuScenes -> an mmdet3d data root (merges the shards)
    "infos-plan": ("cpu", "cpu"),
    "infos-shard": ("cpu", "cpu"),
    "analyze": ("cpu", "cpu"),
    "train": ("cpu", "train"),
    "tune-study": ("cpu", "cpu"),  # creates the study
    "tune-best": ("cpu", "cpu"),  # publishes the study, registers its best model
    "tune": ("cpu", "train"),  # a worker: trials train and evaluate
    "zoo-model": ("cpu", "cpu"),  # a zoo model as a pipeline artifact
    "prune": ("cpu", "train"),  # prunes a zoo model and fine-tunes it
    "distill": ("cpu", "train"),  # trains a student guided by a zoo teacher
    "qat": ("cpu", "train"),  # fine-tunes a zoo model with int8 in the loop
    "optimize-report": ("cpu", "cpu"),
    "evaluate": ("cpu", "train"),
    "export": ("cpu", "deploy"),
    "benchmark": ("cpu", "deploy"),
    "register": ("cpu", "cpu"),
    "train-distributed": ("cpu", "cpu"),  # only orchestrates; its TrainJob's nodes run TRAINJOB_NODE_IMAGE
    "export-trt": ("deploy", "deploy"),  # ONNX -> TensorRT engine: needs a GPU
    "benchmark-trt": ("deploy", "deploy"),
    "iterate-infer": ("cpu", "train"),  # the model over the unlabeled pool
    "iterate": ("cpu", "cpu"),  # score, select, report, labeling tasks, import, merge
    "promote": ("cpu", "train"),  # evaluates two models
    "dataset-version": ("cpu", "cpu"),
    "ingest": ("cpu", "cpu"),  # recorded drives -> synchronised frames
    "screen": ("cpu", "cpu"),  # the screening rules, the unlabeled dataset version
}
TRAINJOB_NODE_IMAGE = "train"  # the torch-distributed ClusterTrainingRuntime's nodes


def _input_files(root: Path) -> list[Path]:
    try:  # the tracked files, as a build from a clean checkout sees them
        out = subprocess.run(["git", "ls-files", "-z", "--", *IMAGE_INPUTS], cwd=root, capture_output=True, check=True)
        files = [root / p for p in out.stdout.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = [p for name in IMAGE_INPUTS for p in ([root / name] if (root / name).is_file() else (root / name).rglob("*"))]
    keep = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or "__pycache__" in rel:
            continue
        if path.suffix in _EXCLUDED_SUFFIXES and not rel.startswith(_INCLUDED_YAML_DIRS):
            continue
        keep.append(path)
    return sorted(keep)


@functools.lru_cache(maxsize=None)
def source_digest(root: Path = ROOT) -> str:
    """SHA-256 over (path, content) of every image input under ``root``."""
    files = _input_files(root)
    if not files:
        raise RuntimeError(f"{root}: none of {', '.join(IMAGE_INPUTS)} found: image tags are computed from the source "
                           "tree; compile pipelines from a checkout")
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def tag() -> str:
    return f"src-{source_digest()[:12]}"


def image(name: str) -> str:
    """The reference of image ``name``, e.g. ``ghcr.io/admlops/cpu:src-0123456789ab``."""
    if name not in IMAGE_CONTENTS:
        raise KeyError(f"no image {name!r}: expected one of {sorted(IMAGE_CONTENTS)}")
    return f"{REGISTRY}/{name}:{tag()}"


def image_for(step: str, gpu: bool = False) -> str:
    """The image step ``step`` runs in; ``gpu`` when its profile gives it an accelerator."""
    try:
        return image(COMPONENT_IMAGES[step][1 if gpu else 0])
    except KeyError:
        raise KeyError(f"no image for component {step!r}: expected one of {sorted(COMPONENT_IMAGES)}") from None


KUSTOMIZATION = ROOT / "manifests" / "base" / "kustomization.yaml"
_NEW_TAG = re.compile(r"^(\s+newTag: )\S+(.*)$", re.M)


def sync_manifests(path: Path = KUSTOMIZATION) -> bool:
    """Point the manifests' ``images:`` tag (the ClusterTrainingRuntime's node image) at ``tag()``; True if it
    changed. ``admlops compile`` calls it beside compiling the pipelines, which name the same tag."""
    text = path.read_text()
    new, count = _NEW_TAG.subn(lambda m: f"{m.group(1)}{tag()}{m.group(2)}", text)
    if count != 1:
        raise RuntimeError(f"{path}: expected one images: newTag line, found {count}")
    if new != text:
        path.write_text(new)
    return new != text


def __getattr__(name: str):  # IMAGES: image name -> reference, computed on first use
    if name == "IMAGES":
        return {n: image(n) for n in IMAGE_CONTENTS}
    raise AttributeError(name)


def main(argv: list[str]) -> int:
    """``python admlops/images.py NAME`` prints an image's reference (images/build.sh, CI)."""
    import sys

    if len(argv) != 1 or argv[0] not in IMAGE_CONTENTS:
        print(f"usage: python admlops/images.py {{{'|'.join(IMAGE_CONTENTS)}}}", file=sys.stderr)
        return 2
    print(image(argv[0]))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
