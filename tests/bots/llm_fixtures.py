"""Fixtures of the LLM node's tests (a pytest plugin): the fake OpenAI API
in a subprocess, with the runtime pointed at it."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.openai_control import (
    FakeOpenAI,
    fake_openai_running,
    llm_settings_for,
)


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[FakeOpenAI]:
    with fake_openai_running() as fake:
        yield fake


@pytest.fixture
def openai_api(_openai_server: FakeOpenAI, settings: Any) -> Iterator[FakeOpenAI]:
    """The fake OpenAI API, reset, with the runtime pointed at it.

    Each test gets a provider name of its own, so breaker state never
    leaks between tests; retries are two, with millisecond backoff.
    """
    _openai_server.reset()
    for name, value in llm_settings_for(_openai_server).items():
        setattr(settings, name, value)
    settings.LLM_MAX_ATTEMPTS = 2
    yield _openai_server
    _openai_server.reset()
