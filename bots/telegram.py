"""The one wrapper around python-telegram-bot.

python-telegram-bot is asyncio-only and its HTTP client must live on one
event loop, so each process runs a single long-lived loop in a daemon
thread and synchronous callers submit coroutines to it.
"""

import asyncio
import logging
import os
import threading
import warnings
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from telegram import Bot as _PtbBot
from telegram import error as ptb_error
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning, PTBUserWarning

logger = logging.getLogger(__name__)

# Raw API calls are the point of this wrapper (one code path for every
# method); the library suggests its typed methods instead.
warnings.filterwarnings("ignore", message="Please use 'Bot.", category=PTBUserWarning)
# retry_after becomes a timedelta in a later major version; both are handled.
warnings.filterwarnings(
    "ignore", message=".*retry_after.*", category=PTBDeprecationWarning
)

T = TypeVar("T")

# Telegram holds a long-polling getUpdates open for up to `timeout` seconds.
_POLLING_READ_MARGIN_SECONDS = 10.0


class TelegramError(Exception):
    """A Bot API call failed; ``retryable`` says whether trying again may help."""

    retryable = False

    def __init__(self, message: str, *, error_code: int | None = None) -> None:
        super().__init__(message)
        self.description = message
        self.error_code = error_code


class TelegramNetworkError(TelegramError):
    """No answer, or a 5xx one (``error_code`` holds its HTTP status then)."""

    retryable = True


class TelegramTimeoutError(TelegramNetworkError):
    """The Bot API did not answer in time."""


class TelegramRetryAfterError(TelegramError):
    retryable = True

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, error_code=429)
        self.retry_after = retry_after


class TelegramForbiddenError(TelegramError):
    """The bot was blocked, kicked, or the user is deactivated."""


class TelegramBadRequestError(TelegramError):
    @property
    def is_not_modified(self) -> bool:
        return "message is not modified" in self.description

    @property
    def is_chat_gone(self) -> bool:
        return "chat not found" in self.description.lower()


class TelegramChatMigratedError(TelegramError):
    def __init__(self, message: str, *, new_chat_id: int) -> None:
        super().__init__(message, error_code=400)
        self.new_chat_id = new_chat_id


class TelegramConflictError(TelegramError):
    """getUpdates while a webhook is set, or two pollers at once."""


class TelegramUnauthorizedError(TelegramError):
    """The token is wrong or was revoked."""


class _StatusRecordingRequest(HTTPXRequest):
    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        code, payload = await super().do_request(*args, **kwargs)
        _http_status.set(code)

        return code, payload


@dataclass
class _Loop:
    pid: int
    loop: asyncio.AbstractEventLoop
    request: HTTPXRequest
    polling_request: HTTPXRequest
    bots: dict[tuple[str, str], _PtbBot]


# The HTTP status of the call in progress: python-telegram-bot keeps it out of
# the NetworkError it raises for a 5xx answer.
_http_status: ContextVar[int | None] = ContextVar("telegram_http_status", default=None)
# One long-lived event loop, with its own HTTP clients, per thread that calls
# the Bot API: the call runs in the calling thread. Handing each call to one
# shared loop thread cost more CPU than the call itself.
_local = threading.local()
# Connections each thread keeps to the Bot API; a thread makes one call at a
# time, the rest is for calls a timeout left behind.
_POOL_SIZE = 4


def _loop_state() -> _Loop:
    state: _Loop | None = getattr(_local, "state", None)
    # A forked child inherits the parent's objects, not its sockets' use.
    if state is None or state.pid != os.getpid():
        timeout = settings.TELEGRAM_TIMEOUT_SECONDS
        state = _Loop(
            pid=os.getpid(),
            loop=asyncio.new_event_loop(),
            request=_StatusRecordingRequest(
                connection_pool_size=_POOL_SIZE,
                read_timeout=timeout,
                write_timeout=timeout,
                connect_timeout=min(timeout, 5.0),
                pool_timeout=timeout,
            ),
            polling_request=HTTPXRequest(
                connection_pool_size=_POOL_SIZE,
                read_timeout=timeout + _POLLING_READ_MARGIN_SECONDS,
                connect_timeout=min(timeout, 5.0),
            ),
            bots={},
        )
        _local.state = state

    return state


# For a caller whose thread already runs an event loop (an async framework
# calling sync code): its loop cannot run another call, so the call runs on
# one of these threads, each with a loop of its own, and the caller waits.
_elsewhere = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bot-api")
P = ParamSpec("P")


def _off_a_running_loop(function: Callable[P, T]) -> Callable[P, T]:
    @wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return function(*args, **kwargs)

        return _elsewhere.submit(function, *args, **kwargs).result()

    return call


def _run(coroutine: Coroutine[Any, Any, T], *, timeout: float) -> T:
    state = _loop_state()
    # Past the bound the call is cancelled, which gives its pooled connection
    # back, and TimeoutError raised.
    return state.loop.run_until_complete(asyncio.wait_for(coroutine, timeout))


