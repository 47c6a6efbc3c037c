"""Fixtures for the llm package: the fake OpenAI API and isolated settings."""

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.openai_control import (
    PROJECT_ROOT,
    FakeOpenAI,
    fake_openai_running,
    llm_settings_for,
)

# Other test packages import these from here too.
__all__ = ["PROJECT_ROOT", "FakeOpenAI"]


@pytest.fixture(scope="session")
def _fake_openai_server() -> Iterator[FakeOpenAI]:
    with fake_openai_running() as fake:
        yield fake


@pytest.fixture
def fake_openai(_fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """Return the fake OpenAI API, reset to answer every request at once."""
    _fake_openai_server.reset()
    yield _fake_openai_server
    _fake_openai_server.reset()


@pytest.fixture
def llm_settings(settings: Any, fake_openai: FakeOpenAI) -> Iterator[Any]:
    """Point ``llm`` at the fake, with a key prefix and provider of its own.

    Backoff is short so that retries take milliseconds; the cooldown and the
    probe lease are left to each test.
    """
    caches = copy.deepcopy(settings.CACHES)
    prefix = f"{caches['default']['KEY_PREFIX']}-llm-{uuid.uuid4().hex[:8]}"
    caches["default"]["KEY_PREFIX"] = prefix
    settings.CACHES = caches
    for name, value in llm_settings_for(fake_openai).items():
        setattr(settings, name, value)
    settings.LLM_BREAKER_PROBE_TTL_SECONDS = 30.0
    settings.LLM_MAX_ATTEMPTS = 4
    settings.LLM_CACHE_WAIT_SECONDS = 15.0
    yield settings

    from django.core.cache import caches as cache_handler

    cache_handler["default"].delete_pattern("*")  # type: ignore[attr-defined]
