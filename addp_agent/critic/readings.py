"""What the self-consistency critic asks of a model: its readings of an expression under other noise seeds, its
paint for candidate phrases, and the words it knows. :class:`ModelReader` is the narrow interface;
:class:`PipelineReader` answers it with an :class:`~addp_agent.engine.pipeline.ADDPPipeline`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from addp_agent.engine.pipeline import ADDPPipeline, seeded_generators
from addp_agent.engine.state import EncodedBatch


@dataclass
class Readings:
    """Masks (bool, at the image's size) and decoder confidences, one per seed or phrase."""

    masks: list[np.ndarray]
    confidences: list[float]


@runtime_checkable
class ModelReader(Protocol):
    """The model, as the self-consistency critic sees it."""

    def seeds(self, image: np.ndarray, expression: str, seeds: Sequence[int], corrections: Sequence[Sequence[str]],
              settings: dict[str, Any] | None) -> Readings:
        """One reading of ``expression`` per (seed, corrections) row, denoised with ``settings`` (one batch)."""
        ...

    def phrases(self, image: np.ndarray, phrases: Sequence[str], seed: int) -> Readings:
        """The model's one-step, text-conditioned paint for each phrase on ``image`` (one batch)."""
        ...

    def known_words(self) -> frozenset[str]:
        """Whole words the model's tokenizer knows."""
        ...


class PipelineReader:
    """:class:`ModelReader` over a pipeline. The last image's condition and the text encodings of the current image
    are kept, so a session's critiques encode its image once."""

    def __init__(self, pipe: ADDPPipeline) -> None:
        self.pipe = pipe
        self._image_key: str | None = None
        self._condition: torch.Tensor | None = None
        self._texts: dict[str, torch.Tensor] = {}  # prompt and correction embeddings for the current image
        self._words: frozenset[str] | None = None

    def _encoded(self, image: np.ndarray, prompts: list[str]) -> EncodedBatch:
        """The batch (one row per prompt) of ``image``, encoding only what this image has not seen yet."""
        key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() + str(image.shape)
        if key != self._image_key:
            self.pipe.check_unet_channels()
            self._image_key, self._texts = key, {}
            self._condition = self.pipe.encode_images([image])
            self._texts[""] = self.pipe.encode_text([""])
        missing = [p for p in dict.fromkeys(prompts) if p not in self._texts]
        if missing:
            for text, embed in zip(missing, self.pipe.encode_text(missing), strict=True):
                self._texts[text] = embed[None]
        n = len(prompts)
        assert self._condition is not None
        batch = EncodedBatch(prompts=list(prompts), original_sizes=[(int(image.shape[0]), int(image.shape[1]))] * n,
                             image_latents=self._condition.expand(n, *self._condition.shape[1:]),
                             prompt_embeds=torch.cat([self._texts[p] for p in prompts]), null_embeds=self._texts[""])
        batch.text_cache = self._texts  # corrections are encoded once per image
        return batch

    def seeds(self, image: np.ndarray, expression: str, seeds: Sequence[int], corrections: Sequence[Sequence[str]],
              settings: dict[str, Any] | None) -> Readings:
        if len(corrections) != len(seeds):
            raise ValueError(f"{len(seeds)} seeds but {len(corrections)} correction lists")
        output = self.pipe(encoded=self._encoded(image, [expression] * len(seeds)),
                           generator=seeded_generators(list(seeds)),
                           corrections=[list(c) for c in corrections] if any(corrections) else None,
                           output_type="np", show_progress=False, **(settings or {}))
        return Readings(list(output.masks), list(output.confidences))

    def phrases(self, image: np.ndarray, phrases: Sequence[str], seed: int) -> Readings:
        output = self.pipe(encoded=self._encoded(image, list(phrases)),
                           generator=seeded_generators([seed] * len(phrases)), num_inference_steps=1,
                           guidance_scale=1.0, output_type="np", show_progress=False)
        return Readings(list(output.masks), list(output.confidences))

    def known_words(self) -> frozenset[str]:
        if self._words is None:
            vocab = self.pipe.tokenizer.get_vocab()
            self._words = frozenset(token[: -len("</w>")] for token in vocab if token.endswith("</w>"))
        return self._words
