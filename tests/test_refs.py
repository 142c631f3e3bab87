"""admlops.refs: one grammar and one resolver for NAME@VERSION, NAME@ALIAS and local directories."""
import pytest

from admlops import catalog, refs, zoo
from admlops.components.iterate.merge import resolve_parent
from admlops.errors import UsageError
from admlops.objectstore import open_store
from admlops.pipelines.cli import main


def _tree(root, files):
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def store(tmp_path):
    st = open_store(tmp_path / "store")
    data = catalog.push(st, "datasets", "kitti", _tree(tmp_path / "d", {"a.txt": b"a"}), "v1")
    model = zoo.publish(st, "det", _tree(tmp_path / "m", {"model.pth": b"w", "config.py": b"x = 1\n"}),
                        zoo.lineage(data.ref(), None))
    zoo.promote(st, "det", model.version, "production")
    return st, data, model


def test_the_three_forms(store, tmp_path):
    st, data, model = store
    assert refs.resolve(st, "datasets", "kitti@v1") == ("kitti", "v1")
    assert refs.resolve(st, "models", f"det@{model.version}") == ("det", model.version)
    assert refs.resolve(st, "models", "det@production") == ("det", model.version)
    path, version = refs.fetch(st, "datasets", "kitti@v1", tmp_path / "pulled")
    assert path == tmp_path / "pulled" and (path / "a.txt").read_bytes() == b"a" and version == catalog.show(st, "datasets", "kitti", "v1")
    local = _tree(tmp_path / "odd@name", {"b.txt": b"b"})  # an existing path is local, '@' or not
    assert not refs.is_reference(local) and refs.is_reference("kitti@v1") and not refs.is_reference("plain")
    assert refs.fetch(st, "datasets", str(local), tmp_path / "unused") == (local, None)
    assert not (tmp_path / "unused").exists()
    with refs.local_copy(st, "datasets", "kitti@v1") as (path, version):
        assert (path / "a.txt").read_bytes() == b"a" and version.version == "v1"
    assert not path.exists()
    assert version.record(st) == data.ref() | {"uri": st.uri("datasets/kitti/v1/")}


def test_store_given_by_uri_is_opened_only_for_a_reference(store, tmp_path):
    st, _, model = store
    assert refs.resolve(st.uri(), "models", "det@production") == ("det", model.version)
    assert refs.fetch("s3://", "datasets", str(tmp_path / "d"), tmp_path / "x") == (tmp_path / "d", None)  # not opened


@pytest.mark.parametrize("text, kind, message", [
    ("nope@v1", "datasets", "no committed version nope@v1 (no dataset named 'nope'; known datasets: kitti)"),
    ("kitti@v9", "datasets", "no committed version kitti@v9 (known versions: v1; datasets have no aliases)"),
    ("kitti@production", "datasets", "no committed version kitti@production (known versions: v1; datasets have no aliases)"),
    ("det@staging", "models", "no committed version det@staging (known versions: {v}; aliases: production)"),
    ("det@v000000000000", "models", "no committed version det@v000000000000 (known versions: {v}; aliases: production)"),
    ("kitti@v1", "models", "no committed version kitti@v1 (no model named 'kitti'; known models: det)"),
])
def test_unknown_name_version_or_alias_is_one_usage_error(store, text, kind, message):
    st, _, model = store
    with pytest.raises(refs.UnknownReference) as err:
        refs.resolve(st, kind, text)
    assert isinstance(err.value, UsageError) and err.value.exit_code == 2
    assert str(err.value) == f"{st.uri(kind + '/' + text.split('@')[0] + '/')}: " + message.format(v=model.version)


@pytest.mark.parametrize("text", ["kitti", "@v1", "kitti@", ""])
def test_malformed_reference_names_the_forms(store, text):
    with pytest.raises(UsageError, match=r"expected NAME@VERSION$"):
        refs.resolve(store[0], "datasets", text)
    with pytest.raises(UsageError, match=r"expected NAME@VERSION or NAME@ALIAS$"):
        refs.resolve(store[0], "models", text)


def test_local_path_that_is_no_directory(store, tmp_path):
    with pytest.raises(UsageError, match=r"^dataset '.*nowhere': expected a directory or NAME@VERSION$"):
        refs.fetch(store[0], "datasets", str(tmp_path / "nowhere"), tmp_path / "x", directory=True)
    assert refs.fetch(store[0], "datasets", str(tmp_path / "nowhere"), tmp_path / "x") == (tmp_path / "nowhere", None)


def test_same_error_from_a_step_and_a_command(store, tmp_path, capsys):
    st, _, _ = store
    with pytest.raises(refs.UnknownReference) as err:
        resolve_parent(st, "kitti@v9", tmp_path / "cache")
    assert main(["data", "pull", "kitti@v9", str(tmp_path / "out"), "--store", st.uri()]) == 2
    assert f"admlops: error: {err.value}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_many_versions_are_listed_as_the_most_recent(tmp_path):
    st = open_store(tmp_path / "store")
    for i in range(12):
        catalog.push(st, "datasets", "d", _tree(tmp_path / f"d{i}", {"a.txt": bytes([i])}), f"v{i:02d}")
    with pytest.raises(refs.UnknownReference, match=r"known versions: v02, .*, v11 \(the last 10 of 12\)"):
        refs.resolve(st, "datasets", "d@v99")


def test_open_store_without_uri_is_the_default(monkeypatch, tmp_path):
    from admlops import objectstore

    monkeypatch.setattr(objectstore, "DEFAULT_STORE", str(tmp_path / "default"))
    assert open_store(None).uri() == open_store("").uri() == open_store().uri() == (tmp_path / "default").as_uri()
