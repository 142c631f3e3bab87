"""Container images of the components, defined once. The pipelines read them at compile time."""

REGISTRY = "ghcr.io/admlops"
VERSION = "0.1.0"

# image name -> reference; images/<name>/Dockerfile builds each one.
IMAGES = {
    # every step of the CPU closed loop: convert, train (CPU), evaluate, export, ONNX Runtime benchmark
    "cpu": f"{REGISTRY}/cpu:{VERSION}",
}
