"""Talk to a bot without Telegram, through the same service as the webhook.

Used by the ``chat`` command and the studio's "Try it" page. Local updates
carry negative update ids, which Telegram never uses, so they can never
shadow a real update; their replies are stored as delivered and never
reach Telegram.
"""

import html
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q

from bots.models import (
    Bot,
    Conversation,
    LlmRequest,
    OutboundMessage,
    ProcessedUpdate,
)
from bots.services.updates import update_process

LOCAL_USER_ID = 1
# The number a shared contact carries; any well-formed one would do.
LOCAL_PHONE_NUMBER = "+380500000001"
_TAG_RE = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Button:
    label: str
    callback_data: str | None = None
    request_contact: bool = False
    url: str | None = None
    # The keyboard row the button is on, from 0.
    row: int = 0


@dataclass(frozen=True)
class Reply:
    kind: str  # "message", "edit" or "notice"
    text: str
    message_id: int | None = None
    buttons: tuple[Button, ...] = ()
    # Written after the update by an LLM node's answer, not by the update.
    later: bool = False


def _plain(text: str, parse_mode: str | None) -> str:
    if parse_mode == "HTML":
        return html.unescape(_TAG_RE.sub("", text))
    if parse_mode == "MarkdownV2":
        return re.sub(r"\\(.)", r"\1", text)

    return text


def _buttons(markup: dict[str, Any] | None) -> tuple[Button, ...]:
    if not markup:
        return ()

    buttons = []
    for index, row in enumerate(markup.get("inline_keyboard") or []):
        for item in row:
            buttons.append(
                Button(
                    label=str(item.get("text", "")),
                    callback_data=item.get("callback_data"),
                    url=item.get("url"),
                    row=index,
                )
            )
    for index, row in enumerate(markup.get("keyboard") or []):
        for item in row:
            entry = item if isinstance(item, dict) else {"text": str(item)}
            buttons.append(
                Button(
                    label=str(entry.get("text", "")),
                    request_contact=bool(entry.get("request_contact")),
                    row=index,
                )
            )

    return tuple(buttons)


def _reply(message: OutboundMessage, *, later: bool = False) -> Reply | None:
    payload = message.payload
    if message.method == "sendMessage":
        return Reply(
            kind="message",
            text=_plain(payload.get("text", ""), payload.get("parse_mode")),
            message_id=message.telegram_message_id,
            buttons=_buttons(payload.get("reply_markup")),
            later=later,
        )
    if message.method == "editMessageText":
        return Reply(
            kind="edit",
            text=_plain(payload.get("text", ""), payload.get("parse_mode")),
            message_id=payload.get("message_id"),
            buttons=_buttons(payload.get("reply_markup")),
            later=later,
        )
    if message.method == "answerCallbackQuery" and payload.get("text"):
        return Reply(kind="notice", text=payload["text"], later=later)

    return None


