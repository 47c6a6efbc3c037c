"""Turn a Telegram update into a conversation key and a dsl event.

Only the parts the runtime acts on are read; everything else in an update
is tolerated, because Telegram adds fields and update types over time.
"""

import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from dsl import (
    CallbackEvent,
    CommandEvent,
    ContactEvent,
    Event,
    TextEvent,
    UnsupportedEvent,
)

logger = logging.getLogger(__name__)

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Telegram limits deep-link payloads to 64 characters.
DEEP_LINK_MAX_LENGTH = 64
_COMMAND_RE = re.compile(
    r"^/([A-Za-z0-9_]{1,32})(?:@([A-Za-z0-9_]{3,64}))?(?:\s+(.*))?$", re.S
)
_CONTENT_KINDS = (
    "sticker",
    "photo",
    "video",
    "video_note",
    "animation",
    "voice",
    "audio",
    "document",
    "location",
    "venue",
    "poll",
    "dice",
    "game",
    "story",
    "invoice",
    "paid_media",
)
_GROUP_TYPES = {"group", "supergroup"}


@dataclass(frozen=True)
class ConversationKey:
    chat_id: int
    thread_id: int
    user_id: int


@dataclass(frozen=True)
class ParsedUpdate:
    update_id: int
    kind: str
    event: Event | None = None
    key: ConversationKey | None = None
    chat_id: int | None = None
    chat_type: str | None = None
    thread_id: int | None = None
    message_id: int | None = None
    user_id: int | None = None
    user_first_name: str | None = None
    language_code: str | None = None
    ignore_reason: str | None = None
    member_status: str | None = None


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_int(value: Any) -> int | None:
    # Ids are stored in 64-bit columns; anything wider is not a Telegram id.
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if not _INT64_MIN <= value <= _INT64_MAX:
        return None

    return value


def _clean_text(text: str) -> str:
    # PostgreSQL stores neither NUL nor lone surrogates (valid in JSON as
    # "\u0000" and "\ud800"); drop the one and replace the others.
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")

    return text


def _as_str(value: Any) -> str | None:
    return _clean_text(value) if isinstance(value, str) else None


def _kind(update: dict[str, Any]) -> str:
    for key, value in update.items():
        if key != "update_id" and value is not None:
            return str(key)

    return "empty"


def _conversation_key(
    *,
    chat_id: int | None,
    chat_type: str | None,
    thread_id: int | None,
    user_id: int | None,
) -> ConversationKey | None:
    if chat_id is None:
        return ConversationKey(0, 0, user_id) if user_id is not None else None
    if chat_type in _GROUP_TYPES:
        return ConversationKey(chat_id, thread_id or 0, user_id or 0)

    return ConversationKey(chat_id, 0, 0)


def _command(text: str, bot_username: str | None) -> CommandEvent | bool | None:
    """Return the command event, None if not a command, False if for another bot."""
    match = _COMMAND_RE.match(text.strip())
    if match is None:
        return None

    name, addressee, payload = match.groups()
    if addressee and bot_username and addressee.lower() != bot_username.lower():
        return False
    payload = (payload or "").strip() or None
    if payload is not None and name.lower() == "start":
        payload = payload[:DEEP_LINK_MAX_LENGTH]

    return CommandEvent(command=name.lower(), payload=payload)


def _message_event(
    message: dict[str, Any], bot_username: str | None
) -> tuple[Event | None, str | None]:
    text = _as_str(message.get("text"))
    if text is not None:
        if text.startswith("/"):
            command = _command(text, bot_username)
            if command is False:
                return None, "command for another bot"
            if isinstance(command, CommandEvent):
                return command, None
        return TextEvent(text=text), None

    contact = _as_dict(message.get("contact"))
    if contact:
        return ContactEvent(
            phone_number=_as_str(contact.get("phone_number")) or "",
            contact_user_id=_as_int(contact.get("user_id")),
        ), None
    for kind in _CONTENT_KINDS:
        if message.get(kind) is not None:
            return UnsupportedEvent(kind=kind), None

    return None, "service message"


