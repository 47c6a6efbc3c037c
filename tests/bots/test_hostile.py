"""Hostile input, faults and concurrency against the webhook and the runtime.

Every update inside a valid envelope must be answered 200 (Telegram retries
anything else for a day), be claimed exactly once, and leave the
conversation, the outbox and the bot's own tables consistent.
"""

import asyncio
import html
import json
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings
from django.test import Client
from django.utils import timezone

from bots.models import Bot, Conversation, OutboundMessage, ProcessedUpdate
from bots.services.bots import DEMO_DIR
from bots.services.outbox import outbox_chat_drain
from bots.services.specs import spec_publish
from bots.sql import sql_run
from bots.telegram import TelegramNetworkError, telegram_call
from tests.bots.chat_user import ChatUser, labels, texts
from tests.bots.conftest import DEMO_SECRET, DEMO_TOKEN
from tests.bots.hostile_server import database_url, demo_server_env, gunicorn
from tests.fakes.control import FakeTelegramControl

CHAT = 5560001
USERNAME = "botfactory_demo_bot"
INACTIVE = "This button is no longer active."
WELCOME = "Welcome to the Café Bot, Ann! What would you like?"

Status = OutboundMessage.Status


# Helpers


def _post_raw(
    bot: Bot,
    body: bytes | str,
    *,
    content_type: str = "application/json",
    **extra: Any,
) -> Any:
    """Post a body as-is; a crash comes back as a 500 instead of raising."""
    client = Client(raise_request_exception=False)

    return client.post(
        f"/telegram/{bot.pk}/webhook",
        data=body,
        content_type=content_type,
        headers={"X-Telegram-Bot-Api-Secret-Token": DEMO_SECRET},
        **extra,
    )


def _post(bot: Bot, update: dict[str, Any]) -> Any:
    return _post_raw(bot, json.dumps(update))


def _sender(user_id: int = CHAT, **fields: Any) -> dict[str, Any]:
    return {
        "id": user_id,
        "is_bot": False,
        "first_name": "Ann",
        "language_code": "en",
        **fields,
    }


def _message_update(update_id: int, **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": 1,
        "date": 1767261600,
        "chat": {"id": CHAT, "type": "private"},
        "from": _sender(),
        "text": "/start",
    }
    message.update(fields)

    return {"update_id": update_id, "message": message}


def _outcomes() -> list[tuple[int, str]]:
    return list(
        ProcessedUpdate.objects.order_by("update_id").values_list(
            "update_id", "outcome"
        )
    )


def _orders(bot: Bot) -> list[dict[str, Any]]:
    outcome = sql_run(
        bot=bot,
        node_id="check",
        statement="SELECT user_id, drink, size, quantity, name, phone FROM orders"
        " ORDER BY id",
        params={},
        mode="read",
        timeout_ms=2000,
        max_rows=100,
        update_id=0,
    )
    assert outcome.error is None

    return outcome.rows


def _to_name_step(user: ChatUser) -> None:
    user.say("/start")
    user.press("☕ Order a drink")
    user.press("Latte")
    user.press("Small")
    user.say("2")


def _to_phone_step(user: ChatUser, name: str = "Ann") -> None:
    _to_name_step(user)
    user.say(name)


def _crash_proof(user: ChatUser) -> ChatUser:
    """Let the user's posts come back as 500 instead of raising in the test."""
    user.client = Client(raise_request_exception=False)

    return user


def _post_as(user: ChatUser, update: dict[str, Any]) -> Any:
    return user.client.post(
        f"/telegram/{user.bot.pk}/webhook",
        data=json.dumps(update),
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": DEMO_SECRET},
    )


# Telegram's HTML: these tags, and only &lt; &gt; &amp; &quot; and numeric
# entities; every other <, > and & must be escaped.
_TELEGRAM_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "tg-emoji",
    "code",
    "pre",
    "blockquote",
}
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)(\s[^<>]*)?>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#[xX][0-9A-Fa-f]+);")


def _html_problems(text: str) -> list[str]:
    """Return why Telegram would refuse ``text`` as HTML (empty when valid)."""
    problems: list[str] = []
    stack: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "<":
            match = _TAG.match(text, index)
            if match is None or match.group(2).lower() not in _TELEGRAM_TAGS:
                problems.append(f"unescaped < at {index}")
                index += 1
                continue
            name = match.group(2).lower()
            if match.group(1):
                if not stack or stack[-1] != name:
                    problems.append(f"</{name}> closes nothing at {index}")
                else:
                    stack.pop()
            else:
                stack.append(name)
            index = match.end()
        elif char == "&":
            match = _ENTITY.match(text, index)
            if match is None:
                problems.append(f"unescaped & at {index}")
                index += 1
                continue
            index = match.end()
        elif char == ">":
            problems.append(f"unescaped > at {index}")
            index += 1
        else:
            index += 1
    problems += [f"<{name}> never closed" for name in stack]

    return problems


def _shown(text: str) -> str:
    """Return what Telegram shows of an HTML text: tags gone, entities read."""
    return html.unescape(_TAG.sub("", text))


def _shown_units(text: str) -> int:
    """UTF-16 units Telegram counts: the text after its HTML is parsed."""
    return len(_shown(text).encode("utf-16-le")) // 2


def _html_replies(calls: list[dict[str, Any]]) -> list[str]:
    return [
        call["params"]["text"]
        for call in calls
        if call["method"] in ("sendMessage", "editMessageText")
        and call["params"].get("parse_mode") == "HTML"
    ]


# The envelope and the body


def test_json_with_a_charset_parameter_is_accepted(demo_bot: Bot) -> None:
    response = _post_raw(
        demo_bot,
        json.dumps(_message_update(1)),
        content_type="application/json; charset=utf-8",
    )

    assert response.status_code == 200
    assert _outcomes() == [(1, "processed")]


def test_json_media_type_in_capitals_is_accepted(demo_bot: Bot) -> None:
    response = _post_raw(
        demo_bot, json.dumps(_message_update(2)), content_type="application/JSON"
    )

    assert response.status_code == 200
    assert _outcomes() == [(2, "processed")]


def test_a_utf8_byte_order_mark_is_tolerated(demo_bot: Bot) -> None:
    body = b"\xef\xbb\xbf" + json.dumps(_message_update(3)).encode()

    response = _post_raw(demo_bot, body)

    assert response.status_code == 200
    assert _outcomes() == [(3, "processed")]


def test_a_utf16_body_is_read_as_json(demo_bot: Bot) -> None:
    body = json.dumps(_message_update(4)).encode("utf-16")

    response = _post_raw(demo_bot, body)

    assert response.status_code == 200
    assert _outcomes() == [(4, "processed")]


def test_invalid_utf8_bytes_are_a_400_and_store_nothing(demo_bot: Bot) -> None:
    body = (
        json.dumps(_message_update(5, text="XX")).encode().replace(b"XX", b"\xff\xfe")
    )

    response = _post_raw(demo_bot, body)

    assert response.status_code == 400
    assert response.json()["code"] == "bad_update"
    assert _outcomes() == []
    assert Conversation.objects.count() == 0


