import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from llm.errors import LlmUnavailableError
from llm.services import breaker_get, complete
from llm.types import ChatMessage, Completion, CompletionRequest
from tests.fakes.openai_api import expected_answer
from tests.fakes.openai_control import FakeOpenAI


def _request(question: str = "What is the time?", **options: Any) -> CompletionRequest:
    return CompletionRequest(
        messages=(
            ChatMessage(role="system", content="Be brief."),
            ChatMessage(role="user", content=question),
        ),
        **options,
    )


def _expected(question: str = "What is the time?") -> str:
    return expected_answer(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": question},
        ]
    )


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _unavailable(request: CompletionRequest, *, deadline: float) -> str:
    with pytest.raises(LlmUnavailableError) as caught:
        complete(request, deadline_seconds=deadline)

    return caught.value.code


def test_complete_answers_through_the_openai_client(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    completion = complete(_request(temperature=0.2, max_tokens=50), deadline_seconds=5)

    assert completion == Completion(
        text=_expected(),
        provider=llm_settings.LLM_PROVIDER_NAME,
        model="fake-model",
        prompt_tokens=6,
        completion_tokens=2,
        cached=False,
    )
    [call] = fake_openai.calls()
    assert call["model"] == "fake-model"
    assert call["temperature"] == 0.2
    assert call["max_tokens"] == 50
    assert call["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the time?"},
    ]


