"""Each shim in admlops.compat is needed (the failure it prevents still happens without it) and works."""
import subprocess
import sys
import textwrap

import pytest

from admlops import compat

ONNX_EXPORT = textwrap.dedent(
    """
    import sys, torch, onnx
    if sys.argv[2] == "shim":
        from admlops import compat; compat.apply()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    torch.onnx.export(model, torch.randn(1, 3, 8, 8), sys.argv[1], opset_version=11, input_names=["input"])
    print("OPSET", {o.domain: o.version for o in onnx.load(sys.argv[1]).opset_import}.get("", None))
    """
)


def _run(code, *args):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)


def test_onnx_export_uses_the_torchscript_exporter(tmp_path):
    # mmdeploy exports at opset 11 through the TorchScript exporter's hooks
    res = _run(ONNX_EXPORT, str(tmp_path / "a.onnx"), "shim")
    assert res.returncode == 0 and "OPSET 11" in res.stdout, res.stderr[-2000:]
    # without the shim torch picks the dynamo exporter: it fails here or ignores opset 11
    res = _run(ONNX_EXPORT, str(tmp_path / "b.onnx"), "none")
    assert res.returncode != 0 or "OPSET 11" not in res.stdout


def test_onnx_shim_keeps_explicit_dynamo_choice(monkeypatch):
    import torch.onnx

    seen = {}
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: seen.update(k))
    compat._onnx_export_legacy_default()
    torch.onnx.export("m", "x", "f")
    torch.onnx.export("m", "x", "f", dynamo=True)
    assert seen["dynamo"] is True
    seen.clear()
    torch.onnx.export("m", "x", "f")
    assert seen["dynamo"] is False


MAKE_CHECKPOINT = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)
        def forward(self, inputs, labels, mode="tensor"):
            out = self.linear(inputs)
            return {"loss": ((out - labels) ** 2).mean()} if mode == "loss" else out

    data = [dict(inputs=torch.randn(2), labels=torch.randn(1)) for _ in range(8)]
    Runner(
        model=Toy(), work_dir=sys.argv[1],
        train_dataloader=dict(dataset=data, sampler=dict(type="DefaultSampler", shuffle=False), batch_size=2,
                              collate_fn=dict(type="default_collate")),
        train_cfg=dict(by_epoch=False, max_iters=2), optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False)),
    ).train()
    """
)
LOAD = "import sys, torch\nif sys.argv[2] == 'shim':\n    from admlops import compat; compat.apply()\nck = torch.load(sys.argv[1])\nprint(sorted(ck))"


@pytest.fixture(scope="module")
def mmengine_checkpoint(tmp_path_factory):
    work = tmp_path_factory.mktemp("ckpt")
    res = _run(MAKE_CHECKPOINT, str(work))
    assert res.returncode == 0, res.stderr[-3000:]
    return work / "iter_2.pth"


def test_mmengine_checkpoint_loads_with_the_safe_loader(mmengine_checkpoint):
    res = _run(LOAD, str(mmengine_checkpoint), "shim")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "message_hub" in res.stdout and "state_dict" in res.stdout
    res = _run(LOAD, str(mmengine_checkpoint), "none")
    assert res.returncode != 0 and "Weights only load failed" in res.stderr


def test_checkpoint_shim_does_not_allow_arbitrary_code(tmp_path):
    import os

    import torch

    compat.apply()
    path = tmp_path / "evil.pth"
    torch.save({"x": os.getcwd}, path)  # a callable that is not on the allowlist
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path)


def test_numpy_long_alias_for_mmdet3d_db_sampler():
    import mmdet3d.datasets.transforms.dbsampler as dbsampler

    assert "np.long" in open(dbsampler.__file__).read()  # still used by ObjectSample's sampler
    res = _run("import numpy as np; np.long")
    assert res.returncode != 0 and "long" in res.stderr  # removed from numpy
    res = _run("from admlops import compat; compat.apply(); import numpy as np; assert np.long is np.int64")
    assert res.returncode == 0, res.stderr[-2000:]


CPU_DDP = textwrap.dedent(
    """
    import os, sys
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1])
    if sys.argv[2] == "shim":
        from admlops import compat; compat.apply()
    from mmengine.dist import init_dist, get_world_size
    init_dist("pytorch", backend="gloo")
    print("WORLD", get_world_size())
    """
)


def test_mmengine_ddp_starts_on_cpu():
    import socket

    import torch

    if torch.cuda.is_available():
        pytest.skip("the shim only acts without CUDA")
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(str(s.getsockname()[1]))
    res = _run(CPU_DDP, ports[0], "none")
    assert res.returncode != 0 and "_cuda_setDevice" in res.stderr  # mmengine calls torch.cuda.set_device
    res = _run(CPU_DDP, ports[1], "shim")
    assert res.returncode == 0 and "WORLD 1" in res.stdout, res.stderr[-2000:]


def test_rtmdet_export_decode_clips_boxes_to_the_image_as_mmdet_does():
    """Shim 9: under mmdeploy's rewriting (what the ONNX export traces), RTMDet's head clips its boxes to the image
    before NMS, as mmdet's head does: the detections equal PyTorch's on maps whose raw boxes cross the border."""
    import torch
    from mmdeploy.core import RewriterContext
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from admlops.configs import resolve
    from admlops.tasks.image_detection import sync_post_processing

    compat.apply()
    import mmdeploy.codebase.mmdet.models.dense_heads.rtmdet_head  # noqa: F401  (registers the rewrite)
    from mmdet.registry import MODELS

    init_default_scope("mmdet")
    model_cfg = Config.fromfile(str(resolve("models", "rtmdet_tiny_kitti")))
    deploy_cfg = Config.fromfile(str(resolve("deploy", "detection_onnxruntime_dynamic")))
    sync_post_processing(deploy_cfg, model_cfg)
    head = MODELS.build(model_cfg.model.bbox_head).eval()
    head.test_cfg = model_cfg.model.test_cfg
    torch.manual_seed(0)
    height, width = 64, 96
    maps = [(height // s, width // s) for s in (8, 16, 32)]
    cls_scores = [torch.randn(1, head.cls_out_channels, h, w) * 3 for h, w in maps]
    bbox_preds = [torch.rand(1, 4, h, w) * 60 for h, w in maps]  # distances in pixels: many boxes cross the border
    metas = [{"img_shape": (height, width), "scale_factor": (1.0, 1.0)}]
    with torch.no_grad():
        mmdet = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas, rescale=False)[0]
        with RewriterContext(cfg=deploy_cfg, backend="onnxruntime"):
            dets, labels = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas)
    points = torch.cat(head.prior_generator.grid_priors(maps, device="cpu"))
    top_left = points[:, :2] - torch.cat([b[0].permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds])[:, :2]
    assert (top_left < 0).any(), "the maps were meant to give boxes that cross the border"
    dets, labels = dets[0][dets[0][:, 4] > 0], labels[0][dets[0][:, 4] > 0]
    assert len(dets) == len(mmdet.scores) > 10
    order = torch.argsort(dets[:, 4], descending=True)
    torch.testing.assert_close(dets[order, :4], mmdet.bboxes, atol=1e-4, rtol=0)
    torch.testing.assert_close(dets[order, 4], mmdet.scores, atol=1e-6, rtol=0)
    assert torch.equal(labels[order], mmdet.labels)
    assert compat.rtmdet_head__predict_by_feat.replaces.__module__ == compat.RTMDET_REWRITE_MODULE
