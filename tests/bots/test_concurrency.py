"""Ordering of one conversation's updates, and spec changes in mid-wizard.

Bursts run against several gunicorn worker processes sharing PostgreSQL.
"""

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from bots.models import Bot, Conversation, ProcessedUpdate
from bots.services.specs import bot_reload, spec_publish, spec_rollback
from tests.bots.chat_user import ChatUser, labels, texts
from tests.bots.hostile_server import demo_server_env, gunicorn
from tests.bots.test_hostile import (
    CHAT,
    INACTIVE,
    _callback_update,
    _fire,
    _orders,
    _server_user,
    _spec_without_large_and_help,
)
from tests.fakes.control import FakeTelegramControl

FULL_MENU = [["☕ Order a drink"], ["🧾 My orders", "❓ Help"]]
SHORT_MENU = [["☕ Order a drink"], ["🧾 My orders"]]


@pytest.fixture
def server(demo_bot: Bot, fake_telegram_url: str) -> Iterator[str]:
    """Two gunicorn worker processes serving the demo bot."""
    env = demo_server_env(
        database=settings.DATABASES["default"], telegram_url=fake_telegram_url
    )
    # About order and versions, not Telegram's pace: without a worker, a
    # throttled reply would wait for the next update.
    env["OUTBOX_CHAT_BURST"] = "1000"
    with gunicorn(workers=2, env=env) as url:
        yield url


def _press_update(user: ChatUser, data: str, message_id: int) -> dict[str, Any]:
    return _callback_update(
        user,
        data,
        message={
            "message_id": message_id,
            "date": 1767261600,
            "chat": {"id": user.chat_id, "type": "private"},
            "text": "…",
        },
    )


def _button(buttons: list[dict[str, Any]], label: str) -> str:
    return str(next(b["callback_data"] for b in buttons if b["text"] == label))


# The documented rule: a late update is processed when it arrives, against
# the conversation's state at that moment, never reordered by update_id.


def test_a_late_message_is_processed_against_the_current_state(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")
    ann.press("☕ Order a drink")
    message_id, buttons = ann.last_keyboard()
    early = ann.message(text="2")
    later = _press_update(ann, _button(buttons, "Latte"), message_id)
    assert early["update_id"] < later["update_id"]
    ann.post(later)
    ann.new_calls()

    ann.post(early)

    reply = ann.new_calls()
    conversation = Conversation.objects.get()
    assert texts(reply) == [
        ("sendMessage", "Please choose one of the options below.\n\nWhich size?")
    ]
    assert (conversation.state["step"], conversation.state["vars"]) == (
        1,
        {"drink": "latte"},
    )
    assert conversation.last_update_id == early["update_id"]
    assert list(
        ProcessedUpdate.objects.filter(
            update_id__in=[early["update_id"], later["update_id"]]
        )
        .order_by("update_id")
        .values_list("outcome", flat=True)
    ) == ["processed", "processed"]


def test_a_late_press_of_a_button_the_flow_has_left_is_refused(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")
    ann.press("☕ Order a drink")
    message_id, buttons = ann.last_keyboard()
    early = _press_update(ann, _button(buttons, "Tea"), message_id)
    later = _press_update(ann, _button(buttons, "Latte"), message_id)
    ann.post(later)
    state = Conversation.objects.get().state
    ann.new_calls()

    ann.post(early)

    assert texts(ann.new_calls()) == [("answerCallbackQuery", INACTIVE)]
    assert Conversation.objects.get().state == state
    assert state["vars"] == {"drink": "latte"}


# Several processes, one conversation


def test_two_buttons_of_one_prompt_pressed_at_once_apply_exactly_one(
    server: str,
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
) -> None:
    ann = _server_user(server, demo_bot, telegram_api, user_id=CHAT)
    ann.say("/start")
    ann.press("☕ Order a drink")
    message_id, buttons = ann.last_keyboard()
    telegram_api.clear_calls()
    presses = [
        _press_update(ann, _button(buttons, label), message_id)
        for label in ("Latte", "Tea") * 4
    ]

    statuses = _fire(server, demo_bot, presses)

    assert statuses == [200] * 8
    answers = sorted(
        call["params"].get("text", "")
        for call in telegram_api.calls("answerCallbackQuery")
    )
    assert answers == [""] + [INACTIVE] * 7
    assert texts(telegram_api.calls("sendMessage")) == [("sendMessage", "Which size?")]
    state = Conversation.objects.get().state
    assert (state["step"], state["history"]) == (1, [0])
    assert state["vars"]["drink"] in ("latte", "tea")


def test_a_rollback_mid_wizard_lets_it_finish_on_its_pinned_version(
    server: str,
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
) -> None:
    # The demo's conversation tests describe the shipped spec, changed here.
    demo_bot.transcripts.all().delete()
    pinned, _warnings = spec_publish(
        bot=demo_bot, source=_spec_without_large_and_help()
    )
    ann = _server_user(server, demo_bot, telegram_api, user_id=CHAT)
    assert labels(ann.say("/start")[0]) == SHORT_MENU
    ann.press("☕ Order a drink")
    drink_message, drink_buttons = ann.last_keyboard()
    sizes = ann.press("Latte")
    assert labels(sizes[-1]) == [["Small", "Medium"], ["« Back", "✖ Cancel"]]

    rolled, _warnings = spec_rollback(bot=demo_bot, number=1)

    assert rolled.number == pinned.number + 1
    stale = ann.callback(_button(drink_buttons, "Tea"), drink_message)
    assert texts(stale) == [("answerCallbackQuery", INACTIVE)]
    ann.press("Medium")
    ann.say("2")
    ann.say("Ann")
    done = ann.say("/skip")
    assert texts(done)[0] == (
        "sendMessage",
        "<b>Thank you, Ann!</b> Your order: Latte, Medium — 2 cups.",
    )
    assert labels(done[-1]) == SHORT_MENU
    assert Conversation.objects.get().spec_version_id == pinned.pk
    assert [row["size"] for row in _orders(demo_bot)] == ["medium"]

    restart = ann.say("/start")

    assert labels(restart[0]) == FULL_MENU
    assert Conversation.objects.get().spec_version_id == rolled.pk


def test_a_reload_mid_wizard_keeps_the_version_and_the_old_buttons(
    server: str,
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
) -> None:
    ann = _server_user(server, demo_bot, telegram_api, user_id=CHAT)
    ann.say("/start")
    ann.press("☕ Order a drink")
    pinned = Conversation.objects.get().spec_version_id
    message_id, buttons = ann.last_keyboard()

    bot_reload(bot=demo_bot)

    reply = ann.callback(_button(buttons, "Cappuccino"), message_id)
    assert texts(reply) == [("answerCallbackQuery", ""), ("sendMessage", "Which size?")]
    state = Conversation.objects.get().state
    assert (state["step"], state["vars"]) == (1, {"drink": "cappuccino"})
    assert Conversation.objects.get().spec_version_id == pinned
