"""Merge several source datasets into one task dataset (COCO), through a definition's class mappings.

Each source's classes map onto the task's categories (``sources.<format>`` in the definition); frame ids
become ``<source name>-<id>``; an image whose bytes were already taken from an earlier source (sha256)
is skipped and listed, never silently dropped.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from tqdm import tqdm

from admlops.components.convert.coco import write_coco
from admlops.components.convert.to_coco import hash_split
from admlops.components.convert.records import STRICT, Skips, check_reader_options, read_frames
from admlops.definition import IGNORE, DatasetDefinition, load_definition
from admlops.localfs import file_sha256


@dataclasses.dataclass(frozen=True)
class Source:
    name: str  # prefix of frame ids in the merged dataset
    format: str  # a READERS key; also the definition's ``sources`` key for its class mapping
    path: str
    options: dict = dataclasses.field(default_factory=dict)  # reader options, e.g. image_root


def merge(sources: list[Source], out: str | Path, definition: str | Path | DatasetDefinition,
          val_fraction: float = 0.2, seed: int = 0, skips: Skips = STRICT) -> dict:
    """Merge ``sources`` into one COCO dataset under ``out`` (atomically); returns the summary. Every source's
    format and reader options are checked before anything is read (a UsageError names the wrong one)."""
    for src in sources:
        check_reader_options(src.format, src.options)
    defn = load_definition(definition)
    mappings = {s.format: defn.mapping(s.format) for s in sources}
    names = [c.name for c in defn.categories]
    merged = dataclasses.replace(defn, sources={"merged": {n: n for n in names} | {IGNORE: IGNORE}})
    seen: dict[str, str] = {}
    duplicates: list[dict] = []
    counts: dict[str, int] = {}

    def frames():
        for src in sources:
            read = read_frames(src.format, src.path, skips, **src.options)
            for frame in tqdm(read, desc=f"merge {src.name}", unit="frame"):
                digest = file_sha256(frame.image)
                fid = f"{src.name}-{frame.id}"
                if digest in seen:
                    duplicates.append({"frame": fid, "image": str(frame.image), "same_as": seen[digest]})
                    continue
                seen[digest] = fid
                counts[src.name] = counts.get(src.name, 0) + 1
                objects = []
                for obj in frame.objects:
                    if obj.label not in mappings[src.format]:
                        objects.append(obj)  # write_coco reports it with file and line
                    else:
                        attrs = {**obj.attributes, "source_format": src.format, "source_label": obj.label}
                        objects.append(dataclasses.replace(obj, label=mappings[src.format][obj.label], attributes=attrs))
                yield dataclasses.replace(frame, id=fid, objects=tuple(objects))

    summary = write_coco(frames(), out, merged, "merged", lambda f: hash_split(f.group or f.id, val_fraction, seed),
                         {"inputs": [dataclasses.asdict(s) for s in sources], "frames_per_source": counts,
                          "duplicates": duplicates, "split": {"method": "sha256", "val_fraction": val_fraction, "seed": seed}},
                         skips)
    return summary
