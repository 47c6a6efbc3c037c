"""A fake OpenAI-compatible chat completions API on loopback, for tests.

``POST /v1/chat/completions`` answers ``Answer: <12 hex digits>``, a digest
of the request's messages (see ``expected_answer``), with token usage: the
words of the messages and of the answer. Failures use OpenAI's JSON error
envelope. Control endpoints, which the real API does not have:

- ``POST /_control`` with any of ``{"latency_ms": [min, max], "fail_rate":
  0.2, "fail_kind": "500|429|quota|hang|malformed|400", "hold": true,
  "retry_after": 1, "fail_next": 2, "reply": {"status": 200, "body": "..."}}``
  changes the behaviour from the next request on and answers the whole
  configuration (``GET /_control`` shows it). ``reply`` answers every
  completion with that status and raw body (a scripted provider; ``null``
  ends it). ``hang``
  keeps the connection open without an answer until the client gives up;
  ``malformed`` answers 200 with a body that is not JSON; ``quota`` is a 429
  whose code is ``insufficient_quota``; ``429`` carries ``retry-after``.
- ``hold: true`` keeps every request waiting (before its latency and
  failure are decided) until ``POST /_release`` (or ``hold: false``) ends
  the hold: held requests go on and later ones are not held.
- ``GET /_calls`` lists the requests received as ``{"calls": [{"path",
  "model", "messages", "temperature", "max_tokens", "status", "at"}]}``;
  ``status`` stays 0 while a request is held or hung. ``DELETE /_calls``
  forgets them.

Run it with ``python -m tests.fakes.openai_api --port 0``; it prints
``listening on http://HOST:PORT`` once it accepts connections.
"""

import argparse
import hashlib
import json
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from tests.fakes.http_base import (
    BackgroundServer,
    FakeHandler,
    FakeHttpServer,
    serve_until_signalled,
)

logger = logging.getLogger(__name__)

FAIL_KINDS = ("500", "429", "quota", "hang", "malformed", "400")
MAX_BODY_BYTES = 4 * 1024 * 1024
POLL_SECONDS = 0.05
# A hung request gives up on its own after this long, so that a client that
# never closes cannot keep a thread forever.
MAX_HANG_SECONDS = 300.0
ANSWER_PREFIX = "Answer: "

Answer = tuple[int, dict[str, Any] | bytes | None, dict[str, str]]