def test_duplicate_keys_take_the_last_value(
    demo_bot: Bot,
) -> None:
    body = '{"update_id": "x", "message": {}, "update_id": 6}'

    response = _post_raw(demo_bot, body)

    assert response.status_code == 200
    assert _outcomes() == [(6, "ignored")]


def test_a_float_overflowing_to_infinity_inside_the_update_is_ignored(
    demo_bot: Bot,
) -> None:
    body = json.dumps(_message_update(7)).replace(
        f'"id": {CHAT}, "type"', '"id": 1e400, "type"'
    )
    assert "1e400" in body

    response = _post_raw(demo_bot, body)

    assert response.status_code == 200
    assert _outcomes() == [(7, "ignored")]
    assert Conversation.objects.count() == 0


# Python refuses integers of more than 4300 digits, so valid JSON inside a
# valid envelope is answered 400 "not valid JSON" and Telegram retries it.
def test_a_huge_integer_inside_a_valid_envelope_is_accepted(demo_bot: Bot) -> None:
    body = json.dumps(_message_update(8)).replace(
        '"date": 1767261600', '"date": 1' + "0" * 5000
    )

    response = _post_raw(demo_bot, body)

    assert response.status_code == 200
    assert _outcomes() == [(8, "processed")]


def test_a_body_of_exactly_the_cap_is_accepted_and_one_byte_more_is_413(
    demo_bot: Bot, settings: Any
) -> None:
    settings.WEBHOOK_MAX_BODY_BYTES = 4096

    def padded(update_id: int, size: int) -> str:
        base = json.dumps({**_message_update(update_id), "pad": ""})
        body = base.replace('"pad": ""', '"pad": "' + "x" * (size - len(base)) + '"')
        assert len(body.encode()) == size
        return body

    accepted = _post_raw(demo_bot, padded(91, 4096))
    refused = _post_raw(demo_bot, padded(92, 4097))

    assert accepted.status_code == 200
    assert refused.status_code == 413
    assert refused.json()["code"] == "payload_too_large"
    assert _outcomes() == [(91, "processed")]


@pytest.mark.parametrize("length", ["abc", "-1", "", "0", "12"])
def test_a_content_length_that_is_malformed_or_short_is_a_400(
    demo_bot: Bot, length: str
) -> None:
    response = _post_raw(
        demo_bot, json.dumps(_message_update(11)), CONTENT_LENGTH=length
    )

    assert response.status_code == 400
    assert response.json()["code"] in ("bad_request", "bad_update")
    assert _outcomes() == []


def test_deep_nesting_inside_the_message_is_answered_without_a_crash(
    demo_bot: Bot,
) -> None:
    # The parser shares Python's recursion limit (1000) with the request's
    # own stack (test client, middleware, view), so deep but well within it.
    deep = "[" * 800 + "]" * 800
    body = json.dumps(_message_update(12)).replace(
        '"text": "/start"', f'"entities": {deep}, "text": "/start"'
    )

    response = _post_raw(demo_bot, body)

    assert response.status_code == 200
    assert _outcomes() == [(12, "processed")]


@pytest.mark.parametrize(
    "message",
    [
        [],
        "text",
        42,
        True,
        {"chat": "x", "from": _sender(), "text": "/start"},
        {"chat": {"id": "5560001", "type": "private"}, "from": _sender(), "text": "hi"},
        {"chat": {"id": 5560001.0, "type": "private"}, "from": _sender(), "text": "hi"},
        {"chat": {"id": True, "type": "private"}, "from": _sender(), "text": "hi"},
        {"chat": {"id": None}, "from": _sender(), "text": "hi"},
        {"chat": {"id": CHAT, "type": "private"}, "text": "/start"},
        {"chat": {"id": CHAT, "type": "private"}, "from": "Ann", "text": "/start"},
        {
            "chat": {"id": CHAT, "type": "private"},
            "from": {"id": "1"},
            "text": "/start",
        },
        {"chat": {"id": CHAT, "type": "private"}, "from": _sender(), "text": 12},
        {"chat": {"id": CHAT, "type": "private"}, "from": _sender(), "text": {"a": 1}},
        {"chat": {"id": CHAT, "type": "private"}, "from": _sender(), "text": None},
        {"chat": {"id": CHAT, "type": 7}, "from": _sender(), "text": "hi"},
        {"chat": {"id": CHAT}, "from": _sender(), "contact": "x"},
        {"chat": {"id": CHAT}, "from": _sender(), "contact": {"phone_number": 5}},
    ],
)
def test_a_message_of_the_wrong_shape_is_200_and_never_half_stored(
    demo_bot: Bot, message: Any
) -> None:
    response = _post(demo_bot, {"update_id": 20, "message": message})

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert len(_outcomes()) == 1
    for conversation in Conversation.objects.all():
        assert conversation.state == {} or conversation.state["node"] is not None


@pytest.mark.parametrize(
    "fields",
    [
        {"entities": "garbage"},
        {"entities": [{"type": 5, "offset": "x"}, None, []]},
        {"message_thread_id": "7", "is_topic_message": True},
        {"message_thread_id": [7], "is_topic_message": "yes"},
        {"reply_to_message": "x"},
        {"from": _sender(language_code="e" * 10000)},
        {"from": _sender(language_code="en\u0000\u0007\u202e")},
        {"from": _sender(language_code=5)},
        {"from": _sender(first_name=None)},
        {"from": _sender(first_name=["A"])},
        {"message_id": "1"},
        {"date": "yesterday"},
    ],
)
def test_garbage_in_fields_the_runtime_does_not_need_still_gets_a_reply(
    demo_bot: Bot, telegram_api: FakeTelegramControl, fields: dict[str, Any]
) -> None:
    response = _post(demo_bot, _message_update(21, **fields))

    assert response.status_code == 200
    assert _outcomes() == [(21, "processed")]
    sent = telegram_api.calls("sendMessage")
    assert [call["status"] for call in sent] == [200]
    assert Conversation.objects.get().state["node"] == "main"


@pytest.mark.parametrize(
    "query",
    [
        {"id": "cb", "from": _sender(), "data": {"a": 1}},
        {"id": "cb", "from": _sender(), "data": None},
        {"id": "cb", "from": _sender(), "data": 5, "message": "x"},
        {"id": 5, "from": _sender(), "data": "0:main:0:x"},
        {"id": "cb", "data": "0:main:0:x"},
        {"id": "cb", "from": _sender(), "data": "0:main:0:x", "message": {"chat": 1}},
    ],
)
def test_a_callback_of_the_wrong_shape_is_200(
    demo_bot: Bot, query: dict[str, Any]
) -> None:
    response = _post(demo_bot, {"update_id": 22, "callback_query": query})

    assert response.status_code == 200
    assert len(_outcomes()) == 1


