"""admlops.registry: the one shape of the deploy backends' and the dataset readers' registries."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from admlops.errors import UsageError
from admlops.registry import Registry


MODULES = ("widgets", "widgets_round", "widgets_square", "widgets_broken")


@pytest.fixture
def members(tmp_path, monkeypatch):
    """A registry (module ``widgets``) of two members, each in its own module on sys.path (not imported yet), and one
    map entry whose module registers nothing."""
    (tmp_path / "widgets.py").write_text(textwrap.dedent("""
        from admlops.registry import Registry

        WIDGETS = Registry("widget", {"round": "widgets_round", "square": "widgets_square", "broken": "widgets_broken"})
    """))
    for name in ("round", "square"):
        (tmp_path / f"widgets_{name}.py").write_text(textwrap.dedent(f"""
            from widgets import WIDGETS

            @WIDGETS.register("{name}")
            def make():
                return "{name}"
        """))
    (tmp_path / "widgets_broken.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    from widgets import WIDGETS

    yield WIDGETS
    for module in MODULES:
        sys.modules.pop(module, None)


def test_a_name_imports_only_its_own_module_on_first_use(members):
    assert members.names() == ("round", "square", "broken")  # the map's order, nothing imported
    assert not {"widgets_round", "widgets_square"} & set(sys.modules)
    assert members.get("round")() == "round"
    assert "widgets_round" in sys.modules and "widgets_square" not in sys.modules
    assert members.get("round") is members.get("round")


def test_an_unknown_name_is_a_usage_error_listing_the_known_ones(members):
    with pytest.raises(UsageError, match=r"^unknown widget 'hexagon': expected one of round, square, broken$") as err:
        members.get("hexagon")
    assert err.value.exit_code == 2


def test_a_map_entry_whose_module_registers_nothing_is_a_bug_not_a_usage_error(members):
    with pytest.raises(LookupError, match="widgets_broken registers no widget 'broken'"):
        members.get("broken")


def test_a_member_registered_outside_the_map_is_listed_and_found():
    registry = Registry("widget", {"round": "widgets_round"})

    @registry.register("oval")
    def oval():
        return "oval"

    assert registry.names() == ("round", "oval") and registry.get("oval") is oval


def test_the_readers_and_backends_names_import_no_member():
    code = ("import sys; from admlops.components.convert.records import READERS; from admlops.backends import BACKENDS; "
            "print(READERS.names(), BACKENDS.names()); "
            "print(sorted(m for m in sys.modules if m.startswith(('admlops.components.convert.readers', "
            "'admlops.backends.o', 'admlops.backends.t'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["('bdd100k', 'coco', 'kitti', 'nuscenes', 'voc', 'yolo') ('onnxruntime', 'openvino', 'tensorrt')", "[]"]
