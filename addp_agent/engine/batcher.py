"""Dynamic batching of concurrent segmentation requests into batched pipeline calls.

A worker thread takes the first queued request, waits up to ``max_wait_ms`` for more (at most ``max_batch``),
groups them by settings (steps, guidance and correction scales, mode) and runs each group as one pipeline call:
one UNet batch per step for every sample and every guidance branch. Corrections may differ per sample (the
pipeline gives a sample with fewer corrections zero-weight branches). Each request keeps its own seed: the call
gets one CPU generator per sample, so the initial noise (and any ancestral-sampler noise) is what an individual
``pipe.segment(..., seed=seed)`` call would draw.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from addp_agent.engine.outputs import SegmentationResult
from addp_agent.engine.pipeline import ADDPPipeline, seeded_generators
from addp_agent.engine.state import DenoiseSettings
from addp_agent.errors import UserError
from addp_agent.images import as_rgb_array
from addp_agent.limits import MAX_BATCH, MAX_BATCH_WAIT_MS
from addp_agent.text import clean_corrections, clean_text

GUIDANCE_SETTINGS = frozenset({"guidance_scale", "image_guidance_scale", "correction_scale", "correction_mode"})


@dataclass
class _Request:
    image: np.ndarray
    expression: str
    corrections: list[str]
    seed: int
    settings: DenoiseSettings
    trajectory_every: int
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple:
        """Requests with equal keys share a pipeline call."""
        return (*self.settings.values(), self.trajectory_every)


@dataclass
class BatcherStats:
    """Counters for monitoring and tests."""

    requests: int = 0
    calls: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class DynamicBatcher:
    """Queue with a maximum batch and a maximum wait in front of one pipeline (one worker thread)."""

    def __init__(self, pipe: ADDPPipeline, max_batch: int = 16, max_wait_ms: float = 10.0,
                 lock: threading.Lock | threading.RLock | None = None) -> None:
        """``lock``, when given, is held around each pipeline call (share it with other users of ``pipe``)."""
        if not 1 <= max_batch <= MAX_BATCH or not 0 <= max_wait_ms <= MAX_BATCH_WAIT_MS:
            raise UserError(f"max_batch must be in 1..{MAX_BATCH} and max_wait_ms in 0..{MAX_BATCH_WAIT_MS:g}, "
                            f"got {max_batch} and {max_wait_ms}")
        self.pipe, self.max_batch, self.max_wait_s = pipe, int(max_batch), float(max_wait_ms) / 1000.0
        self.stats = BatcherStats()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._model_lock = lock
        self._worker = threading.Thread(target=self._run, name="addp-batcher", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------------------------------------ client
    def submit(self, image: Any, expression: str, corrections: list[str] | str | None = None,
               steps: int | None = None, seed: int | None = 0, trajectory_every: int = 0,
               **guidance: Any) -> Future[SegmentationResult]:
        """Queue one request; bad input raises :class:`UserError` here, pipeline failures arrive in the future.

        ``seed=None`` draws a random seed (recorded in the result). ``trajectory_every=k`` records the x̂₀ mask
        every k-th step (``result.trajectory``). ``guidance`` takes ``guidance_scale``, ``image_guidance_scale``,
        ``correction_scale`` and ``correction_mode``.
        """
        unknown = set(guidance) - GUIDANCE_SETTINGS
        if unknown:
            raise UserError(f"unknown settings: {', '.join(sorted(unknown))}")
        request = _Request(
            image=as_rgb_array(image), expression=clean_text(expression, "expression"),
            corrections=clean_corrections([corrections] if isinstance(corrections, str) else corrections or []),
            seed=int(seed) if seed is not None else secrets.randbelow(2**31),
            settings=self.pipe.resolve_settings(steps, **guidance), trajectory_every=int(trajectory_every))
        with self._lock:
            if self._closed:
                raise UserError("the batcher is closed")
            self.stats.requests += 1
            self._queue.put(request)
        return request.future

    def close(self, timeout: float | None = None) -> None:
        """Finish queued requests, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._worker.join(timeout)

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ worker
    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` plus whatever arrives within the wait window; True when the close sentinel was seen."""
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch, stop = self._collect(first)
            groups: dict[tuple, list[_Request]] = {}
            for request in batch:
                groups.setdefault(request.key, []).append(request)
            for group in groups.values():
                self._execute(group)

    def _execute(self, group: list[_Request]) -> None:
        live = [r for r in group if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            if self._model_lock is None:
                results = self.run_batch(live)
            else:
                with self._model_lock:
                    results = self.run_batch(live)
        except Exception as error:  # noqa: BLE001 (every waiting caller must hear about it)
            for request in live:
                request.future.set_exception(error)
            return
        for request, result in zip(live, results, strict=True):
            request.future.set_result(result)

    def run_batch(self, requests: list[_Request]) -> list[SegmentationResult]:
        """One pipeline call for requests with the same settings; each sample keeps its own seed."""
        corrections = [r.corrections for r in requests]
        output = self.pipe.segment_batch([r.expression for r in requests], [r.image for r in requests],
                                         generator=seeded_generators([r.seed for r in requests]),
                                         corrections=corrections if any(corrections) else None,
                                         trajectory_every=requests[0].trajectory_every, **requests[0].settings)
        self.stats.calls += 1
        self.stats.batch_sizes.append(len(requests))
        return output.results([r.seed for r in requests])