def _from_message(
    update_id: int, kind: str, message: dict[str, Any], bot_username: str | None
) -> ParsedUpdate:
    chat = _as_dict(message.get("chat"))
    sender = _as_dict(message.get("from"))
    chat_id = _as_int(chat.get("id"))
    chat_type = _as_str(chat.get("type"))
    thread_id = (
        _as_int(message.get("message_thread_id"))
        if message.get("is_topic_message")
        else None
    )
    user_id = _as_int(sender.get("id"))
    base = ParsedUpdate(
        update_id=update_id,
        kind=kind,
        chat_id=chat_id,
        chat_type=chat_type,
        thread_id=thread_id,
        message_id=_as_int(message.get("message_id")),
        user_id=user_id,
        user_first_name=_as_str(sender.get("first_name")),
        language_code=_as_str(sender.get("language_code")),
    )
    if chat_id is None:
        return replace(base, ignore_reason="message without a chat")
    if sender.get("is_bot") is True or user_id is None:
        return replace(base, ignore_reason="message not from a user")

    event, reason = _message_event(message, bot_username)
    if event is None:
        return replace(base, ignore_reason=reason)
    key = _conversation_key(
        chat_id=chat_id, chat_type=chat_type, thread_id=thread_id, user_id=user_id
    )

    return replace(base, event=event, key=key)


def _from_callback(update_id: int, query: dict[str, Any]) -> ParsedUpdate:
    sender = _as_dict(query.get("from"))
    message = _as_dict(query.get("message"))
    chat = _as_dict(message.get("chat"))
    chat_id = _as_int(chat.get("id"))
    chat_type = _as_str(chat.get("type"))
    thread_id = (
        _as_int(message.get("message_thread_id"))
        if message.get("is_topic_message")
        else None
    )
    user_id = _as_int(sender.get("id"))
    callback_id = query.get("id")
    data = query.get("data")
    inline_message_id = query.get("inline_message_id")
    base = ParsedUpdate(
        update_id=update_id,
        kind="callback_query",
        chat_id=chat_id,
        chat_type=chat_type if chat_id is not None else None,
        thread_id=thread_id,
        message_id=_as_int(message.get("message_id")),
        user_id=user_id,
        user_first_name=_as_str(sender.get("first_name")),
        language_code=_as_str(sender.get("language_code")),
    )
    if not isinstance(callback_id, str) or user_id is None:
        return replace(base, ignore_reason="callback without id or sender")

    event = CallbackEvent(
        callback_id=callback_id,
        data=_as_str(data) or "",
        message_id=base.message_id,
        inline_message_id=_as_str(inline_message_id),
    )
    key = _conversation_key(
        chat_id=chat_id, chat_type=chat_type, thread_id=thread_id, user_id=user_id
    )

    return replace(base, event=event, key=key)


def _from_member(update_id: int, member: dict[str, Any]) -> ParsedUpdate:
    chat = _as_dict(member.get("chat"))
    status = _as_dict(member.get("new_chat_member")).get("status")

    return ParsedUpdate(
        update_id=update_id,
        kind="my_chat_member",
        chat_id=_as_int(chat.get("id")),
        chat_type=_as_str(chat.get("type")),
        member_status=status if isinstance(status, str) else None,
        ignore_reason="membership change",
    )


def update_parse(update: dict[str, Any], *, bot_username: str | None) -> ParsedUpdate:
    """Read the parts of an update the runtime acts on; never raise.

    The envelope (an integer ``update_id``) is checked by the webhook before.
    """
    update_id = int(update["update_id"])
    kind = _kind(update)
    if kind in ("message", "business_message"):
        return _from_message(update_id, kind, _as_dict(update.get(kind)), bot_username)
    if kind == "callback_query":
        return _from_callback(update_id, _as_dict(update.get(kind)))
    if kind == "my_chat_member":
        return _from_member(update_id, _as_dict(update.get(kind)))

    return ParsedUpdate(
        update_id=update_id, kind=kind, ignore_reason="update type not handled"
    )
