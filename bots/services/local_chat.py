"""Talk to a bot without Telegram, through the same service as the webhook.

Used by the ``chat`` command. Local updates carry negative update ids,
which Telegram never uses, so they can never shadow a real update.
"""

import html
import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Min

from bots.models import Bot, OutboundMessage, ProcessedUpdate
from bots.services.updates import update_process

LOCAL_USER_ID = 1
_TAG_RE = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Button:
    label: str
    callback_data: str | None = None
    request_contact: bool = False
    url: str | None = None


@dataclass(frozen=True)
class Reply:
    kind: str  # "message", "edit" or "notice"
    text: str
    message_id: int | None = None
    buttons: tuple[Button, ...] = ()


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
    for row in markup.get("inline_keyboard") or []:
        for item in row:
            buttons.append(
                Button(
                    label=str(item.get("text", "")),
                    callback_data=item.get("callback_data"),
                    url=item.get("url"),
                )
            )
    for row in markup.get("keyboard") or []:
        for item in row:
            entry = item if isinstance(item, dict) else {"text": str(item)}
            buttons.append(
                Button(
                    label=str(entry.get("text", "")),
                    request_contact=bool(entry.get("request_contact")),
                )
            )

    return tuple(buttons)


def _reply(message: OutboundMessage) -> Reply | None:
    payload = message.payload
    if message.method == "sendMessage":
        return Reply(
            kind="message",
            text=_plain(payload.get("text", ""), payload.get("parse_mode")),
            message_id=message.telegram_message_id,
            buttons=_buttons(payload.get("reply_markup")),
        )
    if message.method == "editMessageText":
        return Reply(
            kind="edit",
            text=_plain(payload.get("text", ""), payload.get("parse_mode")),
            message_id=payload.get("message_id"),
            buttons=_buttons(payload.get("reply_markup")),
        )
    if message.method == "answerCallbackQuery" and payload.get("text"):
        return Reply(kind="notice", text=payload["text"])

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
        lowest = ProcessedUpdate.objects.filter(
            bot=self.bot, update_id__lt=0
        ).aggregate(low=Min("update_id"))["low"]

        return (lowest or 0) - 1

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
        messages = list(result.messages)
        seen = {message.pk for message in messages}
        messages += (
            OutboundMessage.objects.filter(
                bot=self.bot, update_id=update["update_id"], chat_id=self.user_id
            )
            .exclude(pk__in=seen)
            .order_by("id")
        )
        replies = [reply for m in messages if (reply := _reply(m)) is not None]
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
        if button.request_contact:
            contact: dict[str, Any] = {
                "phone_number": "+380500000001",
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
                        "message_id": self.keyboard_message_id or 0,
                        "date": 0,
                        "chat": {"id": self.user_id, "type": "private"},
                    },
                }
            }
        )
