"""Fixtures of the LLM node's tests (a pytest plugin): the fake OpenAI API
in a subprocess, with the runtime pointed at it."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.llm.conftest import (
    TEST_API_KEY,
    FakeOpenAI,
    start_fake_openai_subprocess,
    stop_subprocess,
)


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[FakeOpenAI]:
    process, url = start_fake_openai_subprocess()
    fake = FakeOpenAI(url)
    try:
        yield fake
    finally:
        fake.close()
        stop_subprocess(process)


@pytest.fixture
def openai_api(_openai_server: FakeOpenAI, settings: Any) -> Iterator[FakeOpenAI]:
    """The fake OpenAI API, reset, with the runtime pointed at it.

    Each test gets a provider name of its own, so breaker state never
    leaks between tests; retries are two, with millisecond backoff.
    """
    _openai_server.reset()
    settings.OPENAI_BASE_URL = _openai_server.api_url
    settings.OPENAI_API_KEY = TEST_API_KEY
    settings.LLM_MODEL = "fake-model"
    settings.LLM_PROVIDER_NAME = f"fake-{uuid.uuid4().hex[:8]}"
    settings.LLM_MAX_ATTEMPTS = 2
    settings.LLM_TIMEOUT_SECONDS = 10.0
    settings.LLM_BACKOFF_INITIAL_SECONDS = 0.01
    settings.LLM_BACKOFF_MAX_SECONDS = 0.05
    settings.LLM_BREAKER_FAILURE_THRESHOLD = 5
    settings.LLM_BREAKER_COOLDOWN_SECONDS = 30.0
    yield _openai_server
    _openai_server.reset()
