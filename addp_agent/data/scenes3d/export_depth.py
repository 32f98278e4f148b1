"""Write depth samples as a folder: ``rgb/NNNNNN.png``, ``depth/NNNNNN.png`` (uint16 millimetres, 0 = invalid),
``filename_list.txt`` (one ``rgb/NNNNNN.png depth/NNNNNN.png`` pair per line) and ``intrinsics.json``.

``intrinsics.json``: ``{"K": 3×3, "fx", "fy", "cx", "cy", "width", "height", "depth_unit": "mm",
"depth_scale": 0.001, "invalid_value": 0, "count"}``, and ``"per_image": {rgb path: 3×3}`` when the images do
not all share one K. Depths beyond 65.535 m, or not valid, are written as 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from addp_agent.data.depth_sample import DepthSample
from addp_agent.outputs_io import write_file, write_image

MAX_MM = 65535


def depth_png(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """uint16 millimetres, 0 where invalid or out of range."""
    mm = np.round(np.where(valid, depth, 0.0).astype(np.float64) * 1000.0)
    return np.where(valid & (mm >= 1) & (mm <= MAX_MM), mm, 0).astype(np.uint16)


def export_depth(samples: Iterable[DepthSample], out: str | Path) -> int:
    """Write the folder; file numbers are the samples' ``meta["index"]`` (their position when absent)."""
    out = Path(out)
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    lines, matrices = [], {}
    for position, sample in enumerate(samples):
        number = int(sample.meta.get("index", position))
        rgb, depth = f"rgb/{number:06d}.png", f"depth/{number:06d}.png"
        write_image(sample.image, out / rgb, compress_level=1)
        write_image(depth_png(sample.depth, sample.valid), out / depth, compress_level=1)
        lines.append(f"{rgb} {depth}")
        if sample.intrinsics is not None:
            matrices[rgb] = np.asarray(sample.intrinsics, dtype=float).round(6).tolist()
    write_file(out / "filename_list.txt", "".join(f"{line}\n" for line in lines))
    info: dict = {"depth_unit": "mm", "depth_scale": 0.001, "invalid_value": 0, "count": len(lines)}
    if matrices:
        first = next(iter(matrices.values()))
        height, width = sample.image.shape[:2]
        info.update(K=first, fx=first[0][0], fy=first[1][1], cx=first[0][2], cy=first[1][2], width=width,
                    height=height)
        if any(m != first for m in matrices.values()):
            info["per_image"] = matrices
    write_file(out / "intrinsics.json", json.dumps(info, indent=1))
    return len(lines)
