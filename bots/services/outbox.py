"""The outbox: replies stored with the update, sent to Telegram afterwards.

Sending is at-least-once. A row is marked in flight (with a lease) before
the Bot API call and sent after it; a duplicate can only come from a crash
between Telegram accepting the message and that mark. Rows of one chat are
sent strictly in order: the oldest open row is the only one that can be
claimed.
"""

import html
import logging
import random
import re
import time
from datetime import timedelta
from functools import partial, update_wrapper
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from botfactory import rows
from bots.models import BlockedChat, Bot, Conversation, OutboundMessage
from bots.observability import telegram_send_call
from bots.services.outbox_wake import (
    ready_chat_pop,
    ready_chat_return,
    send_enqueue,
    send_mark_forget,
    sender_slot_free,
    sender_slot_hand_over,
    sender_slot_release,
    senders_wake,
)
from bots.services.send_limits import send_limits_admit, send_limits_pause
from bots.telegram import (
    TelegramBadRequestError,
    TelegramChatMigratedError,
    TelegramError,
    TelegramForbiddenError,
    TelegramRetryAfterError,
    TelegramUnauthorizedError,
)
from bots.updates import ParsedUpdate
from dsl import Action, AnswerCallback, EditMessage, SendMessage

logger = logging.getLogger(__name__)

Status = OutboundMessage.Status

# Telegram's limits count messages; a button's answer and a typing
# indicator post nothing to the chat, and a button waits for its answer. So
# they are neither rate limited nor held by a bot's retry_after pause.
_UNTHROTTLED_METHODS = frozenset({"answerCallbackQuery", "sendChatAction"})
_MAX_BACKOFF_SECONDS = 300
_CANT_PARSE = "can't parse entities"
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_DRAIN_BATCH = 50
# A sender task hands its slot to a fresh task after this long, so that no
# task runs past a pool's time limit.
_SENDER_SECONDS = 20.0
# How long a sender whose database failed waits before its slot is taken
# up again.
_SENDER_RETRY_SECONDS = 2.0
# How long a sender that has sent waits for the next ready chat before it
# gives its slot up: under a steady stream of updates the same senders keep
# sending, and no task is published per update. Short, as a waiting sender
# keeps a worker thread from other tasks.
_SENDER_LINGER_SECONDS = 0.5


def _send_params(
    *, action: SendMessage, parsed: ParsedUpdate, chat_id: int
) -> dict[str, Any]:
    params: dict[str, Any] = {"chat_id": chat_id, "text": action.text}
    if action.parse_mode:
        params["parse_mode"] = action.parse_mode
    if action.reply_markup:
        params["reply_markup"] = action.reply_markup
    if parsed.thread_id:
        params["message_thread_id"] = parsed.thread_id
    markup = action.reply_markup or {}
    # A selective force_reply reaches only the user whose message it answers.
    if (
        parsed.chat_type in ("group", "supergroup")
        and parsed.message_id
        and (markup.get("force_reply") or markup.get("keyboard"))
    ):
        params["reply_parameters"] = {
            "message_id": parsed.message_id,
            "allow_sending_without_reply": True,
        }

    return params


def _edit_params(*, action: EditMessage, chat_id: int) -> dict[str, Any]:
    params: dict[str, Any] = {"text": action.text}
    if action.inline_message_id:
        params["inline_message_id"] = action.inline_message_id
    else:
        params["chat_id"] = chat_id
        params["message_id"] = action.message_id
    if action.parse_mode:
        params["parse_mode"] = action.parse_mode
    if action.reply_markup:
        params["reply_markup"] = action.reply_markup

    return params


def _call_for(
    *, action: Action, parsed: ParsedUpdate, chat_id: int
) -> tuple[str, dict[str, Any]] | None:
    if isinstance(action, SendMessage):
        return "sendMessage", _send_params(
            action=action, parsed=parsed, chat_id=chat_id
        )
    if isinstance(action, EditMessage):
        return "editMessageText", _edit_params(action=action, chat_id=chat_id)
    if isinstance(action, AnswerCallback):
        params: dict[str, Any] = {"callback_query_id": action.callback_id}
        if action.text:
            params["text"] = action.text
        if action.show_alert:
            params["show_alert"] = True
        return "answerCallbackQuery", params

    logger.warning("No Bot API call for action %s.", type(action).__name__)
    return None


