"""Cluster profiles: applied with kfp-kubernetes at compile time and visible in the compiled YAML; the
profile-free pipeline (kfp.local, the committed YAML) carries no Kubernetes settings."""
import pytest
import yaml

from admlops import images
from admlops.errors import InputError
from admlops.pipelines.profiles import load_profile
from admlops.pipelines.registry import compile_pipeline

GPU_STEPS = {"train": "train", "evaluate": "train", "export-trt": "deploy", "benchmark-trt": "deploy"}  # step -> image


def _compiled(tmp_path, profile=None):
    docs = list(yaml.safe_load_all(compile_pipeline("detection2d", tmp_path, profile).read_text()))
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    executors = spec["deploymentSpec"]["executors"]
    # executor label -> task display name, the tasks inside loops (the conversion's shards) too
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    names = {t["componentRef"]["name"].replace("comp-", "exec-"): t["taskInfo"]["name"]
             for dag in dags for t in dag["tasks"].values() if "iteratorPolicy" not in t and "parameterIterator" not in t}
    return spec, executors, platform, names


def test_profile_settings_in_compiled_yaml(tmp_path):
    profile = load_profile("a100")
    spec, executors, platform, names = _compiled(tmp_path, "a100")
    assert set(platform) == set(executors)  # every step is scheduled by the profile
    for label, k8s in platform.items():
        step = names[label]
        res = executors[label]["container"].get("resources", {})
        assert res.get("memoryRequest") and res.get("cpuRequest")
        assert k8s["emptyDirMounts"] == [{"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory",
                                          "sizeLimit": profile.shm_size}]
        env = {e["envVar"] for m in k8s["secretAsEnv"] for e in m["keyToEnv"]}
        assert env == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        assert all(m.get("secretName", m.get("secretNameParameter", {}).get("runtimeValue", {}).get("constant")) == "admlops-s3"
                   for m in k8s["secretAsEnv"])
        assert [s.get("secretName", s.get("secretNameParameter", {}).get("runtimeValue", {}).get("constant"))
                for s in k8s["imagePullSecret"]] == ["ghcr-admlops"]
        image = executors[label]["container"]["image"]
        if step in GPU_STEPS:
            assert image == images.IMAGES[GPU_STEPS[step]], f"{step} holds a GPU: it must run a CUDA image, not {image}"
            assert res["accelerator"]["resourceCount"] == "1" or res["accelerator"].get("count") == "1"
            assert k8s["nodeSelector"]["labels"] == profile.gpu_node_selector
            assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu" and k8s["tolerations"][0]["effect"] == "NoSchedule"
        else:
            assert "accelerator" not in res and "nodeSelector" not in k8s
            assert image == images.IMAGES["cpu"], step


def test_multi_node_profile_passes_the_train_parameters(tmp_path):
    """With train_nodes the TrainJob step receives train_max_iters, train_batch_size and train_seed, and its run
    id is the same pipeline job id that register records as lineage."""
    spec, executors, platform, names = _compiled(tmp_path, "a100-x4")
    tasks = spec["root"]["dag"]["tasks"]
    params = tasks["train-distributed"]["inputs"]["parameters"]
    for arg, pipeline_param in (("max_iters", "train_max_iters"), ("batch_size", "train_batch_size"), ("seed", "train_seed")):
        assert params[arg]["componentInputParameter"] == pipeline_param
    run_ids = {params["run_id"]["runtimeValue"]["constant"], tasks["register"]["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"]}
    assert run_ids == {"{{$.pipeline_job_uuid}}"}
    assert params["image"]["runtimeValue"]["constant"] == images.IMAGES["train"]


def test_tensorrt_steps_only_with_a_gpu_profile(tmp_path):
    spec, _, _, _ = _compiled(tmp_path, "a100")
    tasks = {t["taskInfo"]["name"]: (key, t) for key, t in spec["root"]["dag"]["tasks"].items()}
    assert {"export-trt", "benchmark-trt"} <= set(tasks)
    # a failed engine is recorded in the zoo and left untimed; it ends the run only under deploy_gates_fatal
    trt_key, trt = tasks["export-trt"]
    assert trt["inputs"]["parameters"]["enforce_gates"] == {"componentInputParameter": "deploy_gates_fatal"}
    for step in ("register", "benchmark-trt"):
        engines = tasks[step][1]["inputs"]["artifacts"]["engines"]["taskOutputArtifact"]
        assert engines == {"outputArtifactKey": "engines", "producerTask": trt_key}
    plain, _, _, _ = _compiled(tmp_path / "plain")
    assert not {"export-trt", "benchmark-trt"} & {t["taskInfo"]["name"] for t in plain["root"]["dag"]["tasks"].values()}


def test_no_profile_no_kubernetes_settings(tmp_path):
    spec, executors, platform, _ = _compiled(tmp_path)
    assert platform == {} and all("accelerator" not in e["container"].get("resources", {}) for e in executors.values())


def test_minio_profile_maps_the_endpoint_key(tmp_path):
    _, _, platform, _ = _compiled(tmp_path, "minio-dev")
    env = {e["envVar"] for k8s in platform.values() for m in k8s["secretAsEnv"] for e in m["keyToEnv"]}
    assert "AWS_ENDPOINT_URL" in env


def test_bad_profile_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ngpu: 2\n")
    with pytest.raises(InputError, match="unknown profile keys: gpu") as err:
        load_profile(bad)
    assert err.value.path == str(bad)


def test_tune_workers_share_the_study_volume_in_a_parallel_for(tmp_path):
    """With a profile's study_volume the tune pipeline's study, worker and best steps mount the ReadWriteMany claim
    the manifests ship and are told where (ADMLOPS_STUDY_DIR); the workers run in a ParallelFor over the study
    step's worker list, their models collected for the best step."""
    from admlops.components.tune.tune import STUDY_DIR_ENV

    docs = list(yaml.safe_load_all(compile_pipeline("tune", tmp_path, "a100").read_text()))
    spec, platform = docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounted = {label for label, k8s in platform.items()
               if k8s.get("pvcMount") and k8s["pvcMount"][0].get("mountPath") == "/studies"
               and "admlops-studies" in repr(k8s["pvcMount"][0])}
    assert mounted == {"exec-tune-study", "exec-tune-worker", "exec-tune-best"}, sorted(platform)
    for label in mounted:
        env = spec["deploymentSpec"]["executors"][label]["container"]["env"]
        assert {"name": STUDY_DIR_ENV, "value": "/studies"} in env
    (loop,) = [t for t in spec["root"]["dag"]["tasks"].values()  # the workers' loop (the other: convert's shards)
               if t.get("parameterIterator", {}).get("items", {}).get("inputParameter", "").endswith("tune-study-Output")]
    best = spec["root"]["dag"]["tasks"]["tune-best"]["inputs"]["artifacts"]["models"]
    assert best["taskOutputArtifact"]["producerTask"] == loop["taskInfo"]["name"]
    volume = load_profile("a100").study_volume
    claims = [d for d in yaml.safe_load_all(open("manifests/base/studies-pvc.yaml"))]
    assert claims[0]["metadata"]["name"] == volume and claims[0]["spec"]["accessModes"] == ["ReadWriteMany"]
