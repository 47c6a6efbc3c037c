"""A fake Telegram Bot API served over HTTP on loopback, for tests.

Bot API calls go to ``/bot<token>/<method>`` (GET or POST; JSON, urlencoded
or multipart bodies, or a query string) and are answered with the real API's
envelope. Files are not stored: ``/file/bot<token>/<path>`` is always 404.

Control endpoints, which the real API does not have:

- ``GET /_calls[?method=&token=]`` lists the recorded calls in arrival order
  as ``{"calls": [{"method", "token", "params", "status", "at"}]}``;
  ``status`` is 0 until the call is answered, and a call held open by a hang
  fault is never answered, so it stays 0; a ``delay_after_ms`` fault records
  the status before it holds the answer. ``DELETE /_calls`` forgets them.
- ``POST /_updates`` with ``{"token", "updates"}`` queues updates for
  ``getUpdates``.
- ``POST /_faults`` adds a fault rule (see ``FaultRule``; every field is
  optional), ``GET /_faults`` lists the rules, ``DELETE /_faults`` drops
  them and lets go of held calls (their connection is closed without an
  answer); both answer ``{"ok": true}``.
- ``POST /_webhook_errors`` with ``{"token", "message", "date"?}`` sets the
  last delivery error that ``getWebhookInfo`` reports.

Run it with ``python -m tests.fakes.telegram_api --port 0``; it prints
``listening on http://HOST:PORT`` once it accepts connections.
"""

import argparse
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fakes.http_base import (
    BackgroundServer,
    FakeHandler,
    FakeHttpServer,
    serve_until_signalled,
)
from tests.fakes.telegram_params import BotApiError, parse_json_object, parse_params
from tests.fakes.telegram_state import (
    DEFAULT_USERNAME,
    Call,
    FakeTelegramState,
    FaultRule,
)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 50 * 1024 * 1024
HANG_POLL_SECONDS = 0.05

_BOT_PATH = re.compile(r"/bot(?P<token>[^/]*)/(?P<method>[^/]+)/?")
_FILE_PATH = re.compile(r"/file/bot[^/]*/.+")
_TOKEN = re.compile(r"\d+:[\w-]+")

Answer = tuple[int, dict[str, Any] | None]


def _not_found() -> BotApiError:
    return BotApiError(404, "Not Found")