def outbox_messages_build(
    *,
    bot: Bot,
    conversation: Conversation,
    parsed: ParsedUpdate,
    actions: list[Action],
) -> list[OutboundMessage]:
    """Turn executor actions into unsaved outbox rows, in order."""
    # Replies to an inline message have no chat: queue them per user, so one
    # user's throttled answer never holds another's.
    chat_id = parsed.chat_id if parsed.chat_id is not None else (parsed.user_id or 0)
    messages = []
    for action in actions:
        call = _call_for(action=action, parsed=parsed, chat_id=chat_id)
        if call is None:
            continue
        method, params = call
        messages.append(
            OutboundMessage(
                bot=bot,
                conversation=conversation,
                chat_id=chat_id,
                update_id=parsed.update_id,
                method=method,
                payload=params,
            )
        )

    return messages


def outbox_messages_deliver_locally(
    *, bot: Bot, messages: list[OutboundMessage]
) -> None:
    """Mark unsaved rows delivered without Telegram, numbering them per chat.

    The terminal and browser chats number messages as Telegram would, so an
    LLM answer can edit the "thinking…" message it replaces. Raises nothing
    but the database's errors.
    """
    now = timezone.now()
    chat_ids = {message.chat_id for message in messages}
    last_ids = dict(
        OutboundMessage.objects.filter(bot=bot, chat_id__in=chat_ids)
        .values_list("chat_id")
        .annotate(top=Max("telegram_message_id"))
    )
    for message in messages:
        message.status = OutboundMessage.Status.SENT
        message.sent_at = now
        if message.method == "sendMessage":
            last_ids[message.chat_id] = (last_ids.get(message.chat_id) or 0) + 1
            message.telegram_message_id = last_ids[message.chat_id]


def outbox_schedule(*, bot_id: int, chat_ids: set[int]) -> None:
    """Have the chats' new rows sent once the transaction commits.

    A chat that a sender will reach anyway gets no task of its own (see
    ``bots.services.outbox_wake``). A broker failure after the commit is
    logged, not raised: the rows are durable and the periodic sweep sends
    them.
    """
    # Django names a failed robust hook by its __qualname__, which a bare
    # partial lacks: that AttributeError turned a broker outage into a 500.
    wake = update_wrapper(partial(senders_wake, bot_id, sorted(chat_ids)), senders_wake)
    transaction.on_commit(wake, robust=True)


def _claim_sql() -> str:
    table = rows.table(OutboundMessage)
    # The chat's oldest open row is locked and, unless it must still wait,
    # leased, in one statement: a row in flight under another worker's
    # lease, or one not yet due, leaves nothing to claim. Rows of one chat
    # go in order, so only the head can ever be claimed.
    return (
        f"UPDATE {table} SET status = %s, attempts = attempts + 1,"
        " lease_until = %s"
        " WHERE id = ("
        f"SELECT id FROM {table} WHERE bot_id = %s AND chat_id = %s"
        f" AND status IN (%s, %s) ORDER BY id LIMIT 1{rows.for_update()})"
        " AND (status = %s OR lease_until IS NULL OR lease_until <= %s)"
        " AND (next_attempt_at IS NULL OR next_attempt_at <= %s)"
        f" RETURNING {rows.columns(OutboundMessage)}"
    )


def _claim_head(*, bot_id: int, chat_id: int) -> OutboundMessage | None:
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    found = rows.row_fetch(
        OutboundMessage,
        _claim_sql(),
        [
            Status.IN_FLIGHT,
            lease,
            bot_id,
            chat_id,
            Status.PENDING,
            Status.IN_FLIGHT,
            Status.PENDING,
            now,
            now,
        ],
    )

    return found[0] if found is not None else None


def _finish(message: OutboundMessage, *, status: str, **fields: Any) -> bool:
    """Record the outcome unless another worker took the row over meanwhile."""
    updated = rows.rows_update(
        OutboundMessage,
        {"status": status, "lease_until": None, **fields},
        "id = %s AND status = %s AND attempts = %s",
        [message.pk, Status.IN_FLIGHT, message.attempts],
    )

    return updated == 1


