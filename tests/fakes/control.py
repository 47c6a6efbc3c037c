"""Start the fake Telegram Bot API in a subprocess and drive its control side."""

import subprocess
from types import TracebackType
from typing import Any

import httpx

from tests.fakes.process import (
    START_TIMEOUT_SECONDS,
    STOP_TIMEOUT_SECONDS,
    fake_subprocess_start,
    fake_subprocess_stop,
)
from tests.fakes.telegram_state import DEFAULT_USERNAME


class FakeTelegramStartError(RuntimeError):
    pass


def start_fake_telegram_subprocess(
    *,
    username: str = DEFAULT_USERNAME,
    host: str = "127.0.0.1",
    timeout: float = START_TIMEOUT_SECONDS,
) -> tuple["subprocess.Popen[str]", str]:
    """Run the fake on a free port; return the process and its base URL.

    Raise FakeTelegramStartError if it exits or stays silent for `timeout`.
    """
    return fake_subprocess_start(
        "tests.fakes.telegram_api",
        "--host",
        host,
        "--username",
        username,
        what="The fake Telegram API",
        error=FakeTelegramStartError,
        timeout=timeout,
    )


def stop_fake_telegram_subprocess(
    process: "subprocess.Popen[str]", *, timeout: float = STOP_TIMEOUT_SECONDS
) -> int:
    """Terminate the fake, killing it if it lingers; return its exit code."""
    return fake_subprocess_stop(process, timeout=timeout)


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
