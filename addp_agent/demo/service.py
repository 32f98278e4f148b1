"""What every handler of the page shares: one :class:`SegmentationTools` (the model, loaded once, with the tool
server's batching and session store), the optional depth model, the critics the page offers, and image loading."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from addp_agent.critic.base import Critic
from addp_agent.engine.pipeline import ADDPPipeline
from addp_agent.errors import ModelLoadError, UserError
from addp_agent.images import bounded_copy
from addp_agent.tools.functions import SegmentationTools, ToolOutput
from addp_agent.tools.inputs import ImagePolicy, load_tool_image, shown
from addp_agent.tools.store import SessionStore

# name, caption (or None), the shared model → a critic (None for "none"); raises UserError on missing settings
CriticFactory = Callable[[str, str | None, ADDPPipeline], Critic | None]


def depth_source(depth_model: str | None) -> str | None:
    """The depth model the page uses: ``depth_model`` when given, else the bundled one, else None (no depth tab)."""
    if depth_model:
        return depth_model
    from addp_agent.models.registry import default_depth_model_path

    try:
        return str(default_depth_model_path())
    except ModelLoadError:
        return None


class DemoService:
    """The models and state behind the page; handlers call it and turn its :class:`UserError` into visible errors.

    ``upload_dirs``: where uploaded images lie (Gradio's upload folder); image paths elsewhere are refused, as in
    the tool server. ``batch_max`` > 1: concurrent one-round segmentations share UNet batches.
    """

    def __init__(self, model: str | None = None, *, upload_dirs: Sequence[str | Path] = (),
                 depth_model: str | None = None, critics: Sequence[str] = ("none",),
                 critic_factory: CriticFactory | None = None, batch_max: int = 4, batch_wait_ms: float = 10.0,
                 max_sessions: int = 64, max_image_bytes: int = ImagePolicy.max_bytes,
                 work_dir: str | Path | None = None) -> None:
        policy = replace(ImagePolicy.create(upload_dirs), max_bytes=max_image_bytes)
        self.tools = SegmentationTools(model, store=SessionStore(max_sessions), batch_max=batch_max,
                                       batch_wait_ms=batch_wait_ms, policy=policy)
        self.critics = ["none", *[c for c in critics if c != "none"]]
        self.critic_factory = critic_factory
        self.depth_model = depth_source(depth_model)
        self._depth: Any = None
        self._depth_lock = threading.Lock()
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="addp-demo-"))

    # ------------------------------------------------------------------------------------------------ models
    def load(self) -> None:
        """Load every model now (a bad --model or --depth-model fails before the server starts)."""
        self.tools.pipeline  # noqa: B018
        if self.depth_model is not None:
            self.depth_pipeline()

    def depth_pipeline(self) -> Any:
        """The depth model, loaded once; a UserError when the page has none."""
        if self.depth_model is None:
            raise UserError("this page has no depth model (start it with --depth-model FOLDER)")
        with self._depth_lock:
            if self._depth is None:
                from addp_agent.models.registry import load_depth_pipeline

                self._depth = load_depth_pipeline(self.depth_model, progress=False)
                self._depth.set_progress_bar_config(disable=True)
        return self._depth

    def estimate_depth(self, image: np.ndarray, ensemble_size: int, seed: int = 0) -> Any:
        """:class:`~addp_agent.engine.depth_result.DepthEstimate` of ``image``; one estimate at a time."""
        pipe = self.depth_pipeline()
        with self._depth_lock:
            return pipe.estimate(image, ensemble_size=ensemble_size, seed=seed, show_progress=False)

    def close(self) -> None:
        self.tools.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------ inputs
    def image(self, path: str | None) -> np.ndarray:
        """The uploaded image as RGB uint8; one clear UserError for a missing, huge, corrupt or non-image file."""
        path = self.image_path(path)
        try:
            return load_tool_image(path, self.tools.policy)
        except UserError as error:
            raise UserError(by_name(str(error), path)) from None

    def preview(self, path: str | None) -> np.ndarray | None:
        """The upload at most 1024 px on its longer side (what sessions keep), or None when the file was cleared."""
        return None if path is None else bounded_copy(self.image(path))

    @staticmethod
    def image_path(path: str | None) -> str:
        if not path:
            raise UserError("no image: upload an image or pick an example first")
        return str(path)

    @staticmethod
    def expression(text: str | None, what: str = "referring expression") -> str:
        if not text or not text.strip():
            raise UserError(f"the {what} is empty: type what to segment, e.g. 'the red circle left of the square'")
        return text.strip()

    # ----------------------------------------------------------------------------------------------- critics
    def critic(self, name: str, caption: str | None) -> Critic | None:
        """The critic ``name`` (one of :attr:`critics`), built fresh for one run."""
        if name not in self.critics:
            raise UserError(f"unknown critic {name!r}; this page offers {', '.join(self.critics)}")
        if name == "none":
            return None
        if self.critic_factory is None:
            raise UserError(f"critic {name!r} is not configured on this page")
        return self.critic_factory(name, (caption or "").strip() or None, self.tools.pipeline)

    # --------------------------------------------------------------------------------------------- the tools
    def segment(self, path: str, expression: str, *, steps: int | None = None, seed: int = 0,
                corrections: list[str] | None = None) -> ToolOutput:
        """The ``segment`` tool (the batcher joins concurrent calls); a tool error becomes a UserError."""
        output = self.tools.call("segment", {"image": path, "expression": expression, "steps": steps, "seed": seed,
                                            "corrections": corrections or None})
        if output.is_error:
            raise UserError(by_name(output.result.message, path))
        return output

    def refine(self, mask_id: str, correction: str) -> ToolOutput:
        return checked(self.tools.call("refine", {"mask_id": mask_id, "correction": correction}))


def by_name(message: str, path: str) -> str:
    """``message`` naming the upload by its file name, not by where the server keeps it."""
    return message.replace(shown(path), shown(Path(path).name))


def checked(output: ToolOutput) -> ToolOutput:
    """``output``, or its :class:`~addp_agent.tools.schemas.ToolError` message as a UserError."""
    if output.is_error:
        raise UserError(output.result.message)
    return output