def _defer(
    message: OutboundMessage, *, delay: float, error: str, is_failure: bool = True
) -> None:
    """Put the row back to wait; a throttle (not a failure) costs no attempt."""
    # TODO: with tasks run in-process (the embedded default) nothing waits out
    # the delay; a deferred row goes with the webhook's next sweep instead.
    when = timezone.now() + timedelta(seconds=delay)
    attempts = message.attempts if is_failure else message.attempts - 1
    if _finish(
        message,
        status=Status.PENDING,
        next_attempt_at=when,
        last_error=error[:500],
        attempts=attempts,
    ):
        send_enqueue(message.bot_id, message.chat_id, countdown=delay)


def _retry_or_fail(message: OutboundMessage, *, error: str) -> bool:
    """Retry the row later, or fail it after the last attempt.

    Return True when it failed for good, so the chat's next row may go.
    """
    if message.attempts >= settings.OUTBOX_MAX_ATTEMPTS:
        _finish(message, status=Status.FAILED, last_error=error[:500])
        logger.warning(
            "Outbound message %s failed after %s attempts.",
            message.pk,
            message.attempts,
        )
        return True

    backoff = min(2**message.attempts, _MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.0)
    logger.info("Outbound message %s will be retried in %.1f s.", message.pk, backoff)
    _defer(message, delay=backoff, error=error)

    return False


def _fail_chat(message: OutboundMessage, *, reason: str) -> None:
    _finish(message, status=Status.FAILED, last_error=reason[:500])
    BlockedChat.objects.get_or_create(
        bot_id=message.bot_id,
        chat_id=message.chat_id,
        defaults={"reason": reason[:200]},
    )
    OutboundMessage.objects.filter(
        bot_id=message.bot_id, chat_id=message.chat_id, status=Status.PENDING
    ).update(status=Status.FAILED, last_error="chat unreachable")
    logger.warning(
        "Chat of bot %s is unreachable; its outbox was closed.", message.bot_id
    )


def _deliver(*, bot: Bot, message: OutboundMessage) -> bool:
    """Make the call for one claimed row; return False to stop draining the chat."""
    if bot.is_demo:
        _finish(message, status=Status.SENT, sent_at=timezone.now())
        return True

    # The duplicate window: from Telegram accepting the message until
    # _finish below marks the row sent. A process killed inside it leaves the
    # row in flight; once its lease is over the sweep sends it again, and the
    # chat shows the message twice. Killed before Telegram answers, the call
    # never completed and the resend is the only copy. A call that times out
    # after Telegram accepted it is retried, so it duplicates the same way.
    try:
        result = telegram_send_call(
            token=bot.token,
            method=message.method,
            params=message.payload,
            attempts=message.attempts,
            max_attempts=settings.OUTBOX_MAX_ATTEMPTS,
        )
    except TelegramRetryAfterError as exc:
        logger.info(
            "Telegram asked bot %s to retry after %s s.", bot.pk, exc.retry_after
        )
        if message.method not in _UNTHROTTLED_METHODS:
            # Flood control is the bot's, not the row's: every process holds
            # the bot's messages until it ends.
            send_limits_pause(bot_id=bot.pk, seconds=exc.retry_after)
        _defer(message, delay=exc.retry_after, error=exc.description, is_failure=False)
        return False
    except TelegramForbiddenError as exc:
        _fail_chat(message, reason=exc.description)
        return False
    except TelegramChatMigratedError as exc:
        _migrate(message, new_chat_id=exc.new_chat_id)
        return False
    except TelegramBadRequestError as exc:
        return _bad_request(bot=bot, message=message, error=exc)
    except TelegramUnauthorizedError as exc:
        logger.error("Telegram rejected the token of bot %s.", bot.pk)
        _finish(message, status=Status.FAILED, last_error=exc.description[:500])
        return True
    except TelegramError as exc:
        if not exc.retryable:
            _finish(message, status=Status.FAILED, last_error=exc.description[:500])
            return True
        logger.warning("Bot API call %s failed: %s", message.method, exc.description)
        return _retry_or_fail(message, error=exc.description)

    message_id = result.get("message_id") if isinstance(result, dict) else None
    _finish(
        message,
        status=Status.SENT,
        sent_at=timezone.now(),
        telegram_message_id=message_id,
    )

    return True


