"""A small transport to any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

Adds what the critics need on top of the ``openai`` client: three output modes (``json_schema`` structured
outputs → forced ``tool`` call → JSON in ``text``), timeouts, retries with exponential backoff for timeouts, 429
and 5xx, and an on-disk answer cache keyed by the request.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import openai

from addp_agent.critic.base import CriticError
from addp_agent.critic.cache import ResponseCache
from addp_agent.errors import UserError

OutputMode = Literal["json_schema", "tool", "text"]
FALLBACK_ORDER: tuple[OutputMode, ...] = ("json_schema", "tool", "text")
DEFAULT_CACHE_DIR = Path("~/.cache/addp-agent/critic")


class ModeUnsupported(Exception):
    """The server rejected the request shape (e.g. no structured outputs): try the next output mode."""


@dataclass
class ChatSettings:
    """Endpoint settings; unset fields come from ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``ADDP_CRITIC_MODEL``."""

    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 1.0
    temperature: float = 0.0
    max_tokens: int = 400
    cache_dir: Path | None = field(default_factory=lambda: DEFAULT_CACHE_DIR)

    def resolved(self) -> ChatSettings:
        base_url = self.base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = self.api_key or os.environ.get("OPENAI_API_KEY") or None
        model = self.model or os.environ.get("ADDP_CRITIC_MODEL") or None
        if not model:
            raise UserError("no critic model: pass --critic-model / model= or set ADDP_CRITIC_MODEL")
        if not api_key:
            if not base_url:
                raise UserError("no API key for api.openai.com: set OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
                                "server (vLLM, Ollama, llama.cpp)")
            api_key = "EMPTY"  # local OpenAI-compatible servers accept any key
        return ChatSettings(base_url=base_url, api_key=api_key, model=model, timeout_s=self.timeout_s,
                            max_retries=self.max_retries, backoff_s=self.backoff_s, temperature=self.temperature,
                            max_tokens=self.max_tokens, cache_dir=self.cache_dir)


class ChatTransport:
    """Send chat requests and return the answer text (structured JSON, tool arguments or plain text)."""

    def __init__(self, settings: ChatSettings | None = None, client: openai.OpenAI | None = None) -> None:
        self.settings = (settings or ChatSettings()).resolved()
        s = self.settings
        self.client = client or openai.OpenAI(base_url=s.base_url, api_key=s.api_key, timeout=s.timeout_s,
                                              max_retries=0)
        self.cache = ResponseCache(s.cache_dir) if s.cache_dir is not None else None
        self.mode: OutputMode | None = None  # the first mode the server accepted, reused afterwards
        self.calls = 0  # requests actually sent (cache hits excluded)

    def ask_structured(self, messages: list[dict[str, Any]], name: str, schema: dict[str, Any],
                       json_instruction: str) -> str:
        """The answer as JSON text, trying structured outputs, then a forced tool call, then JSON in text."""
        modes = (self.mode,) if self.mode else FALLBACK_ORDER
        last: ModeUnsupported | None = None
        for mode in modes:
            try:
                answer = self._ask(messages, mode, name, schema, json_instruction)
            except ModeUnsupported as error:
                last = error
                continue
            self.mode = mode
            return answer
        raise CriticError("unsupported", f"the server accepted none of the output modes {modes}: {last}")

    def ask_text(self, messages: list[dict[str, Any]]) -> str:
        """A plain-text answer."""
        try:
            return self._ask(messages, "text", "", None, "")
        except ModeUnsupported as error:
            raise CriticError("bad_request", str(error)) from None

    # ----------------------------------------------------------------------------------------------- internals
    def _ask(self, messages: list[dict[str, Any]], mode: OutputMode, name: str, schema: dict[str, Any] | None,
             json_instruction: str) -> str:
        s = self.settings
        if mode == "text" and json_instruction:
            messages = [*messages, {"role": "user", "content": json_instruction}]
        kwargs: dict[str, Any] = {"model": s.model, "messages": messages, "temperature": s.temperature,
                                  "max_tokens": s.max_tokens}
        if mode == "json_schema":
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": name, "schema": schema, "strict": True}}
        elif mode == "tool":
            kwargs["tools"] = [{"type": "function", "function": {
                "name": name, "description": "Submit your answer.", "parameters": schema, "strict": True}}]
            kwargs["tool_choice"] = {"type": "function", "function": {"name": name}}
        request = {"base_url": s.base_url, "mode": mode, **kwargs}
        if self.cache is not None and (hit := self.cache.get(request)) is not None:
            return hit
        answer = self._send(kwargs, mode)
        if self.cache is not None:
            self.cache.put(request, answer)
        return answer

    def _send(self, kwargs: dict[str, Any], mode: OutputMode) -> str:
        s = self.settings
        failure = CriticError("unknown", "no attempt made")
        for attempt in range(s.max_retries + 1):
            if attempt:
                time.sleep(s.backoff_s * 2 ** (attempt - 1))
            self.calls += 1
            try:
                completion = self.client.chat.completions.create(**kwargs, timeout=s.timeout_s)
            except openai.APITimeoutError:
                failure = CriticError("timeout", f"no answer within {s.timeout_s:g} s")
                continue
            except openai.APIConnectionError as error:
                failure = CriticError("connection", str(error))
                continue
            except openai.RateLimitError:
                failure = CriticError("rate_limited", "HTTP 429 Too Many Requests")
                continue
            except openai.InternalServerError as error:
                failure = CriticError("server_error", f"HTTP {error.status_code}")
                continue
            except (openai.BadRequestError, openai.NotFoundError, openai.UnprocessableEntityError) as error:
                if mode == "text":
                    raise CriticError("bad_request", _short(error)) from None
                raise ModeUnsupported(_short(error)) from None
            except openai.APIStatusError as error:
                raise CriticError(f"http_{error.status_code}", _short(error)) from None
            except (openai.APIResponseValidationError, ValueError) as error:
                raise CriticError("malformed", f"the server's response is not a chat completion ({error})") from None
            return _answer(completion, mode)
        raise CriticError(failure.kind, f"{failure} (after {s.max_retries + 1} attempts)")


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) <= 300 else text[:300] + "…"


def _answer(completion: Any, mode: OutputMode) -> str:
    if not getattr(completion, "choices", None):
        raise CriticError("malformed", "the response has no choices")
    message = completion.choices[0].message
    if getattr(message, "refusal", None):
        raise CriticError("refusal", str(message.refusal)[:300])
    if mode == "tool" and message.tool_calls:
        return message.tool_calls[0].function.arguments or ""
    if not message.content:
        raise CriticError("malformed", "empty answer")
    return message.content
