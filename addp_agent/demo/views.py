"""Pictures and text the page shows for a round: overlay, mask, summary, per-round captions and rows, downloads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from addp_agent.agent import Round, Session
from addp_agent.masks import bbox_xywh, encode_rle, mask_to_png_bytes, overlay, resize_mask

ROUND_COLUMNS = ["round", "corrections", "area %", "confidence", "verdict", "critique", "returned"]


def round_overlay(session: Session, round_: Round) -> np.ndarray:
    """The round's mask over the session's image (both at the session's working size)."""
    return overlay(session.image, round_.mask)


def input_mask(session: Session, round_: Round) -> np.ndarray:
    """The round's mask at the uploaded image's size (bool)."""
    return resize_mask(round_.mask, session.input_size)


def found_text(round_: Round) -> str | None:
    """'found' / 'not found' when the result says (models with a found rule), else None."""
    found = getattr(round_.result, "found", None)
    return None if found is None else ("found" if found else "not found")


def summary(session: Session, round_: Round, seconds: float) -> str:
    """Markdown: area (pixels and percent), bbox, found, confidence, corrections and time."""
    mask = input_mask(session, round_)
    pixels = int(mask.sum())
    lines = [f"**'{session.expression}'**, round {round_.index}",
             f"- mask area: {pixels} px ({100 * pixels / max(1, mask.size):.2f}% of {mask.shape[1]}×{mask.shape[0]})",
             f"- bbox [x, y, w, h]: {bbox_xywh(mask)}"]
    if (found := found_text(round_)) is not None:
        lines.append(f"- {found}")
    lines += [f"- confidence: {round_.confidence:.2f}",
              f"- corrections: {', '.join(repr(c) for c in round_.corrections) or 'none'}",
              f"- steps: {session.num_steps}, time: {seconds:.2f} s"]
    return "\n".join(lines)


def result_json(session: Session, round_: Round, mask_id: str, seconds: float) -> dict:
    """The round as JSON (the mask as COCO RLE at the uploaded image's size)."""
    mask = input_mask(session, round_)
    record = {"mask_id": mask_id, "expression": session.expression, "round": round_.index,
              "width": int(mask.shape[1]), "height": int(mask.shape[0]), "area": int(mask.sum()),
              "area_percent": round(100 * float(mask.mean()), 3), "bbox": bbox_xywh(mask),
              "confidence": round(round_.confidence, 4), "corrections": list(round_.corrections),
              "seconds": round(seconds, 3)}
    if (found := getattr(round_.result, "found", None)) is not None:
        record["found"] = bool(found)
    return record


def write_downloads(folder: Path, mask: np.ndarray) -> list[str]:
    """``mask.png`` (0/255) and ``mask_rle.json`` (COCO RLE) in ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    png, rle = folder / "mask.png", folder / "mask_rle.json"
    png.write_bytes(mask_to_png_bytes(mask))
    rle.write_text(json.dumps(encode_rle(mask)))
    return [str(png), str(rle)]


def round_caption(round_: Round, returned: bool) -> str:
    """One gallery caption: the round, its corrections, what the critic said, and ★ on the round returned."""
    parts = [f"{'★ returned · ' if returned else ''}round {round_.index}",
             f"corrections: {', '.join(round_.corrections) or 'none'}"]
    if round_.critique is not None:
        critique = round_.critique
        parts.append(f"{critique.verdict}: {critique.problem or 'looks right'}"
                     + (f" → '{critique.correction}'" if critique.correction else ""))
    elif round_.critic_error:
        parts.append(f"critic failed: {round_.critic_error}")
    return " · ".join(parts)


def round_row(round_: Round, returned: bool) -> list:
    critique = round_.critique
    return [round_.index, ", ".join(round_.corrections) or "-", round(100 * round_.result.area_fraction, 2),
            round(round_.confidence, 3), critique.verdict if critique else ("error" if round_.critic_error else "-"),
            (critique.problem if critique else round_.critic_error) or "", "★" if returned else ""]
