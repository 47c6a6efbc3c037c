"""Start the fake OpenAI API in a subprocess and drive its control side."""

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.fakes.process import (
    PROJECT_ROOT,
    START_TIMEOUT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    fake_subprocess_start,
    fake_subprocess_stop,
)

# Other test modules import the project root from here.
__all__ = [
    "DEFAULT_CONTROL",
    "PROJECT_ROOT",
    "TEST_API_KEY",
    "FakeOpenAI",
    "FakeOpenAIStartError",
    "fake_openai_running",
    "llm_settings_for",
    "start_fake_openai_subprocess",
    "stop_subprocess",
]

# What tests send as the key: the fake only checks that there is one.
TEST_API_KEY = "sk-test-only"
DEFAULT_CONTROL = {
    "latency_ms": [0, 0],
    "fail_rate": 0.0,
    "fail_kind": "500",
    "hold": False,
    "retry_after": 1.0,
    "fail_next": 0,
    "reply": None,
}


class FakeOpenAIStartError(RuntimeError):
    pass


class FakeOpenAI:
    """The fake OpenAI API's base URL and control endpoints, through httpx."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.api_url = f"{url}/v1"
        self._client = httpx.Client(base_url=url, timeout=5.0)

    def control(self, **changes: Any) -> dict[str, Any]:
        response = self._client.post("/_control", json=changes)
        response.raise_for_status()

        return dict(response.json())

    def release(self) -> None:
        self._client.post("/_release").raise_for_status()

    def calls(self) -> list[dict[str, Any]]:
        response = self._client.get("/_calls")
        response.raise_for_status()

        return list(response.json()["calls"])

    def clear_calls(self) -> None:
        self._client.delete("/_calls").raise_for_status()

    def reset(self) -> None:
        """Answer every request at once again, with no calls recorded."""
        self.control(**DEFAULT_CONTROL)
        self.release()
        self.clear_calls()

    def close(self) -> None:
        self._client.close()


def start_fake_openai_subprocess(
    *args: str, timeout: float = START_TIMEOUT_SECONDS
) -> tuple["subprocess.Popen[str]", str]:
    """Run the fake on a free port; return the process and its base URL.

    ``args`` are more command-line options. Raise FakeOpenAIStartError if
    it exits or stays silent for ``timeout``.
    """
    return fake_subprocess_start(
        "tests.fakes.openai_api",
        *args,
        what="The fake OpenAI API",
        error=FakeOpenAIStartError,
        timeout=timeout,
    )


def stop_subprocess(
    process: "subprocess.Popen[str]", *, timeout: float = STOP_TIMEOUT_SECONDS
) -> int:
    """Terminate the fake, killing it if it lingers; return its exit code."""
    return fake_subprocess_stop(process, timeout=timeout)


@contextmanager
def fake_openai_running() -> Iterator[FakeOpenAI]:
    """Run the fake in a subprocess for the block; yield its control side."""
    process, url = start_fake_openai_subprocess()
    fake = FakeOpenAI(url)
    try:
        yield fake
    finally:
        fake.close()
        stop_subprocess(process)


def llm_settings_for(fake: FakeOpenAI) -> dict[str, Any]:
    """Return the settings that point ``llm`` at ``fake``.

    The provider name is new on every call, so breaker state never leaks
    between tests; backoff is short so that retries take milliseconds.
    """
    return {
        "OPENAI_BASE_URL": fake.api_url,
        "OPENAI_API_KEY": TEST_API_KEY,
        "LLM_MODEL": "fake-model",
        "LLM_PROVIDER_NAME": f"fake-{uuid.uuid4().hex[:8]}",
        "LLM_TIMEOUT_SECONDS": 10.0,
        "LLM_BACKOFF_INITIAL_SECONDS": 0.01,
        "LLM_BACKOFF_MAX_SECONDS": 0.05,
        "LLM_BREAKER_FAILURE_THRESHOLD": 5,
        "LLM_BREAKER_COOLDOWN_SECONDS": 30.0,
    }
