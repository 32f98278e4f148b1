"""The Segment tab: one round through the ``segment`` tool, its pictures, the trajectory slider and downloads."""

from __future__ import annotations

import time
from typing import Any

from addp_agent.demo import views
from addp_agent.demo.service import DemoService
from addp_agent.errors import UserError
from addp_agent.extras import extra_imports
from addp_agent.masks import overlay
from addp_agent.tools.store import NotFound

with extra_imports("demo"):
    import gradio as gr


def current(state: dict | None, path: str | None, expression: str | None) -> str | None:
    """The page's mask_id when it belongs to this image and expression, else None."""
    if not state or state.get("image") != path or state.get("expression") != (expression or "").strip():
        return None
    return state.get("mask_id")


def segment(service: DemoService, path: str | None, expression: str | None, steps: float | None, seed: float | None,
            progress: Any = None) -> tuple:
    """overlay, mask, painted, summary, result JSON, trajectory slider and step view, downloads, page state."""
    path, text = service.image_path(path), service.expression(expression)
    if progress is not None:
        progress(0.1, desc="segmenting")
    start = time.perf_counter()
    output = service.segment(path, text, steps=int(steps) if steps else None, seed=int(seed or 0))
    seconds = time.perf_counter() - start
    mask_id = output.result.mask_id
    session, index = service.tools.store.lookup(mask_id)
    round_ = session.rounds[index - 1]
    mask = views.input_mask(session, round_)
    points = round_.trajectory or []
    slider = gr.Slider(minimum=1, maximum=max(2, len(points)), step=1, value=max(1, len(points)),
                       visible=len(points) > 1, label=f"trajectory: x̂₀ mask after step … ({len(points)} recorded)")
    files = views.write_downloads(service.work_dir / mask_id, mask)
    state = {"mask_id": mask_id, "image": path, "expression": text}
    return (views.round_overlay(session, round_), (mask * 255).astype("uint8"), round_.result.painted,
            views.summary(session, round_, seconds), views.result_json(session, round_, mask_id, seconds), slider,
            gr.Image(value=None, visible=len(points) > 1), files, state)


def trajectory_step(service: DemoService, state: dict | None, position: float | None) -> tuple:
    """The x̂₀ mask recorded at slider ``position`` (1-based) over the image, and a caption."""
    if not state or not state.get("mask_id"):
        raise UserError("segment first: the trajectory belongs to a result")
    try:
        session, index = service.tools.store.lookup(state["mask_id"])
    except NotFound as error:
        raise UserError(f"{error}; segment again") from None
    points = session.rounds[index - 1].trajectory or []
    if not points:
        raise UserError("this result recorded no trajectory")
    point = points[min(len(points), max(1, int(position or len(points)))) - 1]
    caption = (f"step {point.step + 1}/{session.num_steps} (timestep {point.timestep}): "
               f"{100 * float(point.mask.mean()):.2f}% of the image, confidence {point.confidence:.2f}")
    return gr.Image(value=overlay(session.image, point.mask), visible=True), caption