def _bot(token: str) -> _PtbBot:
    state = _loop_state()
    root = str(settings.TELEGRAM_API_URL)
    key = (root, token)
    bot = state.bots.get(key)
    if bot is None:
        bot = _PtbBot(
            token,
            base_url=f"{root}/bot",
            base_file_url=f"{root}/file/bot",
            request=state.request,
            get_updates_request=state.polling_request,
        )
        state.bots[key] = bot

    return bot


def _seconds(value: int | float | timedelta) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()

    return float(value)


def _translate(
    exc: ptb_error.TelegramError, *, http_status: int | None = None
) -> TelegramError:
    message = str(exc.message if hasattr(exc, "message") else exc)
    if isinstance(exc, ptb_error.RetryAfter):
        return TelegramRetryAfterError(message, retry_after=_seconds(exc.retry_after))
    if isinstance(exc, ptb_error.ChatMigrated):
        return TelegramChatMigratedError(message, new_chat_id=int(exc.new_chat_id))
    if isinstance(exc, ptb_error.InvalidToken):
        return TelegramUnauthorizedError(message, error_code=401)
    if isinstance(exc, ptb_error.Forbidden):
        return TelegramForbiddenError(message, error_code=403)
    if isinstance(exc, ptb_error.Conflict):
        return TelegramConflictError(message, error_code=409)
    if isinstance(exc, ptb_error.BadRequest):
        return TelegramBadRequestError(message, error_code=400)
    if isinstance(exc, ptb_error.EndPointNotFound):
        return TelegramBadRequestError(message, error_code=404)
    if isinstance(exc, ptb_error.TimedOut):
        return TelegramTimeoutError(message)
    if isinstance(exc, ptb_error.NetworkError):
        # Both mean "try again later": PTB reports a 5xx from the API as a
        # NetworkError too, which is when an HTTP status was recorded.
        return TelegramNetworkError(message, error_code=http_status)

    return TelegramError(message)


@_off_a_running_loop
def telegram_call(
    *, token: str, method: str, params: dict[str, Any] | None = None
) -> Any:
    """Call a Bot API method and return its ``result``.

    Raises a ``TelegramError`` subclass: ``TelegramRetryAfterError``,
    ``TelegramNetworkError`` or its ``TelegramTimeoutError`` (all
    retryable), ``TelegramForbiddenError``,
    ``TelegramBadRequestError``, ``TelegramChatMigratedError``,
    ``TelegramConflictError`` or ``TelegramUnauthorizedError``.
    """
    bot = _bot(token)
    timeout = float(settings.TELEGRAM_TIMEOUT_SECONDS)
    read_timeout = timeout
    if method == "getUpdates":
        read_timeout += float((params or {}).get("timeout", 0))

    async def call() -> Any:
        _http_status.set(None)
        # Every timeout explicit: python-telegram-bot reads None as "wait
        # forever", and a hung Bot API call must not hold a worker.
        try:
            return await bot.do_api_request(
                method,
                api_kwargs=dict(params or {}),
                read_timeout=read_timeout,
                write_timeout=timeout,
                connect_timeout=min(timeout, 5.0),
                pool_timeout=timeout,
            )
        except ptb_error.TelegramError as exc:
            # Translated here, where the answer's HTTP status is still known.
            raise _translate(exc, http_status=_http_status.get()) from None

    try:
        # The overall bound covers the phases together, plus a margin.
        return _run(call(), timeout=read_timeout + timeout + 1.0)
    except ptb_error.TelegramError as exc:
        raise _translate(exc) from None
    except TimeoutError:
        raise TelegramTimeoutError("The Bot API call did not finish in time.") from None


@_off_a_running_loop
def telegram_webhook_info_get(*, token: str, timeout_seconds: float) -> dict[str, Any]:
    """Return Telegram's ``getWebhookInfo`` for the token, within a short bound.

    For pages that show it live: ``timeout_seconds`` bounds the whole call,
    however long ``TELEGRAM_TIMEOUT_SECONDS`` is. Raises the TelegramError
    subclasses of ``telegram_call``.
    """
    bot = _bot(token)

    async def call() -> Any:
        _http_status.set(None)
        try:
            return await bot.do_api_request(
                "getWebhookInfo",
                read_timeout=timeout_seconds,
                write_timeout=timeout_seconds,
                connect_timeout=timeout_seconds,
                pool_timeout=timeout_seconds,
            )
        except ptb_error.TelegramError as exc:
            raise _translate(exc, http_status=_http_status.get()) from None

    try:
        result = _run(call(), timeout=timeout_seconds + 0.5)
    except ptb_error.TelegramError as exc:
        raise _translate(exc) from None
    except TimeoutError:
        raise TelegramTimeoutError("getWebhookInfo did not finish in time.") from None
    if not isinstance(result, dict):
        raise TelegramError("getWebhookInfo answered something other than an object.")

    return result
