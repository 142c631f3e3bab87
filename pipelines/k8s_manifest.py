"""A pipeline as Kubernetes resources: the ``Pipeline`` and ``PipelineVersion`` custom resources
(``pipelines.kubeflow.org/v2beta1``) that KFP's Kubernetes-native API mode reads, for ``kubectl apply -f``
or a GitOps repository instead of uploading through the REST API.

kfp 2.17's compiler renders both (``kubernetes_manifest_format=True``); this module names them and adds
``spec.versionName``, which that compiler does not set. A PipelineVersion's spec is immutable (KFP's
admission webhook rejects spec changes), so every version gets its own object, named
``<pipeline>-<version>`` as KFP itself names them. The default version is a digest of the compiled spec:
re-applying an unchanged pipeline is a no-op and a changed one becomes a new version.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import yaml

from admlops.errors import UsageError

API_VERSION = "pipelines.kubeflow.org/v2beta1"
# spec.versionName's pattern in the PipelineVersion CRD; object names are DNS-1123 subdomains.
_VERSION_NAME = re.compile(r"^[a-z0-9]([a-z0-9.\-]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_version_name(version: str) -> str:
    """``version`` if KFP accepts it as a version name (lowercase letters, digits, '.', '-'), else ValueError."""
    if not (len(version) <= 253 and _VERSION_NAME.match(version)):
        raise UsageError(f"version {version!r}: expected lowercase letters, digits, '.' and '-', starting and ending "
                         "with a letter or digit (a Kubernetes name), e.g. v1.2.0 or 2024-06-01")
    return version


def spec_digest(pipeline_spec: dict, platform_spec: dict | None = None) -> str:
    """``v`` + the first 12 hex digits of the SHA-256 of the canonical JSON of the compiled spec(s)."""
    canonical = json.dumps([pipeline_spec, platform_spec or {}], sort_keys=True, separators=(",", ":"))
    return "v" + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def render_manifests(name: str, version: str | None = None, namespace: str | None = None,
                     profile: str | None = None) -> list[dict]:
    """The ``Pipeline`` and ``PipelineVersion`` objects of pipeline ``name`` at ``version``.

    ``version`` defaults to :func:`spec_digest` of the compiled spec. Without ``namespace`` the objects carry
    none and land in kubectl's current namespace (KFP's own namespace in single-user mode; a profile
    namespace in multi-user mode).
    """
    from kfp import compiler
    from kfp.compiler import KubernetesManifestOptions

    from admlops.pipelines.profiles import load_profile
    from admlops.pipelines.registry import BUILDERS, pipeline

    pipeline(name)  # a usage error for an unknown name
    if version is not None:
        check_version_name(version)
    options = KubernetesManifestOptions(pipeline_name=name, pipeline_display_name=name, namespace=namespace or None,
                                        include_pipeline_manifest=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.yaml"
        func = BUILDERS[name](load_profile(profile)) if profile else pipeline(name)
        compiler.Compiler().compile(func, str(path), kubernetes_manifest_format=True,
                                    kubernetes_manifest_options=options)
        docs = list(yaml.safe_load_all(path.read_text()))
    kinds = [d.get("kind") for d in docs]
    if kinds != ["Pipeline", "PipelineVersion"]:
        raise RuntimeError(f"kfp's compiler wrote {kinds}, expected ['Pipeline', 'PipelineVersion']")
    spec = docs[1]["spec"]
    version = version or spec_digest(spec["pipelineSpec"], spec.get("platformSpec"))
    object_name = f"{name}-{version}"
    if len(object_name) > 253 or not _DNS_SUBDOMAIN.match(object_name):
        raise UsageError(f"{object_name!r} is not a valid Kubernetes object name (pipeline name + '-' + version, "
                         "at most 253 characters)")
    docs[1]["metadata"]["name"] = object_name
    spec.update(displayName=f"{name} {version}", versionName=version)
    return [_ordered(d) for d in docs]


def _ordered(obj: dict) -> dict:
    """apiVersion, kind, metadata, spec first, as Kubernetes documents read."""
    head = ("apiVersion", "kind", "metadata", "spec")
    return {**{k: obj[k] for k in head if k in obj}, **{k: v for k, v in obj.items() if k not in head}}


def write_manifests(name: str, out_path: str | Path, version: str | None = None, namespace: str | None = None,
                    profile: str | None = None) -> Path:
    """Write :func:`render_manifests` as one multi-document YAML file (replaced atomically); returns its path."""
    docs = render_manifests(name, version, namespace, profile)
    out = Path(out_path)
    header = (f"# {name} as Kubeflow Pipelines Kubernetes-native resources (Pipeline + PipelineVersion "
              f"{docs[1]['spec']['versionName']}).\n# Apply with: kubectl apply -f {out.name}\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(header)
            yaml.safe_dump_all(docs, f, sort_keys=False, explicit_start=True)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
