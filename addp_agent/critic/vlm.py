"""A critic that asks a vision-language model behind any OpenAI-compatible Chat Completions endpoint."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
from PIL import Image
from pydantic import ValidationError

from addp_agent.critic.base import CriticError, Critique, CritiqueRequest, PriorRound
from addp_agent.critic.chat import ChatSettings, ChatTransport
from addp_agent.critic.prompts import load_prompt
from addp_agent.strict_schema import strict_json_schema

SCHEMA_NAME = "critique"


def png_data_url(image: np.ndarray, max_side: int = 512) -> str:
    """An RGB array as a ``data:image/png;base64,…`` URL, downscaled so its longer side is ≤ ``max_side``."""
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    scale = max_side / max(pil.size)
    if scale < 1:
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))),
                         Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def parse_critique(text: str) -> Critique:
    """A :class:`Critique` from JSON text (also inside ```json fences or surrounded by prose)."""
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if match is None:
        raise CriticError("malformed", f"no JSON object in the answer: {text[:120]!r}")
    try:
        return Critique.model_validate(json.loads(match.group(0)))
    except (ValueError, ValidationError) as error:
        first = str(error).splitlines()[0]
        raise CriticError("malformed", f"answer is not a valid critique ({first}): {text[:120]!r}") from None


def _history_text(history: list[PriorRound]) -> str:
    if not history:
        return "none."
    parts = []
    for prior in history:
        said = f"critic said {prior.critique.verdict}: {prior.critique.problem}" if prior.critique else "no critique"
        parts.append(f"round {prior.round} (negative prompts: {', '.join(prior.corrections) or 'none'}; "
                     f"mask area {prior.area_fraction:.1%}; {said})")
    return "; ".join(parts) + "."


class VLMCritic:
    """Shows the image and the mask overlay to a VLM and parses its :class:`Critique`."""

    name = "vlm"

    def __init__(self, settings: ChatSettings | None = None, transport: ChatTransport | None = None,
                 max_side: int = 512, detail: str = "auto") -> None:
        self.transport = transport or ChatTransport(settings)
        self.max_side, self.detail = max_side, detail
        self.schema = strict_json_schema(Critique)

    def messages(self, request: CritiqueRequest) -> list[dict]:
        """The Chat Completions messages for one request (system prompt, text, input image, overlay(s))."""
        note = ""
        intermediate = request.intermediate_overlay()
        if intermediate is not None:
            note = (f"A third image shows the model's early guess after denoising step {request.intermediate_step}; "
                    "later rounds restart from that step.")
        text = load_prompt("vlm_user").render(
            expression=request.expression, round=request.round,
            corrections=", ".join(f'"{c}"' for c in request.corrections) or "none",
            history=_history_text(request.history), intermediate_note=note)
        images = [request.image, request.overlay()] + ([intermediate] if intermediate is not None else [])
        content: list[dict] = [{"type": "text", "text": text}]
        content += [{"type": "image_url", "image_url": {"url": png_data_url(i, self.max_side), "detail": self.detail}}
                    for i in images]
        return [{"role": "system", "content": load_prompt("vlm_system").render()},
                {"role": "user", "content": content}]

    def critique(self, request: CritiqueRequest) -> Critique:
        instruction = load_prompt("json_answer").render(schema=json.dumps(self.schema))
        answer = self.transport.ask_structured(self.messages(request), SCHEMA_NAME, self.schema, instruction)
        return parse_critique(answer)
