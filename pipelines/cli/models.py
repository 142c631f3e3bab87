"""``admlops train / evaluate / export / benchmark``: the model steps of the loop, one command each."""
from __future__ import annotations

import json
import os
from pathlib import Path

from admlops.pipelines.cli.common import print_json


def cmd_train(args) -> int | None:
    from admlops.components.train.train import launch, train_uri
    from admlops.mmconfig import parse_cfg_options

    cfg_options = parse_cfg_options(args.cfg_options)  # a bad pair fails here, before torchrun starts workers
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # re-run this command under torchrun
        return launch(args.nproc, args.argv)
    summary = train_uri(args.dataset, args.out, config=args.config, max_iters=args.max_iters, batch_size=args.batch_size,
                        seed=args.seed, checkpoint_interval=args.checkpoint_interval, store=args.store or "",
                        run_id=args.run_id or "", wandb=args.wandb, cfg_options=cfg_options, init_from=args.init_from or "",
                        init_store=args.init_store)
    if int(os.environ.get("RANK", "0")) == 0:
        print_json(summary)
    return None


def cmd_tune(args) -> None:
    from admlops.components.tune.tune import tune

    result = tune(args.dataset, args.out, args.config, args.trials, args.max_iters, args.reports, args.seed,
                  args.name or "", args.store or "", args.timeout)
    print_json({"best": result["best"], "trials": [{k: t[k] for k in ("number", "state", "value")} for t in result["trials"]],
                "registered": result.get("registered"), "report": str(Path(args.out) / "report.html")})


def cmd_prune(args) -> None:
    from admlops.components.prune.prune import prune

    record = prune(args.parent, args.dataset, args.out, args.flops_reduction, args.finetune_iters, args.seed,
                   args.store or "", args.batch_size)
    print_json({k: record[k] for k in ("parent", "importance", "flops_reduction", "macs", "params", "channels_changed",
                                       "finetune")})


def cmd_qat(args) -> None:
    from admlops.components.qat.qat import qat

    record = qat(args.parent, args.dataset, args.out, args.iters, args.seed, args.store or "", args.batch_size)
    print_json({k: record[k] for k in ("parent", "quantized", "keep_float", "percentile", "calibration", "finetune")})


def cmd_distill(args) -> None:
    from admlops.components.distill.distill import distill

    print_json(distill(args.teacher, args.dataset, args.out, args.config, args.max_iters, args.seed, args.store or "",
                       args.batch_size))


def cmd_evaluate(args) -> None:
    from admlops.components.evaluate.evaluate import evaluate
    from admlops.mmconfig import parse_cfg_options

    print_json(evaluate(args.dataset, args.model, args.out, args.split, parse_cfg_options(args.cfg_options)))


def cmd_export(args) -> None:
    from admlops.components.export.export import export

    pytorch = json.loads(Path(args.pytorch_metrics).read_text()) if args.pytorch_metrics else None
    print_json(export(args.dataset, args.model, args.out, args.deploy_config, pytorch, args.targets, args.max_drop_float,
                      args.max_drop_int8, args.calibration_images, not args.no_enforce, args.gate_floor))


def cmd_export_trt(args) -> None:
    from admlops.components.export_trt.export_trt import export_trt

    print_json(export_trt(args.dataset, args.onnx, args.out, args.precisions, None, args.max_drop_float,
                          args.max_drop_int8, args.calibration_images, not args.no_enforce))


def cmd_benchmark(args) -> None:
    from admlops.components.benchmark.benchmark import sweep

    sweep(args.dataset, args.onnx, args.model, args.out, args.backends and args.backends.split(","), args.batch_sizes,
          args.threads, args.warmup, args.max_images, rounds=args.rounds)
    print((Path(args.out) / "benchmark.md").read_text())


def gate_args(s) -> None:
    """The parity gate's options, shared by export and export-trt."""
    s.add_argument("--calibration-images", type=int, default=32, help="train images (3D: scans) that calibrate int8")
    s.add_argument("--max-drop-float", type=float, default=None, help="allowed drop (points) for fp32/fp16: mAP@0.5 "
                   "(default 0.5); a 3D export's KITTI 3D AP40 moderate class mean (default 1.0)")
    s.add_argument("--max-drop-int8", type=float, default=1.5, help="allowed mAP@0.5 drop (points) for int8")
    s.add_argument("--no-enforce", action="store_true", help="record the gates but do not fail (exit 4) on one")


