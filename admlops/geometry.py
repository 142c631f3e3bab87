"""Plane geometry: where a projected 3D box lands in an image (the 3D converters), and the IoU of 2D boxes."""
from __future__ import annotations

import numpy as np


def convex_hull(points: np.ndarray) -> list[tuple[float, float]]:
    """Counter-clockwise convex hull of 2D points (Andrew's monotone chain); collinear points dropped."""
    pts = sorted(set(map(tuple, np.asarray(points, dtype=np.float64).tolist())))
    if len(pts) < 3:
        return pts

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0]) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return lower[:-1] + upper[:-1]


def _clip(poly: list, inside, cross) -> list:
    out = []
    for i, cur in enumerate(poly):
        prev = poly[i - 1]
        if inside(cur):
            if not inside(prev):
                out.append(cross(prev, cur))
            out.append(cur)
        elif inside(prev):
            out.append(cross(prev, cur))
    return out


def hull_bounds_in_image(points: np.ndarray, width: float, height: float) -> tuple[float, float, float, float] | None:
    """Bounds (x1, y1, x2, y2) of the convex hull of projected points cut to the ``width`` x ``height`` image, or
    None when the cut has no area: the 2D box mmdet3d derives from a 3D box (its post_process_coords)."""
    poly = convex_hull(points)
    if len(poly) < 3:
        return None
    for axis, limit, keep_below in ((0, 0.0, False), (0, float(width), True), (1, 0.0, False), (1, float(height), True)):
        def inside(p, axis=axis, limit=limit, below=keep_below):
            return p[axis] <= limit if below else p[axis] >= limit

        def cross(a, b, axis=axis, limit=limit):
            t = (limit - a[axis]) / (b[axis] - a[axis])
            other = a[1 - axis] + t * (b[1 - axis] - a[1 - axis])
            return (limit, other) if axis == 0 else (other, limit)

        poly = _clip(poly, inside, cross)
        if len(poly) < 3:
            return None
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    area = 0.5 * abs(sum(xs[i - 1] * ys[i] - xs[i] * ys[i - 1] for i in range(len(poly))))
    return (min(xs), min(ys), max(xs), max(ys)) if area > 0 else None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [N, M] of boxes ``a`` [N, 4] and ``b`` [M, 4] (x1, y1, x2, y2); 0 where both are empty."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a, area_b = (np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1) for x in (a, b))
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
