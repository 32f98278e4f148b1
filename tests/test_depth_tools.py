"""The depth tools (estimate_depth, depth_of, compare_depth) through the one dispatcher, on tiny models loaded with
from_pretrained: the closer-of-two rule on constructed depth maps, reuse of kept maps, not found as an answer, and
one structured error for each bad input."""

from __future__ import annotations

import base64
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from addp_agent.data.shapes import generate_sample
from addp_agent.masks import mask_iou
from addp_agent.models import registry
from addp_agent.tools.depth_stats import compare_regions, map_stats, nearer_delta, range_fraction, region_stats
from addp_agent.tools.depth_store import DepthMap, DepthStore, image_key
from addp_agent.tools.functions import SegmentationTools
from addp_agent.tools.inputs import ImagePolicy
from addp_agent.tools.openai_tools import chat_tool_message, overlay_message
from addp_agent.tools.store import NotFound, SessionStore

pytestmark = pytest.mark.usefixtures("one_thread")
SETTINGS = {"num_inference_steps": 2, "ensemble_size": 1, "seed": 0, "processing_resolution": 32,
            "scheduler": "DDIMScheduler", "prediction_type": "depth"}


def brute_delta(a: np.ndarray, b: np.ndarray) -> float:
    """P(a < b) − P(a > b) over every pair, by enumerating the pairs."""
    return float(np.sign(np.asarray(b, float)[None, :] - np.asarray(a, float)[:, None]).mean())


# ------------------------------------------------------------------------------------------------ pure rule
def test_map_and_region_stats_by_hand():
    depth = (np.arange(100, dtype=np.float32) / 99).reshape(10, 10)
    stats = map_stats(depth)
    assert stats["min"] == 0 and stats["max"] == 1 and stats["median"] == pytest.approx(0.5)
    assert stats["p10"] == pytest.approx(0.1) and stats["p90"] == pytest.approx(0.9)
    assert stats["p5"] == pytest.approx(0.05) and stats["p95"] == pytest.approx(0.95)
    mask = np.zeros((10, 10), bool)
    mask[0, :5] = True  # values 0, 1/99, …, 4/99
    region = region_stats(depth, mask)
    assert region["median"] == pytest.approx(2 / 99, abs=1e-6) and region["mean"] == pytest.approx(2 / 99, abs=1e-6)
    assert region["p10"] == pytest.approx(0.4 / 99, abs=1e-6) and region["p90"] == pytest.approx(3.6 / 99, abs=1e-6)
    assert region["range_fraction"] == pytest.approx(2 / 99, abs=1e-6)
    assert region_stats(depth, np.zeros((10, 10), bool)) is None
    assert range_fraction(0.3, 0.2, 0.6) == pytest.approx(0.25) and range_fraction(0.5, 0.5, 0.5) == 0.0


@pytest.mark.parametrize(("a", "b", "want"), [
    ([0.1, 0.2, 0.3], [0.25, 0.4], 4 / 6),  # 5 pairs nearer, 1 farther
    ([0.1, 0.2, 0.3, 0.4], [0.3], 1 / 4),  # 2 nearer, 1 tie, 1 farther
    ([0.1, 0.2], [0.5, 0.6, 0.7], 1.0),  # disjoint, A nearer
    ([0.8, 0.9], [0.1], -1.0),  # disjoint, B nearer
    ([0.5, 0.5], [0.5], 0.0),  # all ties
])
def test_nearer_delta_by_hand(a, b, want):
    assert nearer_delta(np.array(a), np.array(b)) == pytest.approx(want) == pytest.approx(brute_delta(a, b))


def test_nearer_delta_matches_every_pair_on_random_samples():
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = np.round(rng.normal(rng.uniform(0, 1), 0.2, rng.integers(1, 60)), 2)  # rounded: ties happen
        b = np.round(rng.normal(rng.uniform(0, 1), 0.2, rng.integers(1, 60)), 2)
        assert nearer_delta(a, b) == pytest.approx(brute_delta(a, b), abs=1e-12)
    with pytest.raises(ValueError):
        nearer_delta(np.array([]), np.array([0.5]))