# Values that pass the parser but not the database. Telegram's ids fit in 52
# bits; anything wider overflows the bigint key columns: a 500 on every retry.
@pytest.mark.parametrize(
    "update",
    [
        _message_update(30, chat={"id": 2**70, "type": "private"}),
        _message_update(
            30,
            chat={"id": -100123, "type": "supergroup"},
            **{"from": _sender(user_id=2**70)},
        ),
    ],
    ids=["chat_id", "group_user_id"],
)
def test_an_id_wider_than_64_bits_is_200_and_ignored(
    demo_bot: Bot, update: dict[str, Any]
) -> None:
    response = _post(demo_bot, update)

    assert response.status_code == 200
    assert _outcomes() == [(30, "ignored")]
    assert Conversation.objects.count() == 0


def test_a_thread_id_wider_than_64_bits_counts_as_no_topic(demo_bot: Bot) -> None:
    update = _message_update(
        30,
        chat={"id": -100123, "type": "supergroup", "is_forum": True},
        message_thread_id=-(2**70),
        is_topic_message=True,
    )

    response = _post(demo_bot, update)

    assert response.status_code == 200
    assert _outcomes() == [(30, "processed")]
    assert list(Conversation.objects.values_list("chat_id", "thread_id")) == [
        (-100123, 0)
    ]


def test_ids_wider_than_64_bits_in_fields_only_echoed_are_accepted(
    demo_bot: Bot,
) -> None:
    response = _post(demo_bot, _message_update(31, message_id=2**70))

    assert response.status_code == 200
    assert _outcomes() == [(31, "processed")]


# Texts