def test_request_model_overrides_the_default(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    completion = complete(_request(model="other-model"), deadline_seconds=5)

    assert completion.model == "other-model"
    assert [call["model"] for call in fake_openai.calls()] == ["other-model"]


def test_echo_provider_answers_without_a_key(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    llm_settings.OPENAI_API_KEY = None
    llm_settings.LLM_PROVIDER_NAME = "echo"

    completion = complete(_request("Hello there"), deadline_seconds=5)

    assert completion == Completion(
        text="Echo: Hello there",
        provider="echo",
        model="fake-model",
        prompt_tokens=4,
        completion_tokens=3,
        cached=False,
    )
    assert fake_openai.calls() == []


@pytest.mark.parametrize("kind", ["500", "429", "malformed"])
def test_transient_failures_are_retried(
    llm_settings: Any, fake_openai: FakeOpenAI, kind: str
) -> None:
    fake_openai.control(fail_next=2, fail_kind=kind, retry_after=0)

    completion = complete(_request(), deadline_seconds=10)

    assert completion.text == _expected()
    assert [call["status"] for call in fake_openai.calls()] == [
        200 if kind == "malformed" else int(kind),
        200 if kind == "malformed" else int(kind),
        200,
    ]
    assert breaker_get().snapshot().failures == 0


def test_retry_after_is_honoured(llm_settings: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.control(fail_next=1, fail_kind="429", retry_after=1)

    completion = complete(_request(), deadline_seconds=10)

    first, second = fake_openai.calls()
    assert completion.text == _expected()
    assert (first["status"], second["status"]) == (429, 200)
    assert second["at"] - first["at"] >= 0.95


def test_retries_stop_after_max_attempts(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.control(fail_rate=1, fail_kind="500")

    code = _unavailable(_request(), deadline=10)

    assert code == "retries_exhausted"
    assert len(fake_openai.calls()) == 4


def test_quota_is_not_retried(llm_settings: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.control(fail_rate=1, fail_kind="quota")

    code = _unavailable(_request(), deadline=10)

    assert code == "quota"
    assert [call["status"] for call in fake_openai.calls()] == [429]


def test_client_error_is_not_retried(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.control(fail_rate=1, fail_kind="400")

    code = _unavailable(_request(), deadline=10)

    assert code == "client_error"
    assert [call["status"] for call in fake_openai.calls()] == [400]


def test_a_hanging_provider_ends_at_the_deadline(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.control(fail_rate=1, fail_kind="hang")

    started = time.monotonic()
    code = _unavailable(_request(), deadline=1.5)
    elapsed = time.monotonic() - started

    assert code == "deadline"
    assert 1.4 <= elapsed < 4.0
    assert len(fake_openai.calls()) == 1


def test_retries_stop_at_the_deadline(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    # Each attempt answers after 0.4 s; the backoff is milliseconds, so the
    # deadline, not the attempt count, ends the loop.
    llm_settings.LLM_MAX_ATTEMPTS = 50
    fake_openai.control(fail_rate=1, fail_kind="500", latency_ms=[400, 400])

    started = time.monotonic()
    code = _unavailable(_request(), deadline=2.0)
    elapsed = time.monotonic() - started

    assert code == "deadline"
    assert 1.9 <= elapsed < 4.0
    assert 2 <= len(fake_openai.calls()) <= 5


def test_a_retry_after_past_the_deadline_is_not_waited_for(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.control(fail_rate=1, fail_kind="429", retry_after=30)

    started = time.monotonic()
    code = _unavailable(_request(), deadline=5)
    elapsed = time.monotonic() - started

    assert code == "deadline"
    assert elapsed < 3.0
    assert len(fake_openai.calls()) == 1


def test_cache_hit_skips_the_provider(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    hits = _sample("botfactory_cache_requests_total", cache="llm", result="hit")
    misses = _sample("botfactory_cache_requests_total", cache="llm", result="miss")

    first = complete(_request(cache_ttl_seconds=60), deadline_seconds=5)
    second = complete(_request(cache_ttl_seconds=60), deadline_seconds=5)

    assert first.cached is False
    assert second == Completion(
        text=_expected(),
        provider=llm_settings.LLM_PROVIDER_NAME,
        model="fake-model",
        prompt_tokens=6,
        completion_tokens=2,
        cached=True,
    )
    assert len(fake_openai.calls()) == 1
    assert (
        _sample("botfactory_cache_requests_total", cache="llm", result="hit")
        == hits + 1
    )
    assert (
        _sample("botfactory_cache_requests_total", cache="llm", result="miss")
        == misses + 1
    )


def test_cache_key_covers_model_and_parameters(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    complete(_request(cache_ttl_seconds=60), deadline_seconds=5)
    complete(_request(cache_ttl_seconds=60, temperature=0.5), deadline_seconds=5)
    complete(_request(cache_ttl_seconds=60, max_tokens=9), deadline_seconds=5)
    complete(_request(cache_ttl_seconds=60, model="m2"), deadline_seconds=5)
    complete(_request("Other?", cache_ttl_seconds=60), deadline_seconds=5)

    assert len(fake_openai.calls()) == 5


def test_a_request_without_ttl_is_not_cached(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    complete(_request(cache_ttl_seconds=60), deadline_seconds=5)

    first = complete(_request(), deadline_seconds=5)
    second = complete(_request(), deadline_seconds=5)

    assert (first.cached, second.cached) == (False, False)
    assert len(fake_openai.calls()) == 3


def test_cache_entries_expire_after_their_ttl(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    complete(_request(cache_ttl_seconds=1), deadline_seconds=5)
    time.sleep(1.3)

    again = complete(_request(cache_ttl_seconds=1), deadline_seconds=5)

    assert again.cached is False
    assert len(fake_openai.calls()) == 2


def test_failures_are_not_cached(llm_settings: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.control(fail_next=1, fail_kind="400")
    _unavailable(_request(cache_ttl_seconds=60), deadline=5)

    completion = complete(_request(cache_ttl_seconds=60), deadline_seconds=5)

    assert completion.cached is False
    assert len(fake_openai.calls()) == 2


def test_outcomes_and_latency_are_counted(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    provider = llm_settings.LLM_PROVIDER_NAME
    labels = {"provider": provider, "model": "fake-model"}

    complete(_request(cache_ttl_seconds=60), deadline_seconds=5)
    complete(_request(cache_ttl_seconds=60), deadline_seconds=5)
    fake_openai.control(fail_rate=1, fail_kind="500")
    _unavailable(_request(), deadline=5)
    _unavailable(_request(), deadline=5)

    total = "botfactory_llm_requests_total"
    assert _sample(total, **labels, outcome="ok") == 1
    assert _sample(total, **labels, outcome="cached") == 1
    assert _sample(total, **labels, outcome="error") == 1
    assert _sample(total, **labels, outcome="rejected") == 1
    assert (
        _sample("botfactory_llm_request_duration_seconds_count", provider=provider) == 4
    )
    assert (
        _sample(
            "botfactory_llm_request_duration_seconds_bucket",
            provider=provider,
            le="1.5",
        )
        == 4
    )
