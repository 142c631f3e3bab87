"""ADMLOps: the shared library under the lifecycle components (errors, storage, compatibility)."""

__version__ = "0.1.0"
