"""The critic's HTTP retries are the openai SDK's own, against a real loopback server: Retry-After is honoured,
persistent failures end in one CriticError."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_agent_support import ChatServer, Reply, completion, error, scripted

from addp_agent.critic import CriticError, CritiqueRequest
from addp_agent.critic.chat import ChatSettings
from addp_agent.critic.vlm import VLMCritic

GOOD = {"verdict": "accept", "problem": "", "correction": None, "confidence": 0.9}


def _critic(server: ChatServer, retries: int, timeout: float = 5.0) -> VLMCritic:
    return VLMCritic(settings=ChatSettings(base_url=server.url, api_key="k", model="vlm", timeout_s=timeout,
                                           max_retries=retries, cache_dir=None))


def _request() -> CritiqueRequest:
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    return CritiqueRequest(image=np.full((16, 16, 3), 120, np.uint8), expression="the square", mask=mask)


def test_http_429_with_retry_after_then_200_waits_as_told():
    """The SDK's own backoff would wait ≤ 0.5 s here; the server's Retry-After: 1 makes it wait a full second."""
    replies = [error(429, "slow down", retry_after_ms=None), Reply(completion(json.dumps(GOOD)))]
    replies[0].headers["retry-after"] = "1"
    with ChatServer(scripted(replies)) as server:
        critic = _critic(server, retries=2)
        assert critic.critique(_request()).verdict == "accept"
    first, second = server.requests
    assert 0.95 <= second["_time"] - first["_time"] < 5.0
    assert critic.transport.calls == 1  # one critic request; the retry was the SDK's


def test_http_500_every_time_gives_up_with_a_critic_error():
    with ChatServer(scripted([error(500, "boom")])) as server, pytest.raises(CriticError) as caught:
        _critic(server, retries=2).critique(_request())
    assert caught.value.kind == "server_error" and "after up to 3 attempts" in str(caught.value)
    assert len(server.requests) == 3


def test_http_429_every_time_gives_up_as_rate_limited():
    with ChatServer(scripted([error(429, "slow down")])) as server, pytest.raises(CriticError) as caught:
        _critic(server, retries=1).critique(_request())
    assert caught.value.kind == "rate_limited" and len(server.requests) == 2


def test_retry_after_beyond_the_sdk_cap_is_not_waited_for():
    """A server asking for a 10-minute pause is not retried (the SDK caps Retry-After); the error comes at once."""
    reply = error(503, "maintenance", retry_after_ms=None)
    reply.headers["retry-after"] = "600"
    with ChatServer(scripted([reply])) as server, pytest.raises(CriticError) as caught:
        _critic(server, retries=3).critique(_request())
    assert caught.value.kind == "server_error" and len(server.requests) == 1
