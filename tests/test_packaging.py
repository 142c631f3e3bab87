"""pyproject.toml packages every Python package of the tree: a component folder (``components/<step>/`` with an
``__init__.py``, and its subpackages) that [tool.setuptools] ``packages`` does not list is left out of the wheel the
images install, so its step fails with ImportError on a cluster while every test here, run from the checkout,
passes."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def packages_on_disk(package_dir: dict[str, str], root: Path) -> set[str]:
    """The dotted name of every folder with an ``__init__.py`` under each ``package-dir`` mapping."""
    found = set()
    for package, folder in package_dir.items():
        base = root / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if any(part.startswith((".", "__")) for part in rel.parts):
                continue
            found.add(".".join([package, *rel.parts]))
    return found


def unlisted_packages(pyproject: str, root: Path) -> list[str]:
    setuptools = tomllib.loads(pyproject)["tool"]["setuptools"]
    return sorted(packages_on_disk(setuptools["package-dir"], root) - set(setuptools["packages"]))


def test_every_package_is_listed_in_pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    assert unlisted_packages(text, ROOT) == [], "add these to [tool.setuptools] packages in pyproject.toml"
    # The check sees a component package, and a subpackage of one, that the list lacks.
    for package in ("admlops.components.train_distributed", "admlops.components.iterate.signals"):
        assert package in text
        assert unlisted_packages(text.replace(f'"{package}",', ""), ROOT) == [package]


def test_every_component_folder_is_mapped_and_a_package():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"]["admlops.components"] == "components"
    steps = {p.parent.name for p in (ROOT / "components").glob("*/*.py") if "__pycache__" not in p.parts}
    assert steps, "no component folders found under components/"
    missing_init = sorted(s for s in steps if not (ROOT / "components" / s / "__init__.py").is_file())
    assert not missing_init, f"components/<step>/ folders without an __init__.py (not packaged): {missing_init}"
    assert {f"admlops.components.{s}" for s in steps} <= set(setuptools["packages"])


def test_every_listed_package_exists():
    """A listed package with no folder fails `pip install` of the wheel (setuptools: package directory not found)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = packages_on_disk(setuptools["package-dir"], ROOT)
    assert sorted(set(setuptools["packages"]) - on_disk) == []
