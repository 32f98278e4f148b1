"""`addp demo`: the page's API driven by gradio_client against a real server on loopback (tiny models): segment,
trajectory, downloads, typed corrections, a critic's rounds, depth, concurrency, bad inputs, and the CLI's errors.

Bad inputs tried: no image, a blank expression, a blank correction, bytes that are no image (named .png), a text
file (.txt), a PNG declaring 20000×20000 pixels, a file over the size limit, a critic the page does not offer, the
paper critic without a caption, one of two depth expressions, HTML in an error message; CLI: ports 0 and 70000, an
unresolvable or empty host, a port in use, a missing depth model folder, a missing model folder, --batch-max 0 or 10^8.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_cli
from PIL import Image
from pycocotools import mask as mask_utils
from test_agent_support import ChatServer, Reply, completion, scripted
from test_demo_support import served

from addp_agent.demo.depth import closer_sentence, median_depth, uncertainty_image

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def chat():
    """An OpenAI-compatible endpoint on loopback that answers the paper critic's question."""
    with ChatServer(scripted([Reply(completion("the blue circle"))])) as server:
        yield server


@pytest.fixture(scope="module")
def service(red_dir, tiny_depth_dir, chat, tmp_path_factory):
    """The page's service on the tiny red model and the tiny depth model, with the paper critic on ``chat``."""
    from addp_agent.cli.demo import critic_factory, page_critics
    from addp_agent.critic.chat import ChatSettings
    from addp_agent.demo.app import upload_dirs
    from addp_agent.demo.service import DemoService

    settings = ChatSettings(base_url=chat.url, api_key="k", model="llm", cache_dir=None).resolved()
    service = DemoService(str(red_dir), upload_dirs=upload_dirs(), depth_model=str(tiny_depth_dir),
                          critics=page_critics(settings), critic_factory=critic_factory(settings), batch_max=2,
                          batch_wait_ms=400, max_image_bytes=300_000,
                          work_dir=tmp_path_factory.mktemp("demo-work"))
    service.load()
    return service


@pytest.fixture(scope="module")
def url(service):
    with served(service) as address:
        yield address


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pictures") / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def client(url: str) -> Client:
    return Client(url, verbose=False)


def rounds_of(table: dict) -> list[list]:
    return table["data"]


def test_segment_shows_overlay_mask_painted_summary_and_downloads(url, service, picture):
    overlay, mask, painted, summary, record, slider, step_view, files = client(url).predict(
        handle_file(str(picture)), "the red thing", 0, 0, api_name="/segment")
    truth = np.asarray(Image.open(mask).convert("L")) > 127
    assert Image.open(overlay).size == Image.open(mask).size == (56, 40) == truth.shape[::-1]
    assert np.asarray(Image.open(painted)).ndim == 3
    assert record["area"] == int(truth.sum()) > 0 and record["width"] == 56 and record["height"] == 40
    assert f"mask area: {record['area']} px" in summary and "confidence" in summary
    png, rle = sorted(files, key=lambda f: Path(f).suffix)[::-1]  # .png, .json
    assert Path(png).name == "mask.png" and np.array_equal(np.asarray(Image.open(png)) > 127, truth)
    encoded = json.loads(Path(rle).read_text())
    assert np.array_equal(mask_utils.decode({"size": encoded["size"], "counts": encoded["counts"].encode()}) > 0,
                          truth)
    session, index = service.tools.store.lookup(record["mask_id"])
    assert ("found" in record) == hasattr(session.rounds[index - 1].result, "found")  # shown when models say


