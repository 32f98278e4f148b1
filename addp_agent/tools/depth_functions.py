"""The depth tools: ``estimate_depth``, ``depth_of`` (segment + depth) and ``compare_depth`` (which is closer).

:class:`DepthTools` is mixed into :class:`~addp_agent.tools.functions.SegmentationTools`, so one tools object holds
both models (each loaded lazily, once) and one dispatcher (``call``) serves every tool. The host supplies the image
``policy``, the segmentation session ``store`` and ``segment_image``. Depth maps are kept in a
:class:`~addp_agent.tools.depth_store.DepthStore` under ``depth_id``s, with the working image they were computed
from, so later calls reuse them instead of recomputing; a call on an image whose map (same settings) is kept reuses
it too. Depth is relative: 0 = near, 1 = far, comparable within one image only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from addp_agent.engine.depth_pipeline import DepthPipeline
from addp_agent.engine.depth_result import DepthEstimate
from addp_agent.errors import ModelLoadError, UserError
from addp_agent.images import bounded_copy
from addp_agent.masks import mask_iou, overlay
from addp_agent.models.registry import KNOWN_DEPTH_CHECKPOINTS, default_depth_model_path, load_depth_pipeline
from addp_agent.tools.depth_schemas import (
    CompareDepthArgs,
    CompareDepthResult,
    DepthMapResult,
    DepthOfArgs,
    DepthOfResult,
    DepthSettings,
    DepthStats,
    EstimateDepthArgs,
    RegionDepth,
)
from addp_agent.tools.depth_stats import compare_regions, map_stats, region_stats
from addp_agent.tools.depth_store import DepthMap, DepthStore, image_key
from addp_agent.tools.inputs import ImagePolicy, load_tool_image
from addp_agent.tools.output import ToolOutput, ToolSpec
from addp_agent.tools.payload import bounded_png
from addp_agent.tools.schemas import SegmentArgs
from addp_agent.tools.store import LOCAL, SessionStore

DEPTH_TOOL_SPECS: dict[str, ToolSpec] = {spec.name: spec for spec in (
    ToolSpec("estimate_depth", EstimateDepthArgs, DepthMapResult),
    ToolSpec("depth_of", DepthOfArgs, DepthOfResult),
    ToolSpec("compare_depth", CompareDepthArgs, CompareDepthResult),
)}
NO_DEPTH_MODEL = ("this server has no depth model (this install has no bundled one): start it with "
                  "`addp mcp --depth-model DIR_OR_HUB_ID` (a depth model folder, or a Marigold hub id in the local "
                  f"cache: {', '.join(KNOWN_DEPTH_CHECKPOINTS)}), or pass depth_model= to SegmentationTools")
COLORS = "red (near) to blue (far)"


@dataclass
class _Scene:
    """The image a call names: decoded (what segmentation gets) and its working copy (what depth and masks use)."""

    image: np.ndarray
    working: np.ndarray
    input_size: tuple[int, int]
    depth_id: str | None = None


@dataclass
class _Region:
    """One object's mask on a working image."""

    mask_id: str
    expression: str
    mask: np.ndarray  # at the working image's size
    confidence: float
    working: np.ndarray
    input_size: tuple[int, int]


