"""Container images of the components, defined once. The pipelines read them at compile time."""

REGISTRY = "ghcr.io/admlops"
VERSION = "0.1.0"

# image name -> reference; images/<name>/Dockerfile builds each one.
IMAGES = {
    "cpu": f"{REGISTRY}/cpu:{VERSION}",  # convert, evaluate, export (CPU ONNX Runtime), benchmark
    "train": f"{REGISTRY}/train:{VERSION}",  # mmengine training
}
