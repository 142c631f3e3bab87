"""Packaged configuration: mmengine model and deploy configs, dataset definitions."""
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent


def model_config(name_or_path: str) -> Path:
    """A model config by path, or by name from configs/models/."""
    path = Path(name_or_path)
    return path if path.suffix == ".py" else CONFIG_DIR / "models" / f"{name_or_path}.py"
