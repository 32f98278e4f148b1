"""Property-based fuzzing of every tool's arguments through the one dispatcher, ``SegmentationTools.call``.

Whatever arrives, nothing escapes: the answer is the tool's result or a structured error, never ``internal``, never
a logged traceback, and the MCP adapter can send it under the SDK client's limit. The default suite runs a few
dozen examples per tool; ``-m slow`` runs many more.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from addp_agent.tools.depth_functions import DEPTH_TOOL_SPECS
from addp_agent.tools.depth_schemas import DEPTH_ID_PATTERN
from addp_agent.tools.depth_store import DepthStore
from addp_agent.tools.functions import TOOL_SPECS, SegmentationTools, ToolOutput
from addp_agent.tools.inputs import ImagePolicy
from addp_agent.tools.mcp_server import call_tool_result
from addp_agent.tools.payload import MESSAGE_LIMIT
from addp_agent.tools.schemas import MASK_ID_PATTERN
from addp_agent.tools.store import SessionStore

pytestmark = pytest.mark.usefixtures("one_thread")
DEFAULT_EXAMPLES, SLOW_EXAMPLES = 30, 400


def _png(array: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(buffer, format=fmt)
    return buffer.getvalue()


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def _bomb() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30_000, 30_000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


RNG = np.random.default_rng(0)
SCENE = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)
VALID_IMAGES = [
    "scene.png", "sub/../scene.png", _data_url(_png(SCENE)), base64.b64encode(_png(SCENE)).decode(),
    _data_url(_png(SCENE, "L")), _data_url(_png(SCENE, "RGBA")), _data_url(_png(SCENE, "P")),
    _data_url(_png(SCENE, "1")), _data_url(_png(SCENE, "I;16")), _data_url(_png(SCENE, fmt="JPEG"), "image/jpeg"),
    _data_url(_png(SCENE, fmt="GIF"), "image/gif"), _data_url(_png(SCENE, fmt="BMP"), "image/bmp"),
    _data_url(_png(SCENE, fmt="TIFF"), "image/tiff"), _data_url(_png(SCENE, fmt="WEBP"), "image/webp"),
    _data_url(_png(np.zeros((1, 1, 3), np.uint8))), _data_url(_png(np.zeros((1, 900, 3), np.uint8))),
]
HOSTILE_IMAGES = [
    "", " ", "\x00", "scene.png\x00", "a" * 5000, "b" * 300 + ".png", "../scene.png", "/etc/passwd", "/dev/zero",
    "/proc/self/environ", "~/scene.png", "~nobody/x.png", "sub", ".", "fifo", "loop", "escape", "scene.png/..",
    "file:///etc/passwd", "http://127.0.0.1:9/x.png", "gopher://x", "javascript:alert(1)", "data:", "data:,",
    "data:image/png;base64,", "data:image/png;base64,!!!!", "data:text/html;base64,PGI+", "data:image/png,rawbytes",
    _data_url(_bomb()), _data_url(_png(SCENE)[:60]), _data_url(b"GIF89a" + b"\xff" * 40), "=" * 80, "A" * 63,
    "A" * 64, base64.b64encode(os.urandom(120)).decode(), "\ud800", "sce\u202ene.png", "con", "scene.PNG",
]


def _json_values(strings: st.SearchStrategy = st.text(max_size=12)) -> st.SearchStrategy:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | strings
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6),
                                                                                             inner, max_size=3),
                        max_leaves=6)


JSON = _json_values()
TEXTS = st.text(max_size=320) | st.sampled_from(["the red square", "", "   ", "\x00\x01", "\u202e", "a" * 300,
                                                  "a" * 301, "x\n" * 50])
SMALL_INTS = st.integers(-3, 8) | st.sampled_from([0, 101, 2**31 - 1, 2**31, -(2**63), 2**64])
NUMBERS = SMALL_INTS | st.floats(allow_nan=True) | st.booleans() | st.sampled_from(["5", "1e3", "", "nan"]) | JSON
EXTRA_KEYS = st.dictionaries(st.text(max_size=8), JSON, max_size=2)

VALID_TEXTS = st.text(min_size=1, max_size=120) | st.sampled_from(["the red square", "the circle left of it"])
SEGMENT_VALID = {
    "image": st.sampled_from(VALID_IMAGES), "expression": VALID_TEXTS, "steps": st.integers(1, 4),
    "corrections": st.none() | st.lists(VALID_TEXTS, max_size=3), "max_rounds": st.none() | st.integers(1, 5),
    "critic": st.none() | st.sampled_from(["none", "vlm"]), "seed": st.none() | st.integers(0, 2**31 - 1),
}
SEGMENT_HOSTILE = {
    "image": st.sampled_from(HOSTILE_IMAGES) | st.text(max_size=200) | JSON, "expression": TEXTS | JSON,
    "steps": NUMBERS, "corrections": st.lists(TEXTS, max_size=10) | JSON, "max_rounds": NUMBERS,
    "critic": st.sampled_from(["VLM", "", "simulated"]) | JSON, "seed": NUMBERS,
}
MASK_VALID = {"correction": VALID_TEXTS, "format": st.none() | st.sampled_from(["rle", "png", "polygon"])}
MASK_HOSTILE = {"mask_id": st.from_regex(MASK_ID_PATTERN, fullmatch=True) | TEXTS | JSON, "correction": TEXTS | JSON,
                "format": st.sampled_from(["svg", "RLE", ""]) | JSON}
MASK_FIELDS = {"refine": ("mask_id", "correction"), "get_mask": ("mask_id", "format"), "trajectory": ("mask_id",)}


@st.composite
def perturbed(draw, valid: dict[str, st.SearchStrategy], hostile: dict[str, st.SearchStrategy],
              fields: tuple[str, ...]) -> dict[str, Any]:
    """Valid arguments with up to three fields made hostile or dropped, and sometimes unknown keys added."""
    arguments = {name: draw(valid[name]) for name in fields}
    for name in draw(st.lists(st.sampled_from(fields), max_size=3, unique=True)):
        if draw(st.booleans()):
            arguments[name] = draw(hostile[name])
        else:
            del arguments[name]
    arguments.update(draw(st.just({}) | EXTRA_KEYS))
    return arguments


SEGMENT = perturbed(SEGMENT_VALID, SEGMENT_HOSTILE, tuple(SEGMENT_VALID))

# segment_steps is null (the tiny model's 20 steps, seconds on a busy CPU) only as a perturbation
DEPTH_SETTINGS = {"segment_steps": st.integers(1, 2), "depth_steps": st.none() | st.integers(1, 2),
                  "ensemble_size": st.none() | st.integers(1, 2), "seed": st.none() | st.integers(0, 1)}
MASK_IDS = st.from_regex(MASK_ID_PATTERN, fullmatch=True) | TEXTS | JSON
DEPTH_HOSTILE = {
    "image": SEGMENT_HOSTILE["image"], "depth_id": st.from_regex(DEPTH_ID_PATTERN, fullmatch=True) | TEXTS | JSON,
    "expression": TEXTS | JSON, "expression_a": TEXTS | JSON, "expression_b": TEXTS | JSON, "mask_id": MASK_IDS,
    "mask_id_a": MASK_IDS, "mask_id_b": MASK_IDS, **dict.fromkeys(DEPTH_SETTINGS, NUMBERS),
}


@st.composite
def depth_arguments(draw, name: str, masks: list[str], depths: list[str]) -> dict[str, Any]:
    """Valid arguments for a depth tool (one of its ways to name the image and the objects), then up to three
    fields made hostile, dropped or set to null, and sometimes unknown keys added."""
    image, depth_id = st.sampled_from(VALID_IMAGES), st.sampled_from(depths)
    mask, expression = st.sampled_from(masks), VALID_TEXTS
    settings = {key: draw(value) for key, value in DEPTH_SETTINGS.items()}
    if name == "estimate_depth":
        arguments = {"image": draw(image)}
    elif name == "depth_of":
        source = draw(st.sampled_from(["image", "depth_id", "mask_id", "mask_id+depth_id"]))
        arguments = {"mask_id": draw(mask)} if source.startswith("mask_id") else {"expression": draw(expression)}
        arguments |= {"image": draw(image)} if source == "image" else {}
        arguments |= {"depth_id": draw(depth_id)} if source.endswith("depth_id") else {}
    else:
        source = draw(st.sampled_from(["image", "depth_id", "masks only"]))
        arguments = {}
        for side in ("a", "b"):
            if source == "masks only" or draw(st.booleans()):
                arguments[f"mask_id_{side}"] = draw(mask)
            else:
                arguments[f"expression_{side}"] = draw(expression)
        arguments |= {"image": draw(image)} if source == "image" else {}
        arguments |= {"depth_id": draw(depth_id)} if source == "depth_id" else {}
    fields = tuple(DEPTH_TOOL_SPECS[name].args.model_fields)
    arguments |= {k: v for k, v in settings.items() if k in fields and not ("depth_id" in arguments and k in (
        "depth_steps", "ensemble_size"))}
    for field in draw(st.lists(st.sampled_from(fields), max_size=3, unique=True)):
        how = draw(st.sampled_from(["hostile", "drop", "null"]))
        if how == "hostile":
            arguments[field] = draw(DEPTH_HOSTILE[field])
        elif how == "drop":
            arguments.pop(field, None)
        else:
            arguments[field] = None
    return arguments | draw(st.just({}) | EXTRA_KEYS)


@pytest.fixture(scope="module")
def fuzz_tools(pipe, depth_pipe, tmp_path_factory) -> dict[str, Any]:
    """Tools with an allowed folder holding a scene, a folder, a FIFO, a symlink loop and a link out; live mask
    and depth ids."""
    folder = tmp_path_factory.mktemp("fuzz-allowed")
    Image.fromarray(SCENE).save(folder / "scene.png")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "fifo")
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "escape").symlink_to("/etc/hostname")
    tools = SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([folder]), max_session_rounds=12,
                              store=SessionStore(max_sessions=100_000),  # the live sessions must not be evicted
                              depth_pipeline=depth_pipe, depth_store=DepthStore(max_maps=100_000))
    live = []
    for steps in (1, 3, 3):
        first = tools.call("segment", {"image": "scene.png", "expression": "the red square", "steps": steps})
        second = tools.call("refine", {"mask_id": first.result.mask_id, "correction": "the blue circle"})
        live += [first.result.mask_id, second.result.mask_id, first.result.mask_id[:-1] + "0"]
    other = tools.call("segment", {"image": _data_url(_png(SCENE, "L")), "expression": "x", "steps": 1})
    depths = [tools.call("estimate_depth", {"image": image}).result.depth_id
              for image in ("scene.png", _data_url(_png(SCENE, "L")))]
    return {"tools": tools, "live": live, "masks": [*live, other.result.mask_id],
            "depths": [*depths, "d-000000000000"]}


@pytest.fixture(scope="module")
def log_records():
    """Every log record of addp_agent while the module runs (a traceback in the log is a failure)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("addp_agent")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def check(tools: SegmentationTools, name: str, arguments: Any, records: list[logging.LogRecord]) -> ToolOutput:
    """The property: a result of the tool's type or a structured non-internal error, sendable over MCP."""
    before = len(records)
    out = tools.call(name, arguments)
    assert isinstance(out, ToolOutput)
    event(f"{name if name in TOOL_SPECS else 'unknown'}: {out.result.error if out.is_error else 'ok'}")
    if out.is_error:
        assert out.result.error != "internal", (name, arguments, out.result.message)
        assert out.result.message and "\x00" not in out.result.message and len(out.result.message) < 1000
    else:
        assert isinstance(out.result, TOOL_SPECS.get(name, TOOL_SPECS["segment"]).result)
    answer = call_tool_result(out)
    assert len(answer.model_dump_json(by_alias=True, exclude_none=True)) <= MESSAGE_LIMIT
    assert not [r for r in records[before:] if r.exc_info or r.levelno >= logging.ERROR]
    return out


