import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from llm.breaker import BreakerSnapshot
from llm.errors import LlmUnavailableError
from llm.services import breaker_get, complete
from llm.types import ChatMessage, CompletionRequest
from tests.fakes.openai_control import FakeOpenAI

REQUEST = CompletionRequest(messages=(ChatMessage(role="user", content="Hi"),))


def _code(*, deadline: float = 10) -> str:
    with pytest.raises(LlmUnavailableError) as caught:
        complete(REQUEST, deadline_seconds=deadline)

    return caught.value.code


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _open_breaker(settings: Any, fake_openai: FakeOpenAI) -> None:
    settings.LLM_MAX_ATTEMPTS = 5
    fake_openai.control(fail_rate=1, fail_kind="500")
    assert _code() == "retries_exhausted"
    assert breaker_get().snapshot().state == "open"
    fake_openai.clear_calls()


def test_breaker_opens_after_exactly_five_failed_attempts(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    provider = llm_settings.LLM_PROVIDER_NAME
    fake_openai.control(fail_rate=1, fail_kind="500")

    assert _code() == "retries_exhausted"
    after_four = breaker_get().snapshot()
    assert _code() == "breaker_open"

    assert after_four == BreakerSnapshot(
        state="closed", failures=4, opened_at_ms=0, probe_held=False
    )
    assert len(fake_openai.calls()) == 5
    assert breaker_get().snapshot().state == "open"
    assert breaker_get().snapshot().failures == 5
    assert _sample("botfactory_circuit_breaker_open", provider=provider) == 1
    assert (
        _sample(
            "botfactory_circuit_breaker_transitions_total",
            provider=provider,
            state="open",
        )
        == 1
    )


def test_threshold_is_a_setting(llm_settings: Any, fake_openai: FakeOpenAI) -> None:
    llm_settings.LLM_BREAKER_FAILURE_THRESHOLD = 2
    fake_openai.control(fail_rate=1, fail_kind="500")

    assert _code() == "breaker_open"
    assert len(fake_openai.calls()) == 2


def test_a_success_resets_the_count(llm_settings: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.control(fail_next=3, fail_kind="500")
    complete(REQUEST, deadline_seconds=10)
    llm_settings.LLM_MAX_ATTEMPTS = 1
    fake_openai.control(fail_next=4, fail_kind="500")

    codes = [_code() for _ in range(4)]

    assert codes == ["retries_exhausted"] * 4
    assert breaker_get().snapshot().state == "closed"
    assert breaker_get().snapshot().failures == 4


def test_client_errors_neither_count_nor_reset(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    llm_settings.LLM_MAX_ATTEMPTS = 3
    fake_openai.control(fail_rate=1, fail_kind="500")
    assert _code() == "retries_exhausted"

    fake_openai.control(fail_kind="400")
    assert _code() == "client_error"
    assert _code() == "client_error"
    counted = breaker_get().snapshot().failures

    fake_openai.control(fail_kind="500")
    assert _code() == "breaker_open"
    assert counted == 3
    assert len(fake_openai.calls()) == 3 + 2 + 2


def test_open_breaker_rejects_without_calling_the_provider(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    _open_breaker(llm_settings, fake_openai)
    fake_openai.control(fail_rate=0)

    started = time.monotonic()
    codes = [_code() for _ in range(3)]
    elapsed = time.monotonic() - started

    assert codes == ["breaker_open"] * 3
    assert fake_openai.calls() == []
    assert elapsed < 2.0


def test_half_open_probe_success_closes_the_breaker(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    provider = llm_settings.LLM_PROVIDER_NAME
    llm_settings.LLM_BREAKER_COOLDOWN_SECONDS = 0.5
    _open_breaker(llm_settings, fake_openai)
    fake_openai.control(fail_rate=0)
    time.sleep(0.6)

    completion = complete(REQUEST, deadline_seconds=5)

    assert completion.cached is False
    assert breaker_get().snapshot() == BreakerSnapshot(
        state="closed", failures=0, opened_at_ms=0, probe_held=False
    )
    assert len(fake_openai.calls()) == 1
    assert _sample("botfactory_circuit_breaker_open", provider=provider) == 0
    for state in ("open", "half_open", "closed"):
        assert (
            _sample(
                "botfactory_circuit_breaker_transitions_total",
                provider=provider,
                state=state,
            )
            == 1
        )


def test_half_open_probe_failure_reopens_the_breaker(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    llm_settings.LLM_BREAKER_COOLDOWN_SECONDS = 0.5
    _open_breaker(llm_settings, fake_openai)
    opened_at = breaker_get().snapshot().opened_at_ms
    time.sleep(0.6)

    code = _code()

    snapshot = breaker_get().snapshot()
    assert code == "breaker_open"
    assert len(fake_openai.calls()) == 1
    assert (snapshot.state, snapshot.probe_held) == ("open", False)
    assert snapshot.opened_at_ms >= opened_at + 500


def test_a_probe_with_a_client_error_frees_the_lease(
    llm_settings: Any, fake_openai: FakeOpenAI
) -> None:
    llm_settings.LLM_BREAKER_COOLDOWN_SECONDS = 0.5
    _open_breaker(llm_settings, fake_openai)
    time.sleep(0.6)
    fake_openai.control(fail_next=1, fail_kind="400", fail_rate=0)

    assert _code() == "client_error"
    half_open = breaker_get().snapshot()
    complete(REQUEST, deadline_seconds=5)

    assert (half_open.state, half_open.probe_held) == ("half_open", False)
    assert breaker_get().snapshot().state == "closed"
