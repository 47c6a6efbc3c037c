"""Replay every real-shaped update of the corpus through the demo bot's webhook.

Updates are replayed in update_id order, as Telegram would deliver them,
through the real client and the fake Bot API; the expected replies are what
the café flow is meant to say to each (an empty list: nothing to say).
"""

import json
from typing import Any

from django.test import Client

from bots.models import BlockedChat, Bot, ProcessedUpdate
from tests.bots.conftest import DEMO_SECRET, FIXTURES
from tests.fakes.control import FakeTelegramControl

HELP_EN = (
    "I take drink orders for the café.\n\nPress <b>Order a drink</b> and answer a "
    "few questions, or see <b>My orders</b>.\nCommands: /order, /orders, /help, "
    "and /cancel to stop an order."
)

EXPECTED_REPLIES: dict[str, list[tuple[str, str]]] = {
    "private_start": [("sendMessage", "Вітаємо в Café Bot, Olena! Що бажаєте?")],
    "private_start_deep_link": [
        ("sendMessage", "Welcome to the Café Bot, Tom! What would you like?")
    ],
    "private_help": [
        (
            "sendMessage",
            HELP_EN,
        )
    ],
    "private_cancel": [
        ("sendMessage", "Скасовано."),
        ("sendMessage", "Вітаємо в Café Bot, Olena! Що бажаєте?"),
    ],
    "private_start_lang_en_us": [
        ("sendMessage", "Welcome to the Café Bot, Amy! What would you like?")
    ],
    "private_start_lang_pt_br": [
        ("sendMessage", "Welcome to the Café Bot, Lucas! What would you like?")
    ],
    "private_start_lang_zh_hans": [
        ("sendMessage", "Welcome to the Café Bot, Mei! What would you like?")
    ],
    "private_start_lang_malformed": [
        ("sendMessage", "Welcome to the Café Bot, Sam! What would you like?")
    ],
    "private_start_no_language_code": [
        ("sendMessage", "Welcome to the Café Bot, Noah! What would you like?")
    ],
    "supergroup_topic_start_to_this_bot": [
        ("sendMessage", "Welcome to the Café Bot, Tom! What would you like?")
    ],
    "supergroup_topic_help_to_other_bot": [],
    "group_start_to_this_bot": [
        ("sendMessage", "Вітаємо в Café Bot, Olena! Що бажаєте?")
    ],
    "group_help_to_other_bot": [],
    "group_plain_text": [
        ("sendMessage", "Welcome to the Café Bot, Tom! What would you like?")
    ],
    "private_text_latin_emoji": [("sendMessage", "Please use the buttons below.")],
    "private_text_cyrillic_emoji": [
        ("sendMessage", "Будь ласка, скористайтеся кнопками нижче.")
    ],
    "private_text_arabic_emoji": [
        ("sendMessage", "Welcome to the Café Bot, Layla! What would you like?")
    ],
    "private_text_cjk_emoji": [("sendMessage", "Please use the buttons below.")],
    "private_text_zwj_emoji": [("sendMessage", "Please use the buttons below.")],
    "callback_query_message": [("answerCallbackQuery", "Ця кнопка вже неактивна.")],
    "callback_query_inline_message": [
        ("answerCallbackQuery", "This button is no longer active.")
    ],
    "callback_query_inaccessible_message": [
        ("answerCallbackQuery", "Ця кнопка вже неактивна.")
    ],
    "edited_message": [],
    "channel_post": [],
    "private_photo_caption": [
        ("sendMessage", "Вибачте, я не вмію обробляти такі повідомлення.")
    ],
    "private_sticker": [("sendMessage", "Sorry, I can't handle this kind of message.")],
    "private_voice": [
        ("sendMessage", "Вибачте, я не вмію обробляти такі повідомлення.")
    ],
    "private_contact_own": [
        ("sendMessage", "Будь ласка, скористайтеся кнопками нижче.")
    ],
    "private_contact_other": [
        ("sendMessage", "Будь ласка, скористайтеся кнопками нижче.")
    ],
    "private_location": [
        ("sendMessage", "Вибачте, я не вмію обробляти такі повідомлення.")
    ],
    "group_new_chat_members": [],
    "group_left_chat_member": [],
    "supergroup_pinned_message": [],
    "my_chat_member_blocked": [],
    "my_chat_member_unblocked": [],
    "my_chat_member_kicked_from_group": [],
    "chat_member_joined": [],
    "inline_query": [],
    "poll": [],
    "message_reaction": [],
    "unknown_future_fields": [("sendMessage", "Please use the buttons below.")],
    "null_message": [],
    "unknown_update_type": [],
}


def _corpus() -> list[tuple[str, dict[str, Any]]]:
    items = [
        (path.stem, json.loads(path.read_text(encoding="utf-8")))
        for path in FIXTURES.glob("*.json")
    ]

    return sorted(items, key=lambda item: item[1]["update_id"])


def _post(client: Client, bot: Bot, update: dict[str, Any]) -> int:
    response = client.post(
        f"/telegram/{bot.pk}/webhook",
        data=json.dumps(update),
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": DEMO_SECRET},
    )
    assert response.json() == {"ok": True}

    return int(response.status_code)


def test_the_corpus_is_large_and_every_file_has_an_expectation() -> None:
    names = {name for name, _update in _corpus()}

    assert len(names) >= 30
    assert names == set(EXPECTED_REPLIES)


def test_every_update_of_the_corpus_gets_200_and_its_exact_replies(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    client = Client()
    replies = {}
    statuses = {}

    for name, update in _corpus():
        telegram_api.clear_calls()
        statuses[name] = _post(client, demo_bot, update)
        replies[name] = [
            (call["method"], call["params"].get("text"))
            for call in telegram_api.calls()
        ]

    assert statuses == dict.fromkeys(EXPECTED_REPLIES, 200)
    assert replies == EXPECTED_REPLIES
    assert ProcessedUpdate.objects.filter(bot=demo_bot).count() == len(EXPECTED_REPLIES)
    # Blocked, unblocked, then removed from a group: only the group stays blocked.
    assert list(BlockedChat.objects.values_list("chat_id", flat=True)) == [-4001234567]


def test_replaying_the_whole_corpus_twice_changes_nothing_the_second_time(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    client = Client()
    for _name, update in _corpus():
        _post(client, demo_bot, update)
    telegram_api.clear_calls()
    processed = ProcessedUpdate.objects.count()

    statuses = {_post(client, demo_bot, update) for _name, update in _corpus()}

    assert statuses == {200}
    assert telegram_api.calls() == []
    assert ProcessedUpdate.objects.count() == processed
