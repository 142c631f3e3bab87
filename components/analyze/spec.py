"""The labeling standard of a dataset definition as a Markdown document a labeling vendor can work from."""
from __future__ import annotations

from admlops.definition import IGNORE, DatasetDefinition


def render_spec(defn: DatasetDefinition) -> str:
    std = defn.labeling
    lines = [f"# Labeling specification: {defn.name}", "", f"Task: **{defn.task}**. Draw one axis-aligned box per "
             "object, tight around its visible extent, in image pixels.", "", "## Categories", "",
             "| id | name | colour | description | attributes |", "| --- | --- | --- | --- | --- |"]
    for c in defn.categories:
        swatch = "#{:02x}{:02x}{:02x}".format(*c.color)
        lines.append(f"| {c.id} | {c.name} | <span style=\"background:{swatch}\">&nbsp;&nbsp;&nbsp;&nbsp;</span> {swatch} "
                     f"| {c.description or '-'} | {', '.join(c.attributes) or '-'} |")
    lines += ["", "## Boxes", "",
              f"* Minimum box: {std.min_box_width:g} x {std.min_box_height:g} px (width x height); smaller objects "
              "are marked as ignore regions, not labelled as a category.",
              f"* Truncation (fraction of the object outside the image) is given in [0, {std.max_truncation:g}].",
              f"* Required on every labelled object: {', '.join(std.required_fields) or 'nothing beyond the box'}."]
    if std.occlusion_levels:
        lines += ["", "## Occlusion levels", "", "| level | meaning |", "| --- | --- |"]
        lines += [f"| {level} | {meaning} |" for level, meaning in sorted(std.occlusion_levels.items())]
    lines += ["", "## Source classes", "", "How the classes of each source dataset map onto these categories "
              f"(`{IGNORE}`: an ignore region, neither a positive nor a negative).", ""]
    for source, mapping in defn.sources.items():
        lines += [f"### {source}", "", "| source class | category |", "| --- | --- |"]
        lines += [f"| {cls} | {target} |" for cls, target in mapping.items()] + [""]
    return "\n".join(lines)
