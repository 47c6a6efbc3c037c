"""The runtime's Prometheus measurements: webhook, updates, executor, sends.

The metric objects live in ``botfactory.metrics``; this module decides what
each outcome of the runtime is called in their labels.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any

import psycopg
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse

from botfactory.errors import is_database_unavailable
from botfactory.metrics import (
    DUPLICATE_UPDATES,
    EXECUTOR_STEP_DURATION,
    SPEC_RELOADS,
    TELEGRAM_SENDS,
    UPDATES_RECEIVED,
    WEBHOOK_DURATION,
    WEBHOOK_REJECTED,
)
from bots.telegram import (
    TelegramBadRequestError,
    TelegramChatMigratedError,
    TelegramError,
    TelegramRetryAfterError,
    TelegramTimeoutError,
    telegram_call,
)

# The update types of the Bot API; any other key (a type added later, or a
# malformed update) is counted as "other", so the label's values stay few.
_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "message_reaction",
        "message_reaction_count",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
        "empty",
    }
)
# The runtime's own outcome names, as the metric spells them.
_OUTCOME_LABELS = {"dropped": "inactive"}
# The webhook's refusals by status; 405 is no delivery by Telegram at all.
_REJECTED_BY_STATUS = {
    400: "malformed",
    403: "forbidden",
    404: "unknown_bot",
    413: "too_large",
    415: "unsupported_media_type",
    503: "db_unavailable",
}


def update_type_label(kind: str) -> str:
    """Return the update type as the metrics label it: a Bot API type or "other"."""
    return kind if kind in _UPDATE_TYPES else "other"


def update_outcome_record(*, bot_id: int, kind: str, outcome: str) -> None:
    """Count one update the runtime has finished with (after its commit)."""
    label = _OUTCOME_LABELS.get(outcome, outcome)
    UPDATES_RECEIVED.labels(
        bot_id=str(bot_id), update_type=update_type_label(kind), outcome=label
    ).inc()
    if label == "duplicate":
        DUPLICATE_UPDATES.labels(bot_id=str(bot_id)).inc()


@contextmanager
def executor_step_timed(component: str) -> Iterator[None]:
    """Measure one step of the executor (or a SQL node's query) by component."""
    started = time.perf_counter()
    try:
        yield
    finally:
        EXECUTOR_STEP_DURATION.labels(component=component).observe(
            time.perf_counter() - started
        )


def webhook_observed(
    view: Callable[..., HttpResponse],
) -> Callable[..., HttpResponse]:
    """Time a webhook view and count its refusals by reason.

    A database that cannot be reached surfaces as an exception that the
    middleware turns into 503 ``db_unavailable``; it is counted on its way.
    """

    @wraps(view)
    def observed(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        started = time.perf_counter()
        try:
            response = view(request, *args, **kwargs)
        except (DatabaseError, psycopg.Error) as exc:
            if is_database_unavailable(exc):
                WEBHOOK_REJECTED.labels(reason="db_unavailable").inc()
            raise
        finally:
            WEBHOOK_DURATION.observe(time.perf_counter() - started)

        reason = _REJECTED_BY_STATUS.get(response.status_code)
        if reason is not None:
            WEBHOOK_REJECTED.labels(reason=reason).inc()

        return response

    return observed


def _send_result(
    exc: TelegramError,
    *,
    method: str,
    params: dict[str, Any],
    attempts: int,
    max_attempts: int,
) -> str:
    # These follow what the outbox does with the row after each error.
    if isinstance(exc, TelegramBadRequestError):
        if exc.is_not_modified:
            # The message already reads so: the row counts as sent.
            return "ok"
        if method == "editMessageText" and "chat_id" in params:
            # Unless the chat is gone, the new content is sent instead.
            return "failed" if exc.is_chat_gone else "retry"
        return "failed"
    if isinstance(exc, TelegramRetryAfterError | TelegramChatMigratedError):
        # A throttle costs no attempt; a migrated chat is sent to again.
        return "retry"
    if exc.retryable and attempts < max_attempts:
        return "retry"

    return "failed"


def telegram_error_code(exc: TelegramError) -> str:
    """Return the error's Bot API code as a label: "429", "timeout", "network"."""
    if isinstance(exc, TelegramTimeoutError):
        return "timeout"
    if exc.error_code is None:
        return "network"

    return str(exc.error_code)


def telegram_send_call(
    *,
    token: str,
    method: str,
    params: dict[str, Any],
    attempts: int,
    max_attempts: int,
) -> Any:
    """Make one outbox Bot API call and count its result; raise as telegram_call.

    The result is ``ok``, ``retry`` (the outbox will try again) or ``failed``
    (it will not, for this row), with the Bot API error code.
    """
    try:
        result = telegram_call(token=token, method=method, params=params)
    except TelegramError as exc:
        outcome = _send_result(
            exc,
            method=method,
            params=params,
            attempts=attempts,
            max_attempts=max_attempts,
        )
        code = "" if outcome == "ok" else telegram_error_code(exc)
        TELEGRAM_SENDS.labels(method=method, result=outcome, error_code=code).inc()
        raise

    TELEGRAM_SENDS.labels(method=method, result="ok", error_code="").inc()

    return result


def spec_reload_record() -> None:
    """Count one invalidation of a bot's cached spec and translations.

    Counted when the bumped revision commits, which is when every process
    starts reading afresh.
    """
    transaction.on_commit(SPEC_RELOADS.inc)
