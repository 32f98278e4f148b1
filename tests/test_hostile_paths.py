"""Hostile image paths through the tool dispatcher: each is ``bad_input`` or ``refused``, with no traceback in the
log and the path echoed back only in a short, sanitised form."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from addp_agent.tools.functions import SegmentationTools
from addp_agent.tools.inputs import ImagePolicy, shown

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("allowed")
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(root / "scene.png")
    (root / "sub").mkdir()
    os.mkfifo(root / "fifo")
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    (root / "zero").symlink_to("/dev/zero")
    (root / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 2048)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "sock"))
    return root


@pytest.fixture(scope="module")
def tools(pipe, folder):
    policy = ImagePolicy(allowed_dirs=(folder.resolve(),), max_bytes=1024)
    return SegmentationTools(pipeline=pipe, policy=policy)


HOSTILE = [  # (test id, image argument, expected code)
    ("nul_byte", "scene.png\x00.jpg", "bad_input"),
    ("nul_byte_absolute", "/etc/passwd\x00", "bad_input"),
    ("name_of_5000_characters", "a" * 5000 + ".png", "bad_input"),
    ("component_of_300_characters", "b" * 300 + ".png", "bad_input"),
    ("newline_in_name", "scene\n.png", "bad_input"),
    ("lone_surrogate", "scene\ud800.png", "invalid_arguments"),  # pydantic refuses it first
    ("symlink_loop_eloop", "loop_a", "bad_input"),
    ("directory", "sub", "bad_input"),
    ("the_allowed_folder_itself", ".", "bad_input"),
    ("fifo", "fifo", "refused"),
    ("unix_socket", "sock", "bad_input"),
    ("symlink_to_dev_zero", "zero", "refused"),
    ("dev_zero", "/dev/zero", "refused"),
    ("proc_self_fd", "/proc/self/fd/0", "refused"),
    ("dotdot_escape", "sub/../../scene.png", "refused"),
    ("home_tilde", "~/scene.png", "refused"),
    ("missing_file", "nope.png", "bad_input"),
    ("file_over_max_bytes", "big.png", "bad_input"),
]


@pytest.mark.parametrize(("value", "code"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_path_is_a_clear_error_without_traceback(tools, value, code, caplog):
    with caplog.at_level(logging.DEBUG):
        out = tools.call("segment", {"image": value, "expression": "the cup"})
    assert out.is_error and out.result.error == code, out.text()
    message = out.result.message
    assert "\x00" not in message and "\n" not in message and len(message) < 400
    assert value not in message or len(value) <= 60  # never the whole of a long path
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_name_of_5000_characters_is_echoed_short(tools):
    out = tools.call("segment", {"image": "x" * 5000 + ".png", "expression": "the cup"})
    assert "5004 characters" in out.result.message and "x" * 61 not in out.result.message


def test_shown_bounds_and_sanitises():
    assert shown("a\x00b\nc") == "'a?b?c'"
    long = shown("d" * 500 + "tail.png")
    assert len(long) <= 62 and long.endswith("tail.png'") and "…" in long


def test_unreadable_file_eacces_is_refused(folder):
    """EACCES needs a real permission check, which root skips: a child process drops to uid 65534 first."""
    locked = Path(tempfile.mkdtemp(prefix="addp-eacces-"))
    try:
        locked.chmod(0o755)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(locked / "locked.png")
        (locked / "locked.png").chmod(0o000)
        script = (
            "import json, os, sys\n"
            "from addp_agent.tools.inputs import ImagePolicy, Refused, load_tool_image\n"
            "from addp_agent.errors import UserError\n"
            "if os.geteuid() == 0:\n    os.setgid(65534); os.setuid(65534)\n"
            "try:\n    load_tool_image('locked.png', ImagePolicy.create([sys.argv[1]])); code = 'ok'\n"
            "except Refused as e:\n    code, msg = 'refused', str(e)\n"
            "except UserError as e:\n    code, msg = 'bad_input', str(e)\n"
            "print(json.dumps({'code': code, 'message': msg}))\n")
        run = subprocess.run([sys.executable, "-c", script, str(locked)], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert run.returncode == 0, run.stderr
        answer = json.loads(run.stdout)
        assert answer["code"] == "refused" and "permission denied" in answer["message"], answer
        assert str(locked) not in answer["message"].split(": refused")[0]
    finally:
        (locked / "locked.png").chmod(0o644)
        for file in locked.iterdir():
            file.unlink()
        locked.rmdir()
