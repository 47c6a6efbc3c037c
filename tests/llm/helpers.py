"""Helpers of the llm tests that start processes of their own."""

import os
from typing import Any

from tests.fakes.openai_control import PROJECT_ROOT


def subprocess_env(settings: Any, **extra: str) -> dict[str, str]:
    """Return the environment of a helper process that shares this test's state."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="botfactory.settings",
        CACHE_KEY_PREFIX=settings.CACHES["default"]["KEY_PREFIX"],
        OPENAI_BASE_URL=settings.OPENAI_BASE_URL,
        OPENAI_API_KEY=settings.OPENAI_API_KEY,
        LLM_MODEL=settings.LLM_MODEL,
        LLM_PROVIDER_NAME=settings.LLM_PROVIDER_NAME,
        LLM_BREAKER_FAILURE_THRESHOLD=str(settings.LLM_BREAKER_FAILURE_THRESHOLD),
        LLM_BREAKER_COOLDOWN_SECONDS=str(settings.LLM_BREAKER_COOLDOWN_SECONDS),
        LLM_BREAKER_PROBE_TTL_SECONDS=str(settings.LLM_BREAKER_PROBE_TTL_SECONDS),
        LLM_TIMEOUT_SECONDS=str(settings.LLM_TIMEOUT_SECONDS),
        LLM_MAX_ATTEMPTS=str(settings.LLM_MAX_ATTEMPTS),
        LLM_BACKOFF_INITIAL_SECONDS=str(settings.LLM_BACKOFF_INITIAL_SECONDS),
        LLM_BACKOFF_MAX_SECONDS=str(settings.LLM_BACKOFF_MAX_SECONDS),
        LLM_CACHE_WAIT_SECONDS=str(settings.LLM_CACHE_WAIT_SECONDS),
        PYTHONPATH=str(PROJECT_ROOT),
    )
    env.pop("PYTEST_XDIST_WORKER", None)
    env.update(extra)

    return env
