"""Export and delete what the runtime stores about one Telegram user of a bot.

A user's rows are: the conversations keyed by their private chat (whose id
is their user id) or by their user id (their own row in a group or topic,
callbacks from inline messages); the outbound messages to their private
chat or of those conversations; the LLM requests of those conversations;
the dedup records of the updates those rows came from; the blocked-chat
entry of their private chat. Rows of a group that belong to the group
rather than to one member (its blocked-chat entry, messages sent to the
whole group outside any conversation) are not the user's.

The bot's own tables are covered only when its live spec declares
``privacy`` statements; they run as the bot's role in its schema, the
delete in write mode.
"""

import logging
import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from botfactory.errors import ApplicationError
from bots.models import (
    BlockedChat,
    Bot,
    Conversation,
    LlmRequest,
    OutboundMessage,
    ProcessedUpdate,
)
from bots.selectors import spec_get
from bots.sql import sql_applied_forget, sql_run
from dsl import Privacy
from dsl.spec import PRIVACY_PARAM

logger = logging.getLogger(__name__)

# Telegram user ids are positive and fit 52 bits; stored ids are 64-bit.
_USER_ID_MAX = 2**63 - 1
# Within the cap of a node's statement: the request waits for it.
_PRIVACY_TIMEOUT_MS = 10_000
_EXPORT_NODE = "privacy.export"
_DELETE_NODE = "privacy.delete"
NOT_COVERED = (
    "The bot's spec declares no privacy statement for this, so the bot's own "
    "tables are not covered."
)


class UserIdInvalidError(ApplicationError):
    def __init__(self) -> None:
        super().__init__(
            "The Telegram user id must be a positive integer.",
            code="user_id_invalid",
        )


class BotDataError(ApplicationError):
    """The bot's own privacy statement failed; nothing was deleted."""

    status_code = 409

    def __init__(self, *, sql_error: str) -> None:
        super().__init__(
            "The bot's own privacy statement failed.",
            code="bot_data_failed",
            extra={"sql_error": sql_error},
        )


@dataclass(frozen=True)
class UserRows:
    conversations: QuerySet[Conversation]
    outbound_messages: QuerySet[OutboundMessage]
    llm_requests: QuerySet[LlmRequest]
    processed_updates: QuerySet[ProcessedUpdate]
    blocked_chats: QuerySet[BlockedChat]


def telegram_user_id_parse(value: Any) -> int:
    """Return a Telegram user id from text or a number.

    Raises UserIdInvalidError for anything but a positive 64-bit integer.
    """
    text = str(value).strip()
    if not text.isascii() or not text.isdigit():
        raise UserIdInvalidError()
    number = int(text)
    if not 0 < number <= _USER_ID_MAX:
        raise UserIdInvalidError()

    return number


def _user_rows(*, bot: Bot, user_id: int, lock: bool = False) -> UserRows:
    conversations = Conversation.objects.filter(bot=bot).filter(
        Q(user_id=user_id) | Q(chat_id=user_id, thread_id=0, user_id=0)
    )
    # Locked first, so that an update of these conversations processed at
    # the same moment either commits before or waits until the end.
    keys = conversations.select_for_update() if lock else conversations
    conversation_ids = list(keys.values_list("pk", flat=True))
    outbound = OutboundMessage.objects.filter(bot=bot).filter(
        Q(chat_id=user_id) | Q(conversation_id__in=conversation_ids)
    )
    llm = LlmRequest.objects.filter(bot=bot, conversation_id__in=conversation_ids)
    last_ids = conversations.exclude(last_update_id=None).values_list(
        "last_update_id", flat=True
    )
    update_ids: set[int] = {
        update_id
        for update_id in (
            *last_ids,
            *outbound.values_list("update_id", flat=True),
            *llm.values_list("update_id", flat=True),
        )
        if update_id is not None
    }

    return UserRows(
        conversations=Conversation.objects.filter(pk__in=conversation_ids),
        outbound_messages=outbound,
        llm_requests=llm,
        processed_updates=ProcessedUpdate.objects.filter(
            bot=bot, update_id__in=update_ids
        ),
        blocked_chats=BlockedChat.objects.filter(bot=bot, chat_id=user_id),
    )


def _delete(queryset: QuerySet[Any]) -> int:
    """Delete and count the rows of the model itself, not those it cascades to."""
    _total, per_model = queryset.delete()

    return per_model.get(queryset.model._meta.label, 0)


