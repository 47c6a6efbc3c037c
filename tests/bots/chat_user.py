"""A Telegram user for tests: posts real-shaped updates to a bot's webhook
and reads the bot's answers back from the fake Telegram Bot API."""

import itertools
import json
from typing import Any

from django.test import Client

from bots.models import Bot, OutboundMessage
from tests.bots.conftest import DEMO_SECRET
from tests.fakes.control import FakeTelegramControl

_update_ids = itertools.count(700_000_000)
_callback_ids = itertools.count(1)


class ChatUser:
    def __init__(
        self,
        *,
        bot: Bot,
        telegram: FakeTelegramControl,
        user_id: int,
        first_name: str = "Ann",
        language_code: str | None = "en",
        chat_id: int | None = None,
        chat_type: str = "private",
        thread_id: int | None = None,
    ) -> None:
        self.bot = bot
        self.telegram = telegram
        self.user_id = user_id
        self.first_name = first_name
        self.language_code = language_code
        self.chat_id = chat_id if chat_id is not None else user_id
        self.chat_type = chat_type
        self.thread_id = thread_id
        self.client = Client()
        self._seen = 0
        self._message_ids = itertools.count(1)

    def _sender(self) -> dict[str, Any]:
        sender: dict[str, Any] = {
            "id": self.user_id,
            "is_bot": False,
            "first_name": self.first_name,
        }
        if self.language_code is not None:
            sender["language_code"] = self.language_code

        return sender

    def _chat(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.chat_id, "type": self.chat_type}
        if self.chat_type == "supergroup" and self.thread_id is not None:
            chat["is_forum"] = True

        return chat

    def post(self, update: dict[str, Any]) -> int:
        response = self.client.post(
            f"/telegram/{self.bot.pk}/webhook",
            data=json.dumps(update),
            content_type="application/json",
            headers={"X-Telegram-Bot-Api-Secret-Token": DEMO_SECRET},
        )
        assert response.json() == {"ok": True}, response.content

        return int(response.status_code)

    def message(self, **content: Any) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": 10_000 + next(self._message_ids),
            "date": 1767261600,
            "chat": self._chat(),
            "from": self._sender(),
            **content,
        }
        if self.thread_id is not None:
            message["message_thread_id"] = self.thread_id
            message["is_topic_message"] = True

        return {"update_id": next(_update_ids), "message": message}

    def say(self, text: str) -> list[dict[str, Any]]:
        self.post(self.message(text=text))

        return self.new_calls()

    def share_contact(
        self, *, phone: str, owner_id: int | None = None
    ) -> list[dict[str, Any]]:
        contact = {
            "phone_number": phone,
            "first_name": self.first_name,
            "user_id": self.user_id if owner_id is None else owner_id,
        }
        self.post(self.message(contact=contact))

        return self.new_calls()

    def send_sticker(self) -> list[dict[str, Any]]:
        sticker = {
            "file_id": "CAACAgIAAxkBAAIB",
            "file_unique_id": "AgADAQAD",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
        self.post(self.message(sticker=sticker))

        return self.new_calls()

    def new_calls(self) -> list[dict[str, Any]]:
        """Return the Bot API calls made for this chat since the last look."""
        calls = self.telegram.calls(token=self.bot.token)
        mine = [
            call
            for call in calls[self._seen :]
            if str(call["params"].get("chat_id", self.chat_id)) == str(self.chat_id)
            # A publish sets the whole bot's command list, no chat's.
            and call["method"] != "setMyCommands"
        ]
        self._seen = len(calls)

        return mine

    def last_keyboard(self) -> tuple[int, list[dict[str, Any]]]:
        """Return the message id and buttons of the newest inline keyboard."""
        for row in OutboundMessage.objects.filter(
            bot=self.bot, chat_id=self.chat_id, status="sent"
        ).order_by("-id"):
            markup = row.payload.get("reply_markup") or {}
            if "inline_keyboard" in markup:
                message_id = row.payload.get("message_id") or row.telegram_message_id
                assert message_id is not None
                buttons = [b for line in markup["inline_keyboard"] for b in line]
                return int(message_id), buttons

        raise AssertionError("No message with an inline keyboard was sent.")

    def callback(self, data: str, message_id: int) -> list[dict[str, Any]]:
        update: dict[str, Any] = {
            "update_id": next(_update_ids),
            "callback_query": {
                "id": f"cb-{next(_callback_ids)}",
                "from": self._sender(),
                "chat_instance": "42",
                "data": data,
                "message": {
                    "message_id": message_id,
                    "date": 1767261600,
                    "chat": self._chat(),
                    "text": "…",
                },
            },
        }
        if self.thread_id is not None:
            update["callback_query"]["message"]["message_thread_id"] = self.thread_id
            update["callback_query"]["message"]["is_topic_message"] = True
        self.post(update)

        return self.new_calls()

    def press(self, label: str) -> list[dict[str, Any]]:
        message_id, buttons = self.last_keyboard()
        matches = [b for b in buttons if b["text"] == label]
        assert matches, f"No button {label!r} in {[b['text'] for b in buttons]}"

        return self.callback(matches[0]["callback_data"], message_id)


def texts(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Return (method, text) of the calls that show text to the user."""
    return [
        (call["method"], call["params"].get("text", ""))
        for call in calls
        if call["method"] in ("sendMessage", "editMessageText", "answerCallbackQuery")
    ]


def labels(call: dict[str, Any]) -> list[list[str]]:
    markup = call["params"].get("reply_markup") or {}
    rows = markup.get("inline_keyboard") or markup.get("keyboard") or []

    return [[button["text"] for button in row] for row in rows]