def test_nul_and_direction_marks_in_a_menu_text_get_the_menu_again(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")

    reply = ann.say("a\u0000b\u202e\u200f")

    assert texts(reply) == [("sendMessage", "Please use the buttons below.")]


def test_a_lone_surrogate_in_a_menu_text_gets_the_menu_again(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")

    reply = ann.say("\ud800")

    assert texts(reply) == [("sendMessage", "Please use the buttons below.")]


# PostgreSQL jsonb cannot hold \u0000: the answer stored in the state (or a
# first name echoed into an outbox payload) makes the transaction fail.
@pytest.mark.parametrize("name", ["A\u0000B", "\u0000"])
def test_a_nul_in_a_wizard_answer_is_200_and_answered(
    demo_bot: Bot, telegram_api: FakeTelegramControl, name: str
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    _to_name_step(ann)
    _crash_proof(ann)
    update = ann.message(text=name)

    response = _post_as(ann, update)

    assert response.status_code == 200
    assert ProcessedUpdate.objects.filter(update_id=update["update_id"]).count() == 1
    assert len(ann.new_calls()) >= 1


# A lone surrogate (valid JSON "\ud800") cannot be encoded for PostgreSQL.
def test_a_lone_surrogate_in_a_wizard_answer_is_200_and_answered(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    _to_name_step(ann)
    _crash_proof(ann)
    update = ann.message(text="Ann\ud800")

    response = _post_as(ann, update)

    assert response.status_code == 200
    assert ProcessedUpdate.objects.filter(update_id=update["update_id"]).count() == 1
    assert len(ann.new_calls()) >= 1


# The first name is echoed into the welcome text: a NUL breaks the jsonb
# payload of the outbox row, a lone surrogate breaks the UTF-16 measuring.
@pytest.mark.parametrize("first_name", ["A\u0000nn", "\udfff", "Ann\ud83d"])
def test_an_unencodable_first_name_still_gets_the_welcome(
    demo_bot: Bot, telegram_api: FakeTelegramControl, first_name: str
) -> None:
    ann = _crash_proof(
        ChatUser(
            bot=demo_bot, telegram=telegram_api, user_id=CHAT, first_name=first_name
        )
    )

    response = _post_as(ann, ann.message(text="/start"))

    assert response.status_code == 200
    assert len(_outcomes()) == 1
    assert [call["method"] for call in ann.new_calls()] == ["sendMessage"]


# Surrogates encoded as UTF-8 bytes are invalid UTF-8, but json.loads reads
# bytes with "surrogatepass": they pass as a lone surrogate and crash later.
def test_utf8_encoded_surrogates_in_the_body_are_a_400(demo_bot: Bot) -> None:
    body = json.dumps(_message_update(40, **{"from": _sender(first_name="XX")}))
    raw = body.encode().replace(b"XX", b"\xed\xa0\x80")

    response = _post_raw(demo_bot, raw)

    assert response.status_code == 400
    assert response.json()["code"] == "bad_update"
    assert _outcomes() == []


# The order is written (the bot's SQL commits on its own connection) before
# the reply rows fail to store; the update is rolled back and 500s on every
# re-delivery: an order exists that the conversation never confirmed.
def test_a_final_answer_whose_reply_cannot_be_stored_still_ends_the_order(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    _to_phone_step(ann)
    _crash_proof(ann)
    ann.first_name = "Ann\u0000"
    final = ann.message(text="/skip")

    first = _post_as(ann, final)
    again = _post_as(ann, final)

    assert (first.status_code, again.status_code) == (200, 200)
    assert len(_orders(demo_bot)) == 1
    assert Conversation.objects.get().state["node"] == "main"


def test_a_shared_contact_with_a_hostile_phone_is_stored_verbatim_and_escaped(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    _to_phone_step(ann)
    phone = "<b>+1</b> & '); DROP TABLE orders; --" + "9" * 5000

    done = ann.share_contact(phone=phone)

    replies = _html_replies(done)
    assert all(_html_problems(reply) == [] for reply in replies)
    assert all(_shown_units(reply) <= 4096 for reply in replies)
    # The split drops the whitespace it breaks at.
    shown = re.sub(r"\s", "", "".join(_shown(reply) for reply in replies))
    assert shown.count(re.sub(r"\s", "", phone)) == 1
    assert [row["phone"] for row in _orders(demo_bot)] == [phone]


def test_a_user_who_blocked_the_bot_gets_replies_again_after_unblocking(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    telegram_api.add_fault(
        method="sendMessage",
        status=403,
        description="Forbidden: bot was blocked by the user",
        times=1,
    )
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")
    assert _statuses() == [Status.FAILED]
    member = {
        "update_id": 777,
        "my_chat_member": {
            "chat": {"id": CHAT, "type": "private"},
            "from": _sender(),
            "date": 1767261600,
            "old_chat_member": {"status": "kicked", "user": _sender(user_id=1)},
            "new_chat_member": {"status": "member", "user": _sender(user_id=1)},
        },
    }
    assert _post(demo_bot, member).status_code == 200

    reply = ann.say("/start")

    assert texts(reply) == [("sendMessage", WELCOME)]
    assert _statuses() == [Status.FAILED, Status.SENT]


HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    "&amp; &lt; & &#",
    "*_[]()~`>#+-=|{}.!\\",
    '"><b>bold</b><a href="x">',
    "\u202eevil\u200f",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_and_answers_are_escaped_into_valid_html(
    demo_bot: Bot, telegram_api: FakeTelegramControl, name: str
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT, first_name=name)
    _to_phone_step(ann, name=name[:40])
    ann.say("/skip")

    calls = telegram_api.calls()
    replies = _html_replies(calls)
    assert replies
    assert {reply: _html_problems(reply) for reply in replies} == {
        reply: [] for reply in replies
    }
    assert all(call["status"] == 200 for call in calls)
    done = [_shown(reply) for reply in replies if reply.startswith("<b>Thank you")]
    assert done == [
        f"Thank you, {name[:40].strip()}! Your order: Latte, Small — 2 cups."
    ]
    assert _orders(demo_bot)[0]["name"] == name[:40].strip()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_in_a_group_mention_are_valid_html(
    demo_bot: Bot, telegram_api: FakeTelegramControl, name: str
) -> None:
    ann = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=CHAT,
        first_name=name,
        chat_id=-4005001,
        chat_type="group",
    )
    ann.say("/order")
    ann.press("Latte")
    reply = ann.press("Small")

    prompt = _html_replies(reply)[-1]
    assert _html_problems(prompt) == []
    assert prompt.startswith(f'<a href="tg://user?id={CHAT}">')
    assert _shown(prompt) == f"{name}, How many cups? Send a number from 1 to 10."


@pytest.mark.parametrize(
    "first_name", ["x" * 10000, "😀" * 5000, "x " * 5000, "\u202e" * 9000]
)
def test_a_first_name_longer_than_a_message_is_sent_in_parts_telegram_accepts(
    demo_bot: Bot, telegram_api: FakeTelegramControl, first_name: str
) -> None:
    ann = ChatUser(
        bot=demo_bot, telegram=telegram_api, user_id=CHAT, first_name=first_name
    )

    calls = ann.say("/start")

    replies = _html_replies(calls)
    assert len(replies) >= 3
    assert all(_shown_units(reply) <= 4096 for reply in replies)
    assert all(_html_problems(reply) == [] for reply in replies)
    assert [call["status"] for call in calls] == [200] * len(calls)
    assert "reply_markup" in calls[-1]["params"]
    assert all("reply_markup" not in call["params"] for call in calls[:-1])
    assert list(OutboundMessage.objects.values_list("status", flat=True)) == [
        Status.SENT
    ] * len(calls)


# The splitter measures text after entity parsing (4096 shown units, as the
# Bot API documents), the fake Bot API measures the raw markup: parts full of
# &lt;/&amp; are refused "message is too long" and the reply is lost.
def test_a_long_first_name_full_of_markup_reaches_the_user_in_full(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(
        bot=demo_bot, telegram=telegram_api, user_id=CHAT, first_name="<b>&" * 3000
    )

    calls = ann.say("/start")

    replies = _html_replies(calls)
    assert all(_shown_units(reply) <= 4096 for reply in replies)
    assert all(_html_problems(reply) == [] for reply in replies)
    assert list(OutboundMessage.objects.values_list("status", "last_error")) == [
        (Status.SENT, "")
    ] * len(calls)


@pytest.mark.parametrize("length", [4096, 4097, 20000])
def test_an_overlong_wizard_answer_is_refused_with_the_limit(
    demo_bot: Bot, telegram_api: FakeTelegramControl, length: int
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    _to_name_step(ann)

    reply = ann.say("&" * length)

    assert texts(reply) == [
        (
            "sendMessage",
            "That is too long: please send at most 40 characters.\n\n"
            "What name should we call out when it's ready?",
        )
    ]
    state = Conversation.objects.get().state
    assert (state["node"], state["step"], state["attempts"]) == ("order", 3, 1)


# Commands


@pytest.mark.parametrize(
    "command",
    [
        "/START",
        "/Start",
        f"/start@{USERNAME.upper()}",
        f"/start@{USERNAME}",
        " /start ",
    ],
)
def test_start_in_any_case_and_addressed_to_this_bot_opens_the_menu(
    demo_bot: Bot, telegram_api: FakeTelegramControl, command: str
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)

    assert texts(ann.say(command)) == [("sendMessage", WELCOME)]


def test_a_command_for_another_bot_in_a_group_is_ignored(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=CHAT,
        chat_id=-4005002,
        chat_type="group",
    )

    assert ann.say("/Start@other_bot") == []
    assert _outcomes()[0][1] == "ignored"
    assert Conversation.objects.count() == 0


def test_a_start_payload_over_64_characters_is_cut_and_still_opens_its_deep_link(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)

    reply = ann.say("/start order" + "x" * 200)

    assert texts(reply) == [("sendMessage", "Which drink would you like?")]


def test_a_start_payload_of_garbage_opens_the_start_menu(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)

    reply = ann.say("/start <b>'; DROP TABLE x;--\u0000" + "é" * 100)

    assert texts(reply) == [("sendMessage", WELCOME)]


def test_a_slash_with_a_space_is_text_not_a_command(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")

    assert texts(ann.say("/ start")) == [
        ("sendMessage", "Please use the buttons below.")
    ]


def test_cancel_outside_a_wizard_says_so_and_shows_the_menu(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")

    assert texts(ann.say("/cancel")) == [
        ("sendMessage", "Cancelled."),
        ("sendMessage", WELCOME),
    ]


def test_an_unknown_command_keeps_the_menu_waiting(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")
    before = Conversation.objects.get().state

    reply = ann.say("/foo")

    assert texts(reply) == [("sendMessage", "Sorry, I don't know this command.")]
    assert labels(reply[0]) == [["☕ Order a drink"], ["🧾 My orders", "❓ Help"]]
    assert Conversation.objects.get().state == before


def test_an_unknown_command_in_a_wizard_step_asks_the_step_again(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    _to_name_step(ann)

    reply = ann.say("/foo bar")

    assert texts(reply) == [
        (
            "sendMessage",
            "Sorry, I don't know this command.\n\n"
            "What name should we call out when it's ready?",
        )
    ]
    state = Conversation.objects.get().state
    assert (state["node"], state["step"]) == ("order", 3)


def test_skip_on_a_required_step_and_back_on_the_first_are_refused(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/order")

    skip = ann.say("/skip")
    back = ann.say("/back")

    assert texts(skip)[0][1].startswith("This question can't be skipped.")
    assert texts(back)[0][1].startswith("This is the first question.")
    state = Conversation.objects.get().state
    assert (state["node"], state["step"]) == ("order", 0)


# Buttons


def _callback_update(
    user: ChatUser, data: Any, *, message: Any = None, **fields: Any
) -> dict[str, Any]:
    update = user.message(text="x")
    query: dict[str, Any] = {
        "id": f"cb-{update['update_id']}",
        "from": user._sender(),
        "chat_instance": "42",
        "data": data,
        **fields,
    }
    if message is not None:
        query["message"] = message

    return {"update_id": update["update_id"], "callback_query": query}


@pytest.mark.parametrize(
    "data",
    [
        "",
        "garbage",
        ":::",
        "zzzzzzzzzz:main:0:b00000000",
        "0:main:0:" + "b" * 200,
        "1:main:0:p99999999999999",
        "1:main:0:p-1",
        "1:main:0:i0",
        "1:order:0:olatte",
        "1:main:1:x",
        "\u0000:main:0:x",
        "１:main:0:x",
    ],
)
def test_forged_callback_data_is_answered_inactive_and_changes_nothing(
    demo_bot: Bot, telegram_api: FakeTelegramControl, data: str
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")
    message_id, _buttons = ann.last_keyboard()
    before = Conversation.objects.get().state

    reply = ann.callback(data, message_id)

    assert [(call["method"], call["params"].get("text")) for call in reply] == [
        ("answerCallbackQuery", INACTIVE)
    ]
    assert Conversation.objects.get().state == before


def test_pressing_the_same_button_twice_applies_it_once(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")
    ann.press("☕ Order a drink")
    message_id, buttons = ann.last_keyboard()
    latte = next(b["callback_data"] for b in buttons if b["text"] == "Latte")

    first = ann.callback(latte, message_id)
    second = ann.callback(latte, message_id)

    assert texts(first) == [("answerCallbackQuery", ""), ("sendMessage", "Which size?")]
    assert texts(second) == [("answerCallbackQuery", INACTIVE)]
    state = Conversation.objects.get().state
    assert (state["step"], state["vars"]["drink"]) == (1, "latte")


def test_a_callback_without_a_message_is_answered_and_stores_nothing_else(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")
    _message_id, buttons = ann.last_keyboard()

    response = _post(demo_bot, _callback_update(ann, buttons[0]["callback_data"]))

    assert response.status_code == 200
    calls = telegram_api.calls("answerCallbackQuery")
    assert [(call["params"].get("text"), call["status"]) for call in calls] == [
        (INACTIVE, 200)
    ]


def test_a_callback_from_an_inline_message_is_keyed_by_user_and_answered(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)

    response = _post(
        demo_bot,
        _callback_update(ann, "1:main:0:x", inline_message_id="AAAAinline"),
    )

    assert response.status_code == 200
    assert [
        call["params"].get("text") for call in telegram_api.calls("answerCallbackQuery")
    ] == [INACTIVE]
    assert list(
        Conversation.objects.values_list("chat_id", "thread_id", "user_id")
    ) == [(0, 0, CHAT)]


# The wizard compares only node and step, not the generation the data
# carries, so a choice from an earlier run of the wizard answers this one.
def test_a_wizard_button_from_an_earlier_run_is_inactive(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/order")
    old_message, old_buttons = ann.last_keyboard()
    ann.say("/cancel")
    ann.say("/order")
    tea = next(b["callback_data"] for b in old_buttons if b["text"] == "Tea")

    reply = ann.callback(tea, old_message)

    assert texts(reply) == [("answerCallbackQuery", INACTIVE)]
    state = Conversation.objects.get().state
    assert (state["node"], state["step"]) == ("order", 0)
    assert "drink" not in state["vars"]


# Callback data names node and step but not whose message it is: in a group,
# anyone at the same step answers through someone else's prompt.
def test_a_button_on_another_users_prompt_in_a_group_is_inactive(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    group = -1005005003
    ann = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=5560011,
        chat_id=group,
        chat_type="supergroup",
    )
    tom = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=5560012,
        first_name="Tom",
        chat_id=group,
        chat_type="supergroup",
    )
    ann.say("/order")
    ann_message, ann_buttons = ann.last_keyboard()
    tom.say("/order")
    tea = next(b["callback_data"] for b in ann_buttons if b["text"] == "Tea")

    reply = tom.callback(tea, ann_message)

    assert texts(reply) == [("answerCallbackQuery", INACTIVE)]
    states = dict(Conversation.objects.values_list("user_id", "state"))
    assert states[5560012]["step"] == 0
    assert states[5560011]["step"] == 0


def test_a_button_of_another_user_in_a_group_does_not_move_their_wizard(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    group = -1005005004
    ann = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=5560021,
        chat_id=group,
        chat_type="supergroup",
    )
    tom = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=5560022,
        first_name="Tom",
        chat_id=group,
        chat_type="supergroup",
    )
    ann.say("/order")
    ann_message, ann_buttons = ann.last_keyboard()
    tom.say("/start")

    reply = tom.callback(ann_buttons[0]["callback_data"], ann_message)

    assert texts(reply) == [("answerCallbackQuery", INACTIVE)]
    states = dict(Conversation.objects.values_list("user_id", "state"))
    assert (states[5560021]["node"], states[5560021]["step"]) == ("order", 0)
    assert states[5560022]["node"] == "main"


def _random_update(
    ann: ChatUser, keyboards: list[tuple[int, list[dict[str, Any]]]], rng: Any
) -> dict[str, Any]:
    """Return one random update a user could produce at this point."""
    choice = rng.randrange(10)
    if choice == 0:
        return ann.message(text=rng.choice(["/start", "/order", "/orders", "/help"]))
    if choice == 1:
        return ann.message(text=rng.choice(["/cancel", "/back", "/skip", "/foo"]))
    if choice == 2:
        return ann.message(text=rng.choice(["1", "11", "Ann", "yes", "", " ", "Tea"]))
    if choice == 3:
        own = rng.random() < 0.5
        return ann.message(
            contact={
                "phone_number": "+15550001",
                "first_name": "Ann",
                "user_id": ann.user_id if own else 1,
            }
        )
    if choice == 4:
        return ann.message(sticker={"file_id": "x", "file_unique_id": "y"})
    if keyboards:
        message_id, buttons = rng.choice(keyboards[-2:] if choice < 8 else keyboards)
        data = rng.choice(buttons).get("callback_data", "")
        return _callback_update(
            ann,
            data,
            message={
                "message_id": message_id,
                "date": 1767261600,
                "chat": {"id": ann.chat_id, "type": "private"},
                "text": "…",
            },
        )

    return ann.message(text="/start")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_random_walk_of_a_user_always_gets_200_and_an_answer(
    demo_bot: Bot, telegram_api: FakeTelegramControl, seed: int
) -> None:
    rng = random.Random(seed)
    ann = _crash_proof(ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT))
    keyboards: list[tuple[int, list[dict[str, Any]]]] = []

    for _step in range(60):
        update = _random_update(ann, keyboards, rng)
        response = _post_as(ann, update)
        assert response.status_code == 200, update
        rows = list(
            OutboundMessage.objects.filter(update_id=update["update_id"]).order_by("id")
        )
        methods = [row.method for row in rows]
        if "callback_query" in update:
            assert methods.count("answerCallbackQuery") == 1, update
            assert methods[0] == "answerCallbackQuery", update
        else:
            assert rows, update
        # Sending keeps to Telegram's 30 calls a second: rows may wait.
        OutboundMessage.objects.filter(status=Status.PENDING).update(
            next_attempt_at=None
        )
        time.sleep(0.05)
        outbox_chat_drain(bot_id=demo_bot.pk, chat_id=CHAT)
        for row in rows:
            markup = row.payload.get("reply_markup") or {}
            row.refresh_from_db()
            if "inline_keyboard" in markup and row.status == Status.SENT:
                message_id = row.payload.get("message_id") or row.telegram_message_id
                assert message_id is not None
                buttons = [b for line in markup["inline_keyboard"] for b in line]
                keyboards.append((int(message_id), buttons))

    state = Conversation.objects.get().state
    assert state["pending_sql"] is None
    assert ProcessedUpdate.objects.count() == 60
    assert [c["status"] for c in telegram_api.calls() if c["status"] != 200] == []


# Publishing while a user is in a wizard


def _demo_spec() -> dict[str, Any]:
    return json.loads((DEMO_DIR / "spec.json").read_text(encoding="utf-8"))


def _spec_without_large_and_help() -> dict[str, Any]:
    spec = _demo_spec()
    size = spec["nodes"]["order"]["steps"][1]
    size["options"] = [o for o in size["options"] if o["value"] != "large"]
    spec["nodes"]["main"]["rows"][1] = [spec["nodes"]["main"]["rows"][1][0]]

    return spec


def test_a_wizard_in_progress_finishes_on_its_version_after_a_publish(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")
    ann.press("☕ Order a drink")
    ann.press("Latte")
    first = Conversation.objects.get().spec_version
    assert first is not None

    # The demo's conversation tests describe the shipped spec, changed here.
    demo_bot.transcripts.all().delete()
    version, _warnings = spec_publish(
        bot=demo_bot, source=_spec_without_large_and_help(), message="no large"
    )
    assert version.number == first.number + 1

    ann.press("Large")
    ann.say("3")
    ann.say("Ann")
    done = ann.say("/skip")

    assert texts(done)[0] == (
        "sendMessage",
        "<b>Thank you, Ann!</b> Your order: Latte, Large — 3 cups.",
    )
    assert [row["size"] for row in _orders(demo_bot)] == ["large"]
    # The wizard finished on the version it started on; the menu after it
    # is still that version's (help button shown) ...
    assert labels(done[-1]) == [["☕ Order a drink"], ["🧾 My orders", "❓ Help"]]
    # ... and the next update moves to the new one.
    restart = ann.say("/start")
    assert labels(restart[0]) == [["☕ Order a drink"], ["🧾 My orders"]]
    assert Conversation.objects.get().spec_version_id == version.pk
    ann.press("☕ Order a drink")
    sizes = ann.press("Tea")
    assert labels(sizes[-1]) == [["Small", "Medium"], ["« Back", "✖ Cancel"]]


def test_an_unchanged_button_of_a_menu_sent_before_a_publish_still_works(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.say("/start")
    message_id, buttons = ann.last_keyboard()
    # The demo's conversation tests describe the shipped spec, changed here.
    demo_bot.transcripts.all().delete()
    spec_publish(bot=demo_bot, source=_spec_without_large_and_help())
    order = next(b for b in buttons if b["text"] == "☕ Order a drink")
    help_button = next(b for b in buttons if b["text"] == "❓ Help")

    removed = ann.callback(help_button["callback_data"], message_id)
    kept = ann.callback(order["callback_data"], message_id)

    assert texts(removed) == [("answerCallbackQuery", INACTIVE)]
    assert texts(kept) == [
        ("answerCallbackQuery", ""),
        ("sendMessage", "Which drink would you like?"),
    ]


# SQL


@pytest.mark.parametrize(
    "name",
    [
        "'); DROP TABLE orders; --",
        "Robert'); DELETE FROM orders;--",
        "%(name)s %s :name $1 \\",
        "1; SELECT pg_sleep(10)",
    ],
)
def test_an_answer_written_as_sql_injection_is_stored_verbatim(
    demo_bot: Bot, telegram_api: FakeTelegramControl, name: str
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    _to_phone_step(ann, name=name)

    done = ann.say("/skip")

    assert _shown(texts(done)[0][1]).startswith(f"Thank you, {name}! Your order")
    assert _orders(demo_bot) == [
        {
            "user_id": CHAT,
            "drink": "latte",
            "size": "small",
            "quantity": 2,
            "name": name,
            "phone": None,
        }
    ]
    ann.say("/start")
    listing = ann.say("/orders")
    assert texts(listing)[0][1].startswith("<b>Your last orders:</b>")


# Faults of the Bot API


def _statuses() -> list[str]:
    return list(OutboundMessage.objects.order_by("id").values_list("status", flat=True))


def _every_row_accounted_for() -> None:
    """Every row is sent, failed with a reason, or pending: with a next
    attempt, or queued behind an open row of its chat (the sweep and the
    chat's drain take it then)."""
    open_before: dict[int, bool] = {}
    for row in OutboundMessage.objects.order_by("id"):
        if row.status == Status.SENT:
            assert row.sent_at is not None, row.pk
        elif row.status == Status.FAILED:
            assert row.last_error, row.pk
        else:
            assert row.status == Status.PENDING, (row.pk, row.status)
            assert row.next_attempt_at is not None or open_before.get(row.chat_id), (
                row.pk
            )
            open_before[row.chat_id] = True


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 429, "parameters": {"retry_after": 5}},
        {"status": 500},
        {"status": 502},
        {"status": 403, "description": "Forbidden: bot was blocked by the user"},
        {"status": 400, "description": "Bad Request: chat not found"},
        {"status": 400, "description": "Bad Request: can't parse entities"},
        {"status": 401},
    ],
)
def test_a_failing_bot_api_never_loses_an_outbox_row(
    demo_bot: Bot, telegram_api: FakeTelegramControl, fault: dict[str, Any]
) -> None:
    telegram_api.add_fault(method="sendMessage", **fault)
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)

    for text in ("/start", "/help", "/order"):
        ann.post(ann.message(text=text))

    assert len(_outcomes()) == 3
    assert OutboundMessage.objects.count() == 3
    _every_row_accounted_for()


def test_a_group_migrated_to_a_supergroup_gets_its_reply_at_the_new_id(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    telegram_api.add_fault(
        method="sendMessage",
        chat_id=-4005010,
        status=400,
        description="Bad Request: group chat was upgraded to a supergroup chat",
        parameters={"migrate_to_chat_id": -1004005010},
        times=1,
    )
    ann = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=CHAT,
        chat_id=-4005010,
        chat_type="group",
    )

    ann.post(ann.message(text="/start"))

    sent = telegram_api.calls("sendMessage")
    assert [(call["params"]["chat_id"], call["status"]) for call in sent] == [
        ("-4005010", 400),
        ("-1004005010", 200),
    ]
    assert list(OutboundMessage.objects.values_list("chat_id", "status")) == [
        (-1004005010, Status.SENT)
    ]


# Being told to wait is not a failure: a reply deferred by retry_after eight
# times (OUTBOX_MAX_ATTEMPTS) is failed outright on its first server error.
# Each wait is served in full, since retry_after pauses the whole bot.
def test_retry_after_deferrals_do_not_use_up_the_attempts(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    telegram_api.add_fault(
        method="sendMessage",
        status=429,
        parameters={"retry_after": 1},
        times=settings.OUTBOX_MAX_ATTEMPTS,
    )
    telegram_api.add_fault(method="sendMessage", status=500, times=1)
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    ann.post(ann.message(text="/start"))

    for _throttled in range(settings.OUTBOX_MAX_ATTEMPTS):
        due = OutboundMessage.objects.get().next_attempt_at
        while due is not None and timezone.now() < due:
            time.sleep(0.02)
        outbox_chat_drain(bot_id=demo_bot.pk, chat_id=CHAT)

    statuses = [call["status"] for call in telegram_api.calls("sendMessage")]
    assert statuses == [429] * settings.OUTBOX_MAX_ATTEMPTS + [500]
    row = OutboundMessage.objects.get()
    assert row.status == Status.PENDING
    assert row.next_attempt_at is not None


# PTB treats an explicit read_timeout=None as "no read timeout", so a hung
# call is only abandoned by the outer future after 2 x timeout + 5 seconds.
def test_a_hanging_bot_api_call_gives_up_after_the_configured_timeout(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    telegram_api.add_fault(method="sendMessage", hang=True, times=1)
    started = time.monotonic()

    with pytest.raises(TelegramNetworkError):
        telegram_call(
            token=DEMO_TOKEN,
            method="sendMessage",
            params={"chat_id": CHAT, "text": "hi"},
        )

    elapsed = time.monotonic() - started
    assert elapsed < settings.TELEGRAM_TIMEOUT_SECONDS + 1.0


# Sync code called from a coroutine (an async framework, a browser driver):
# the thread's loop is busy, so the call runs on a loop of another thread.
def test_a_call_made_while_the_thread_runs_an_event_loop_still_goes_out(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    async def from_a_coroutine() -> Any:
        return telegram_call(
            token=DEMO_TOKEN,
            method="sendMessage",
            params={"chat_id": CHAT, "text": "from a loop"},
        )

    message = asyncio.run(from_a_coroutine())

    assert (message["chat"]["id"], message["text"]) == (CHAT, "from a loop")
    calls = telegram_api.calls("sendMessage", token=DEMO_TOKEN)
    # Sent as a form, as python-telegram-bot does: every value is text.
    assert [call["params"] for call in calls] == [
        {"chat_id": str(CHAT), "text": "from a loop"}
    ]


# Callbacks with no chat (inline messages) all get outbox chat_id 0, one
# strictly ordered queue: one user's throttled answer holds everyone else's.
def test_an_inline_callback_answer_is_not_held_by_another_users(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    telegram_api.add_fault(
        method="answerCallbackQuery",
        status=429,
        parameters={"retry_after": 30},
        times=1,
    )
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=5560031)
    tom = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=5560032)

    ann.post(_callback_update(ann, "1:main:0:x", inline_message_id="AAAAann"))
    tom.post(_callback_update(tom, "1:main:0:x", inline_message_id="AAAAtom"))

    answers = [
        (call["params"]["callback_query_id"], call["status"])
        for call in telegram_api.calls("answerCallbackQuery")
    ]
    tom_query = _outcomes()[-1][0]
    assert (f"cb-{tom_query}", 200) in answers


# A timed-out call is only abandoned by the waiting thread: its coroutine
# keeps its pooled connection, so enough hung calls starve every later call.
def test_timed_out_calls_give_their_connections_back(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    hung = 64
    telegram_api.add_fault(method="sendMessage", hang=True, times=hung)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            telegram_call(
                token=DEMO_TOKEN,
                method="sendMessage",
                params={"chat_id": CHAT, "text": "hi"},
            )
        except TelegramNetworkError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(hung)]
    for thread in threads:
        thread.start()
        # The fake's listen backlog is small: connect one at a time.
        time.sleep(0.03)
    for thread in threads:
        thread.join(timeout=60)
    assert len(errors) == hung
    assert [call["status"] for call in telegram_api.calls("sendMessage")] == [0] * hung

    try:
        me = telegram_call(token=DEMO_TOKEN, method="getMe")
    finally:
        # Let go of the hung calls, so that later tests get connections.
        telegram_api.clear_faults()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                telegram_call(token=DEMO_TOKEN, method="getMe")
                break
            except TelegramNetworkError:
                time.sleep(0.2)

    assert me["username"] == USERNAME


# Several gunicorn workers against the same PostgreSQL


@pytest.fixture
def server(demo_bot: Bot, fake_telegram_url: str) -> Iterator[str]:
    env = demo_server_env(
        database=settings.DATABASES["default"], telegram_url=fake_telegram_url
    )
    with gunicorn(workers=4, env=env) as url:
        yield url


class _ServerClient:
    """Posts to the gunicorn server with the Django test client's signature."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30.0)

    def post(
        self, path: str, *, data: str, content_type: str, headers: dict[str, str]
    ) -> httpx.Response:
        return self.http.post(
            path, content=data, headers={**headers, "Content-Type": content_type}
        )


def _server_user(
    server: str, bot: Bot, telegram: FakeTelegramControl, **kw: Any
) -> ChatUser:
    user = ChatUser(bot=bot, telegram=telegram, **kw)
    user.client = _ServerClient(server)  # type: ignore[assignment]

    return user


def _fire(server: str, bot: Bot, bodies: list[dict[str, Any]]) -> list[int]:
    """Post every body at once, each on its own connection; return statuses."""
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = [0] * len(bodies)

    def post(index: int, body: dict[str, Any]) -> None:
        with httpx.Client(base_url=server, timeout=30.0) as http:
            barrier.wait()
            response = http.post(
                f"/telegram/{bot.pk}/webhook",
                content=json.dumps(body),
                headers={
                    "Content-Type": "application/json",
                    "X-Telegram-Bot-Api-Secret-Token": DEMO_SECRET,
                },
            )
            statuses[index] = response.status_code

    threads = [
        threading.Thread(target=post, args=(index, body))
        for index, body in enumerate(bodies)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    return statuses


def test_one_update_fired_at_every_worker_at_once_is_processed_once(
    server: str, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    update = ann.message(text="/start")

    statuses = _fire(server, demo_bot, [update] * 16)

    assert statuses == [200] * 16
    assert _outcomes() == [(update["update_id"], "processed")]
    assert Conversation.objects.count() == 1
    assert list(OutboundMessage.objects.values_list("status", flat=True)) == [
        Status.SENT
    ]
    assert [texts([c]) for c in telegram_api.calls("sendMessage")] == [
        [("sendMessage", WELCOME)]
    ]


def test_the_final_answer_delivered_to_every_worker_writes_one_order(
    server: str, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = _server_user(server, demo_bot, telegram_api, user_id=CHAT)
    _to_phone_step(ann)
    telegram_api.clear_calls()
    final = ann.message(text="/skip")

    statuses = _fire(server, demo_bot, [final] * 12)

    assert statuses == [200] * 12
    assert len(_orders(demo_bot)) == 1
    assert ProcessedUpdate.objects.filter(update_id=final["update_id"]).count() == 1
    sent = [text for _m, text in texts(telegram_api.calls("sendMessage"))]
    assert sent == [
        "<b>Thank you, Ann!</b> Your order: Latte, Small — 2 cups.",
        WELCOME,
    ]
    assert Conversation.objects.get().state["node"] == "main"


def test_a_burst_of_different_updates_for_one_chat_applies_each_once(
    server: str, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = _server_user(server, demo_bot, telegram_api, user_id=CHAT)
    ann.say("/start")
    generation = Conversation.objects.get().state["generation"]
    telegram_api.clear_calls()
    burst = [ann.message(text="/order") for _ in range(12)]

    statuses = _fire(server, demo_bot, burst)

    assert statuses == [200] * 12
    assert ProcessedUpdate.objects.count() == 13
    state = Conversation.objects.get().state
    assert state["generation"] == generation + 12
    assert (state["node"], state["step"]) == ("order", 0)
    prompts = texts(telegram_api.calls("sendMessage"))
    assert prompts == [("sendMessage", "Which drink would you like?")] * 12
    assert _statuses() == [Status.SENT] * 13


def test_the_first_messages_of_a_new_chat_racing_make_one_conversation(
    server: str, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    burst = [ann.message(text=f"hello {n}") for n in range(10)]

    statuses = _fire(server, demo_bot, burst)

    assert statuses == [200] * 10
    assert ProcessedUpdate.objects.count() == 10
    assert Conversation.objects.count() == 1
    sent = sorted(text for _m, text in texts(telegram_api.calls("sendMessage")))
    assert sent == ["Please use the buttons below."] * 9 + [WELCOME]


def test_one_button_pressed_on_several_workers_at_once_applies_once(
    server: str, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = _server_user(server, demo_bot, telegram_api, user_id=CHAT)
    ann.say("/start")
    ann.press("☕ Order a drink")
    message_id, buttons = ann.last_keyboard()
    latte = next(b["callback_data"] for b in buttons if b["text"] == "Latte")
    telegram_api.clear_calls()
    presses = [
        _callback_update(
            ann,
            latte,
            message={
                "message_id": message_id,
                "date": 1767261600,
                "chat": {"id": CHAT, "type": "private"},
                "text": "…",
            },
        )
        for _ in range(8)
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


def test_many_users_finishing_at_once_with_duplicates_write_one_order_each(
    server: str, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    users = [
        _server_user(server, demo_bot, telegram_api, user_id=CHAT + n) for n in range(5)
    ]
    for user in users:
        _to_phone_step(user, name=f"User {user.user_id}")
    finals = [user.message(text="/skip") for user in users]

    statuses = _fire(server, demo_bot, finals * 3)

    assert statuses == [200] * 15
    assert sorted(row["user_id"] for row in _orders(demo_bot)) == [
        CHAT + n for n in range(5)
    ]


def test_a_publish_is_seen_by_every_worker(
    server: str, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    warm = [
        ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT + n).message(
            text="/start"
        )
        for n in range(8)
    ]
    assert _fire(server, demo_bot, warm) == [200] * 8
    # The demo's conversation tests describe the shipped spec, changed here.
    demo_bot.transcripts.all().delete()
    spec_publish(bot=demo_bot, source=_spec_without_large_and_help())
    telegram_api.clear_calls()
    after = [
        ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT + 100 + n).message(
            text="/start"
        )
        for n in range(8)
    ]

    assert _fire(server, demo_bot, after) == [200] * 8

    keyboards = [labels(call) for call in telegram_api.calls("sendMessage")]
    assert keyboards == [[["☕ Order a drink"], ["🧾 My orders"]]] * 8


def test_a_hanging_telegram_does_not_hold_a_webhook_served_with_a_broker(
    demo_bot: Bot, fake_telegram_url: str, telegram_api: FakeTelegramControl
) -> None:
    # In production the send is a Celery task: the webhook answers at once
    # and the reply waits in the outbox (no worker runs in this test).
    prefix = f"bfhostile-{uuid.uuid4().hex[:8]}"
    env = {
        "DATABASE_URL": database_url(settings.DATABASES["default"]),
        "TELEGRAM_API_URL": fake_telegram_url,
        "DOTENV_PATH": "/dev/null",
        "LOG_LEVEL": "warning",
        "CACHE_KEY_PREFIX": prefix,
    }
    telegram_api.add_fault(method="sendMessage", hang=True, times=1)
    try:
        with gunicorn(workers=2, env=env) as url:
            ann = _server_user(url, demo_bot, telegram_api, user_id=CHAT)
            started = time.monotonic()
            ann.post(ann.message(text="/start"))
            elapsed = time.monotonic() - started
    finally:
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)

    assert elapsed < 2.0
    assert OutboundMessage.objects.get().status == Status.PENDING
    assert telegram_api.calls("sendMessage") == []


def _raw_post(server: str, bot: Bot, head: bytes, payload: bytes) -> int | None:
    """Send a hand-written HTTP request; return the status, None on no answer."""
    host, port = server.removeprefix("http://").split(":")
    request = (
        (
            f"POST /telegram/{bot.pk}/webhook HTTP/1.1\r\n"
            f"Host: {host}\r\n"
            f"X-Telegram-Bot-Api-Secret-Token: {DEMO_SECRET}\r\n"
            "Content-Type: application/json\r\n"
            "Connection: close\r\n"
        ).encode()
        + head
        + b"\r\n"
        + payload
    )
    with socket.create_connection((host, int(port)), timeout=5.0) as sock:
        sock.sendall(request)
        try:
            answer = sock.recv(4096)
        except TimeoutError:
            return None
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)

    return int(match.group(1)) if match else None


@pytest.mark.parametrize(
    "head",
    [
        "Content-Length: {short}\r\n",
        "Content-Length: -5\r\n",
        "Content-Length: abc\r\n",
        "Content-Length: {exact}\r\nContent-Length: 5\r\n",
    ],
    ids=["shorter_than_the_body", "negative", "not_a_number", "twice"],
)
def test_a_lying_content_length_is_a_400_and_stores_nothing(
    server: str, demo_bot: Bot, head: str
) -> None:
    body = json.dumps(_message_update(50)).encode()
    line = head.format(short=len(body) - 10, exact=len(body)).encode()

    status = _raw_post(server, demo_bot, line, body)

    assert status == 400
    assert _outcomes() == []


# Django reads a body only up to CONTENT_LENGTH, so a chunked request (no
# Content-Length) reaches the view empty and a valid update is refused as
# "not valid JSON" instead of being read (or refused as 411).
def test_a_chunked_update_is_read_or_refused_as_length_required(
    server: str, demo_bot: Bot
) -> None:
    body = json.dumps(_message_update(51)).encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"

    status = _raw_post(server, demo_bot, b"Transfer-Encoding: chunked\r\n", chunked)

    assert (status, _outcomes()) in [(200, [(51, "processed")]), (411, [])]