def _privacy(bot: Bot) -> Privacy | None:
    if bot.live_version is None:
        return None

    return spec_get(version=bot.live_version).privacy


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _runtime_export(rows: UserRows) -> dict[str, list[dict[str, Any]]]:
    conversations = rows.conversations.select_related("spec_version").order_by("pk")
    return {
        "conversations": [
            {
                "chat_id": c.chat_id,
                "thread_id": c.thread_id,
                "user_id": c.user_id,
                "spec_version": c.spec_version.number if c.spec_version else None,
                "state": c.state,
                "locale": c.locale,
                "last_update_id": c.last_update_id,
                "created_at": _time(c.created_at),
                "updated_at": _time(c.updated_at),
            }
            for c in conversations
        ],
        "processed_updates": [
            {
                "update_id": u.update_id,
                "outcome": u.outcome,
                "created_at": _time(u.created_at),
            }
            for u in rows.processed_updates.order_by("update_id")
        ],
        "outbound_messages": [
            {
                "chat_id": m.chat_id,
                "update_id": m.update_id,
                "method": m.method,
                "payload": m.payload,
                "status": m.status,
                "telegram_message_id": m.telegram_message_id,
                "created_at": _time(m.created_at),
                "sent_at": _time(m.sent_at),
            }
            for m in rows.outbound_messages.order_by("pk")
        ],
        "llm_requests": [
            {
                "update_id": r.update_id,
                "node_id": r.node_id,
                "status": r.status,
                "request": r.request,
                "answer": r.answer,
                "created_at": _time(r.created_at),
                "finished_at": _time(r.finished_at),
            }
            for r in rows.llm_requests.order_by("pk")
        ],
        "blocked_chats": [
            {
                "chat_id": b.chat_id,
                "reason": b.reason,
                "created_at": _time(b.created_at),
            }
            for b in rows.blocked_chats.order_by("pk")
        ],
    }


def _bot_sql(
    *, bot: Bot, statement: str, user_id: int, write: bool
) -> tuple[list[dict[str, Any]], bool]:
    node_id = _DELETE_NODE if write else _EXPORT_NODE
    # A write is recorded under its update id; a fresh negative one never
    # meets a Telegram update (they are positive) nor an earlier request.
    update_id = -(secrets.randbits(62) + 1)
    outcome = sql_run(
        bot=bot,
        node_id=node_id,
        statement=statement,
        params={PRIVACY_PARAM: user_id},
        mode="write" if write else "read",
        timeout_ms=_PRIVACY_TIMEOUT_MS,
        max_rows=settings.SQL_ROW_CAP,
        update_id=update_id,
    )
    if outcome.error_code is not None:
        raise BotDataError(sql_error=outcome.error_code)
    if write:
        # The record would keep a copy of what the delete returned.
        sql_applied_forget(bot=bot, update_id=update_id, node_id=node_id)

    return outcome.rows, outcome.truncated


def user_data_export(*, bot: Bot, telegram_user_id: int) -> dict[str, Any]:
    """Return as JSON everything stored about one Telegram user of the bot.

    An unknown user gets empty lists. The bot's own rows are capped at
    ``SQL_ROW_CAP`` (``truncated`` says so). Raises BotDataError when the
    bot's own export statement fails.
    """
    privacy = _privacy(bot)
    bot_data: dict[str, Any] = {"covered": False, "detail": NOT_COVERED}
    if privacy is not None and privacy.export is not None:
        rows, truncated = _bot_sql(
            bot=bot, statement=privacy.export, user_id=telegram_user_id, write=False
        )
        bot_data = {"covered": True, "rows": rows, "truncated": truncated}

    with transaction.atomic():
        runtime = _runtime_export(_user_rows(bot=bot, user_id=telegram_user_id))

    return {
        "bot_id": bot.pk,
        "telegram_user_id": telegram_user_id,
        **runtime,
        "bot_data": bot_data,
    }


def user_data_delete(*, bot: Bot, telegram_user_id: int) -> dict[str, Any]:
    """Delete everything stored about one Telegram user of the bot; count it.

    The bot's own rows go first, through its ``privacy.delete`` statement
    (the rows it returns are counted, up to ``SQL_ROW_CAP``): when that
    fails, BotDataError is raised and nothing is deleted. The runtime's
    rows then go in one transaction with the user's conversations locked.
    Safe to re-run.
    """
    privacy = _privacy(bot)
    bot_data: dict[str, Any] = {"covered": False, "detail": NOT_COVERED}
    if privacy is not None and privacy.delete is not None:
        rows, truncated = _bot_sql(
            bot=bot, statement=privacy.delete, user_id=telegram_user_id, write=True
        )
        bot_data = {"covered": True, "deleted": len(rows), "truncated": truncated}

    with transaction.atomic():
        user_rows = _user_rows(bot=bot, user_id=telegram_user_id, lock=True)
        # Rows that point at others go first: LLM requests at outbound
        # messages and conversations, outbound messages at conversations.
        counts = {
            "conversations": 0,
            "processed_updates": _delete(user_rows.processed_updates),
            "outbound_messages": 0,
            "llm_requests": _delete(user_rows.llm_requests),
            "blocked_chats": _delete(user_rows.blocked_chats),
        }
        counts["outbound_messages"] = _delete(user_rows.outbound_messages)
        counts["conversations"] = _delete(user_rows.conversations)
    logger.info("Deleted a user's data of bot %s.", bot.pk, extra={"deleted": counts})

    return {
        "bot_id": bot.pk,
        "telegram_user_id": telegram_user_id,
        "deleted": counts,
        "bot_data": bot_data,
    }
