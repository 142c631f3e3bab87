"""`admlops data push|pull|ls|show` and `admlops zoo ls|show|promote` on the local store."""
import json

from admlops import zoo
from admlops.objectstore import open_store
from admlops.pipelines.cli import main


def test_data_and_zoo_commands(tmp_path, capsys):
    store = str(tmp_path / "store")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("a")
    assert main(["data", "push", str(src), "--name", "demo", "--version", "v1", "--store", store]) == 0
    assert "demo@v1: 1 files" in capsys.readouterr().out
    stored = sorted(open_store(store).list("packs/")) + sorted(open_store(store).list("index/"))
    assert main(["data", "push", str(src), "--name", "demo-copy", "--store", store]) == 0  # the same files again
    assert "demo-copy@v" in capsys.readouterr().out
    assert sorted(open_store(store).list("packs/")) + sorted(open_store(store).list("index/")) == stored  # stored once
    assert main(["data", "ls", "--store", store]) == 0
    assert capsys.readouterr().out.startswith("demo@v1\t1 files")
    assert main(["data", "show", "demo@v1", "--store", store]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["files"][0]["path"] == "sub/a.txt" and shown["uri"].endswith("datasets/demo/v1/")
    assert main(["data", "pull", "demo@v1", str(tmp_path / "out"), "--store", store]) == 0
    assert (tmp_path / "out" / "sub" / "a.txt").read_text() == "a"
    assert main(["data", "pull", "demo", str(tmp_path / "x"), "--store", store]) == 2  # not NAME@VERSION
    assert main(["data", "pull", "demo@v9", str(tmp_path / "x"), "--store", store]) == 2  # unknown version: refs.UnknownReference
    assert "no committed version demo@v9" in capsys.readouterr().err

    v = zoo.publish(open_store(store), "det", src, zoo.lineage(None, None, run_id="r1"))
    assert main(["zoo", "promote", "det", v.version, "production", "--store", store]) == 0
    assert f"det:production -> {v.version} (was None)" in capsys.readouterr().out
    assert main(["zoo", "show", "det@production", "--store", store]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == v.version and shown["aliases"] == {"production": v.version}
    assert shown["lineage"]["pipeline_run_id"] == "r1"
    assert main(["zoo", "ls", "det", "--store", store]) == 0
    assert capsys.readouterr().out.startswith(f"det@{v.version}")
    # promote takes an alias as the version too (through the one resolver), and an unknown one is exit 2
    assert main(["zoo", "promote", "det", "production", "staging", "--store", store]) == 0
    assert f"det:staging -> {v.version} (was None)" in capsys.readouterr().out
    assert main(["zoo", "promote", "det", "v99", "staging", "--store", store]) == 2
    assert "det@v99" in capsys.readouterr().err