def _bad_request(
    *, bot: Bot, message: OutboundMessage, error: TelegramBadRequestError
) -> bool:
    if error.is_not_modified:
        _finish(message, status=Status.SENT, sent_at=timezone.now())
        return True
    if error.is_chat_gone:
        _fail_chat(message, reason=error.description)
        return False
    if _CANT_PARSE in error.description.lower() and message.payload.get("parse_mode"):
        # Markup Telegram refuses would fail every time: it goes once more
        # as the plain text the user would have read.
        logger.warning("Bot API refused the markup of outbound message %s.", message.pk)
        payload = dict(message.payload)
        parse_mode = payload.pop("parse_mode")
        payload["text"] = _plain_text(str(payload.get("text", "")), parse_mode)
        payload.pop("entities", None)
        return _finish(message, status=Status.PENDING, payload=payload)
    if message.method == "editMessageText" and "chat_id" in message.payload:
        # The message to edit is gone or too old: send the new content instead.
        payload = {
            key: value
            for key, value in message.payload.items()
            if key in ("chat_id", "text", "parse_mode", "reply_markup")
        }
        return bool(
            _finish(
                message, status=Status.PENDING, method="sendMessage", payload=payload
            )
        )

    logger.warning("Bot API refused %s: %s", message.method, error.description)
    _finish(message, status=Status.FAILED, last_error=error.description[:500])

    return True


def _plain_text(text: str, parse_mode: str) -> str:
    if parse_mode == "HTML":
        return html.unescape(_TAG.sub("", text))
    if parse_mode.startswith("Markdown"):
        return re.sub(r"\\(.)", r"\1", text)

    return text


def _migrate(message: OutboundMessage, *, new_chat_id: int) -> None:
    rows = OutboundMessage.objects.filter(
        bot_id=message.bot_id,
        chat_id=message.chat_id,
        status__in=[Status.PENDING, Status.IN_FLIGHT],
    )
    for row in rows:
        payload = dict(row.payload)
        if "chat_id" in payload:
            payload["chat_id"] = new_chat_id
        OutboundMessage.objects.filter(pk=row.pk).update(
            chat_id=new_chat_id,
            payload=payload,
            status=Status.PENDING,
            lease_until=None,
        )
    _conversations_migrate(
        bot_id=message.bot_id, old_chat_id=message.chat_id, new_chat_id=new_chat_id
    )
    logger.info("A group of bot %s migrated to a supergroup.", message.bot_id)
    send_enqueue(message.bot_id, new_chat_id)


def _conversations_migrate(*, bot_id: int, old_chat_id: int, new_chat_id: int) -> None:
    # Wizards in progress follow the group to its new supergroup id, unless
    # the user has already started a conversation there.
    for conversation in Conversation.objects.filter(bot_id=bot_id, chat_id=old_chat_id):
        try:
            with transaction.atomic():
                Conversation.objects.filter(pk=conversation.pk).update(
                    chat_id=new_chat_id
                )
        except IntegrityError:
            continue


def _blocked_chat_close(*, bot_id: int, chat_id: int) -> None:
    # A chat that blocked the bot gets nothing until it lets the bot back in
    # (my_chat_member); a row in flight under lease is left to its worker.
    closed = (
        OutboundMessage.objects.filter(bot_id=bot_id, chat_id=chat_id)
        .filter(
            Q(status=Status.PENDING)
            | Q(status=Status.IN_FLIGHT, lease_until__lt=timezone.now())
        )
        .update(status=Status.FAILED, last_error="chat unreachable", lease_until=None)
    )
    if closed:
        logger.info("Closed %s outbound messages to a blocked chat.", closed)