class _Handler(FakeHandler):
    server_version = "FakeTelegramBotApi/1.0"
    _call: Call | None = None

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        # Malformed requests get the same JSON envelope as everything else.
        self.close_connection = True
        description = message or HTTPStatus(code).phrase
        self._send_json(code, BotApiError(code, description).envelope())

    @property
    def _state(self) -> FakeTelegramState:
        return cast("FakeHttpServer[FakeTelegramState]", self.server).state

    def _dispatch(self) -> None:
        self._call = None
        url = urlsplit(self.path)
        try:
            body = self._read_body()
            status, payload = self._route(url.path, url.query, body)
        except BotApiError as error:
            status, payload = error.status, error.envelope()
        except Exception:
            # The top-level boundary of a request: answer 500, keep serving.
            logger.exception("Fake Telegram API failed on %s", url.path)
            status, payload = 500, BotApiError(500, "Internal Server Error").envelope()
            if self._call is not None:
                self._state.set_status(self._call, status)

        if payload is None:
            self.close_connection = True
            return
        self._send_json(status, payload)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_body()

        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise BotApiError(400, "Bad Request: invalid Content-Length") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            raise BotApiError(413, "Request Entity Too Large")

        return self.rfile.read(length)

    def _read_chunked_body(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self.rfile.readline(1024).split(b";", 1)[0], 16)
            except ValueError:
                self.close_connection = True
                raise BotApiError(400, "Bad Request: invalid chunked body") from None
            total += size
            if size < 0 or total > MAX_BODY_BYTES:
                self.close_connection = True
                raise BotApiError(413, "Request Entity Too Large")
            if size == 0:
                break
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

        while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
            pass

        return b"".join(chunks)

    def _route(self, path: str, query: str, body: bytes) -> Answer:
        match = _BOT_PATH.fullmatch(path)
        if match:
            token, method = unquote(match["token"]), unquote(match["method"])
            return self._serve_bot_api(token, method, query, body)
        if _FILE_PATH.fullmatch(path):
            raise _not_found()

        routes = _CONTROL_ROUTES.get(path)
        if routes is None:
            raise _not_found()
        handler = routes.get(self.command)
        if handler is None:
            raise BotApiError(405, "Method Not Allowed")

        return handler(self, query, body)

    def _serve_bot_api(self, token: str, name: str, query: str, body: bytes) -> Answer:
        method = self._state.canonical_method(name)
        content_type = self.headers.get("Content-Type", "")
        try:
            params, error = parse_params(query, content_type, body), None
        except BotApiError as parse_error:
            params, error = {}, parse_error
        if error is None and not _TOKEN.fullmatch(token):
            error = _not_found()
        # The fault is taken before the call is recorded, so a test that sees
        # the call can rely on the fault having applied to it.
        chat_id = params.get("chat_id")
        fault = None
        if error is None:
            fault = self._state.take_fault(
                method, token, None if chat_id is None else str(chat_id)
            )
        self._call = self._state.record_call(method, token, params)

        try:
            if error is not None:
                raise error
            status, payload = self._answer_bot_api(method, token, params, fault)
        except BotApiError as answer_error:
            status, payload = answer_error.status, answer_error.envelope()

        if payload is not None:
            self._state.set_status(self._call, status)
        if payload is not None and fault is not None and fault[0].delay_after_ms:
            rule, release = fault
            if not self._hold(release, seconds=rule.delay_after_ms / 1000):
                return 0, None

        return status, payload

    def _answer_bot_api(
        self,
        method: str,
        token: str,
        params: dict[str, Any],
        fault: tuple[FaultRule, threading.Event] | None,
    ) -> Answer:
        if fault is not None:
            rule, release = fault
            time.sleep(rule.delay_ms / 1000)
            if rule.hang:
                self._hold(release, seconds=None)
                return 0, None
            if rule.status is not None:
                raise rule.error()

        return 200, {"ok": True, "result": self._state.invoke(method, token, params)}

    def _hold(self, release: threading.Event, *, seconds: float | None) -> bool:
        """Keep the request unanswered for ``seconds`` (None: for good).

        Return True when that time is up; False when the hold ended early,
        because the faults were cleared or the client left.
        """
        deadline = None if seconds is None else time.monotonic() + seconds
        while not release.wait(HANG_POLL_SECONDS):
            if self._client_left():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return True

        return False

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send_body(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    # Control endpoints.

    def _list_calls(self, query: str, body: bytes) -> Answer:
        filters = dict(parse_qsl(query))
        calls = self._state.calls(
            method=filters.get("method"), token=filters.get("token")
        )

        return 200, {"calls": calls}

    def _clear_calls(self, query: str, body: bytes) -> Answer:
        self._state.clear_calls()

        return 200, {"ok": True}

    def _queue_updates(self, query: str, body: bytes) -> Answer:
        data = parse_json_object(body)
        token, updates = data.get("token"), data.get("updates")
        if not isinstance(token, str) or not isinstance(updates, list):
            raise BotApiError(400, "Bad Request: expected token and updates")
        if not all(
            isinstance(update, dict) and isinstance(update.get("update_id"), int)
            for update in updates
        ):
            raise BotApiError(400, "Bad Request: every update needs an update_id")

        self._state.queue_updates(token, updates)

        return 200, {"ok": True}

    def _list_faults(self, query: str, body: bytes) -> Answer:
        return 200, {"faults": self._state.faults()}

    def _add_fault(self, query: str, body: bytes) -> Answer:
        rule = FaultRule.from_json(parse_json_object(body) if body else {})
        self._state.add_fault(rule)

        return 200, {"ok": True}

    def _clear_faults(self, query: str, body: bytes) -> Answer:
        self._state.clear_faults()

        return 200, {"ok": True}

    def _set_webhook_error(self, query: str, body: bytes) -> Answer:
        data = parse_json_object(body)
        token, message = data.get("token"), data.get("message")
        date = data.get("date", int(time.time()))
        if not isinstance(token, str) or not isinstance(message, str):
            raise BotApiError(400, "Bad Request: expected token, message and date")
        if not isinstance(date, int):
            raise BotApiError(400, "Bad Request: expected token, message and date")

        self._state.set_webhook_error(token, message, date)

        return 200, {"ok": True}


_CONTROL_ROUTES: dict[str, dict[str, Callable[[_Handler, str, bytes], Answer]]] = {
    "/_calls": {"GET": _Handler._list_calls, "DELETE": _Handler._clear_calls},
    "/_updates": {"POST": _Handler._queue_updates},
    "/_faults": {
        "GET": _Handler._list_faults,
        "POST": _Handler._add_fault,
        "DELETE": _Handler._clear_faults,
    },
    "/_webhook_errors": {"POST": _Handler._set_webhook_error},
}


class FakeTelegramServer(BackgroundServer):
    """The fake Bot API in this process, served from a background thread."""

    thread_name = "fake-telegram-api"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = DEFAULT_USERNAME,
    ) -> None:
        self.state = FakeTelegramState(username=username)
        super().__init__(FakeHttpServer((host, port), _Handler, self.state))

    def _let_go(self) -> None:
        self.state.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Telegram Bot API.")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    serve_until_signalled(FakeTelegramServer(args.host, args.port, args.username))


if __name__ == "__main__":
    main()
