"""A person-readable summary of a finished local run: where each artifact is and the headline numbers."""
from __future__ import annotations

import json
from pathlib import Path

from admlops.backends.parity import below_floor, deploy_gates, remedy
from admlops.tasks import get_task


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def summarize_run(run_dir: str | Path) -> str:
    """Text summary of a detection2d or detection3d run directory (``<store>/runs/<run>``): the metrics lines are
    the model's task's (admlops.tasks, named in each metrics record)."""
    run_dir = Path(run_dir)
    lines = [f"run: {run_dir}", f"index: {run_dir / 'index.html'} (every step's status, log and artifacts)"]
    for task in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name != "logs"):
        outputs = {p.name: p for p in task.iterdir() if p.name != "executor_output.json"}
        for name, output in sorted(outputs.items()):
            if name.endswith(".html") and name[:-5] in outputs:
                continue  # listed as the artifact it copies
            shown = outputs.get(f"{name}.html", output)
            lines.append(f"  {task.name}/{name}: {shown}")
    data = _load(run_dir / "convert" / "dataset" / "summary.json")
    if data:
        lines.append(f"data: {data['frames']['train']} train / {data['frames']['val']} val frames, classes {', '.join(data['categories'])}")
    pt = _load(run_dir / "evaluate" / "report" / "metrics.json")
    onnx = _load(run_dir / "export" / "onnx_model" / "metrics.json")
    root = _load(run_dir / "infos" / "dataset" / "infos.json")
    if root:
        frames = root["frames"]
        lines.append(f"data: {frames['train']} train / {frames['val']} val frames ({root['format']} data root, source "
                     f"{root['source_version']['name']}@{root['source_version']['version']})")
    if pt:
        lines += get_task(pt["task"]).summary_lines(pt)
    if onnx:  # each target's numbers beside PyTorch's (whichever targets were asked for)
        task = get_task(onnx["task"])
        lines += [task.export_line(tag, measured, onnx["pytorch"]) for tag, measured in onnx["backends"].items()]
    gates = deploy_gates(run_dir / "export" / "onnx_model", run_dir / "export-trt" / "engines")
    failed = [g for g in (gates or {}).get("gates", []) if not g["passed"]]
    vacuous = below_floor(gates)
    for g in (gates or {}).get("gates", []):
        verdict = "FAILED: not deployable (not benchmarked, blocked from the alias)" if not g["passed"] else \
            "not meaningful" if vacuous else "passed"
        lines.append(f"gate {g['backend'] + ':' + g['precision']:<18} {gates['metric']} drop {g['drop_points']:+.2f} "
                     f"points, allowed {g['allowed_points']:.2f}: {verdict}")
    if vacuous:
        lines.append(f"parity not meaningful: {vacuous}; registered without an alias")
    for precision in dict.fromkeys(g["precision"] for g in failed):
        lines.append(f"remedy ({precision}): {remedy(precision)}")
    zoo = _load(run_dir / "register" / "zoo_model")
    if zoo:
        alias = zoo["alias"]
        covers = f" for {', '.join(alias['targets'])}" if alias and alias.get("blocked_targets") else ""
        lines.append(f"model zoo: {zoo['name']}@{zoo['version']} ({zoo['uri']}), alias "
                     f"{alias['alias'] + covers if alias else '-'}")
    bench = run_dir / "benchmark" / "table"
    if bench.is_file():
        lines += ["", bench.read_text()]
    return "\n".join(lines)
