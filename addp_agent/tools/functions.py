"""The segmentation tools as plain methods over pydantic models, and one dispatcher every adapter calls.

``SegmentationTools(model=..., depth_model=...)`` loads each model once (lazily), keeps sessions in a bounded store,
and has the depth tools of :mod:`addp_agent.tools.depth_functions` mixed in; ``call(name, arguments)`` validates the
arguments, runs the tool and never raises: failures come back as a :class:`ToolError` result. The adapters (OpenAI,
LangChain, MCP) only translate :class:`ToolOutput` into their message formats.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import ValidationError

from addp_agent.agent import LoopConfig, Round, Session
from addp_agent.critic.base import Critic
from addp_agent.critic.consistency import SelfConsistencyCritic
from addp_agent.critic.readings import PipelineReader
from addp_agent.engine.batcher import DynamicBatcher
from addp_agent.engine.depth_pipeline import DepthPipeline
from addp_agent.engine.guidance import CORRECTION_MODES, CorrectionMode
from addp_agent.engine.pipeline import ADDPPipeline
from addp_agent.errors import ModelLoadError, UserError, validation_message
from addp_agent.images import bounded_copy
from addp_agent.limits import MAX_BATCH, MAX_BATCH_WAIT_MS, MAX_CORRECTIONS
from addp_agent.masks import (
    bbox_xywh,
    connected_instances,
    encode_rle,
    mask_to_png_base64,
    mask_to_polygons,
    overlay,
    resize_mask,
)
from addp_agent.tools.depth_functions import DEPTH_TOOL_SPECS, DepthTools
from addp_agent.tools.depth_store import DepthStore
from addp_agent.tools.inputs import ImagePolicy, Refused, load_tool_image, printable
from addp_agent.tools.output import ToolOutput, ToolSpec
from addp_agent.tools.payload import MAX_SIDE, bounded_png
from addp_agent.tools.schemas import (
    GetMaskArgs,
    InstanceSummary,
    MaskResult,
    RefineArgs,
    RoundSummary,
    SegmentArgs,
    SegmentResult,
    ToolError,
    TrajectoryArgs,
    TrajectoryResult,
    TrajectoryStep,
)
from addp_agent.tools.store import LOCAL, NotFound, SessionStore, StoreFull, mask_id, parse_mask_id

log = logging.getLogger(__name__)
OVERLAY_MAX_SIDE = MAX_SIDE


TOOL_SPECS: dict[str, ToolSpec] = {spec.name: spec for spec in (
    ToolSpec("segment", SegmentArgs, SegmentResult),
    ToolSpec("refine", RefineArgs, SegmentResult),
    ToolSpec("get_mask", GetMaskArgs, MaskResult),
    ToolSpec("trajectory", TrajectoryArgs, TrajectoryResult),
    *DEPTH_TOOL_SPECS.values(),
)}


class SegmentationTools(DepthTools):
    """``segment``, ``refine``, ``get_mask`` and ``trajectory`` over one lazily loaded model, and the depth tools
    (``estimate_depth``, ``depth_of``, ``compare_depth``) over one lazily loaded depth model."""

    def __init__(self, model: Any = None, *, pipeline: ADDPPipeline | None = None, store: SessionStore | None = None,
                 policy: ImagePolicy | None = None, critic_factory: Callable[[], Critic] | None = None,
                 trajectory_points: int = 5, max_rounds_limit: int = 5, max_session_rounds: int = 20,
                 convergence_iou: float = 0.98, batch_max: int = 1, batch_wait_ms: float = 10.0,
                 device: str | None = None, correction_mode: CorrectionMode | None = None,
                 depth_model: Any = None, depth_pipeline: DepthPipeline | None = None,
                 depth_store: DepthStore | None = None) -> None:
        """``batch_max > 1`` puts a :class:`DynamicBatcher` (``batch_max`` requests, ``batch_wait_ms`` window) in
        front of the model for one-round ``segment`` calls without a critic: concurrent calls share one UNet batch
        per step. Everything else runs one call at a time on the model. ``correction_mode``: how corrections guide
        (additive | replace | paper; default: the model's). ``depth_model``: a depth model folder or hub id
        (``None``: the bundled depth model; without one the depth tools answer ``model_unavailable``)."""
        self._model, self._pipeline, self._device = model, pipeline, device
        self._init_depth(depth_model, depth_pipeline, depth_store)
        self.store = store if store is not None else SessionStore()  # an empty store is falsy (len 0)
        self.policy = policy or ImagePolicy()
        self.critic_factory = critic_factory
        self.trajectory_points = trajectory_points
        self.max_rounds_limit = max_rounds_limit
        self.max_session_rounds = max_session_rounds
        self.convergence_iou = convergence_iou
        if not 1 <= batch_max <= MAX_BATCH or not 0 <= batch_wait_ms <= MAX_BATCH_WAIT_MS:
            raise UserError(f"batch_max must be in 1..{MAX_BATCH} and batch_wait_ms in 0..{MAX_BATCH_WAIT_MS:g}, "
                            f"got {batch_max} and {batch_wait_ms}")
        self.batch_max, self.batch_wait_ms = int(batch_max), float(batch_wait_ms)
        if correction_mode is not None and correction_mode not in CORRECTION_MODES:
            raise UserError(f"correction_mode must be one of {', '.join(CORRECTION_MODES)}, got {correction_mode!r}")
        self.correction_mode = correction_mode
        self._batcher: DynamicBatcher | None = None
        self._load_lock = threading.Lock()
        self._model_lock = threading.Lock()  # one denoising call at a time on the shared model (the batcher too)

    @property
    def pipeline(self) -> ADDPPipeline:
        """The model, loaded on first use (``load_pipeline(model)``; ``None`` = the bundled default)."""
        with self._load_lock:
            if self._pipeline is None:
                from addp_agent.models.registry import load_pipeline

                self._pipeline = load_pipeline(self._model, device=self._device, progress=False)
                self._pipeline.set_progress_bar_config(disable=True)
        return self._pipeline

    @property
    def batcher(self) -> DynamicBatcher | None:
        """The dynamic batcher (created with the model), or None when batching is off."""
        if self.batch_max <= 1:
            return None
        pipe = self.pipeline
        with self._load_lock:
            if self._batcher is None:
                self._batcher = DynamicBatcher(pipe, self.batch_max, self.batch_wait_ms, lock=self._model_lock)
        return self._batcher

    def close(self) -> None:
        """Stop the batcher's worker (queued requests finish first)."""
        if self._batcher is not None:
            self._batcher.close()

    @contextmanager
    def exclusive(self) -> Iterator[ADDPPipeline]:
        """The model for the caller alone: no batch and no other round runs on it until the block ends (a
        multi-round session with a caller's own critic, e.g. the web demo's)."""
        pipe = self.pipeline
        with self._model_lock:
            yield pipe

    # ---------------------------------------------------------------------------------------------- dispatch
    def call(self, name: str, arguments: dict[str, Any] | str | None, client: str = LOCAL) -> ToolOutput:
        """Validate ``arguments`` (a dict or JSON text) and run tool ``name`` for ``client`` (whose sessions alone
        it sees: an MCP session, or ``local`` in process); errors become ToolError results."""
        spec = TOOL_SPECS.get(name)
        if spec is None:
            return _error(name, "unknown_tool", f"no tool named {name!r}; tools: {', '.join(TOOL_SPECS)}")
        try:
            if isinstance(arguments, str):
                args = spec.args.model_validate_json(arguments or "{}")
            else:
                args = spec.args.model_validate(arguments or {})
        except ValidationError as error:
            return ToolOutput(name, invalid_arguments(error))
        try:
            if name == "refine":
                with self._model_lock:
                    return self.refine(args, client)
            return getattr(self, name)(args, client)  # segment takes the model lock itself (see segment_image)
        except NotFound as error:
            return _error(name, "not_found", str(error))
        except (Refused, StoreFull) as error:
            return _error(name, "refused", str(error))
        except CriticUnavailable as error:
            return _error(name, "critic_unavailable", str(error))
        except ModelLoadError as error:
            return _error(name, "model_unavailable", str(error))
        except UserError as error:
            return _error(name, "bad_input", str(error))
        except Exception as error:  # a tool call must never take the server down
            log.exception("tool %s failed", name)
            return _error(name, "internal", f"{type(error).__name__}: {error}")

    # ------------------------------------------------------------------------------------------------- tools
    def segment(self, args: SegmentArgs, client: str = LOCAL) -> ToolOutput:
        self.store.check_room(client)  # before any work
        return self.segment_image(load_tool_image(args.image, self.policy), args, client)

    def segment_image(self, image: np.ndarray, args: SegmentArgs, client: str = LOCAL) -> ToolOutput:
        """``segment`` on a decoded image (``args.image`` is not read) for ``client``: one call at a time on the
        model, or in the batcher's batches when the call can share one (the batcher takes the model lock around each
        batch)."""
        if self._batchable(args):
            return self._segment(image, args, client)
        with self._model_lock:
            return self._segment(image, args, client)

    def _segment(self, image: np.ndarray, args: SegmentArgs, client: str) -> ToolOutput:
        critic: Critic | None = None
        if args.critic == "vlm":
            if self.critic_factory is None:
                raise CriticUnavailable()
            critic = self.critic_factory()
        pipe = self.pipeline
        if args.critic == "self":
            critic = SelfConsistencyCritic(PipelineReader(pipe))
        steps = pipe.resolve_settings(args.steps)["num_inference_steps"]
        config = LoopConfig(max_rounds=min(args.max_rounds or 1, self.max_rounds_limit), num_inference_steps=steps,
                            seed=args.seed if args.seed is not None else 0,
                            trajectory_every=max(1, steps // self.trajectory_points),
                            critique_last_round=args.critic == "self",  # its score picks the answer round
                            convergence_iou=self.convergence_iou, correction_mode=self.correction_mode)
        session = Session(pipe, bounded_copy(image), args.expression, config)  # masks come back at the input size
        session.input_size = (int(image.shape[0]), int(image.shape[1]))
        first = None
        if self._batchable(args):  # round 1 shares a UNet batch with concurrent calls
            first = self.batcher.submit(session.image, session.expression, args.corrections, steps=steps,
                                        seed=config.seed, trajectory_every=config.trajectory_every,
                                        correction_mode=session.settings["correction_mode"]).result()
        result = session.run(critic, args.corrections, first=first)
        session_id = self.store.add(session, status=result.stop_reason, client=client)
        return self._round_output("segment", session_id, session, result.best, client)

    def _batchable(self, args: SegmentArgs) -> bool:
        """One round, no server critic, batching on: the call can share a batch with concurrent ones."""
        return self.batch_max > 1 and args.critic in (None, "none") and (args.max_rounds or 1) == 1

    def refine(self, args: RefineArgs, client: str = LOCAL) -> ToolOutput:
        session, index = self.store.lookup(args.mask_id, client)
        session_id, _ = parse_mask_id(args.mask_id)
        with session.lock:
            if len(session.rounds) >= self.max_session_rounds:
                raise UserError(f"this session already has {len(session.rounds)} rounds; call segment again")
            base = session.rounds[index - 1]
            if len(base.corrections) >= MAX_CORRECTIONS:
                raise UserError(f"round {index} already has {len(base.corrections)} corrections, the most a round "
                                "may have; refine an earlier round or call segment again")
            round_ = session.run_round([*base.corrections, args.correction])
            self.store.set_status(session_id, "refined", client)
            self.store.update(session_id, client)
        return self._round_output("refine", session_id, session, round_, client)

    def get_mask(self, args: GetMaskArgs, client: str = LOCAL) -> ToolOutput:
        session, index = self.store.lookup(args.mask_id, client)
        mask = resize_mask(session.rounds[index - 1].mask, session.input_size)
        fmt = args.format or "rle"
        result = MaskResult(mask_id=args.mask_id, format=fmt, width=mask.shape[1], height=mask.shape[0],
                            rle=encode_rle(mask) if fmt == "rle" else None,
                            png_base64=mask_to_png_base64(mask) if fmt == "png" else None,
                            polygons=mask_to_polygons(mask) if fmt == "polygon" else None)
        return ToolOutput("get_mask", result, artifact={"mask": mask})

    def trajectory(self, args: TrajectoryArgs, client: str = LOCAL) -> ToolOutput:
        session, index = self.store.lookup(args.mask_id, client)
        round_ = session.rounds[index - 1]
        masks = [resize_mask(p.mask, session.input_size) for p in round_.trajectory or []]
        points = [TrajectoryStep(step=p.step, timestep=p.timestep, area_percent=_percent(m),
                                 confidence=round(p.confidence, 4), rle=encode_rle(m))
                  for p, m in zip(round_.trajectory or [], masks, strict=True)]
        result = TrajectoryResult(mask_id=args.mask_id, num_inference_steps=session.num_steps, points=points)
        return ToolOutput("trajectory", result, artifact={"masks": masks})

    # ----------------------------------------------------------------------------------------------- helpers
    def _round_output(self, name: str, session_id: str, session: Session, round_: Round,
                      client: str = LOCAL) -> ToolOutput:
        mask = resize_mask(round_.mask, session.input_size)
        instances = [InstanceSummary(bbox=bbox_xywh(m), area_percent=_percent(m)) for m in connected_instances(mask)]
        history = [RoundSummary(round=r.index, corrections=r.corrections, found=r.result.found,
                                area_percent=_percent(r.mask),
                                confidence=round(r.confidence, 4),
                                verdict=r.critique.verdict if r.critique else None,
                                problem=r.critique.problem if r.critique else r.critic_error)
                   for r in session.rounds]
        result = SegmentResult(
            mask_id=mask_id(session_id, round_.index), expression=session.expression,
            width=mask.shape[1], height=mask.shape[0], found=round_.result.found, area_percent=_percent(mask),
            bbox=bbox_xywh(mask), instance_count=len(instances), instances=instances,
            confidence=round(round_.confidence, 4), **round_.result.domain.to_json(), warning=round_.result.warning,
            rounds=round_.index, corrections=round_.corrections,
            stop_reason=self.store.status(session_id, client), history=history)
        png = overlay_png(session.image, round_.mask)  # both at the session's working size
        return ToolOutput(name, result, overlay_png=png,
                          artifact={"mask": mask, "rle": encode_rle(mask), "overlay_png": png})


class CriticUnavailable(UserError):
    def __init__(self) -> None:
        super().__init__("this server has no VLM critic (configure ADDP_CRITIC_MODEL and OPENAI_BASE_URL or "
                         "OPENAI_API_KEY where it runs); use critic='none' and review the overlay yourself")


def overlay_png(image: np.ndarray, mask: np.ndarray, max_side: int = OVERLAY_MAX_SIDE) -> bytes:
    """The mask drawn over the image as a PNG within the payload budget (see :mod:`addp_agent.tools.payload`)."""
    return bounded_png(overlay(image, mask), max_side=max_side)


def _percent(mask: np.ndarray) -> float:
    return round(100.0 * float(mask.sum()) / max(1, mask.size), 3)


def invalid_arguments(error: ValidationError) -> ToolError:
    """The :class:`ToolError` for arguments that do not fit a tool's model (client-chosen keys made printable)."""
    return ToolError(error="invalid_arguments", message="invalid arguments: " + validation_message(error, printable))


def _error(name: str, code: str, message: str) -> ToolOutput:
    return ToolOutput(name, ToolError(error=code, message=message))
