"""The component images agree with the one place that pins versions (admlops/pins.py).

Docker cannot run here, so this is a static check of images/*/Dockerfile, scripts/install.sh and
admlops.images: every image a component names is built by a Dockerfile; every base image, toolchain and
package version in the Dockerfiles comes from the pins; install.sh installs the same pins; every image ends
as a non-root user; no Dockerfile or build script carries credentials.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import admlops
from admlops import images, pins

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted(ROOT.glob("images/*/Dockerfile"))
INSTALL_SH = (ROOT / "scripts/install.sh").read_text()
# Packages that only the CUDA images install (the CPU environment of install.sh has no GPU).
IMAGE_ONLY = {"onnxruntime-gpu", "tensorrt-cu13"}
# Build ARGs with a default that are not versions: parallelism, and the image deploy extends.
UNPINNED_ARGS = {"MAX_JOBS", "TRAIN_IMAGE"}
CREDENTIAL_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),  # GitHub tokens
    re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"),  # Slack tokens
    re.compile(r"(?i)\b(ENV|ARG)\s+\S*(SECRET|TOKEN|PASSWORD|PASSWD|ACCESS_KEY|API_KEY)\S*\s*=?\s*\S+"),
    re.compile(r"(?i)(aws_secret_access_key|aws_access_key_id|password|passwd|api[_-]?key|token)\s*[=:]\s*['\"]?[A-Za-z0-9/+]{8,}"),
    re.compile(r"(?i)https?://[^/\s:@]+:[^/\s@]+@"),  # credentials in a URL
]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        word, _, rest = text.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return out


def arg_defaults(path: Path) -> dict[str, str]:
    """Every ``ARG NAME=default`` of a Dockerfile (quotes removed); a name declared twice with a default fails."""
    found: dict[str, str] = {}
    for word, rest in instructions(path):
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            assert name not in found, f"{path}: ARG {name} has two defaults; give it one, before the first FROM"
            found[name] = value.strip().strip('"').strip("'")
    return found


def substitute(text: str, values: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"${name} has no default"
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, text)


def from_images(path: Path) -> list[str]:
    """The images of the FROM lines with the ARG defaults substituted; stages named earlier excluded."""
    defaults, stages, refs = {**arg_defaults(path), "TRAIN_IMAGE": images.IMAGES["train"]}, set(), []
    for word, rest in instructions(path):
        if word == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            ref = substitute(parts[0], defaults)
            if ref not in stages:
                refs.append(ref)
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
    return refs


def pip_commands(path: Path) -> list[str]:
    """Every ``pip install`` / ``pip wheel`` command of the RUN instructions."""
    cmds = []
    for word, rest in instructions(path):
        if word == "RUN":
            cmds += [m.group(0) for m in re.finditer(r"\bpip (?:install|wheel)\b[^&;|]*", rest)]
    return cmds


# -- admlops.images ---------------------------------------------------------------------------------------

def test_every_image_has_a_dockerfile_and_every_dockerfile_an_image():
    assert {p.parent.name for p in DOCKERFILES} == set(images.IMAGES), \
        "images/<name>/Dockerfile and admlops.images.IMAGES must name the same images"


def test_every_component_maps_to_a_defined_image():
    unknown = {c: i for c, i in images.COMPONENT_IMAGES.items() if not set(i) <= set(images.IMAGES)}
    assert not unknown, f"components name images that admlops.images.IMAGES does not define: {unknown}"
    assert {"convert", "analyze", "train", "evaluate", "export", "benchmark", "register"} <= set(images.COMPONENT_IMAGES)
    assert images.image_for("convert") == images.IMAGES["cpu"]
    assert images.image_for("export-trt") == images.IMAGES["deploy"]
    with pytest.raises(KeyError, match="no image for component 'nope'"):
        images.image_for("nope")


def test_gpu_steps_run_cuda_images():
    """A step given a GPU never runs the CPU image (CPU-only torch would hold a GPU it cannot use); the compiled
    profile pipelines are checked task by task in tests/test_profiles.py."""
    assert images.image_for("train", gpu=True) == images.IMAGES["train"]
    assert images.image_for("evaluate", gpu=True) == images.IMAGES["train"]
    assert images.image_for("train") == images.IMAGES["cpu"]
    assert images.IMAGES[images.TRAINJOB_NODE_IMAGE] == images.IMAGES["train"]


def test_tags_are_the_source_digest_not_a_version(tmp_path):
    """Tags name the source they are built from: immutable, changed by any image input, not by compiled YAML."""
    tag = images.tag()
    assert re.fullmatch(r"src-[0-9a-f]{12}", tag) and admlops.__version__ not in tag
    assert all(ref.endswith(":" + tag) for ref in images.IMAGES.values())
    # the digest of a copy of the inputs (no git: the walk fallback) moves with a source file only
    import shutil

    root = tmp_path / "src"
    for name in images.IMAGE_INPUTS:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copyfile)(ROOT / name, root / name)
    images.source_digest.cache_clear()
    base = images.source_digest(root)
    (root / "pipelines" / "detection2d.yaml").write_text("changed: compiled output is not an input\n")
    (root / "components" / "README.md").write_text("docs are not an input\n")
    images.source_digest.cache_clear()
    assert images.source_digest(root) == base
    (root / "components" / "convert" / "readers" / "kitti.py").write_text("# changed\n")
    images.source_digest.cache_clear()
    assert images.source_digest(root) != base
    images.source_digest.cache_clear()


def test_manifests_name_the_current_tag(tmp_path):
    copy = tmp_path / "kustomization.yaml"
    copy.write_text(images.KUSTOMIZATION.read_text())
    assert not images.sync_manifests(copy), "manifests/base/kustomization.yaml names another tag: run `admlops compile`"
    copy.write_text(copy.read_text().replace(images.tag(), "src-000000000000"))
    assert images.sync_manifests(copy) and images.tag() in copy.read_text()


def test_components_on_disk_have_an_image():
    """Each components/<name>/component.py names its steps' images (``image_for("<step>")``, one or more steps a
    file), and every step it names has one."""
    import re

    named = {p.parent.name: re.findall(r'image_for\("([^"]+)"\)', p.read_text()) for p in ROOT.glob("components/*/component.py")}
    assert not [d for d, steps in named.items() if not steps], "a component.py names no image"
    missing = sorted({s for steps in named.values() for s in steps} - set(images.COMPONENT_IMAGES))
    assert not missing, f"add these components to admlops.images.COMPONENT_IMAGES: {missing}"


def test_project_version_is_one():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert admlops.__version__ == version, "admlops.__version__ must equal pyproject.toml's version"


# -- the pins themselves ----------------------------------------------------------------------------------

def test_pins_cli_speaks_shell_and_pip():
    exports = subprocess.run([sys.executable, str(ROOT / "admlops/pins.py"), "--shell"], check=True,
                             capture_output=True, text=True).stdout
    shown = subprocess.run(["bash", "-c", 'eval "$1"; echo "$PIN_TORCH|$PIN_NUMPY|$PIN_KFP_KUBERNETES|$PIN_TORCH_CUDA_ARCH_LIST"',
                            "_", exports], check=True, capture_output=True, text=True).stdout.strip()
    assert shown == "|".join([pins.PACKAGES["torch"], pins.BOUNDS["numpy"], pins.PACKAGES["kfp-kubernetes"],
                              pins.BUILD["TORCH_CUDA_ARCH_LIST"]])
    reqs = [Requirement(line) for line in pins.constraints().splitlines()]
    assert len({r.name for r in reqs}) == len(reqs) == len(pins.PACKAGES) + len(pins.BOUNDS)
    assert not set(pins.PACKAGES) & set(pins.BOUNDS)
    assert subprocess.run([sys.executable, str(ROOT / "admlops/pins.py"), "--bogus"], capture_output=True).returncode == 2


def test_cuda_pins_agree_with_each_other():
    major, minor = pins.BUILD["CUDA_VERSION"].split(".")[:2]
    assert pins.BUILD["TORCH_CUDA"] == f"cu{major}{minor}", "torch's CUDA build must match the CUDA base image"
    trt = [name for name in pins.PACKAGES if name.startswith("tensorrt")]
    assert trt == [f"tensorrt-cu{major}"], "the TensorRT wheel must be the build for the image's CUDA major"
    assert pins.PACKAGES[trt[0]].startswith("10."), "mmdeploy's engine builder needs TensorRT 10 (11 drops FP16/INT8 flags)"
    assert pins.PACKAGES["onnxruntime-gpu"] == pins.PACKAGES["onnxruntime"], "CPU and CUDA ONNX Runtime must be the same release"
    assert f"onnxruntime-cuda-{major}" in pins.BUILD["ORT_CUDA13_INDEX"] and major == "13"
    assert all(re.fullmatch(r"\d+\.\d", a) for a in pins.BUILD["TORCH_CUDA_ARCH_LIST"].split(";"))
    assert int(pins.PACKAGES["mmcv"].split(".")[0]) == 2 and tuple(map(int, pins.PACKAGES["mmcv"].split(".")[:2])) < (2, 2), \
        "mmdet 3.3.0 requires mmcv<2.2"


# -- Dockerfiles ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_arg_defaults_are_the_pins(dockerfile):
    for name, value in arg_defaults(dockerfile).items():
        assert name != "TRAIN_IMAGE", f"{dockerfile}: TRAIN_IMAGE must have no default (images/build.sh passes the " \
            "train image built from the same source)"
        if name not in UNPINNED_ARGS:
            assert name in pins.BUILD, f"{dockerfile}: ARG {name} is not pinned in admlops/pins.py BUILD"
            assert value == pins.BUILD[name], f"{dockerfile}: ARG {name}={value}, but admlops/pins.py pins {pins.BUILD[name]}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_base_images_are_pinned_tags(dockerfile):
    refs = from_images(dockerfile)
    assert refs, f"{dockerfile}: no FROM"
    for ref in refs:
        if ref in images.IMAGES.values():
            continue
        name, _, tag = ref.rpartition(":")
        assert name and "/" not in tag and tag != "latest", f"{dockerfile}: base image {ref} is not pinned to a tag"
        assert re.search(r"\d", tag), f"{dockerfile}: base image {ref} has no version in its tag"
    text = "\n".join(refs)
    if dockerfile.parent.name == "cpu":
        assert f"python:{pins.BUILD['PYTHON_VERSION']}-slim-{pins.BUILD['DEBIAN_RELEASE']}" in refs
    if dockerfile.parent.name == "train":
        cuda, ubuntu = pins.BUILD["CUDA_VERSION"], pins.BUILD["UBUNTU_RELEASE"]
        assert f"nvidia/cuda:{cuda}-devel-{ubuntu}" in refs, "train builds mmcv in a CUDA devel stage"
        assert f"nvidia/cuda:{cuda}-cudnn-runtime-{ubuntu}" in refs, "train runs on the CUDA runtime image"
        assert f"ghcr.io/astral-sh/uv:{pins.BUILD['UV_VERSION']}" in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_packages_come_from_the_pins(dockerfile):
    text = dockerfile.read_text()
    literal = re.findall(r"\b([A-Za-z][\w.-]*)==(\d[\w.+-]*)", text)
    assert not literal, f"{dockerfile}: versions written in the Dockerfile instead of admlops/pins.py: {literal}"
    pinned = set(pins.PACKAGES) | set(pins.BOUNDS)
    for cmd in pip_commands(dockerfile):
        words = set(re.findall(r"(?<![\w/.-])([a-z][a-z0-9-]*[a-z0-9])(?![\w/.-])", cmd))
        if words & pinned:
            assert "-c /opt/admlops/constraints.txt" in cmd, f"{dockerfile}: `{cmd.strip()}` installs pinned packages without the pins' constraints"
    if "constraints.txt" in text:
        assert "pins.py --constraints > /opt/admlops/constraints.txt" in text, f"{dockerfile}: constraints must be made from admlops/pins.py"


def test_train_image_builds_mmcv_with_cuda_ops_for_datacenter_gpus():
    text = (ROOT / "images/train/Dockerfile").read_text()
    assert "MMCV_WITH_OPS=1" in text and "FORCE_CUDA=1" in text and 'TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}"' in text
    assert "--no-build-isolation" in text, "mmcv's setup.py imports the installed torch"
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in text
    assert "COPY --from=mmcv-build /wheels" in text, "the runtime stage installs the wheel built in the devel stage"


def test_deploy_image_has_tensorrt_10_and_mmdeploy_ops_built_for_it():
    text = (ROOT / "images/deploy/Dockerfile").read_text()
    assert "tensorrt-cu13" in text and "${PIN_TENSORRT_CU13}" in text, "TensorRT headers and wheel from the same pin"
    assert 'v${PIN_MMDEPLOY}' in text, "mmdeploy's plugins are built from the pinned mmdeploy release"
    assert "libmmdeploy_tensorrt_ops.so" in text and "onnxruntime-gpu" in text and "mmdeploy" in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_ends_as_a_non_root_user(dockerfile):
    """The final stage's last USER is uid 1000, numeric so that the kubelet can verify runAsNonRoot, and
    created by useradd in this image or the one it extends."""
    ins = instructions(dockerfile)
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    users = [rest for w, rest in ins[last_from:] if w == "USER"]
    assert users, f"{dockerfile}: the final stage sets no USER (it would run as root)"
    assert users[-1] == "1000:1000", f"{dockerfile}: the image ends as USER {users[-1]}, expected 1000:1000"
    text = dockerfile.read_text()
    assert re.search(r"useradd\b[^&]*--uid 1000 --gid 1000\b", text) or ins[last_from][1].startswith("${TRAIN_IMAGE}"), \
        f"{dockerfile}: uid 1000 is not created in this image"


@pytest.mark.parametrize("path", [*DOCKERFILES, ROOT / "images/build.sh", *sorted(ROOT.glob("images/*/Dockerfile.dockerignore"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_credentials_in_images(path):
    text = path.read_text()
    for pattern in CREDENTIAL_PATTERNS:
        assert not pattern.search(text), f"{path}: looks like a credential: {pattern.search(text).group(0)!r}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_build_context_leaves_local_environments_out(dockerfile):
    ignore = dockerfile.with_name("Dockerfile.dockerignore")
    assert ignore.exists(), f"{ignore} is missing: `COPY . .` would copy .venv and .git into the image"
    lines = set(ignore.read_text().split())
    assert {".venv", ".git"} <= lines


# -- scripts/install.sh -----------------------------------------------------------------------------------

def test_install_sh_reads_the_pins():
    assert 'eval "$("$VENV/bin/python" admlops/pins.py --shell)"' in INSTALL_SH
    assert "admlops/pins.py" in INSTALL_SH.split("HASH=", 1)[1].splitlines()[0], "a pin change must re-run the install"
    code = "\n".join(line.split(" #")[0] for line in INSTALL_SH.splitlines() if not line.lstrip().startswith("#"))
    literal = re.findall(r"\b([A-Za-z][\w.\[\]-]*)(==|<|>=)\s*['\"]?(\d[\w.]*)", code)
    assert not literal, f"scripts/install.sh writes versions itself instead of reading admlops/pins.py: {literal}"
    for name in pins.PACKAGES:
        if name in IMAGE_ONLY:
            continue
        assert re.search(rf'"{re.escape(name)}(\[\w+\])?==\${pins.shell_name(name)}"', INSTALL_SH), \
            f"scripts/install.sh does not install {name}==${pins.shell_name(name)}"
    for name in pins.BOUNDS:
        assert f'"{name}${pins.shell_name(name)}"' in INSTALL_SH, f"scripts/install.sh does not bound {name}"


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@pytest.mark.parametrize("name", sorted(set(pins.PACKAGES) - IMAGE_ONLY))
def test_this_environment_has_the_pinned_versions(name):
    """What install.sh installed here is what the pins say (torch carries its local label: 2.13.0+cpu)."""
    version = _installed(name)
    assert version is not None, f"{name} is pinned but not installed: run scripts/install.sh"
    assert version.split("+")[0] == pins.PACKAGES[name], f"{name} {version} installed, admlops/pins.py pins {pins.PACKAGES[name]}"
