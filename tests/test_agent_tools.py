"""Tool functions, session store, image input policy, and the OpenAI adapter (with a loopback LLM server)."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_agent_support import ChatServer, Reply, completion, error, scripted, tool_call

from addp_agent.critic.chat import ChatSettings
from addp_agent.critic.vlm import VLMCritic
from addp_agent.data.shapes import generate_sample
from addp_agent.masks import decode_rle, mask_from_png_bytes, polygons_to_mask
from addp_agent.strict_schema import check_strict
from addp_agent.tools.functions import TOOL_SPECS, SegmentationTools
from addp_agent.tools.inputs import ImagePolicy
from addp_agent.tools.manifests import manifests, stale
from addp_agent.tools.openai_tools import (
    chat_completions_tools,
    chat_tool_message,
    overlay_message,
    responses_output_item,
    responses_tools,
)
from addp_agent.tools.schemas import SegmentArgs
from addp_agent.tools.store import SessionStore

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    sample = generate_sample("val", 5)
    Image.fromarray(sample.image).save(folder / "scene.png")
    return folder, sample


@pytest.fixture()
def tools(pipe, images):
    return SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([images[0]]))


def _png_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_segment_refine_get_mask_trajectory(tools, images):
    folder, sample = images
    out = tools.call("segment", {"image": "scene.png", "expression": sample.expression, "steps": 5, "seed": 1})
    assert not out.is_error, out.text()
    first = out.result
    assert first.mask_id.endswith("-r1") and (first.width, first.height) == (64, 64) and first.rounds == 1
    assert np.asarray(Image.open(io.BytesIO(out.overlay_png))).shape == (64, 64, 3)
    assert first.mask_id in out.text() and ("refine" if first.found else "was not found") in out.text()

    refined = tools.call("refine", json.dumps({"mask_id": first.mask_id, "correction": "the blue\x00 shape"}))
    assert refined.result.mask_id.endswith("-r2") and refined.result.corrections == ["the blue shape"]
    assert [h.round for h in refined.result.history] == [1, 2]

    session, _ = tools.store.lookup(refined.result.mask_id)
    truth = session.rounds[1].mask
    rle = tools.call("get_mask", {"mask_id": refined.result.mask_id, "format": None}).result
    assert rle.format == "rle" and np.array_equal(decode_rle(rle.rle), truth)
    png = tools.call("get_mask", {"mask_id": refined.result.mask_id, "format": "png"}).result
    assert np.array_equal(mask_from_png_bytes(base64.b64decode(png.png_base64)), truth)
    poly = tools.call("get_mask", {"mask_id": refined.result.mask_id, "format": "polygon"}).result
    assert poly.polygons is not None and polygons_to_mask(poly.polygons, 64, 64).shape == (64, 64)

    traj = tools.call("trajectory", {"mask_id": first.mask_id}).result
    assert traj.num_inference_steps == 5 and [p.step for p in traj.points] == [0, 1, 2, 3, 4]
    assert np.array_equal(decode_rle(traj.points[-1].rle), session.rounds[0].mask)


def test_images_as_data_url_and_base64_give_the_same_mask(tools, images):
    _, sample = images
    common = {"expression": sample.expression, "steps": 2}
    by_url = tools.call("segment", {**common, "image": "data:image/png;base64," + _png_b64(sample.image)})
    by_b64 = tools.call("segment", {**common, "image": _png_b64(sample.image)})
    by_path = tools.call("segment", {**common, "image": "scene.png"})
    assert by_url.result.bbox == by_b64.result.bbox == by_path.result.bbox


@pytest.mark.parametrize(("name", "arguments", "code"), [
    ("segment", {"image": "scene.png"}, "invalid_arguments"),
    ("segment", {"image": "scene.png", "expression": "x", "colour": "red"}, "invalid_arguments"),
    ("segment", {"image": "scene.png", "expression": "x", "steps": "many"}, "invalid_arguments"),
    ("segment", "{not json", "invalid_arguments"),
    ("refine", {"mask_id": "m-1", "correction": "x"}, "invalid_arguments"),
    ("erase", {}, "unknown_tool"),
    ("segment", {"image": "../scene.png", "expression": "x"}, "refused"),
    ("segment", {"image": "/etc/passwd", "expression": "x"}, "refused"),
    ("segment", {"image": "escape.png", "expression": "x"}, "refused"),  # a symlink out of the folder
    ("segment", {"image": "https://example.com/a.png", "expression": "x"}, "refused"),
    ("segment", {"image": "missing.png", "expression": "x"}, "bad_input"),
    ("segment", {"image": "data:text/plain;base64,aGVsbG8=", "expression": "x"}, "bad_input"),
    ("segment", {"image": "scene.png", "expression": "x", "critic": "vlm"}, "critic_unavailable"),
    ("get_mask", {"mask_id": "m-000000000000-r1", "format": "rle"}, "not_found"),
])
def test_bad_calls_return_structured_errors(tools, images, tmp_path, name, arguments, code):
    outside = tmp_path / "secret.png"
    Image.fromarray(images[1].image).save(outside)
    link = images[0] / "escape.png"
    if not link.exists():
        link.symlink_to(outside)
    out = tools.call(name, arguments)
    assert out.is_error and out.result.error == code, out.text()
    assert out.data() == {"error": code, "message": out.result.message} and out.result.message


def test_no_allowed_folder_refuses_every_path(pipe, images):
    out = SegmentationTools(pipeline=pipe).call("segment", {"image": str(images[0] / "scene.png"), "expression": "x"})
    assert out.result.error == "refused" and "--allow-dir" in out.result.message


def test_store_is_bounded_and_expires():
    now = [0.0]
    store = SessionStore(max_sessions=2, ttl_s=10, clock=lambda: now[0])

    class Fake:
        rounds = [object()]

    a, b = store.add(Fake()), store.add(Fake())
    store.lookup(f"m-{a}-r1")  # a is now the most recently used
    store.add(Fake())  # evicts b
    with pytest.raises(Exception, match="unknown or expired"):
        store.lookup(f"m-{b}-r1")
    with pytest.raises(Exception, match="rounds 1..1"):
        store.lookup(f"m-{a}-r2")
    now[0] = 11.0
    with pytest.raises(Exception, match="unknown or expired"):
        store.lookup(f"m-{a}-r1")
    assert len(store) == 0


def test_vlm_critic_rounds_and_critic_failure_through_the_tool(pipe, images):
    _, sample = images
    critique = {"verdict": "revise", "problem": "covers the cross", "correction": "the cross", "confidence": 0.6}
    replies = [Reply(completion(json.dumps(critique))), error(500, "down")]
    with ChatServer(scripted(replies)) as server:
        settings = ChatSettings(base_url=server.url, api_key="k", model="vlm", max_retries=0, cache_dir=None)
        tools = SegmentationTools(pipeline=pipe, critic_factory=lambda: VLMCritic(settings), convergence_iou=1.01)
        out = tools.call("segment", {"image": _png_b64(sample.image), "expression": sample.expression, "steps": 2,
                                     "critic": "vlm", "max_rounds": 3})
    result = out.result
    assert result.stop_reason == "critic_failed" and [h.round for h in result.history] == [1, 2]
    assert result.history[1].corrections == ["the cross"] and "server_error" in result.history[1].problem


def test_self_critic_through_the_tool_needs_no_server_and_judges_every_round(pipe, images):
    _, sample = images
    tools = SegmentationTools(pipeline=pipe, convergence_iou=1.01)  # no critic_factory: no VLM configured
    out = tools.call("segment", {"image": _png_b64(sample.image), "expression": sample.expression, "steps": 2,
                                 "critic": "self", "max_rounds": 2})
    assert not out.is_error, out.text()
    result = out.result
    assert [h.round for h in result.history] == list(range(1, len(result.history) + 1))
    assert all(h.verdict in ("accept", "revise") for h in result.history)  # the last round is judged too
    assert result.stop_reason in ("accepted", "max_rounds", "no_correction", "repeated_correction")
    nullable = SegmentArgs.model_json_schema()["properties"]["critic"]
    assert "self" in str(nullable) and "reading no ground truth" in str(nullable)


# ------------------------------------------------------------------------------------------------- OpenAI
def test_manifests_match_the_code_and_are_strict():
    assert stale() == [], "run: addp manifests"
    chat, responses = chat_completions_tools(), responses_tools()
    assert [t["function"]["name"] for t in chat] == [t["name"] for t in responses] == list(TOOL_SPECS)
    for tool in responses:
        assert tool["strict"] is True and check_strict(tool["parameters"]) == []
    assert json.loads(manifests()["openai_chat_tools.json"]) == chat
    nullable = chat[0]["function"]["parameters"]["properties"]["critic"]
    assert nullable["type"] == ["string", "null"] and None in nullable["enum"]


def test_manifests_command_writes_and_checks_a_folder_and_names_its_flag(tmp_path, capsys):
    from cli_support import run_cli

    code, _, err = run_cli(["manifests", "--dir", str(tmp_path / "tools")], capsys)
    assert code in (0, None), err
    assert sorted(p.name for p in (tmp_path / "tools").iterdir()) == sorted(manifests())
    code, out, _ = run_cli(["manifests", "--dir", str(tmp_path / "tools"), "--check"], capsys)
    assert code in (0, None)
    (tmp_path / "a-file").write_text("x")
    code, _, err = run_cli(["manifests", "--dir", str(tmp_path / "a-file" / "tools")], capsys)
    assert code == 2 and "give a writable --dir" in err and len(err.strip().splitlines()) == 1
    for not_a_folder in (tmp_path / "a-file", tmp_path / "missing"):  # --check said "stale", exit 1
        code, _, err = run_cli(["manifests", "--dir", str(not_a_folder), "--check"], capsys)
        assert code == 2 and "not a folder" in err and len(err.strip().splitlines()) == 1


def test_dispatchers_answer_sdk_tool_calls(tools, images):
    from openai.types.chat import ChatCompletionMessageToolCall
    from openai.types.responses import ResponseFunctionToolCall

    args = json.dumps({"image": "scene.png", "expression": images[1].expression, "corrections": None,
                       "max_rounds": None, "critic": None, "steps": 2, "seed": None})
    call = ChatCompletionMessageToolCall(id="call_9", type="function", function={"name": "segment", "arguments": args})
    message, output = chat_tool_message(tools, call)
    assert message["role"] == "tool" and message["tool_call_id"] == "call_9"
    assert json.loads(message["content"])["mask_id"] == output.result.mask_id
    extra = overlay_message(output)
    assert extra["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    item = ResponseFunctionToolCall(type="function_call", call_id="fc_1", name="get_mask",
                                    arguments=json.dumps({"mask_id": output.result.mask_id, "format": "rle"}))
    answer, _ = responses_output_item(tools, item)
    assert answer["type"] == "function_call_output" and answer["call_id"] == "fc_1"
    assert json.loads(answer["output"])["rle"]["size"] == [64, 64]
    bad, _ = chat_tool_message(tools, {"id": "c", "function": {"name": "refine", "arguments": "{}"}})
    assert json.loads(bad["content"])["error"] == "invalid_arguments"


def agent_llm(request):
    """A scripted tool-calling LLM: segment, then refine the returned mask_id, then a final answer."""
    assert request["tools"] == chat_completions_tools()
    results = [json.loads(m["content"]) for m in request["messages"] if m["role"] == "tool"]
    if not results:
        image = request["messages"][1]["content"].split("\n")[0].removeprefix("Image: ")
        return Reply(completion(tool_calls=[tool_call("segment", {
            "image": image, "expression": "the second shape from the top", "corrections": None, "max_rounds": None,
            "critic": None, "steps": 3, "seed": None})]))
    if len(results) == 1:
        return Reply(completion(tool_calls=[tool_call("refine", {"mask_id": results[0]["mask_id"],
                                                                 "correction": "the blue shape"}, "call_2")]))
    return Reply(completion(f"Done: {results[-1]['mask_id']} covers {results[-1]['area_percent']}% of the image."))


def load_example():
    spec = importlib.util.spec_from_file_location("openai_agent", ROOT / "examples" / "openai_agent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_agent_loop_against_a_loopback_server(tools, images):
    import openai

    example = load_example()
    lines: list[str] = []
    with ChatServer(agent_llm) as server:
        client = openai.OpenAI(base_url=server.url, api_key="k", max_retries=0)
        messages = example.run_agent(client, "scripted", tools, str(images[0] / "scene.png"),
                                     "the second shape from the top", send_overlays=True, say=lines.append)
    heads = [line.split("(")[0].split(":")[0].split(" m-")[0] for line in lines]
    assert heads == ["assistant → segment", "tool ← mask_id", "assistant → refine", "tool ← mask_id", "assistant"]
    assert lines[3].startswith("tool ← mask_id m-") and lines[3].split()[3].endswith("-r2:")
    assert sum(m["role"] == "tool" for m in messages) == 2
    assert sum(m["role"] == "user" and isinstance(m["content"], list) for m in messages) == 2  # overlays shown
    assert len(server.requests) == 3


def test_concurrent_one_round_segments_share_a_batch_and_match_unbatched_calls(pipe, images):
    import threading

    folder, sample = images
    for k in range(3):
        Image.fromarray(generate_sample("val", 10 + k).image).save(folder / f"other{k}.png")
    names = ["scene.png", "other0.png", "other1.png", "other2.png"]
    calls = [{"image": name, "expression": sample.expression, "steps": 3, "seed": k} for k, name in enumerate(names)]
    plain = SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([folder]))
    expected = [plain.call("segment", dict(c)) for c in calls]

    batched = SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([folder]), batch_max=4, batch_wait_ms=500)
    outputs: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def client(k: int) -> None:
        barrier.wait()
        outputs[k] = batched.call("segment", dict(calls[k]))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = batched.batcher.stats
    assert stats.requests == 4 and stats.calls < 4 and max(stats.batch_sizes) > 1  # fewer UNet batches than calls
    for out, want in zip(outputs, expected, strict=True):
        assert not out.is_error, out.text()
        assert out.result.stop_reason == want.result.stop_reason == "no_critic"
        mask = tools_mask(batched, out.result.mask_id)
        assert np.array_equal(mask, tools_mask(plain, want.result.mask_id))
        traj = batched.call("trajectory", {"mask_id": out.result.mask_id}).result
        assert [p.step for p in traj.points] == [0, 1, 2]  # the batched round records its trajectory too

    # refine after a batched first round: the session encodes lazily and matches the unbatched session
    refined = batched.call("refine", {"mask_id": outputs[0].result.mask_id, "correction": "the blue shape"})
    want = plain.call("refine", {"mask_id": expected[0].result.mask_id, "correction": "the blue shape"})
    assert refined.result.mask_id.endswith("-r2") and refined.result.corrections == ["the blue shape"]
    assert np.array_equal(tools_mask(batched, refined.result.mask_id), tools_mask(plain, want.result.mask_id))

    # several rounds or a critic never go through the batcher
    before = stats.requests
    assert not batched.call("segment", {**calls[0], "max_rounds": 2}).is_error
    assert stats.requests == before
    batched.close()
    with pytest.raises(Exception, match="batch_max"):
        SegmentationTools(pipeline=pipe, batch_max=0)
    with pytest.raises(Exception, match="batch_max must be in 1..256"):
        SegmentationTools(pipeline=pipe, batch_max=10**8)


def tools_mask(tools: SegmentationTools, mask_id: str) -> np.ndarray:
    session, index = tools.store.lookup(mask_id)
    return session.rounds[index - 1].mask