def constructed_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 40×40 depth map with a near object A (rows 5–14, depth 0.10–0.40) and a far one B (rows 20–34, 0.30–0.90),
    whose depth distributions overlap in 0.30–0.40."""
    depth = np.full((40, 40), 0.95, np.float32)
    a = np.zeros((40, 40), bool)
    b = np.zeros((40, 40), bool)
    a[5:15, 5:15] = True
    b[20:35, 20:35] = True
    depth[5:15, 5:15] = np.linspace(0.1, 0.4, 10)[:, None]
    depth[20:35, 20:35] = np.linspace(0.3, 0.9, 15)[:, None]
    return depth, a, b


def test_closer_rule_on_constructed_depth_maps():
    depth, a, b = constructed_scene()
    delta = brute_delta(depth[a], depth[b])
    assert 0.5 < delta < 1.0  # overlapping, A mostly nearer
    got = compare_regions(depth, a, b, 0.9, 0.6)
    assert got.closer == "a" and got.delta == pytest.approx(delta, abs=1e-6)
    assert got.separation == pytest.approx(delta, abs=1e-6)
    assert got.confidence == pytest.approx(delta * 0.6, abs=1e-6)  # the weaker mask bounds the answer
    swapped = compare_regions(depth, b, a, 0.6, 0.9)
    assert swapped.closer == "b" and swapped.confidence == got.confidence
    # disjoint distributions: separation 1, confidence = the weaker confidence
    far = depth.copy()
    far[b] += 0.2
    assert compare_regions(far, a, b, 0.7, 0.8) == compare_regions(far, a, b, 0.8, 0.7)
    assert compare_regions(far, a, b, 0.7, 0.8).separation == 1.0
    assert compare_regions(far, a, b, 0.7, 0.8).confidence == pytest.approx(0.7)
    # interchangeable depths: neither, no confidence
    flat = np.full((40, 40), 0.4, np.float32)
    assert compare_regions(flat, a, b, 1.0, 1.0).closer == "neither"
    assert compare_regions(flat, a, b, 1.0, 1.0).confidence == 0.0
    # a mask confidence outside 0..1 cannot push the answer's confidence outside it
    assert compare_regions(far, a, b, 3.0, 2.0).confidence == 1.0


# ------------------------------------------------------------------------------------------------ the store
def _depth_map(side: int = 8, seed: int = 0, image: np.ndarray | None = None) -> DepthMap:
    image = np.full((side, side, 3), seed, np.uint8) if image is None else image
    depth = np.random.default_rng(seed).random(image.shape[:2]).astype(np.float32)
    return DepthMap(image=image, key=image_key(image), input_size=image.shape[:2], depth=depth, uncertainty=None,
                    settings={**SETTINGS, "seed": seed}, seconds=0.0)


def test_depth_store_is_bounded_expires_and_finds_by_content():
    now = [0.0]
    store = DepthStore(max_maps=2, ttl_s=10, clock=lambda: now[0])
    first, second = store.add(_depth_map(seed=1)), store.add(_depth_map(seed=2))
    store.lookup(first)  # now the most recently used
    store.add(_depth_map(seed=3))  # evicts second
    with pytest.raises(NotFound, match="unknown or expired"):
        store.lookup(second)
    image = np.full((8, 8, 3), 1, np.uint8)
    assert store.find(image_key(image), {"seed": 1})[0] == first
    assert store.find(image_key(image), {"seed": 2}) is None  # same image, other settings
    assert store.find(image_key(image.copy()), {"seed": 1})[0] == first  # by content, not by object
    with pytest.raises(NotFound, match="not a depth_id"):
        store.lookup("m-000000000000-r1")
    now[0] = 11.0
    assert len(store) == 0
    one = _depth_map(side=16)
    small = DepthStore(max_maps=10, max_bytes=one.nbytes * 2)
    ids = [small.add(_depth_map(side=16, seed=k)) for k in range(4)]
    assert len(small) == 2 and small.lookup(ids[-1]) is not None  # bytes bound the store; the newest stays
    assert DepthStore(max_bytes=1).add(one) is not None and len(DepthStore()) == 0


# ------------------------------------------------------------------------------------------------ the tools
@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("depth-images")
    image = generate_sample("val", 5).image
    Image.fromarray(image).save(folder / "scene.png")
    Image.fromarray(generate_sample("val", 6).image).save(folder / "other.png")
    Image.fromarray(np.zeros((1, 900, 3), np.uint8)).save(folder / "thin.png")
    return folder, image


@pytest.fixture()
def tools(red_pipe, depth_pipe, scene):
    """Tools whose segmentation finds something (the red-biased tiny model) and a tiny depth model."""
    return SegmentationTools(pipeline=red_pipe, depth_pipeline=depth_pipe, policy=ImagePolicy.create([scene[0]]))


@pytest.fixture()
def unet_calls(depth_pipe):
    calls: list[int] = []
    handle = depth_pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    yield calls
    handle.remove()


def kept_mask(tools: SegmentationTools, mask_id: str) -> tuple[np.ndarray, float]:
    session, index = tools.store.lookup(mask_id)
    return session.rounds[index - 1].mask, session.rounds[index - 1].confidence


def test_estimate_depth_returns_the_map_stats_and_an_image_and_reuses_the_map(tools, depth_pipe, scene, unet_calls):
    _, image = scene
    out = tools.call("estimate_depth", {"image": "scene.png", "depth_steps": 2, "seed": 4})
    assert not out.is_error, out.text()
    result = out.result
    computed = len(unet_calls)
    assert computed == 2  # 2 steps, one UNet batch each
    expected = depth_pipe.estimate(image, num_inference_steps=2, seed=4).depth  # the engine, called directly
    unet_calls.clear()
    kept = tools.depth_store.lookup(result.depth_id)
    np.testing.assert_array_equal(kept.depth, expected)
    np.testing.assert_array_equal(out.artifact["depth"], expected)
    assert result.stats.model_dump() == map_stats(expected)
    assert (result.width, result.height, result.map_width, result.map_height) == (64, 64, 64, 64)
    assert result.settings.num_inference_steps == 2 and result.settings.seed == 4 and not result.reused
    assert result.mean_uncertainty is None and result.timings["depth_s"] > 0
    picture = np.asarray(Image.open(io.BytesIO(out.overlay_png)))
    assert picture.shape == (64, 64, 3)
    near, far = np.unravel_index(expected.argmin(), expected.shape), np.unravel_index(expected.argmax(), (64, 64))
    assert picture[near][0] > picture[near][2] and picture[far][2] > picture[far][0]  # near red, far blue
    assert result.depth_id in out.text() and "0 = near" in out.text()

    again = tools.call("estimate_depth", {"image": "data:image/png;base64," + _b64(image), "depth_steps": 2,
                                          "seed": 4})
    assert again.result.depth_id == result.depth_id and again.result.reused and not unet_calls
    assert again.result.timings["depth_s"] == 0.0 and "reused" in again.text()
    other = tools.call("estimate_depth", {"image": "scene.png", "depth_steps": 2, "seed": 5})
    assert other.result.depth_id != result.depth_id and len(unet_calls) == 2

    ensemble = tools.call("estimate_depth", {"image": "scene.png", "ensemble_size": 3, "depth_steps": 1})
    assert ensemble.result.settings.ensemble_size == 3 and ensemble.result.mean_uncertainty > 0
    assert len(unet_calls) == 3  # 1 step, the 3 members in one UNet batch


def test_depth_of_segments_measures_and_the_mask_can_be_refined(tools, scene, unet_calls):
    out = tools.call("depth_of", {"image": "scene.png", "expression": "the red square", "segment_steps": 2})
    assert not out.is_error, out.text()
    result = out.result
    mask, confidence = kept_mask(tools, result.mask_id)
    depth = tools.depth_store.lookup(result.depth_id).depth
    assert result.found and mask.any() and result.expression == "the red square"
    assert result.model_dump(include={"median", "p10", "p90", "mean", "range_fraction"}) == region_stats(depth, mask)
    assert result.mask_confidence == round(confidence, 4)
    assert result.area_percent == round(100 * mask.mean(), 3)
    assert result.mask_id in out.text() and "refine" in out.text()
    assert tools.call("get_mask", {"mask_id": result.mask_id}).result.width == 64  # a real mask_id

    refined = tools.call("refine", {"mask_id": result.mask_id, "correction": "the blue circle"}).result
    before = len(unet_calls)
    again = tools.call("depth_of", {"mask_id": refined.mask_id}).result
    refined_mask, _ = kept_mask(tools, refined.mask_id)
    assert again.mask_id == refined.mask_id and again.depth_id == result.depth_id and again.reused
    assert len(unet_calls) == before  # the kept map: nothing recomputed
    assert again.median == region_stats(depth, refined_mask)["median"]
    by_id = tools.call("depth_of", {"depth_id": result.depth_id, "expression": "the circle", "segment_steps": 1})
    assert not by_id.is_error and by_id.result.depth_id == result.depth_id and len(unet_calls) == before


def test_compare_depth_answers_from_a_constructed_depth_map(tools, scene):
    _, image = scene
    a_id = tools.call("segment", {"image": "scene.png", "expression": "the circle", "steps": 1}).result.mask_id
    b_id = tools.call("segment", {"image": "scene.png", "expression": "the square", "steps": 2}).result.mask_id
    (mask_a, conf_a), (mask_b, conf_b) = kept_mask(tools, a_id), kept_mask(tools, b_id)
    assert (mask_a & ~mask_b).any() and (mask_b & ~mask_a).any()
    rows = np.linspace(0.0, 0.5, 64, dtype=np.float32)[:, None]
    depth = np.full((64, 64), 0.95, np.float32)
    depth[mask_a] = 0.1 + rows.repeat(64, 1)[mask_a]  # A: 0.1–0.6 down the image, B: 0.3–0.8, shared pixels B
    depth[mask_b] = 0.3 + rows.repeat(64, 1)[mask_b]
    depth_id = tools.depth_store.add(DepthMap(image=image, key=image_key(image), input_size=(64, 64), depth=depth,
                                              uncertainty=None, settings=SETTINGS, seconds=0.0))
    delta = brute_delta(depth[mask_a], depth[mask_b])
    assert delta > 0

    out = tools.call("compare_depth", {"depth_id": depth_id, "mask_id_a": a_id, "mask_id_b": b_id})
    assert not out.is_error, out.text()
    result = out.result
    assert result.closer == "a" and result.reused and result.depth_id == depth_id
    assert result.separation == pytest.approx(abs(delta), abs=1e-6)
    assert result.confidence == pytest.approx(abs(delta) * min(conf_a, conf_b), abs=1e-5)
    assert result.a.median == pytest.approx(float(np.median(depth[mask_a])), abs=1e-6)
    assert result.median_difference == pytest.approx(result.b.median - result.a.median, abs=1e-6)
    assert result.masks_iou == round(mask_iou(mask_a, mask_b), 4)
    assert out.text().startswith("A ('the circle') is closer than B ('the square')")
    assert np.asarray(Image.open(io.BytesIO(out.overlay_png))).shape == (64, 64, 3)

    swapped = tools.call("compare_depth", {"depth_id": depth_id, "mask_id_a": b_id, "mask_id_b": a_id}).result
    assert swapped.closer == "b" and swapped.confidence == result.confidence
    mixed = tools.call("compare_depth", {"depth_id": depth_id, "expression_a": "the circle", "mask_id_b": b_id,
                                         "segment_steps": 1}).result
    new_a, _ = kept_mask(tools, mixed.a.mask_id)
    assert mixed.a.mask_id != a_id and np.array_equal(new_a, mask_a)  # same expression and steps: same mask
    assert mixed.closer == "a" and mixed.separation == result.separation

    flat_id = tools.depth_store.add(DepthMap(image=image, key=image_key(image), input_size=(64, 64),
                                             depth=np.full((64, 64), 0.5, np.float32), uncertainty=None,
                                             settings=SETTINGS, seconds=0.0))
    flat = tools.call("compare_depth", {"depth_id": flat_id, "mask_id_a": a_id, "mask_id_b": b_id})
    assert flat.result.closer == "neither" and flat.result.confidence == 0.0 and "Neither" in flat.text()


def test_compare_depth_segments_both_expressions_and_says_when_masks_overlap(tools):
    out = tools.call("compare_depth", {"image": "scene.png", "expression_a": "the red square",
                                       "expression_b": "the circle", "segment_steps": 2})
    assert not out.is_error, out.text()
    result = out.result
    (mask_a, _), (mask_b, _) = kept_mask(tools, result.a.mask_id), kept_mask(tools, result.b.mask_id)
    assert result.a.mask_id != result.b.mask_id and result.a.found and result.b.found
    assert result.masks_iou == round(mask_iou(mask_a, mask_b), 4) > 0.5
    assert "may be one object" in out.text() and result.closer in ("a", "b", "neither")


def test_not_found_is_an_answer_not_an_error(pipe, red_pipe, depth_pipe, scene):
    """The plain tiny model paints nothing at 2 steps (an empty mask: not found); the red one always paints."""
    sessions = SessionStore()
    plain = SegmentationTools(pipeline=pipe, depth_pipeline=depth_pipe, store=sessions,
                              policy=ImagePolicy.create([scene[0]]))
    red = SegmentationTools(pipeline=red_pipe, store=sessions, policy=ImagePolicy.create([scene[0]]))
    both = plain.call("compare_depth", {"image": "scene.png", "expression_a": "the cup", "expression_b": "the phone",
                                        "segment_steps": 2})
    assert not both.is_error, both.text()
    assert both.result.closer == "not_found" and both.result.confidence == 0.0 and both.result.separation is None
    assert not both.result.a.found and not both.result.b.found and both.result.a.median is None
    assert "A ('the cup') and B ('the phone') not found" in both.text()

    found = red.call("segment", {"image": "scene.png", "expression": "the cup", "steps": 2}).result.mask_id
    missing = plain.call("segment", {"image": "scene.png", "expression": "the phone", "steps": 2}).result.mask_id
    one = plain.call("compare_depth", {"mask_id_a": found, "mask_id_b": missing})
    assert one.result.closer == "not_found" and one.result.a.found and not one.result.b.found
    assert "B ('the phone') not found" in one.text() and one.result.a.median is not None
    alone = plain.call("depth_of", {"mask_id": missing})
    assert not alone.is_error and not alone.result.found and alone.result.median is None
    assert "was not found" in alone.text()


def test_without_a_depth_model_the_depth_tools_say_how_to_pass_one(pipe, scene, monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "DEFAULT_DEPTH_MODEL_DIR", tmp_path / "none")  # an install without one
    tools = SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([scene[0]]))
    for name, arguments in [("estimate_depth", {"image": "scene.png"}),
                            ("depth_of", {"image": "scene.png", "expression": "the cup"}),
                            ("compare_depth", {"image": "scene.png", "expression_a": "a", "expression_b": "b"})]:
        out = tools.call(name, arguments)
        assert out.is_error and out.result.error == "model_unavailable", out.text()
        assert "--depth-model" in out.result.message and "depth_model=" in out.result.message
    assert not tools.call("segment", {"image": "scene.png", "expression": "the cup", "steps": 1}).is_error
    wrong = SegmentationTools(pipeline=pipe, depth_model=str(tmp_path / "missing"),
                              policy=ImagePolicy.create([scene[0]])).call("estimate_depth", {"image": "scene.png"})
    assert wrong.result.error == "model_unavailable" and "does not exist" in wrong.result.message
    ris = SegmentationTools(pipeline=pipe, depth_model=str(registry.DEFAULT_MODEL_DIR),
                            policy=ImagePolicy.create([scene[0]])).call("estimate_depth", {"image": "scene.png"})
    assert ris.result.error == "model_unavailable" and "not a depth model" in ris.result.message


@pytest.fixture(scope="module")
def live(red_pipe, depth_pipe, scene):
    """Tools with live ids: a mask of the scene, a mask of another image, a depth map of the scene."""
    tools = SegmentationTools(pipeline=red_pipe, depth_pipeline=depth_pipe, policy=ImagePolicy.create([scene[0]]))
    ids = {"MASK": tools.call("segment", {"image": "scene.png", "expression": "x", "steps": 1}).result.mask_id,
           "OTHER": tools.call("segment", {"image": "other.png", "expression": "x", "steps": 1}).result.mask_id,
           "DEPTH": tools.call("estimate_depth", {"image": "scene.png"}).result.depth_id}
    return tools, ids


@pytest.mark.parametrize(("name", "arguments", "code", "words"), [
    ("estimate_depth", {"image": "scene.png", "ensemble_size": 11}, "invalid_arguments", "ensemble_size"),
    ("estimate_depth", {"image": "scene.png", "depth_steps": 0}, "invalid_arguments", "depth_steps"),
    ("estimate_depth", {"image": "scene.png", "depth_id": "DEPTH"}, "invalid_arguments", "depth_id"),
    ("estimate_depth", {"image": "scene.png", "seed": -1}, "invalid_arguments", "seed"),
    # integers are strict, as in the segmentation tools: JSON "3", 1.0 and true are not counts
    ("estimate_depth", {"image": "scene.png", "depth_steps": "3"}, "invalid_arguments", "depth_steps"),
    ("estimate_depth", {"image": "scene.png", "ensemble_size": 2.0}, "invalid_arguments", "ensemble_size"),
    ("depth_of", {"image": "scene.png", "expression": "x", "segment_steps": True}, "invalid_arguments",
     "segment_steps"),
    ("depth_of", {"image": "scene.png", "expression": "x", "seed": True}, "invalid_arguments", "seed"),
    ("depth_of", {"image": "scene.png"}, "invalid_arguments", "expression / mask_id"),
    ("depth_of", {"expression": "the cup"}, "invalid_arguments", "image / depth_id"),
    ("depth_of", {"image": "scene.png", "depth_id": "DEPTH", "expression": "x"}, "invalid_arguments", "exactly one"),
    ("depth_of", {"expression": "x", "mask_id": "MASK", "image": "scene.png"}, "invalid_arguments", "exactly one"),
    ("depth_of", {"mask_id": "MASK", "image": "scene.png"}, "invalid_arguments", "image must be null"),
    ("depth_of", {"depth_id": "DEPTH", "expression": "x", "depth_steps": 2}, "invalid_arguments", "reused"),
    ("depth_of", {"depth_id": "d-1", "expression": "x"}, "invalid_arguments", "depth_id"),
    ("depth_of", {"image": "scene.png", "expression": ""}, "invalid_arguments", "expression"),
    ("compare_depth", {"image": "scene.png", "expression_a": "x"}, "invalid_arguments", "object B"),
    ("compare_depth", {"image": "scene.png", "expression_a": "x", "mask_id_a": "MASK", "expression_b": "y"},
     "invalid_arguments", "object A"),
    ("compare_depth", {"mask_id_a": "MASK", "mask_id_b": "MASK", "image": "scene.png"}, "invalid_arguments",
     "image must be null"),
    ("compare_depth", {"expression_a": "x", "expression_b": "y"}, "invalid_arguments", "image / depth_id"),
    ("depth_of", {"depth_id": "d-000000000000", "expression": "x"}, "not_found", "unknown or expired"),
    ("depth_of", {"mask_id": "m-000000000000-r1"}, "not_found", "unknown or expired"),
    ("compare_depth", {"mask_id_a": "MASK", "mask_id_b": "m-000000000000-r1"}, "not_found", "unknown or expired"),
    ("estimate_depth", {"image": "/etc/passwd"}, "refused", "outside the allowed folders"),
    ("depth_of", {"image": "../scene.png", "expression": "x"}, "refused", "outside the allowed folders"),
    ("estimate_depth", {"image": "missing.png"}, "bad_input", "no such file"),
    ("estimate_depth", {"image": "thin.png"}, "bad_input", "too elongated"),
    ("depth_of", {"mask_id": "OTHER", "depth_id": "DEPTH"}, "bad_input", "another image"),
    ("compare_depth", {"mask_id_a": "MASK", "mask_id_b": "OTHER"}, "bad_input", "different images"),
    ("compare_depth", {"depth_id": "DEPTH", "mask_id_a": "OTHER", "expression_b": "x"}, "bad_input",
     "another image"),
])
def test_bad_depth_calls_are_structured_errors(live, name, arguments, code, words):
    tools, ids = live
    out = tools.call(name, {k: ids.get(v, v) if isinstance(v, str) else v for k, v in arguments.items()})
    assert out.is_error and out.result.error == code, out.text()
    assert words in out.result.message and out.data() == {"error": code, "message": out.result.message}


def test_openai_dispatch_and_the_depth_image_caption(tools):
    from openai.types.chat import ChatCompletionMessageToolCall

    arguments = {"image": "scene.png", "depth_id": None, "expression_a": "the red square", "mask_id_a": None,
                 "expression_b": "the circle", "mask_id_b": None, "segment_steps": 1, "depth_steps": None,
                 "ensemble_size": None, "seed": None}  # what a strict-mode model sends: every key, nulls
    call = ChatCompletionMessageToolCall(id="c1", type="function",
                                         function={"name": "compare_depth", "arguments": json.dumps(arguments)})
    message, output = chat_tool_message(tools, call)
    assert json.loads(message["content"])["closer"] == output.result.closer
    picture = overlay_message(output)["content"]
    assert picture[0]["text"].startswith(f"Depth map {output.result.depth_id}") and "lightened" in picture[0]["text"]


def test_depth_of_with_batching_on_does_not_deadlock(red_pipe, depth_pipe, scene):
    tools = SegmentationTools(pipeline=red_pipe, depth_pipeline=depth_pipe, policy=ImagePolicy.create([scene[0]]),
                              batch_max=4, batch_wait_ms=5)
    outputs: list = []

    def run() -> None:
        outputs.append(tools.call("depth_of", {"image": "scene.png", "expression": "the cup", "segment_steps": 1}))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(120)
    tools.close()
    assert not worker.is_alive() and not outputs[0].is_error, outputs
    assert tools.batcher.stats.requests == 1  # the one-round segmentation went through the batcher


def _b64(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
