"""The openai wrapper maps each failure to a ProviderError, one attempt each."""

import time
from typing import Any

import pytest

from llm.client import ProviderError, chat_complete
from llm.types import ChatMessage
from tests.fakes.openai_control import TEST_API_KEY, FakeOpenAI


def _attempt(fake_openai: FakeOpenAI, *, timeout: float = 5.0) -> Any:
    return chat_complete(
        base_url=fake_openai.api_url,
        api_key=TEST_API_KEY,
        model="m",
        messages=(ChatMessage(role="user", content="Hi"),),
        temperature=None,
        max_tokens=None,
        timeout_seconds=timeout,
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("500", ("status", True, True, 500, None)),
        ("429", ("status", True, True, 429, 2.0)),
        ("quota", ("quota", False, True, 429, None)),
        ("400", ("client", False, False, 400, None)),
        ("malformed", ("malformed", True, True, None, None)),
    ],
)
def test_failures_map_to_provider_errors(
    fake_openai: FakeOpenAI, kind: str, expected: tuple[Any, ...]
) -> None:
    # The fake sends retry-after only with its 429 rate limit.
    fake_openai.control(fail_rate=1, fail_kind=kind, retry_after=2)

    with pytest.raises(ProviderError) as caught:
        _attempt(fake_openai)

    error = caught.value
    assert (
        error.kind,
        error.retryable,
        error.counts,
        error.status,
        error.retry_after,
    ) == expected
    assert len(fake_openai.calls()) == 1


def test_a_hanging_server_times_out_after_the_attempt_timeout(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.control(fail_rate=1, fail_kind="hang")

    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        _attempt(fake_openai, timeout=0.5)
    elapsed = time.monotonic() - started

    assert (caught.value.kind, caught.value.retryable) == ("timeout", True)
    assert 0.45 <= elapsed < 2.0
    assert len(fake_openai.calls()) == 1


def test_an_unreachable_server_is_a_retryable_connection_error() -> None:
    with pytest.raises(ProviderError) as caught:
        chat_complete(
            base_url="http://127.0.0.1:9/v1",
            api_key=TEST_API_KEY,
            model="m",
            messages=(ChatMessage(role="user", content="Hi"),),
            temperature=None,
            max_tokens=None,
            timeout_seconds=2.0,
        )

    assert (caught.value.kind, caught.value.retryable) == ("connection", True)


def test_an_answer_carries_text_and_usage(fake_openai: FakeOpenAI) -> None:
    answer = _attempt(fake_openai)

    assert (answer.prompt_tokens, answer.completion_tokens) == (1, 2)
    assert answer.text.startswith("Answer: ")
