"""Start the fake Telegram Bot API in a subprocess and drive its control side."""

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from tests.fakes.telegram_state import DEFAULT_USERNAME

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
LISTENING_PREFIX = "listening on "


class FakeTelegramStartError(RuntimeError):
    pass


def _forward_lines(stream: IO[str], lines: "queue.Queue[str]") -> None:
    for line in stream:
        lines.put(line)
    # An empty string tells the reader the process closed its output.
    lines.put("")


def start_fake_telegram_subprocess(
    *,
    username: str = DEFAULT_USERNAME,
    host: str = "127.0.0.1",
    timeout: float = START_TIMEOUT_SECONDS,
) -> tuple["subprocess.Popen[str]", str]:
    """Run the fake on a free port; return the process and its base URL.

    Raise FakeTelegramStartError if it exits or stays silent for `timeout`.
    """
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.telegram_api",
            "--port",
            "0",
            "--host",
            host,
            "--username",
            username,
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=_forward_lines, args=(process.stdout, lines), daemon=True
    ).start()

    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            stop_fake_telegram_subprocess(process)
            raise FakeTelegramStartError(
                f"The fake Telegram API did not start within {timeout} seconds."
            ) from None
        if not line:
            process.wait()
            raise FakeTelegramStartError(
                f"The fake Telegram API exited with code {process.returncode}."
            )
        if line.startswith(LISTENING_PREFIX):
            return process, line.removeprefix(LISTENING_PREFIX).strip()


def stop_fake_telegram_subprocess(
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


class FakeTelegramControl:
    """The fake's control endpoints, through httpx."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._client = httpx.Client(base_url=url, timeout=timeout)

    def calls(
        self, method: str | None = None, *, token: str | None = None
    ) -> list[dict[str, Any]]:
        filters = {
            name: value
            for name, value in (("method", method), ("token", token))
            if value is not None
        }
        response = self._client.get("/_calls", params=filters)
        response.raise_for_status()

        return response.json()["calls"]

    def clear_calls(self) -> None:
        self._client.delete("/_calls").raise_for_status()

    def add_fault(self, **rule: Any) -> None:
        self._client.post("/_faults", json=rule).raise_for_status()

    def faults(self) -> list[dict[str, Any]]:
        response = self._client.get("/_faults")
        response.raise_for_status()

        return response.json()["faults"]

    def clear_faults(self) -> None:
        self._client.delete("/_faults").raise_for_status()

    def queue_updates(self, token: str, updates: list[dict[str, Any]]) -> None:
        payload = {"token": token, "updates": updates}
        self._client.post("/_updates", json=payload).raise_for_status()

    def set_webhook_error(
        self, token: str, message: str, *, date: int | None = None
    ) -> None:
        payload: dict[str, Any] = {"token": token, "message": message}
        if date is not None:
            payload["date"] = date
        self._client.post("/_webhook_errors", json=payload).raise_for_status()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "FakeTelegramControl":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