def outbox_chat_drain(*, bot_id: int, chat_id: int) -> int:
    """Send the chat's open outbox rows in order; return how many were sent.

    Stops at the first row that must wait (rate limit, retry_after, backoff,
    or another worker holding it); that wait is scheduled. A chat that
    blocked the bot gets nothing: its open rows are failed unsent.
    """
    found = rows.row_fetch(
        Bot,
        f"SELECT {rows.columns(Bot)}, EXISTS (SELECT 1 FROM"
        f" {rows.table(BlockedChat)} WHERE bot_id = %s AND chat_id = %s)"
        f" FROM {rows.table(Bot)} WHERE id = %s",
        [bot_id, chat_id, bot_id],
    )
    if found is None:
        return 0

    send_mark_forget(bot_id, chat_id)
    bot, (blocked,) = found
    if blocked:
        _blocked_chat_close(bot_id=bot_id, chat_id=chat_id)
        return 0

    sent = 0
    for _ in range(_DRAIN_BATCH):
        message = _claim_head(bot_id=bot_id, chat_id=chat_id)
        if message is None:
            return sent
        if not bot.is_demo and message.method not in _UNTHROTTLED_METHODS:
            delay = send_limits_admit(bot_id=bot_id, chat_id=chat_id)
            if delay > 0:
                _defer(message, delay=delay, error="rate limited", is_failure=False)
                return sent
        if not _deliver(bot=bot, message=message):
            return sent
        sent += 1

    send_enqueue(bot_id, chat_id)
    return sent


def outbox_ready_drain(*, slot: int) -> int:
    """Drain ready chats for the sender holding ``slot``; return messages sent.

    Ends when no chat is ready (having waited a moment for one, if it sent
    anything), or hands the slot to a new task after a while. A Redis
    failure ends it, freeing the slot (or leaving it to expire), and the
    sweep sends what the ready chats held.
    """
    started = time.monotonic()
    sent = 0
    drained = False
    while True:
        try:
            ready = ready_chat_pop(slot)
            if ready is None and drained:
                ready = ready_chat_pop(slot, wait=_SENDER_LINGER_SECONDS)
                drained = False
            if ready is None and not sender_slot_release(slot):
                return sent
        except redis.RedisError:
            logger.warning("Redis failed under sender %s; the sweep takes over.", slot)
            # If Redis is back already, the next wake starts a sender at once.
            sender_slot_free(slot)
            return sent
        if ready is None:
            continue
        bot_id, chat_id = ready
        try:
            sent += outbox_chat_drain(bot_id=bot_id, chat_id=chat_id)
            drained = True
        except DatabaseError:
            # No connection to be had (the pool busy, the server away): the
            # chat goes back, and a new task takes the slot up shortly.
            logger.warning(
                "The database failed under sender %s; it tries again in %s s.",
                slot,
                _SENDER_RETRY_SECONDS,
            )
            ready_chat_return(bot_id, chat_id)
            sender_slot_hand_over(slot, countdown=_SENDER_RETRY_SECONDS)
            return sent
        if time.monotonic() - started > _SENDER_SECONDS:
            sender_slot_hand_over(slot)
            return sent


def outbox_sweep(*, older_than_seconds: float = 10.0) -> int:
    """Re-enqueue chats whose rows are due and were left pending or stuck in flight.

    Returns the number of chats enqueued.
    """
    now = timezone.now()
    due = OutboundMessage.objects.filter(
        status=Status.PENDING,
        created_at__lte=now - timedelta(seconds=older_than_seconds),
    ).exclude(next_attempt_at__gt=now)
    stuck = OutboundMessage.objects.filter(status=Status.IN_FLIGHT, lease_until__lt=now)
    chats = set(due.values_list("bot_id", "chat_id").distinct()) | set(
        stuck.values_list("bot_id", "chat_id").distinct()
    )
    for bot_id, chat_id in sorted(chats):
        send_enqueue(bot_id, chat_id)

    return len(chats)


_last_sweep = 0.0


def outbox_sweep_if_due() -> int:
    """Sweep when the interval has passed since this process last swept.

    The embedded default has no beat; the webhook calls this so replies put
    off by a retry_after or an error still go out. Returns chats enqueued.
    """
    global _last_sweep
    now = time.monotonic()
    if now - _last_sweep < settings.OUTBOX_SWEEP_INTERVAL_SECONDS:
        return 0

    _last_sweep = now
    return outbox_sweep()