def test_trajectory_slider_shows_the_recorded_steps(url, service, picture):
    page = client(url)
    *_, slider, step_view, _ = page.predict(handle_file(str(picture)), "the red thing", 0, 0, api_name="/segment")
    steps = service.tools.pipeline.resolve_settings(None)["num_inference_steps"]
    every = max(1, steps // 5)  # the tools record five points
    assert steps == 20 and slider["visible"] and slider["maximum"] == slider["value"] == steps // every
    assert step_view["visible"] and step_view["value"] is None
    image, caption = page.predict(1, api_name="/trajectory")
    assert image["visible"] and Image.open(image["value"]).size == (56, 40)
    assert caption.startswith(f"step {every}/{steps} ")
    assert page.predict(5, api_name="/trajectory")[1].startswith(f"step {steps}/{steps} ")


def test_the_preview_is_bounded_and_bad_files_fail_there_first(url, tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (1500, 600), (200, 30, 30)).save(wide)
    assert Image.open(client(url).predict(handle_file(str(wide)), api_name="/preview")).size == (1024, 410)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(AppError, match="'junk.jpg': "):
        client(url).predict(handle_file(str(junk)), api_name="/preview")


def test_a_typed_correction_adds_a_round_to_the_current_result(url, picture):
    page = client(url)
    page.predict(handle_file(str(picture)), "the red thing", 0, 0, api_name="/segment")
    gallery, table, summary = page.predict(handle_file(str(picture)), "the red thing", "the blue circle", "none", "",
                                           3, 0, api_name="/correct")
    rows = rounds_of(table)
    assert [row[0] for row in rows] == [1, 2] and rows[1][1] == "the blue circle" and rows[1][-1] == "★"
    assert len(gallery) == 2 and gallery[1]["caption"].startswith("★ returned · round 2")
    assert "returned: round 2" in summary and "refines round 1" in summary
    again = page.predict(handle_file(str(picture)), "the red thing", "the green square", "none", "", 3, 0,
                         api_name="/correct")
    assert [row[1] for row in rounds_of(again[1])] == ["-", "the blue circle", "the blue circle, the green square"]


def test_the_paper_critic_runs_rounds_with_the_caption(url, picture, chat):
    before = len(chat.requests)
    gallery, table, summary = client(url).predict(handle_file(str(picture)), "the red thing", "", "paper",
                                                  "random coloured noise", 3, 0, api_name="/correct")
    question = chat.requests[before]["messages"][-1]["content"]
    assert "random coloured noise" in question and "the red thing" in question
    rows = rounds_of(table)
    assert rows[0][4] == "revise" and "the blue circle" in gallery[0]["caption"]
    assert len(rows) >= 2 and rows[1][1] == "the blue circle"
    assert sum(row[-1] == "★" for row in rows) == 1 and "returned: round" in summary


def test_the_depth_tab_colours_depth_shows_uncertainty_and_compares(url, picture):
    page = client(url)
    colored, uncertainty, stats, answer = page.predict(handle_file(str(picture)), 1, "", "", api_name="/depth")
    assert Image.open(colored).size == (56, 40) and "median" in stats and answer == ""
    assert uncertainty["visible"] is False
    colored, uncertainty, stats, answer = page.predict(handle_file(str(picture)), 2, "the red thing",
                                                       "the blue thing", api_name="/depth")
    assert uncertainty["visible"] is True and Image.open(uncertainty["value"]).size == (56, 40)
    assert "'the red thing'" in answer and "'the blue thing'" in answer  # the red model's masks are never empty
    near, far = (float(v) for v in re.search(r"median depth ([\d.]+) vs ([\d.]+)", answer).groups())
    if abs(near - far) >= 0.01:
        assert answer.startswith("**'the red thing' is closer**" if near < far else "**'the blue thing' is closer**")


def test_concurrent_users_share_one_model_and_its_batches(url, service, picture):
    """Two pages segmenting while the model is busy land in one UNet batch of the tool server's batcher (made
    deterministic: the model lock is held until both requests are queued behind a first one)."""
    tools = service.tools
    pipe, before, submitted = tools.pipeline, len(tools.batcher.stats.batch_sizes), tools.batcher.stats.requests
    results, errors = [], []

    def user(text):
        try:
            results.append(client(url).predict(handle_file(str(picture)), text, 0, 0, api_name="/segment")[4])
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=user, args=(text,)) for text in ("the red thing", "the left thing")]
    with tools.exclusive():  # the model is busy: the batcher's worker waits for it with a first request in hand
        blocker = tools.batcher.submit(np.asarray(Image.open(picture).convert("RGB")), "the blue thing", steps=1)
        deadline = time.monotonic() + 120
        while not blocker.running():
            assert time.monotonic() < deadline, "the batcher never took the first request"
            time.sleep(0.01)
        for thread in threads:
            thread.start()
        while tools.batcher.stats.requests < submitted + 3:  # both pages' requests are queued
            assert time.monotonic() < deadline and not errors, errors or "the pages' requests never arrived"
            time.sleep(0.05)
    blocker.result(timeout=120)
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2 and service.tools.pipeline is pipe
    assert tools.batcher.stats.batch_sizes[before:] == [1, 2]