def _fuzz_settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=False, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def _segment_property(fuzz_tools, log_records, arguments, as_json):
    if as_json:
        with contextlib.suppress(TypeError, ValueError):  # unserialisable (e.g. lone surrogates): send the dict
            arguments = json.dumps(arguments)
    check(fuzz_tools["tools"], "segment", arguments, log_records)


def _mask_tool_property(fuzz_tools, log_records, data, name):
    valid = {**MASK_VALID, "mask_id": st.sampled_from(fuzz_tools["live"])}
    arguments = data.draw(perturbed(valid, MASK_HOSTILE, MASK_FIELDS[name]))
    check(fuzz_tools["tools"], name, arguments, log_records)


@_fuzz_settings(DEFAULT_EXAMPLES)
@given(arguments=SEGMENT, as_json=st.booleans())
def test_fuzz_segment(fuzz_tools, log_records, arguments, as_json):
    _segment_property(fuzz_tools, log_records, arguments, as_json)


@_fuzz_settings(DEFAULT_EXAMPLES)
@given(arguments=st.fixed_dictionaries({"image": st.sampled_from(VALID_IMAGES) | st.sampled_from(HOSTILE_IMAGES),
                                        "expression": TEXTS}))
def test_fuzz_segment_images_with_a_valid_expression(fuzz_tools, log_records, arguments):
    """The image field reaches the loaders (the open fuzz above is mostly stopped by validation)."""
    check(fuzz_tools["tools"], "segment", {**arguments, "steps": 1}, log_records)


