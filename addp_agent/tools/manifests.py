"""Generate the tool manifests in ``tools/`` from the pydantic models; ``--check`` fails when they are stale.

    addp manifests          # rewrite tools/*.json
    addp manifests --check  # exit 1 if a file differs from the code
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from addp_agent.outputs_io import output_set, write_file
from addp_agent.tools.functions import TOOL_SPECS
from addp_agent.tools.openai_tools import chat_completions_tools, responses_tools

TOOLS_DIR = Path(__file__).resolve().parents[2] / "tools"


def mcp_tools() -> list[dict[str, Any]]:
    """What the MCP server lists: name, description, input and output schema (plain pydantic JSON schema)."""
    return [{"name": name, "description": spec.description, "inputSchema": spec.args.model_json_schema(),
             "outputSchema": spec.result.model_json_schema()} for name, spec in TOOL_SPECS.items()]


def mcp_client_config() -> dict[str, Any]:
    """A Claude Desktop / generic MCP client entry for the stdio server."""
    return {"mcpServers": {"addp-segmentation": {
        "command": "addp", "args": ["mcp", "--allow-dir", "/path/to/your/images"],
        "env": {"ADDP_CRITIC_MODEL": "", "OPENAI_BASE_URL": ""}}}}


def manifests() -> dict[str, str]:
    """File name → exact text of every generated manifest."""
    documents = {"openai_chat_tools.json": chat_completions_tools(), "openai_responses_tools.json": responses_tools(),
                 "mcp_tools.json": mcp_tools(), "mcp_client_config.json": mcp_client_config()}
    return {name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n" for name, doc in documents.items()}


def stale(folder: Path = TOOLS_DIR) -> list[str]:
    """Names of manifests missing from ``folder`` or differing from the code."""
    return [name for name, text in manifests().items()
            if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text]


def write(folder: Path = TOOLS_DIR) -> list[Path]:
    """Write every manifest into ``folder`` together (swapped in as one set; other files there are kept)."""
    texts = manifests()
    with output_set(folder, keep=True, owns=tuple(texts), command="addp manifests", flag="--dir") as staging:
        for name, text in texts.items():
            write_file(staging / name, text)
    return [folder / name for name in texts]