def huge_png(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG header declaring width×height pixels (a few hundred bytes: a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("name", "content", "expression", "message"), [
    (None, None, "the red thing", "no image"),
    ("scene.png", "picture", "   ", "expression is empty"),
    ("broken.png", b"\x89PNG not really an image", "the red thing", "'broken.png': not a readable image"),
    ("notes.txt", b"hello", "the red thing", "Invalid file type"),
    ("huge.png", huge_png(), "the red thing", "over the 40 MP cap"),
])
def test_bad_inputs_are_visible_errors_and_the_server_stays_up(url, picture, tmp_path, name, content, expression,
                                                               message):
    page = client(url)
    upload = None
    if name is not None:
        path = tmp_path / name
        path.write_bytes(picture.read_bytes() if content == "picture" else content)
        upload = handle_file(str(path))
    with pytest.raises(AppError, match=message):
        page.predict(upload, expression, 0, 0, api_name="/segment")
    assert client(url).predict(handle_file(str(picture)), "the red thing", 0, 0, api_name="/segment")[4]["area"] > 0


def test_an_upload_over_the_size_limit_is_refused(url, picture, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (400, 400, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 300_000
    with pytest.raises(Exception, match="(?i)size|large|413"):
        client(url).predict(handle_file(str(big)), "the red thing", 0, 0, api_name="/segment")
    assert client(url).predict(handle_file(str(picture)), "the red thing", 0, 0, api_name="/segment")[4]["area"] > 0


@pytest.mark.parametrize(("args", "message"), [
    (("", "none", "", 1), "correction is empty"),
    (("", "simulated", "", 1), "simulated is not in the list of choices"),  # reads ground truth: never offered
    (("", "paper", "  ", 1), "--caption"),
])
def test_correct_tab_errors(url, picture, args, message):
    correction, critic, caption, rounds = args
    with pytest.raises(AppError, match=message):
        client(url).predict(handle_file(str(picture)), "the red thing", correction, critic, caption, rounds, 0,
                            api_name="/correct")


def test_depth_needs_both_expressions_or_neither(url, picture):
    with pytest.raises(AppError, match="both referring expressions"):
        client(url).predict(handle_file(str(picture)), 1, "the red thing", "", api_name="/depth")


def test_error_messages_are_html_escaped_and_failures_stay_short():
    import gradio as gr

    from addp_agent.demo.app import visible_errors
    from addp_agent.errors import UserError

    def bad_input():
        raise UserError("'<img src=x onerror=alert(1)>': not a readable image")

    def broken():
        raise KeyError("x" * 1000)

    with pytest.raises(gr.Error) as shown:
        visible_errors(bad_input)()
    assert shown.value.message == "'&lt;img src=x onerror=alert(1)&gt;': not a readable image"
    with pytest.raises(gr.Error) as shown:
        visible_errors(broken)()
    assert shown.value.message.startswith("internal error (KeyError)") and len(shown.value.message) <= 300


def test_the_depth_tab_is_hidden_without_a_depth_model(monkeypatch, tmp_path, red_dir):
    import addp_agent.models.registry as registry
    from addp_agent.demo.app import build_demo
    from addp_agent.demo.service import DemoService, depth_source

    monkeypatch.setattr(registry, "DEFAULT_DEPTH_MODEL_DIR", tmp_path / "none")
    assert depth_source(None) is None and depth_source("some/folder") == "some/folder"
    service = DemoService(str(red_dir), work_dir=tmp_path / "work")
    names = {fn.api_name for fn in build_demo(service).fns.values()}
    assert names == {"preview", "segment", "trajectory", "correct"}
    monkeypatch.setattr(registry, "DEFAULT_DEPTH_MODEL_DIR", tmp_path)
    (tmp_path / "model_index.json").write_text("{}")
    assert depth_source(None) == str(tmp_path)  # a bundled depth model, once there is one, shows the tab
    service.close()


def test_the_critic_picker_lists_agent_critics_without_ground_truth_ones(monkeypatch):
    import addp_agent.cli.demo as cli_demo

    monkeypatch.setattr(cli_demo, "CRITICS", ("vlm", "paper", "simulated", "oracle", "self", "none"))
    assert cli_demo.page_critics(None) == ["self", "none"]
    assert cli_demo.page_critics(object()) == ["vlm", "paper", "self", "none"]


def test_closer_rule_and_depth_pictures():
    depth = np.array([[0.1, 0.1, 0.9, 0.9]] * 2, dtype=np.float32)
    left, right = np.zeros((2, 4), bool), np.zeros((2, 4), bool)
    left[:, :2], right[:, 2:] = True, True
    assert median_depth(depth, left) == pytest.approx(0.1) and median_depth(depth, np.zeros((2, 4), bool)) is None
    assert median_depth(depth, np.kron(left, np.ones((2, 2), bool))) == pytest.approx(0.1)  # resized to the map
    assert closer_sentence("a", "b", 0.1, 0.9).startswith("**'a' is closer** than 'b'")
    assert closer_sentence("a", "b", 0.9, 0.1).startswith("**'b' is closer** than 'a'")
    assert "about as far" in closer_sentence("a", "b", 0.5, 0.505)
    assert closer_sentence("a", "b", None, 0.3) == "cannot compare: no mask for 'a'"
    grey = uncertainty_image(np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10))
    assert grey.dtype == np.uint8 and grey.max() == 255 and grey.min() == 0
    assert uncertainty_image(np.zeros((3, 3), np.float32)).max() == 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--port", "0"], "--port must be between 1 and 65535"),
    (["--port", "70000"], "--port must be between 1 and 65535"),
    (["--depth-model", "/no/such/depth"], "--depth-model /no/such/depth: no such folder (nor a hub id"),
    (["--model", "/no/such/model", "--port", "{free}"], "/no/such/model: model path does not exist"),
    (["--batch-max", "0"], "--batch-max must be in 1..256, got 0"),
    (["--batch-max", "100000000"], "--batch-max must be in 1..256"),  # was accepted
    (["--host", "256.1.1.1"], "cannot serve on 256.1.1.1"),
    (["--host", ""], "--host is empty"),  # an empty host would bind every interface
])
def test_cli_bad_arguments_are_one_line_and_exit_2(capsys, extra, message):
    from test_demo_support import free_port

    extra = [free_port() if value == "{free}" else value for value in extra]
    code, _, err = run_cli(["demo", *map(str, extra)], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err


def test_cli_refuses_a_port_in_use(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = run_cli(["demo", "--port", str(taken.getsockname()[1])], capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot serve on 127.0.0.1" in err
