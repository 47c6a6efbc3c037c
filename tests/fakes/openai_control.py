"""Start the fake OpenAI API in a subprocess and drive its control side."""

import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
LISTENING_PREFIX = "listening on "
# What tests send as the key: the fake only checks that there is one.
TEST_API_KEY = "sk-test-only"
DEFAULT_CONTROL = {
    "latency_ms": [0, 0],
    "fail_rate": 0.0,
    "fail_kind": "500",
    "hold": False,
    "retry_after": 1.0,
    "fail_next": 0,
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
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_api", "--port", "0", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    readable: list[Any] = []
    while not readable and time.monotonic() < deadline:
        readable, _, _ = select.select([process.stdout], [], [], 0.1)
        if process.poll() is not None:
            break
    line = process.stdout.readline() if readable else ""
    if not line.startswith(LISTENING_PREFIX):
        stop_subprocess(process)
        raise FakeOpenAIStartError(
            f"The fake OpenAI API did not start within {timeout} seconds."
        )

    return process, line.removeprefix(LISTENING_PREFIX).strip()


def stop_subprocess(
    process: "subprocess.Popen[str]", *, timeout: float = STOP_TIMEOUT_SECONDS
) -> int:
    """Terminate the fake, killing it if it lingers; return its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()

    return process.returncode
