"""JSON schemas from pydantic models in the subset OpenAI strict mode accepts.

Strict mode wants every property listed in ``required`` (optional fields become nullable), and
``"additionalProperties": false`` on every object. Defaults, titles and length bounds are dropped (the pydantic
models still enforce them when the call arrives).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DROP = {"default", "title", "minLength", "maxLength", "examples"}


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema (validation mode) rewritten for strict function calling."""
    return _strict(model.model_json_schema(mode="validation"))


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items() if key not in _DROP}
    if "properties" in node:
        out["properties"] = {name: _strict(value) for name, value in node["properties"].items()}
        out["required"] = list(node["properties"])
        out["additionalProperties"] = False
    if "$defs" in node:
        out["$defs"] = {name: _strict(value) for name, value in node["$defs"].items()}
    if "anyOf" in out and {"type": "null"} in out["anyOf"] and len(out["anyOf"]) == 2:
        other = next(o for o in out["anyOf"] if o != {"type": "null"})
        if isinstance(other.get("type"), str) and other["type"] not in ("object", "array"):
            rest = {k: v for k, v in out.items() if k != "anyOf"}
            merged = {**rest, **other, "type": [other["type"], "null"]}
            if "enum" in merged:
                merged["enum"] = [*merged["enum"], None]
            return merged
    return out


def check_strict(schema: dict[str, Any], path: str = "$") -> list[str]:
    """Problems that would make OpenAI reject ``schema`` in strict mode (empty list when valid)."""
    problems: list[str] = []
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            problems.append(f"{path}: additionalProperties must be false")
        if sorted(schema.get("required", [])) != sorted(properties):
            problems.append(f"{path}: every property must be required")
        for name, sub in properties.items():
            problems += check_strict(sub, f"{path}.{name}")
    for key in ("anyOf", "allOf", "oneOf"):
        for k, sub in enumerate(schema.get(key, [])):
            problems += check_strict(sub, f"{path}.{key}[{k}]")
    if isinstance(schema.get("items"), dict):
        problems += check_strict(schema["items"], f"{path}[]")
    for name, sub in schema.get("$defs", {}).items():
        problems += check_strict(sub, f"$defs.{name}")
    problems += [f"{path}: '{key}' is not allowed in strict mode" for key in _DROP if key in schema]
    return problems