@dataclass
class LocalChat:
    """One terminal or browser user talking to a bot in a private chat."""

    bot: Bot
    locale: str | None = None
    user_id: int = LOCAL_USER_ID
    first_name: str = "Local"
    keyboard: tuple[Button, ...] = field(default=())
    keyboard_message_id: int | None = None

    def _next_update_id(self) -> int:
        # Random rather than counted down: two chats at once never take the
        # same id, nor one a reset has freed (the bot's applied-write
        # records would take it for a re-delivery).
        return -(secrets.randbits(62) + 1)

    def _sender(self) -> dict[str, Any]:
        sender: dict[str, Any] = {
            "id": self.user_id,
            "is_bot": False,
            "first_name": self.first_name,
        }
        if self.locale:
            sender["language_code"] = self.locale

        return sender

    def _process(self, body: dict[str, Any]) -> list[Reply]:
        update = {"update_id": self._next_update_id(), **body}
        result = update_process(bot=self.bot, update=update, local=True)
        # An LLM node's answer is written by a task after the update (in
        # process here), under the same update id.
        seen = {message.pk for message in result.messages}
        later = (
            OutboundMessage.objects.filter(
                bot=self.bot, update_id=update["update_id"], chat_id=self.user_id
            )
            .exclude(pk__in=seen)
            .order_by("id")
        )
        replies = [
            reply
            for message in result.messages
            if (reply := _reply(message)) is not None
        ]
        replies += [
            reply for message in later if (reply := _reply(message, later=True))
        ]
        for reply in replies:
            if reply.kind in ("message", "edit") and reply.buttons:
                self.keyboard = reply.buttons
                self.keyboard_message_id = reply.message_id
            elif reply.kind == "message":
                self.keyboard = ()

        return replies

    def _message(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "message": {
                "message_id": 0,
                "date": 0,
                "chat": {"id": self.user_id, "type": "private"},
                "from": self._sender(),
                **extra,
            }
        }

    def send_text(self, text: str) -> list[Reply]:
        """Send a text (or a command) as the user."""
        return self._process(self._message({"text": text}))

    def press(self, number: int) -> list[Reply]:
        """Press button ``number`` (from 1) of the last keyboard.

        Raises IndexError when there is no such button.
        """
        if not 1 <= number <= len(self.keyboard):
            raise IndexError(f"There is no button {number}.")

        button = self.keyboard[number - 1]
        return self._press(button, self.keyboard_message_id or 0)

    def _press(self, button: Button, message_id: int) -> list[Reply]:
        if button.request_contact:
            contact: dict[str, Any] = {
                "phone_number": LOCAL_PHONE_NUMBER,
                "first_name": self.first_name,
                "user_id": self.user_id,
            }
            return self._process(self._message({"contact": contact}))
        if button.callback_data is None:
            return self._process(self._message({"text": button.label}))

        return self._process(
            {
                "callback_query": {
                    "id": f"local-{abs(self._next_update_id())}",
                    "from": self._sender(),
                    "chat_instance": "local",
                    "data": button.callback_data,
                    "message": {
                        "message_id": message_id,
                        "date": 0,
                        "chat": {"id": self.user_id, "type": "private"},
                    },
                }
            }
        )

    def message_buttons(self, message_id: int) -> tuple[Button, ...]:
        """Return the buttons message ``message_id`` of this chat shows now.

        That is the keyboard of its last edit, or of the message itself;
        none for a message this chat never got.
        """
        shown = (
            OutboundMessage.objects.filter(bot=self.bot, chat_id=self.user_id)
            .filter(
                Q(method="sendMessage", telegram_message_id=message_id)
                | Q(method="editMessageText", payload__message_id=message_id)
            )
            .order_by("-id")
            .first()
        )
        if shown is None:
            return ()

        return _buttons(shown.payload.get("reply_markup"))

    def press_on(self, message_id: int, index: int) -> tuple[Button, list[Reply]]:
        """Press button ``index`` (from 0) of message ``message_id``.

        Any message of the chat, not only the last one: an older message's
        button is answered as Telegram users would see it. Returns the
        button pressed with the replies. Raises IndexError when the message
        shows no such button, and ValueError for a link button.
        """
        buttons = self.message_buttons(message_id)
        if not 0 <= index < len(buttons):
            raise IndexError(f"Message {message_id} has no button {index}.")
        button = buttons[index]
        if button.url is not None:
            raise ValueError("A link button opens its address; it sends nothing.")

        return button, self._press(button, message_id)

    def forget(self) -> None:
        """Delete this chat's conversation and everything stored about it.

        The next message starts the bot over. The bot's own tables are not
        touched.
        """
        with transaction.atomic():
            conversations = Conversation.objects.select_for_update().filter(
                bot=self.bot, chat_id=self.user_id
            )
            keys = list(conversations.values_list("pk", flat=True))
            outbound = OutboundMessage.objects.filter(bot=self.bot).filter(
                Q(chat_id=self.user_id) | Q(conversation_id__in=keys)
            )
            requests = LlmRequest.objects.filter(conversation_id__in=keys)
            update_ids = [
                update_id
                for update_id in (
                    *outbound.values_list("update_id", flat=True),
                    *requests.values_list("update_id", flat=True),
                    *conversations.values_list("last_update_id", flat=True),
                )
                if update_id is not None
            ]
            ProcessedUpdate.objects.filter(
                bot=self.bot, update_id__in=update_ids
            ).delete()
            requests.delete()
            outbound.delete()
            Conversation.objects.filter(pk__in=keys).delete()
