"""An LLM agent that segments with the addp tools through any OpenAI-compatible Chat Completions server.

    export OPENAI_BASE_URL=http://localhost:8000/v1   # vLLM, Ollama (…:11434/v1), llama.cpp, or unset for OpenAI
    export OPENAI_API_KEY=...                          # any value for local servers
    export ADDP_AGENT_LLM=gpt-4o-mini                  # the tool-calling model
    python examples/openai_agent.py photo.png "the mug left of the laptop" [--model MODEL_DIR] [--send-overlays]

The LLM calls ``segment``; it may look at the overlay (``--send-overlays`` adds it as an image message for
vision models) and call ``refine`` with a correction naming what was wrongly covered.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

from addp_agent.tools.functions import SegmentationTools
from addp_agent.tools.inputs import ImagePolicy
from addp_agent.tools.openai_tools import chat_completions_tools, chat_tool_message, overlay_message

SYSTEM = ("You segment objects in images with the tools. Call segment with the image path and the user's referring "
          "expression. Inspect the result; if the mask covers a wrong object, call refine with a short correction "
          "naming that object. Finish with one sentence describing the final mask and its mask_id.")


def run_agent(client: openai.OpenAI, llm: str, tools: SegmentationTools, image: str, expression: str,
              send_overlays: bool = False, max_turns: int = 6,
              say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """The chat loop: ask, run every tool call, answer with tool messages, until the model stops calling tools."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Image: {image}\nSegment: {expression}"}]
    for _ in range(max_turns):
        reply = client.chat.completions.create(model=llm, messages=messages, tools=chat_completions_tools())
        message = reply.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            say(f"assistant: {message.content}")
            break
        overlays = []
        for call in message.tool_calls:
            say(f"assistant → {call.function.name}({call.function.arguments})")
            tool_message, output = chat_tool_message(tools, call)
            messages.append(tool_message)
            say(f"tool ← {output.text()}")
            if send_overlays and (extra := overlay_message(output)) is not None:
                overlays.append(extra)
        messages.extend(overlays)  # images go in user messages after all tool messages
    return messages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("expression")
    parser.add_argument("--model", default=os.environ.get("ADDP_MODEL"), help="segmentation model (default: bundled)")
    parser.add_argument("--llm", default=os.environ.get("ADDP_AGENT_LLM", "gpt-4o-mini"))
    parser.add_argument("--send-overlays", action="store_true", help="show overlays to a vision LLM")
    parser.add_argument("--max-turns", type=int, default=6)
    options = parser.parse_args(argv)
    image = Path(options.image).resolve()
    tools = SegmentationTools(options.model, policy=ImagePolicy.create([image.parent]))
    client = openai.OpenAI(base_url=os.environ.get("OPENAI_BASE_URL"),
                           api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"))
    messages = run_agent(client, options.llm, tools, str(image), options.expression, options.send_overlays,
                         options.max_turns)
    print(json.dumps({"turns": sum(1 for m in messages if m["role"] == "assistant")}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
