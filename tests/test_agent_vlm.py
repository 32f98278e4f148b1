"""The VLM and paper critics against a real loopback HTTP server speaking OpenAI Chat Completions."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from test_agent_support import ChatServer, Reply, completion, error, scripted, tool_call

from addp_agent.critic import CriticError, Critique, CritiqueRequest, PriorRound
from addp_agent.critic.chat import ChatSettings, ChatTransport
from addp_agent.critic.paper import PaperCritic, answer_phrase
from addp_agent.critic.vlm import VLMCritic
from addp_agent.errors import UserError
from addp_agent.strict_schema import strict_json_schema

GOOD = {"verdict": "revise", "problem": "the mask also covers the cup", "correction": "the cup", "confidence": 0.7}


def _request(**kw) -> CritiqueRequest:
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = 200
    mask = np.zeros((40, 60), bool)
    mask[5:20, 5:25] = True
    return CritiqueRequest(image=image, expression="the mug", mask=mask, **kw)


def _critic(server: ChatServer, tmp_path, **kw) -> VLMCritic:
    settings = ChatSettings(base_url=server.url, api_key="test-key", model="vlm-test", timeout_s=kw.pop("timeout", 5),
                            max_retries=kw.pop("retries", 2), cache_dir=kw.pop("cache", None))
    return VLMCritic(settings=settings, **kw)


def _images(request: dict) -> list[np.ndarray]:
    parts = request["messages"][-1]["content"] if request.get("response_format") or request.get("tools") \
        else request["messages"][1]["content"]
    images = []
    for part in parts:
        if part["type"] == "image_url":
            url = part["image_url"]["url"]
            assert url.startswith("data:image/png;base64,")
            images.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))))
    return images


def test_structured_output_request_carries_images_schema_and_key(tmp_path):
    with ChatServer(scripted([Reply(completion(json.dumps(GOOD)))])) as server:
        prior = PriorRound(1, [], 0.2, Critique(verdict="revise", problem="p", correction="x", confidence=0.5))
        critique = _critic(server, tmp_path).critique(_request(round=2, corrections=["x"], history=[prior],
                                                               intermediate_mask=np.ones((40, 60), bool),
                                                               intermediate_step=5))
    assert critique == Critique(**GOOD)
    request = server.requests[0]
    assert request["_path"] == "/v1/chat/completions" and request["_auth"] == "Bearer test-key"
    assert request["model"] == "vlm-test"
    assert request["response_format"]["json_schema"]["schema"] == strict_json_schema(Critique)
    assert request["response_format"]["json_schema"]["strict"] is True
    images = _images(request)
    assert [i.shape for i in images] == [(40, 60, 3)] * 3  # input, overlay, step-5 overlay
    assert (images[1][10, 10] != images[0][10, 10]).any()  # the overlay is drawn
    text = request["messages"][1]["content"][0]["text"]
    assert '"the mug"' in text and "Round 2" in text and "step 5" in text and '"x"' in text


def test_falls_back_to_tool_call_then_to_json_in_text(tmp_path):
    def no_structured(request):
        if "response_format" in request:
            return error(400, "response_format json_schema is not supported")
        return Reply(completion(tool_calls=[tool_call("critique", GOOD)]))

    with ChatServer(no_structured) as server:
        critic = _critic(server, tmp_path)
        assert critic.critique(_request()).correction == "the cup"
        assert critic.critique(_request()).verdict == "revise"  # the working mode is remembered
    assert ["response_format" in r for r in server.requests] == [True, False, False]
    assert server.requests[1]["tool_choice"] == {"type": "function", "function": {"name": "critique"}}

    def text_only(request):
        if "response_format" in request or "tools" in request:
            return error(400, "unsupported parameter")
        return Reply(completion("Sure!\n```json\n" + json.dumps(GOOD) + "\n```"))

    with ChatServer(text_only) as server:
        assert _critic(server, tmp_path).critique(_request()).problem == GOOD["problem"]
    assert "JSON schema" in server.requests[-1]["messages"][-1]["content"]


def test_retries_429_and_500_then_succeeds(tmp_path):
    replies = [error(429, "slow down"), error(500, "boom"), Reply(completion(json.dumps(GOOD)))]
    with ChatServer(scripted(replies)) as server:
        assert _critic(server, tmp_path, retries=2).critique(_request()).correction == "the cup"
    assert len(server.requests) == 3


@pytest.mark.parametrize(("reply", "kind"), [
    (error(429, "rate limited"), "rate_limited"),
    (error(503, "unavailable"), "server_error"),
    (Reply(completion(json.dumps(GOOD)), delay_s=1.0), "timeout"),
    (Reply(completion("{\"verdict\": \"revise\", ")), "malformed"),
    (Reply(completion(json.dumps({**GOOD, "verdict": "maybe"}))), "malformed"),
    (Reply(completion(None, refusal="I can't help with that.")), "refusal"),
    (Reply("not json at all"), "malformed"),
    (error(401, "bad key"), "http_401"),
])
def test_failures_become_critic_errors(tmp_path, reply, kind):
    with ChatServer(scripted([reply])) as server, pytest.raises(CriticError) as caught:
        _critic(server, tmp_path, retries=1, timeout=0.3).critique(_request())
    assert caught.value.kind == kind


def test_answers_are_cached_on_disk_by_request(tmp_path):
    with ChatServer(scripted([Reply(completion(json.dumps(GOOD)))])) as server:
        first = _critic(server, tmp_path, cache=tmp_path / "cache").critique(_request())
        again = _critic(server, tmp_path, cache=tmp_path / "cache")  # a new process would do the same
        assert again.critique(_request()) == first
        assert len(server.requests) == 1 and again.transport.calls == 0
        _critic(server, tmp_path, cache=tmp_path / "cache").critique(_request(round=2))  # another request
        assert len(server.requests) == 2



def test_a_cache_that_cannot_be_written_is_a_miss_not_a_failed_critique(tmp_path):
    """A cache folder that stops being writable mid-session (a file put in its way, a full disk) is a miss the
    next time, never an error after the critic has answered (it used to be NotADirectoryError)."""
    from addp_agent.critic.cache import ResponseCache

    cache = ResponseCache(tmp_path / "cache")
    (tmp_path / "cache").write_text("x")  # appears after the check the settings made
    cache.put({"model": "m", "messages": []}, "answer")
    assert cache.get({"model": "m", "messages": []}) is None and (tmp_path / "cache").read_text() == "x"
    working = ResponseCache(tmp_path / "working")
    working.put({"model": "m", "messages": []}, "answer")
    assert working.get({"model": "m", "messages": []}) == "answer"


@pytest.mark.parametrize("below", ["", "cache"])
def test_a_cache_dir_that_is_or_is_below_a_file_is_a_user_error(below, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    settings = ChatSettings(base_url="http://127.0.0.1:9/v1", model="m", cache_dir=blocked / below)
    with pytest.raises(UserError, match="is a file, not a folder"):
        settings.resolved()
    assert ChatSettings(base_url="http://127.0.0.1:9/v1", model="m", cache_dir=None).resolved().cache_dir is None

def test_settings_come_from_environment_and_missing_model_is_a_user_error(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("ADDP_CRITIC_MODEL", "llava")
    resolved = ChatSettings().resolved()
    assert (resolved.base_url, resolved.model, resolved.api_key) == ("http://127.0.0.1:9/v1", "llava", "EMPTY")
    monkeypatch.delenv("ADDP_CRITIC_MODEL")
    with pytest.raises(UserError, match="ADDP_CRITIC_MODEL"):
        ChatTransport(ChatSettings())


def test_paper_critic_asks_the_addp_question_once(tmp_path):
    with ChatServer(scripted([Reply(completion("1. \"The child on her lap.\"\n2. the sofa"))])) as server:
        settings = ChatSettings(base_url=server.url, api_key="k", model="llm", cache_dir=None)
        critic = PaperCritic("a mother holding a child on a sofa", settings=settings)
        first = critic.critique(_request())
        later = critic.critique(_request(round=2, corrections=[first.correction]))
    assert first.verdict == "revise" and first.correction == "The child on her lap"
    assert later.verdict == "accept" and len(server.requests) == 1
    assert server.requests[0]["messages"][1]["content"] == (
        "This is an image of a mother holding a child on a sofa. What might confuse the segmentation of the mug?")
    assert answer_phrase("Answer: the lamp.") == "the lamp"


@pytest.mark.parametrize("caption", ["", "   ", None])
def test_paper_critic_refuses_to_run_without_a_caption(caption):
    with pytest.raises(UserError, match="needs a caption of the image; none was given"):
        PaperCritic(caption, transport=object())


def test_paper_critic_for_a_sample_asks_about_its_own_caption():
    from addp_agent.data.sample import RISSample

    with ChatServer(scripted([Reply(completion("the blue sphere"))])) as server:
        transport = ChatTransport(ChatSettings(base_url=server.url, api_key="k", model="llm", cache_dir=None))
        image, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)
        sample = RISSample("s1", image, "the red cube", mask, caption="a red cube beside a blue sphere")
        critique = PaperCritic.from_sample(sample, transport).critique(_request())
        assert critique.correction == "the blue sphere"
        asked = server.requests[0]["messages"][1]["content"]
        assert asked == "This is an image of a red cube beside a blue sphere. What might confuse the segmentation " \
                        "of the mug?"
        with pytest.raises(UserError, match="sample s2 has no caption"):
            PaperCritic.from_sample(RISSample("s2", image, "the red cube", mask), transport)
