"""Ordering of one conversation's updates, and spec changes in mid-wizard.

Bursts run against several gunicorn worker processes sharing PostgreSQL.
"""

import json
import sys
import time
from collections.abc import Iterator
from subprocess import PIPE, Popen
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from bots.models import Bot, Conversation, ProcessedUpdate
from bots.services.specs import bot_reload, spec_publish, spec_rollback
from bots.updates import update_parse
from tests.bots.chat_user import ChatUser, labels, texts
from tests.bots.conftest import DEMO_SECRET
from tests.bots.hostile_server import database_url, demo_server_env, gunicorn
from tests.bots.redelivery import update_body
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


def _post_from_a_process(url: str, bot: Bot, update: dict[str, Any]) -> Popen[str]:
    """POST ``update`` to the bot's webhook from another OS process, which
    prints the status and the body."""
    code = (
        "import httpx, sys\n"
        "r = httpx.post(sys.argv[1], content=sys.argv[2], timeout=30,"
        " headers={'Content-Type': 'application/json',"
        " 'X-Telegram-Bot-Api-Secret-Token': sys.argv[3]})\n"
        "print(r.status_code, r.text)\n"
    )
    return Popen(
        [
            sys.executable,
            "-c",
            code,
            f"{url}/telegram/{bot.pk}/webhook",
            json.dumps(update),
            DEMO_SECRET,
        ],
        stdout=PIPE,
        text=True,
    )


def _lock_waits(watch: psycopg.Connection[Any], like: str, count: int) -> None:
    """Wait until ``count`` sessions wait for a lock in a statement ``like``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = watch.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND query LIKE %s",
            [like],
        ).fetchone()
        if found is not None and found[0] >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} sessions never waited in {like!r}")


def test_a_re_delivery_racing_a_chat_s_first_update_and_its_lock_answers_at_once(
    server: str, demo_bot: Bot
) -> None:
    # Given an update U of a new chat, and outside sessions standing in for
    # other requests: C creating the chat's conversation, Y holding an
    # earlier claim of U, X (later) the conversation's lock
    chat, update_id = 6_660_001, 880_001
    update = update_body(update_id=update_id, chat_id=chat, text="/start")
    conversations = Conversation._meta.db_table
    claims = ProcessedUpdate._meta.db_table
    parsed = update_parse(update, bot_username=demo_bot.username or None)
    assert parsed.key is not None
    key = [demo_bot.pk, chat, parsed.key.thread_id, parsed.key.user_id]
    where = "bot_id = %s AND chat_id = %s AND thread_id = %s AND user_id = %s"
    url = database_url(connection.settings_dict)
    with (
        psycopg.connect(url, autocommit=True) as watch,
        psycopg.connect(url) as c,
        psycopg.connect(url) as y,
        psycopg.connect(url) as x,
    ):
        c.execute(
            f"INSERT INTO {conversations} (bot_id, chat_id, thread_id, user_id,"
            " state, locale, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, '{}', '', now(), now())",
            key,
        )
        y.execute(
            f"INSERT INTO {claims} (bot_id, update_id, outcome, created_at)"
            " VALUES (%s, %s, 'processed', now())",
            [demo_bot.pk, update_id],
        )

        # When U is delivered while Y holds its claim, the conversation
        # appears and X locks it, U is delivered again, Y gives the claim
        # up, and X lets the conversation go
        first = _post_from_a_process(server, demo_bot, update)
        _lock_waits(watch, f"%{claims}%", 1)
        c.commit()
        x.execute(f"SELECT id FROM {conversations} WHERE {where} FOR UPDATE", key)
        again = _post_from_a_process(server, demo_bot, update)
        _lock_waits(watch, f"%{claims}%", 2)
        y.rollback()
        _lock_waits(watch, f"%{conversations}%FOR UPDATE%", 1)
        released = time.monotonic()
        x.commit()
        answers = sorted(
            (process.communicate(timeout=30)[0] or "").split(" ", 1)[0]
            for process in (first, again)
        )
        seconds = time.monotonic() - released

    # Then both answer 200 at once (one processed, one a duplicate): every
    # update takes the claim before the conversation, so the two never wait
    # for each other
    assert answers == ["200", "200"]
    assert seconds < 0.9
    assert ProcessedUpdate.objects.filter(update_id=update_id).count() == 1
    assert Conversation.objects.get(chat_id=chat).last_update_id == update_id