def expected_answer(messages: list[dict[str, Any]]) -> str:
    """Return the answer the fake gives to these messages."""
    canonical = json.dumps(
        [[message.get("role"), message.get("content")] for message in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    return f"{ANSWER_PREFIX}{digest[:12]}"


def _words(text: Any) -> int:
    return len(text.split()) if isinstance(text, str) else 0


def _error(status: int, message: str, *, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _FakeError(Exception):
    def __init__(self, status: int, message: str, *, kind: str, code: str | None):
        super().__init__(message)
        self.status = status
        self.body = _error(status, message, kind=kind, code=code)


@dataclass
class FakeConfig:
    latency_ms: tuple[int, int] = (0, 0)
    fail_rate: float = 0.0
    fail_kind: str = "500"
    hold: bool = False
    retry_after: float = 1.0
    # The next this many requests fail with fail_kind, whatever fail_rate.
    fail_next: int = 0
    # Every completion answers this {"status", "body"} instead, when set.
    reply: dict[str, Any] | None = None

    def update(self, data: dict[str, Any]) -> None:
        unknown = set(data) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        if "latency_ms" in data:
            low, high = (int(value) for value in data["latency_ms"])
            if not 0 <= low <= high:
                raise ValueError("latency_ms must be [min, max] with 0 <= min <= max")
            self.latency_ms = (low, high)
        if "fail_rate" in data:
            rate = float(data["fail_rate"])
            if not 0.0 <= rate <= 1.0:
                raise ValueError("fail_rate must be between 0 and 1")
            self.fail_rate = rate
        if "fail_kind" in data:
            if data["fail_kind"] not in FAIL_KINDS:
                raise ValueError(f"fail_kind must be one of {', '.join(FAIL_KINDS)}")
            self.fail_kind = data["fail_kind"]
        if "hold" in data:
            self.hold = bool(data["hold"])
        if "retry_after" in data:
            self.retry_after = max(float(data["retry_after"]), 0.0)
        if "fail_next" in data:
            self.fail_next = max(int(data["fail_next"]), 0)
        if "reply" in data:
            reply = data["reply"]
            if reply is not None and not (
                isinstance(reply, dict)
                and isinstance(reply.get("status"), int)
                and isinstance(reply.get("body"), str)
            ):
                raise ValueError("reply must be null or {status: int, body: str}")
            self.reply = reply


@dataclass
class _Call:
    path: str
    model: Any
    messages: Any
    temperature: Any
    max_tokens: Any
    at: float
    status: int = 0


@dataclass
class FakeOpenAIState:
    config: FakeConfig = field(default_factory=FakeConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[_Call] = []
        self._release = threading.Event()
        self._stopping = threading.Event()
        self._random = random.Random(self.seed)

    def configure(self, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            was_holding = self.config.hold
            self.config.update(data)
            if was_holding and not self.config.hold:
                self._release_locked()

            return self.snapshot_locked()

    def snapshot_locked(self) -> dict[str, Any]:
        data = asdict(self.config)
        data["latency_ms"] = list(self.config.latency_ms)

        return data

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self.snapshot_locked()

    def record(self, call: _Call) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(call) for call in self._calls]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def release(self) -> None:
        """End the hold: let held requests go and hold no more."""
        with self._lock:
            self.config.hold = False
            self._release_locked()

    def _release_locked(self) -> None:
        # Each hold waits on the event it saw; a new one holds later requests.
        self._release.set()
        self._release = threading.Event()

    def hold_event(self) -> threading.Event | None:
        with self._lock:
            return self._release if self.config.hold else None

    def decide(self) -> tuple[float, str | None, float]:
        """Draw this request's latency and failure under the lock."""
        with self._lock:
            low, high = self.config.latency_ms
            latency = self._random.uniform(low, high) / 1000
            fails = self._random.random() < self.config.fail_rate
            if self.config.fail_next > 0:
                self.config.fail_next -= 1
                fails = True
            kind = self.config.fail_kind if fails else None

            return latency, kind, self.config.retry_after

    @property
    def stopping(self) -> threading.Event:
        return self._stopping


class _Handler(FakeHandler):
    server_version = "FakeOpenAI/1.0"

    @property
    def _state(self) -> FakeOpenAIState:
        return cast("FakeHttpServer[FakeOpenAIState]", self.server).state

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        try:
            body = self._read_body()
            status, payload, headers = self._route(path, body)
        except _FakeError as error:
            status, payload, headers = error.status, error.body, {}
        except Exception:
            # The top-level boundary of a request: answer 500, keep serving.
            logger.exception("Fake OpenAI API failed on %s", path)
            status, headers = 500, {}
            payload = _error(500, "internal error", kind="server_error", code=None)

        if payload is None:
            self.close_connection = True
            return
        self._send(status, payload, headers)

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            raise _FakeError(
                400, "invalid Content-Length", kind="invalid_request_error", code=None
            )

        return self.rfile.read(length)

    def _route(self, path: str, body: bytes) -> Answer:
        routes: dict[tuple[str, str], Any] = {
            ("POST", "/v1/chat/completions"): self._chat_completions,
            ("GET", "/v1/models"): self._models,
            ("GET", "/_control"): self._get_control,
            ("POST", "/_control"): self._post_control,
            ("POST", "/_release"): self._post_release,
            ("GET", "/_calls"): self._get_calls,
            ("DELETE", "/_calls"): self._delete_calls,
        }
        handler = routes.get((self.command, path))
        if handler is None:
            raise _FakeError(
                404, "unknown endpoint", kind="invalid_request_error", code=None
            )

        return cast(Answer, handler(body))

    def _json_body(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise _FakeError(
                400,
                "the body must be a JSON object",
                kind="invalid_request_error",
                code=None,
            )

        return data

    # The API.

    def _chat_completions(self, body: bytes) -> Answer:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            raise _FakeError(
                401,
                "missing API key",
                kind="invalid_request_error",
                code="invalid_api_key",
            )
        data = self._json_body(body)
        messages = data.get("messages")
        call = _Call(
            path="/v1/chat/completions",
            model=data.get("model"),
            messages=messages,
            temperature=data.get("temperature"),
            max_tokens=data.get("max_tokens"),
            at=time.time(),
        )
        self._state.record(call)

        status, payload, headers = self._answer(data, messages)
        call.status = status if payload is not None else 0

        return status, payload, headers

    def _answer(self, data: dict[str, Any], messages: Any) -> Answer:
        release = self._state.hold_event()
        if release is not None and not self._wait(release):
            return 0, None, {}
        latency, kind, retry_after = self._state.decide()
        if latency and not self._wait(threading.Event(), limit=latency):
            return 0, None, {}

        reply = self._state.config.reply
        if reply is not None:
            return reply["status"], reply["body"].encode("utf-8"), {}
        if kind == "hang":
            self._wait(threading.Event(), limit=MAX_HANG_SECONDS)
            return 0, None, {}
        if kind == "malformed":
            return 200, b"<html>upstream answered garbage", {}
        if kind in ("500", "429", "quota", "400"):
            return self._failure(kind, retry_after)
        if (
            not isinstance(messages, list)
            or not messages
            or not all(isinstance(message, dict) for message in messages)
        ):
            raise _FakeError(
                400,
                "messages must be a non-empty list",
                kind="invalid_request_error",
                code=None,
            )

        text = expected_answer(messages)
        prompt_tokens = sum(_words(message.get("content")) for message in messages)
        completion_tokens = _words(text)
        payload = {
            "id": f"chatcmpl-fake-{text.removeprefix(ANSWER_PREFIX)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": data.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

        return 200, payload, {}

    def _failure(self, kind: str, retry_after: float) -> Answer:
        if kind == "500":
            body = _error(
                500, "the server had an error", kind="server_error", code=None
            )
            return 500, body, {}
        if kind == "400":
            body = _error(
                400, "invalid request", kind="invalid_request_error", code=None
            )
            return 400, body, {}
        if kind == "quota":
            body = _error(
                429,
                "You exceeded your current quota.",
                kind="insufficient_quota",
                code="insufficient_quota",
            )
            return 429, body, {}
        body = _error(
            429, "Rate limit reached.", kind="requests", code="rate_limit_exceeded"
        )

        return 429, body, {"retry-after": f"{retry_after:g}"}

    def _models(self, body: bytes) -> Answer:
        return 200, {"object": "list", "data": []}, {}

    def _wait(self, event: threading.Event, *, limit: float | None = None) -> bool:
        """Wait for ``event`` or ``limit`` seconds, whichever comes first.

        Return False if the client or the server left first.
        """
        ends = None if limit is None else time.monotonic() + limit
        while True:
            left = POLL_SECONDS if ends is None else ends - time.monotonic()
            if event.wait(max(min(left, POLL_SECONDS), 0)):
                # A client that gave up while held gets no late answer.
                return not self._client_left()
            if self._client_left() or self._state.stopping.is_set():
                return False
            if ends is not None and time.monotonic() >= ends:
                return True

    def _send(
        self, status: int, payload: dict[str, Any] | bytes, headers: dict[str, str]
    ) -> None:
        if isinstance(payload, bytes):
            data = payload
        else:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send_body(status, data, headers.items())

    # Control endpoints.

    def _get_control(self, body: bytes) -> Answer:
        return 200, self._state.snapshot(), {}

    def _post_control(self, body: bytes) -> Answer:
        try:
            snapshot = self._state.configure(self._json_body(body))
        except (TypeError, ValueError) as exc:
            raise _FakeError(
                400, str(exc), kind="invalid_request_error", code=None
            ) from None

        return 200, snapshot, {}

    def _post_release(self, body: bytes) -> Answer:
        self._state.release()

        return 200, {"ok": True}, {}

    def _get_calls(self, body: bytes) -> Answer:
        return 200, {"calls": self._state.calls()}, {}

    def _delete_calls(self, body: bytes) -> Answer:
        self._state.clear_calls()

        return 200, {"ok": True}, {}


class FakeOpenAIServer(BackgroundServer):
    """The fake API in this process, served from a background thread."""

    thread_name = "fake-openai-api"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        config: FakeConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.state = FakeOpenAIState(config=config or FakeConfig(), seed=seed)
        super().__init__(FakeHttpServer((host, port), _Handler, self.state))

    def _let_go(self) -> None:
        self.state.stopping.set()
        self.state.release()


def _latency(value: str) -> tuple[int, int]:
    low, _, high = value.partition("-")
    try:
        bounds = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError("expected A-B in milliseconds") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError("expected 0 <= A <= B")

    return bounds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI API.")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--latency-ms", type=_latency, default=(0, 0), metavar="A-B")
    parser.add_argument("--fail-rate", type=float, default=0.0, metavar="R")
    parser.add_argument("--fail-kind", choices=FAIL_KINDS, default="500", metavar="K")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0.0 <= args.fail_rate <= 1.0:
        parser.error("--fail-rate must be between 0 and 1")
    logging.basicConfig(level=logging.WARNING)

    config = FakeConfig(
        latency_ms=args.latency_ms, fail_rate=args.fail_rate, fail_kind=args.fail_kind
    )
    serve_until_signalled(
        FakeOpenAIServer(args.host, args.port, config=config, seed=args.seed)
    )


if __name__ == "__main__":
    main()
