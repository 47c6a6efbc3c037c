"""The OpenAI-compatible chat client: the only module that imports ``openai``.

One attempt per call: the SDK's own retries are off, because the retry
policy (and the circuit breaker that counts every attempt) lives in
``llm.services``. The SDK's exceptions become ``ProviderError`` here.
"""

import email.utils
import json
import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

from botfactory.errors import ApplicationError
from llm.types import ChatMessage

logger = logging.getLogger(__name__)

# Statuses worth another attempt: request timeout, conflict, rate limit
# (unless the quota is spent) and any server error.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_QUOTA_CODE = "insufficient_quota"
# A retry-after longer than this is not a pause but an outage; the caller's
# deadline ends such a wait long before anyway.
_MAX_RETRY_AFTER_SECONDS = 3600.0
_client_lock = threading.Lock()
# Far past any context window, and what a 32-bit counter can hold: a usage
# count above it (or below zero) is not believed.
_MAX_USAGE_TOKENS = 2**31 - 1

ProviderErrorKind = Literal[
    "connection", "timeout", "status", "quota", "client", "malformed"
]


class ProviderError(ApplicationError):
    """One attempt failed.

    ``retryable`` says whether another attempt may succeed; ``counts`` says
    whether the circuit breaker counts it as the provider failing (client
    errors do not: the request was wrong, not the provider).
    """

    status_code = 502

    def __init__(
        self,
        message: str,
        *,
        kind: ProviderErrorKind,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=kind)
        self.kind = kind
        self.retryable = retryable
        self.counts = kind != "client"
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class ProviderAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int


@lru_cache(maxsize=4)
def _client_build(base_url: str, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        timeout=httpx.Timeout(10.0),
    )


def _client(base_url: str, api_key: str) -> openai.OpenAI:
    # One client (and connection pool) per process and configuration. Built
    # under a lock: threads that all missed the cache at once each built one
    # (TLS contexts and all), which cost the first burst of calls a second.
    # Building opens no socket, so a forked worker inherits none.
    with _client_lock:
        return _client_build(base_url, api_key)


def provider_client_prepare(*, base_url: str, api_key: str) -> None:
    """Build the client for this configuration now, before any call needs it.

    The SDK imports its resource modules (and builds their types) on first
    access, under the import lock: reaching ``chat.completions`` here keeps
    that second off the first burst of calls. Raises nothing the openai
    package would not raise for a bad base URL.
    """
    _client(base_url, api_key).chat.completions  # noqa: B018


def _retry_after(response: httpx.Response) -> float | None:
    headers = response.headers
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return min(max(float(milliseconds) / 1000, 0.0), _MAX_RETRY_AFTER_SECONDS)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()

    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_SECONDS)


def _status_error(exc: openai.APIStatusError) -> ProviderError:
    status = exc.status_code
    if status == 429 and exc.code == _QUOTA_CODE:
        return ProviderError(
            "The provider's quota is spent.", kind="quota", retryable=False, status=429
        )
    if status in _RETRYABLE_STATUSES or status >= 500:
        return ProviderError(
            "The provider answered with a transient error.",
            kind="status",
            retryable=True,
            status=status,
            retry_after=_retry_after(exc.response),
        )

    return ProviderError(
        "The provider refused the request.",
        kind="client",
        retryable=False,
        status=status,
    )


def _malformed() -> ProviderError:
    return ProviderError(
        "The provider's answer is malformed.", kind="malformed", retryable=True
    )


def _storable(text: str) -> str:
    # JSON may carry NUL and lone surrogates, which PostgreSQL stores in no
    # text column: NUL is dropped, a lone surrogate becomes U+FFFD.
    text = text.replace("\x00", "")
    if text.isascii():
        return text

    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _token_count(value: object) -> int:
    # Usage is reported, never checked; an implausible count is taken as 0.
    if isinstance(value, bool) or not isinstance(value, int):
        return 0

    return value if 0 <= value <= _MAX_USAGE_TOKENS else 0


def _answer(completion: Any) -> ProviderAnswer:
    # Compatible servers differ; the SDK builds its objects without
    # validation, so the shape is checked here.
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise _malformed()
    message = getattr(choices[0], "message", None)
    text = getattr(message, "content", None)
    if not isinstance(text, str):
        raise _malformed()

    usage = getattr(completion, "usage", None)

    return ProviderAnswer(
        text=_storable(text),
        prompt_tokens=_token_count(getattr(usage, "prompt_tokens", 0)),
        completion_tokens=_token_count(getattr(usage, "completion_tokens", 0)),
    )


def _message_param(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}

    return {"role": "user", "content": message.content}


def chat_complete(
    *,
    base_url: str,
    api_key: str,
    model: str,
    messages: tuple[ChatMessage, ...],
    temperature: float | None,
    max_tokens: int | None,
    timeout_seconds: float,
) -> ProviderAnswer:
    """Make one chat completion attempt within ``timeout_seconds``.

    Raises ProviderError, with ``retryable`` and ``counts`` set, on any
    failure.
    """
    params = [_message_param(message) for message in messages]
    options: dict[str, Any] = {}
    if temperature is not None:
        options["temperature"] = temperature
    if max_tokens is not None:
        options["max_tokens"] = max_tokens

    # TODO: httpx bounds each read by the timeout, not the whole answer; a
    # server that trickles bytes can hold an attempt past its deadline.
    try:
        completion = _client(base_url, api_key).chat.completions.create(
            model=model,
            messages=params,
            timeout=httpx.Timeout(timeout_seconds),
            **options,
        )
    except openai.APITimeoutError:
        raise ProviderError(
            "The provider did not answer in time.", kind="timeout", retryable=True
        ) from None
    except openai.APIConnectionError:
        raise ProviderError(
            "The provider cannot be reached.", kind="connection", retryable=True
        ) from None
    except openai.APIStatusError as exc:
        raise _status_error(exc) from None
    except (openai.APIResponseValidationError, json.JSONDecodeError):
        raise _malformed() from None

    return _answer(completion)