@pytest.mark.parametrize("name", ["refine", "get_mask", "trajectory"])
@_fuzz_settings(DEFAULT_EXAMPLES)
@given(data=st.data())
def test_fuzz_mask_tools(fuzz_tools, log_records, name, data):
    _mask_tool_property(fuzz_tools, log_records, data, name)


def _depth_tool_property(fuzz_tools, log_records, data, name):
    arguments = data.draw(depth_arguments(name, fuzz_tools["masks"], fuzz_tools["depths"]))
    check(fuzz_tools["tools"], name, arguments, log_records)


@pytest.mark.parametrize("name", list(DEPTH_TOOL_SPECS))
@_fuzz_settings(DEFAULT_EXAMPLES)
@given(data=st.data())
def test_fuzz_depth_tools(fuzz_tools, log_records, name, data):
    _depth_tool_property(fuzz_tools, log_records, data, name)


@_fuzz_settings(DEFAULT_EXAMPLES)
@given(name=st.sampled_from(list(TOOL_SPECS)) | st.text(max_size=20), raw=st.text(max_size=200) | JSON)
def test_fuzz_raw_arguments_and_tool_names(fuzz_tools, log_records, name, raw):
    """Arguments as any JSON value or any text (as an adapter might pass them), to any tool name."""
    check(fuzz_tools["tools"], name, raw, log_records)


@pytest.mark.slow
@_fuzz_settings(SLOW_EXAMPLES)
@given(arguments=SEGMENT, as_json=st.booleans())
def test_fuzz_segment_long(fuzz_tools, log_records, arguments, as_json):
    _segment_property(fuzz_tools, log_records, arguments, as_json)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["refine", "get_mask", "trajectory"])
@_fuzz_settings(SLOW_EXAMPLES)
@given(data=st.data())
def test_fuzz_mask_tools_long(fuzz_tools, log_records, name, data):
    _mask_tool_property(fuzz_tools, log_records, data, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DEPTH_TOOL_SPECS))
@_fuzz_settings(SLOW_EXAMPLES)
@given(data=st.data())
def test_fuzz_depth_tools_long(fuzz_tools, log_records, name, data):
    _depth_tool_property(fuzz_tools, log_records, data, name)
