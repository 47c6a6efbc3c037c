"""The openai wrapper maps each failure to a ProviderError, one attempt each."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from llm import client as client_module
from llm.client import ProviderError, chat_complete
from llm.services import provider_prepare
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


def test_threads_that_all_need_the_client_at_once_share_one(
    fake_openai: FakeOpenAI,
) -> None:
    # given no client built yet for this configuration
    client_module._client_build.cache_clear()
    start = threading.Barrier(8)

    def client() -> object:
        start.wait()
        return client_module._client(fake_openai.url + "/v1", TEST_API_KEY)

    # when eight threads ask for it at the same moment
    with ThreadPoolExecutor(max_workers=8) as pool:
        clients = list(pool.map(lambda _: client(), range(8)))

    # then exactly one was built, and every thread got it
    assert client_module._client_build.cache_info().currsize == 1
    assert len({id(one) for one in clients}) == 1


def test_preparing_the_provider_builds_its_client_and_the_echo_needs_none(
    fake_openai: FakeOpenAI, settings: Any
) -> None:
    client_module._client_build.cache_clear()
    settings.OPENAI_API_KEY = None

    provider_prepare()
    built_for_echo = client_module._client_build.cache_info().currsize

    settings.OPENAI_API_KEY = TEST_API_KEY
    settings.OPENAI_BASE_URL = fake_openai.url + "/v1"
    provider_prepare()

    assert built_for_echo == 0
    assert client_module._client_build.cache_info().currsize == 1
    # preparing made no call to the provider
    assert fake_openai.calls() == []