class DepthTools:
    """``estimate_depth``, ``depth_of`` and ``compare_depth`` over a lazily loaded depth model (mixed into
    ``SegmentationTools``, which calls :meth:`_init_depth`)."""

    policy: ImagePolicy
    store: SessionStore
    segment_image: Callable[[np.ndarray, SegmentArgs, str], ToolOutput]

    def _init_depth(self, model: Any, pipeline: DepthPipeline | None, store: DepthStore | None) -> None:
        self._depth_model, self._depth_pipeline = model, pipeline
        self.depth_store = store if store is not None else DepthStore()
        self._depth_load_lock = threading.Lock()
        self._depth_lock = threading.Lock()  # one depth call at a time on the shared model

    @property
    def depth_pipeline(self) -> DepthPipeline:
        """The depth model, loaded on first use (``None`` = the bundled depth model). Without one, a
        :class:`ModelLoadError` saying how to pass one (the dispatcher answers ``model_unavailable``)."""
        with self._depth_load_lock:
            if self._depth_pipeline is None:
                if self._depth_model is None:
                    try:
                        default_depth_model_path()
                    except ModelLoadError:
                        raise ModelLoadError(NO_DEPTH_MODEL) from None
                pipe = load_depth_pipeline(self._depth_model, progress=False)
                pipe.set_progress_bar_config(disable=True)
                self._depth_pipeline = pipe
        return self._depth_pipeline

    # ------------------------------------------------------------------------------------------------- tools
    def estimate_depth(self, args: EstimateDepthArgs, client: str = LOCAL) -> ToolOutput:
        start = time.perf_counter()
        scene = self._scene(args.image, None)
        depth_id, kept, reused = self._depth_map(scene.working, scene.input_size, None, args)
        timings = _timings(start, 0.0 if reused else kept.seconds, 0.0)
        stats = map_stats(kept.depth)
        result = DepthMapResult(
            **_map_info(depth_id, kept, reused, timings), width=scene.input_size[1], height=scene.input_size[0],
            stats=DepthStats(**stats),
            mean_uncertainty=None if kept.uncertainty is None else round(float(kept.uncertainty.mean()), 6))
        png = bounded_png(colored(kept.depth))
        return ToolOutput("estimate_depth", result, overlay_png=png, caption=f"Depth map {depth_id}: {COLORS}.",
                          artifact={"depth": kept.depth, "uncertainty": kept.uncertainty, "depth_png": png})

    def depth_of(self, args: DepthOfArgs, client: str = LOCAL) -> ToolOutput:
        start = time.perf_counter()
        scene = self._scene(args.image, args.depth_id)
        region = self._region(args.expression, args.mask_id, scene, args.segment_steps, args.seed, client)
        segment_s = time.perf_counter() - start
        depth_id, kept, reused = self._depth_map(region.working, region.input_size, args.depth_id, args)
        measured = _region_depth(region, kept.depth)
        result = DepthOfResult(**_map_info(depth_id, kept, reused, _timings(start, 0.0 if reused else kept.seconds,
                                                                            segment_s)),
                               **measured.model_dump())
        picture = colored(kept.depth)
        if measured.found:
            picture = overlay(picture, region.mask, (255, 255, 255), alpha=0.35)
        png = bounded_png(picture)
        return ToolOutput("depth_of", result, overlay_png=png,
                          caption=f"Depth map {depth_id} ({COLORS}); the mask {region.mask_id} of "
                                  f"'{region.expression}' is lightened and outlined in white.",
                          artifact={"depth": kept.depth, "mask": region.mask, "depth_png": png})

    def compare_depth(self, args: CompareDepthArgs, client: str = LOCAL) -> ToolOutput:
        start = time.perf_counter()
        scene = self._scene(args.image, args.depth_id)
        a = self._region(args.expression_a, args.mask_id_a, scene, args.segment_steps, args.seed, client)
        b = self._region(args.expression_b, args.mask_id_b, scene, args.segment_steps, args.seed, client)
        _same_image(a, b)
        segment_s = time.perf_counter() - start
        depth_id, kept, reused = self._depth_map(a.working, a.input_size, args.depth_id, args)
        region_a, region_b = _region_depth(a, kept.depth), _region_depth(b, kept.depth)
        verdict: dict[str, Any] = {"closer": "not_found", "confidence": 0.0, "separation": None,
                                   "median_difference": None, "masks_iou": 0.0}
        picture = colored(kept.depth)
        if region_a.found and region_b.found:
            comparison = compare_regions(kept.depth, a.mask, b.mask, a.confidence, b.confidence)
            verdict = {"closer": comparison.closer, "confidence": comparison.confidence,
                       "separation": comparison.separation,
                       "median_difference": round(region_b.median - region_a.median, 6),
                       "masks_iou": round(mask_iou(a.mask, b.mask), 4)}
        if region_a.found:
            picture = overlay(picture, a.mask, (255, 255, 255), alpha=0.35)
        if region_b.found:
            picture = overlay(picture, b.mask, (0, 0, 0), alpha=0.35)
        result = CompareDepthResult(**_map_info(depth_id, kept, reused,
                                                _timings(start, 0.0 if reused else kept.seconds, segment_s)),
                                    **verdict, a=region_a, b=region_b)
        png = bounded_png(picture)
        return ToolOutput("compare_depth", result, overlay_png=png,
                          caption=f"Depth map {depth_id} ({COLORS}); A '{a.expression}' is lightened, B "
                                  f"'{b.expression}' darkened, both outlined in white.",
                          artifact={"depth": kept.depth, "mask_a": a.mask, "mask_b": b.mask, "depth_png": png})

    # ----------------------------------------------------------------------------------------------- helpers
    def _scene(self, image: str | None, depth_id: str | None) -> _Scene | None:
        """The image an ``image`` argument or a ``depth_id`` names (None when neither: masks name it)."""
        if image is not None:
            decoded = load_tool_image(image, self.policy)
            return _Scene(decoded, bounded_copy(decoded), (int(decoded.shape[0]), int(decoded.shape[1])))
        if depth_id is not None:
            kept = self.depth_store.lookup(depth_id)
            return _Scene(kept.image, kept.image, kept.input_size, depth_id)
        return None

    def _region(self, expression: str | None, mask_id: str | None, scene: _Scene | None, steps: int | None,
                seed: int | None, client: str = LOCAL) -> _Region:
        """An expression segmented on ``scene`` (a new session, so its mask_id can be refined), or a mask_id's mask;
        a mask_id from another image than ``scene`` is bad input."""
        if expression is not None:
            if scene is None:  # the argument models require an image or a depth_id with an expression
                raise UserError("an expression needs an image or a depth_id")
            out = self.segment_image(scene.image, SegmentArgs(image="", expression=expression, steps=steps, seed=seed),
                                     client)
            mask_id = out.result.mask_id
        session, index = self.store.lookup(mask_id, client)
        region = _Region(mask_id, session.expression, session.rounds[index - 1].mask,
                         float(session.rounds[index - 1].confidence), session.image, session.input_size)
        if scene is not None and expression is None and image_key(region.working) != image_key(scene.working):
            named = f"depth_id {scene.depth_id}" if scene.depth_id else "the image"
            raise UserError(f"mask_id {mask_id} was made from another image than {named}; give one image")
        return region

    def _depth_map(self, working: np.ndarray, input_size: tuple[int, int], depth_id: str | None,
                   args: EstimateDepthArgs | DepthOfArgs | CompareDepthArgs) -> tuple[str, DepthMap, bool]:
        """(depth_id, map, reused): the named map, a kept map of the same image and settings, or a new one."""
        if depth_id is not None:
            return depth_id, self.depth_store.lookup(depth_id), True
        pipe = self.depth_pipeline
        settings = {"num_inference_steps": pipe.default_steps if args.depth_steps is None else args.depth_steps,
                    "ensemble_size": args.ensemble_size or 1, "seed": args.seed or 0}
        key = image_key(working)
        with self._depth_lock:
            hit = self.depth_store.find(key, settings)
            if hit is not None:
                return hit[0], hit[1], True
            estimate = pipe.estimate(working, num_inference_steps=settings["num_inference_steps"],
                                     ensemble_size=settings["ensemble_size"], seed=settings["seed"])
            kept = DepthMap(image=working, key=key, input_size=input_size, depth=estimate.depth,
                            uncertainty=estimate.uncertainty, seconds=float(estimate.timings.get("total_s", 0.0)),
                            settings={**settings, **{k: estimate.settings[k] for k in (
                                "processing_resolution", "scheduler", "prediction_type")}})
            return self.depth_store.add(kept), kept, False