def add_commands(sub) -> None:
    s = sub.add_parser("train", help="train a detector on a converted dataset")
    s.add_argument("dataset", help="convert's output directory, or its s3:// URI")
    s.add_argument("out", help="model output directory, or an s3:// URI to upload it to")
    s.add_argument("--config", default="rtmdet_tiny_kitti", help="a name in configs/models or a config path")
    s.add_argument("--max-iters", type=int, default=None, help="override the config's iteration count")
    s.add_argument("--batch-size", type=int, default=None, help="override the config's batch size (per process)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--nproc", type=int, default=1, help="processes on this node: DDP under torchrun (gloo on CPU, nccl "
                   "on GPU); inside a Kubeflow TrainJob the node count and rank come from its PET_* variables")
    s.add_argument("--checkpoint-interval", type=int, default=None, help="save a full checkpoint every N iterations")
    s.add_argument("--store", help="object store for checkpoints (with --run-id): a restarted run resumes from there")
    s.add_argument("--run-id", help="the run's id: checkpoints under <store>/checkpoints/<run-id>/, W&B group")
    s.add_argument("--wandb", action="store_true", help="log to Weights & Biases (offline unless WANDB_MODE is set)")
    s.add_argument("--init-from", metavar="MODEL", help="start from this model's weights, not from scratch: a zoo model "
                   "NAME@VERSION or NAME@ALIAS (in --store), a train output directory or a checkpoint file; layers of "
                   "the same shape are loaded, a class head is remapped by class name, another architecture is refused")
    s.add_argument("--init-store", help="the store --init-from's zoo model is in (default: --store)")
    s.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config settings, as mmdet's tools/train.py: dotted keys the config has (list items by "
                   "index), values as mmengine's DictAction parses them (1, 0.5, true, None, a,b, [a,b], (a,b)), e.g. "
                   "model.test_cfg.score_thr=0.3 optim_wrapper.optimizer.lr=0.001; merged after --max-iters/--batch-size")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("tune", help="hyperparameter search: an Optuna study (TPE, median pruning on the intermediate "
                       "validation) over the config's search_space, each trial a train + evaluate; the best model "
                       "optionally registered in the zoo")
    s.add_argument("dataset", help="convert's output directory")
    s.add_argument("out", help="directory for study.db, study.json, best/ and report.html")
    s.add_argument("--config", default="rtmdet_tiny_kitti", help="a name in configs/models or a path (its search_space)")
    s.add_argument("--trials", type=int, default=8, help="trials to run (failed and pruned ones count)")
    s.add_argument("--max-iters", type=int, default=100, help="training iterations per trial")
    s.add_argument("--reports", type=int, default=3, help="validations per trial the pruner sees")
    s.add_argument("--seed", type=int, default=0, help="the sampler's and every trial's training seed")
    s.add_argument("--timeout", type=float, default=None, help="stop starting trials after this many seconds")
    s.add_argument("--name", help="register the best model in the zoo under this name (its lineage names the study)")
    s.add_argument("--store", help="the store of the zoo (default: the local default store)")
    s.set_defaults(func=cmd_tune)

    s = sub.add_parser("prune", help="structural pruning (Torch-Pruning): a trained model's channels removed until "
                       "its MACs fall by --flops-reduction, then fine-tuned; the config carries the pruned architecture")
    s.add_argument("parent", help="the model to prune: a zoo model NAME@VERSION or NAME@ALIAS (in --store) or a train "
                   "output directory")
    s.add_argument("dataset", help="convert's output directory: what pruning traces on and fine-tuning trains on")
    s.add_argument("out", help="model output directory (train's layout plus prune.json)")
    s.add_argument("--flops-reduction", type=float, default=0.4, help="the fraction of MACs to remove, in (0, 1)")
    s.add_argument("--finetune-iters", type=int, default=None, help="fine-tuning iterations (default: the config's; 0: "
                   "publish the pruned weights without fine-tuning)")
    s.add_argument("--batch-size", type=int, default=None, help="fine-tuning batch size (default: the config's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--store", help="the store of the zoo (default: the local default store)")
    s.set_defaults(func=cmd_prune)

    s = sub.add_parser("qat", help="quantization-aware training: a trained model fine-tuned with int8 in the loop "
                       "(signed symmetric, per-channel weights, calibrated activation ranges); its export carries a Q/DQ "
                       "graph that the int8 targets take as it is, where post-training int8 loses more than the gate allows")
    s.add_argument("parent", help="the model: a zoo model NAME@VERSION or NAME@ALIAS (in --store) or a train output "
                   "directory (its config's qat dict: keep_float, percentile, calibration_images)")
    s.add_argument("dataset", help="convert's output directory: the ranges calibrate and the model fine-tunes on it")
    s.add_argument("out", help="model output directory (train's layout plus qat.json)")
    s.add_argument("--iters", type=int, default=None, help="fine-tuning iterations (default: the config's; 0: the "
                   "calibrated model without fine-tuning)")
    s.add_argument("--batch-size", type=int, default=None, help="fine-tuning batch size (default: the config's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--store", help="the store of the zoo (default: the local default store)")
    s.set_defaults(func=cmd_qat)

    s = sub.add_parser("distill", help="knowledge distillation: a student config trained from scratch while a trained "
                       "teacher guides it (its neck features and class logits); publishes the student alone")
    s.add_argument("teacher", help="the teacher: a zoo model NAME@VERSION or NAME@ALIAS (in --store) or a train output "
                   "directory, trained on the dataset's classes")
    s.add_argument("dataset", help="convert's output directory")
    s.add_argument("out", help="model output directory (train's layout plus distill.json)")
    s.add_argument("--config", default="rtmdet_tiny_kitti", help="the student's model config (its distillation dict "
                   "sets the imitation weights)")
    s.add_argument("--max-iters", type=int, default=None, help="training iterations (default: the config's)")
    s.add_argument("--batch-size", type=int, default=None, help="batch size (default: the config's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--store", help="the store of the zoo (default: the local default store)")
    s.set_defaults(func=cmd_distill)

    s = sub.add_parser("evaluate", help="a trained model's metrics: COCO bbox AP (2D), KITTI or nuScenes (3D)")
    s.add_argument("dataset", help="convert's output directory, or an mmdet3d data root for a 3D model")
    s.add_argument("model", help="train's output directory")
    s.add_argument("out", help="directory for metrics.json")
    s.add_argument("--split", default="val", choices=["train", "val"])
    s.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override the trained config's settings for this evaluation, as mmdet's tools/test.py (the "
                   "same syntax as train's), e.g. model.test_cfg.score_thr=0.3 test_dataloader.batch_size=4")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("export", help="ONNX export with mmdeploy; every deploy target built from it and gated against "
                       "PyTorch on the val split: mAP@0.5, for a 3D model KITTI AP (exit 4 when one exceeds its allowance)")
    s.add_argument("dataset", help="convert's output directory, or an mmdet3d KITTI data root for a 3D model")
    s.add_argument("model", help="train's output directory")
    s.add_argument("out", help="directory for end2end.onnx, the targets, metrics.json and gates.json")
    s.add_argument("--deploy-config", help="a name in configs/deploy or a path (default: detection_onnxruntime_dynamic, "
                   "for a 3D model voxel-detection_onnxruntime_dynamic)")
    s.add_argument("--pytorch-metrics", help="evaluate's metrics.json (default: evaluated here)")
    s.add_argument("--targets", help="comma-separated BACKEND:PRECISION deploy targets (CPU backends: onnxruntime, "
                   "openvino; default onnxruntime:fp32,openvino:fp32,openvino:int8, for a 3D model onnxruntime:fp32,onnxruntime:int8)")
    s.add_argument("--gate-floor", type=float, default=None, help="the least PyTorch must reach on the gated metric "
                   "for the gates to mean anything (default: mAP@0.5 0.05; a 3D model's AP 1.0); below it, exit 4")
    gate_args(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("export-trt", help="TensorRT 10 engines (fp32/fp16/int8) from export's ONNX, each gated against "
                       "PyTorch (needs an NVIDIA GPU)")
    s.add_argument("dataset", help="convert's output directory (int8 calibrates on its train split)")
    s.add_argument("onnx", help="export's output directory")
    s.add_argument("out", help="directory for the engines, their build reports and gates.json")
    s.add_argument("--precisions", default="fp16,int8", help="comma-separated: fp32, fp16, int8")
    gate_args(s)
    s.set_defaults(func=cmd_export_trt)

    s = sub.add_parser("benchmark", help="latency sweep: backend x precision x batch x threads beside PyTorch eager")
    s.add_argument("dataset", help="convert's output directory (a 3D export: its mmdet3d KITTI data root)")
    s.add_argument("onnx", help="export's output directory")
    s.add_argument("model", help="train's output directory (the PyTorch eager row)")
    s.add_argument("out", help="directory for benchmark.json, benchmark.md and report.html")
    s.add_argument("--backends", help="comma-separated BACKEND:PRECISION deploy targets, as export takes them (default: the export's default "
                   "targets: onnxruntime:fp32,openvino:fp32,openvino:int8; for a 3D export onnxruntime:fp32,onnxruntime:int8)")
    s.add_argument("--batch-sizes", help="comma-separated (default 1,4,8; a 3D export runs one scan per call: 1)")
    s.add_argument("--threads", default="0", help="comma-separated intra-op threads (0 = each runtime's default)")
    s.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    s.add_argument("--max-images", type=int, default=0, help="0 = every val image")
    s.add_argument("--rounds", type=int, default=1,
                   help="run the list of rows this many times in alternating order, timings pooled (a shared machine)")
    s.set_defaults(func=cmd_benchmark)
