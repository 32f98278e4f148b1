"""A small transport to any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, llama.cpp).

Adds what the critics need on top of the ``openai`` client: three output modes (``json_schema`` structured
outputs → forced ``tool`` call → JSON in ``text``), errors mapped to :class:`CriticError` kinds, and an on-disk
answer cache keyed by the request. Timeouts and retries are the SDK's own (``timeout``, ``max_retries``): it retries
timeouts, connection errors, 408, 409, 429 and 5xx with exponential backoff, and waits as long as a
``Retry-After`` / ``retry-after-ms`` header asks (up to its cap).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from addp_agent.critic.base import CriticError
from addp_agent.critic.cache import ResponseCache
from addp_agent.errors import UserError
from addp_agent.extras import extra_imports

with extra_imports("agent"):
    import openai

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
    timeout_s: float = 60.0  # per HTTP attempt
    max_retries: int = 3  # the openai SDK's retries after the first attempt
    temperature: float = 0.0
    max_tokens: int = 400
    cache_dir: Path | None = field(default_factory=lambda: DEFAULT_CACHE_DIR)

    def resolved(self) -> ChatSettings:
        base_url = self.base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = self.api_key or os.environ.get("OPENAI_API_KEY") or None
        model = self.model or os.environ.get("ADDP_CRITIC_MODEL") or None
        if not model:
            raise UserError("no critic model: pass --critic-model / model= or set ADDP_CRITIC_MODEL")
        if base_url is not None:
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise UserError(f"critic endpoint {base_url!r} (--base-url or OPENAI_BASE_URL) is not an http(s) URL; "
                                "give one like http://localhost:8000/v1")
        if not api_key:
            if not base_url:
                raise UserError("no API key for api.openai.com: set OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
                                "server (vLLM, Ollama, llama.cpp)")
            api_key = "EMPTY"  # local OpenAI-compatible servers accept any key
        cache = self.cache_dir.expanduser() if self.cache_dir is not None else None
        blocker = next((p for p in (cache, *cache.parents) if p.exists()), None) if cache is not None else None
        if blocker is not None and not blocker.is_dir():
            raise UserError(f"critic cache {self.cache_dir} (--cache-dir): {blocker} is a file, not a folder; give a "
                            f"folder, or --no-cache")
        return ChatSettings(base_url=base_url, api_key=api_key, model=model, timeout_s=self.timeout_s,
                            max_retries=self.max_retries, temperature=self.temperature,
                            max_tokens=self.max_tokens, cache_dir=self.cache_dir)


class ChatTransport:
    """Send chat requests and return the answer text (structured JSON, tool arguments or plain text)."""

    def __init__(self, settings: ChatSettings | None = None, client: openai.OpenAI | None = None) -> None:
        self.settings = (settings or ChatSettings()).resolved()
        s = self.settings
        self.client = client or openai.OpenAI(base_url=s.base_url, api_key=s.api_key, timeout=s.timeout_s,
                                              max_retries=s.max_retries)
        self.cache = ResponseCache(s.cache_dir) if s.cache_dir is not None else None
        self.mode: OutputMode | None = None  # the first mode the server accepted, reused afterwards
        self.calls = 0  # requests made (cache hits excluded; the SDK's retries of one request count once)

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
        """One request through the SDK (which retries what is worth retrying); failures become CriticErrors."""
        s = self.settings
        attempts = f"after up to {s.max_retries + 1} attempts"
        self.calls += 1
        try:
            completion = self.client.chat.completions.create(**kwargs)
        except openai.APITimeoutError:
            raise CriticError("timeout", f"no answer within {s.timeout_s:g} s ({attempts})") from None
        except openai.APIConnectionError as error:
            raise CriticError("connection", f"{_short(error)} ({attempts})") from None
        except openai.RateLimitError:
            raise CriticError("rate_limited", f"HTTP 429 Too Many Requests ({attempts})") from None
        except openai.InternalServerError as error:
            raise CriticError("server_error", f"HTTP {error.status_code} ({attempts})") from None
        except (openai.BadRequestError, openai.NotFoundError, openai.UnprocessableEntityError) as error:
            if mode == "text":
                raise CriticError("bad_request", _short(error)) from None
            raise ModeUnsupported(_short(error)) from None
        except openai.APIStatusError as error:
            raise CriticError(f"http_{error.status_code}", _short(error)) from None
        except (openai.APIResponseValidationError, ValueError) as error:
            raise CriticError("malformed", f"the server's response is not a chat completion ({error})") from None
        return _answer(completion, mode)


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