def colored(depth: np.ndarray) -> np.ndarray:
    """The depth map as RGB uint8, Spectral: near red, far blue (as ``addp depth``'s depth_colored.png)."""
    return np.asarray(DepthEstimate(depth=depth).colored())


def _same_image(a: _Region, b: _Region) -> None:
    if a.working is not b.working and image_key(a.working) != image_key(b.working):
        raise UserError(f"mask_id {a.mask_id} and mask_id {b.mask_id} come from different images; compare objects "
                        "of one image")


def _region_depth(region: _Region, depth: np.ndarray) -> RegionDepth:
    stats = region_stats(depth, region.mask)
    missing = dict.fromkeys(("median", "p10", "p90", "mean", "range_fraction"))
    return RegionDepth(mask_id=region.mask_id, expression=region.expression, found=stats is not None,
                       area_percent=round(100.0 * float(region.mask.sum()) / max(1, region.mask.size), 3),
                       mask_confidence=round(region.confidence, 4), **(stats or missing))


def _map_info(depth_id: str, kept: DepthMap, reused: bool, timings: dict[str, float]) -> dict[str, Any]:
    return {"depth_id": depth_id, "map_width": int(kept.depth.shape[1]), "map_height": int(kept.depth.shape[0]),
            "settings": DepthSettings(**kept.settings), "reused": reused, "timings": timings}


def _timings(start: float, depth_s: float, segment_s: float) -> dict[str, float]:
    return {"depth_s": round(depth_s, 4), "segment_s": round(segment_s, 4),
            "total_s": round(time.perf_counter() - start, 4)}
