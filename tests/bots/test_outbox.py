import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from bots.models import BlockedChat, Bot, OutboundMessage
from bots.services.outbox import outbox_chat_drain, outbox_sweep
from bots.services.send_limits import send_limits_admit
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

pytestmark = pytest.mark.django_db

Status = OutboundMessage.Status
CHAT = 424242


def _queue(
    bot: Bot, *texts: str, chat_id: int = CHAT, **fields: Any
) -> list[OutboundMessage]:
    return [
        OutboundMessage.objects.create(
            bot=bot,
            chat_id=chat_id,
            method="sendMessage",
            payload={"chat_id": chat_id, "text": text},
            **fields,
        )
        for text in texts
    ]


def _statuses(bot: Bot) -> list[str]:
    return list(
        OutboundMessage.objects.filter(bot=bot)
        .order_by("id")
        .values_list("status", flat=True)
    )


@pytest.fixture
def bot(telegram_api: FakeTelegramControl) -> Bot:
    return BotFactory.create()


def test_rows_of_a_chat_are_sent_in_order(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    _queue(bot, "one", "two", "three")

    sent = outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)

    assert sent == 3
    assert [c["params"]["text"] for c in telegram_api.calls("sendMessage")] == [
        "one",
        "two",
        "three",
    ]
    assert _statuses(bot) == [Status.SENT] * 3
    assert list(
        OutboundMessage.objects.order_by("id").values_list(
            "telegram_message_id", flat=True
        )
    ) == [1, 2, 3]


def test_retry_after_pauses_the_chat_for_at_least_that_long(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    telegram_api.add_fault(
        method="sendMessage", status=429, parameters={"retry_after": 2}, times=1
    )
    _queue(bot, "one", "two")
    before = timezone.now()

    sent = outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)

    head = OutboundMessage.objects.order_by("id").first()
    assert sent == 0
    assert _statuses(bot) == [Status.PENDING, Status.PENDING]
    assert head is not None and head.next_attempt_at is not None
    assert head.next_attempt_at >= before + timedelta(seconds=2)
    assert outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT) == 0

    time.sleep(2.1)
    assert outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT) == 2
    statuses = [c["status"] for c in telegram_api.calls("sendMessage")]
    assert statuses == [429, 200, 200]


def test_blocked_chat_is_marked_and_its_outbox_closed(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    telegram_api.add_fault(
        method="sendMessage",
        status=403,
        description="Forbidden: bot was blocked by the user",
    )
    _queue(bot, "one", "two")

    outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)

    assert _statuses(bot) == [Status.FAILED, Status.FAILED]
    assert list(BlockedChat.objects.values_list("bot_id", "chat_id")) == [
        (bot.pk, CHAT)
    ]
    assert len(telegram_api.calls("sendMessage")) == 1


def test_server_error_is_retried_with_backoff(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    telegram_api.add_fault(method="sendMessage", status=500, times=1)
    _queue(bot, "one")

    outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)

    message = OutboundMessage.objects.get()
    assert message.status == Status.PENDING
    assert message.attempts == 1
    assert (
        message.next_attempt_at is not None and message.next_attempt_at > timezone.now()
    )
    OutboundMessage.objects.update(next_attempt_at=timezone.now())
    assert outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT) == 1
    assert OutboundMessage.objects.get().status == Status.SENT


def test_message_not_modified_counts_as_sent(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    _queue(bot, "menu")
    outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)
    OutboundMessage.objects.create(
        bot=bot,
        chat_id=CHAT,
        method="editMessageText",
        payload={"chat_id": CHAT, "message_id": 1, "text": "menu"},
    )

    outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)

    assert _statuses(bot) == [Status.SENT, Status.SENT]
    assert [c["status"] for c in telegram_api.calls("editMessageText")] == [400]


def test_edit_of_a_missing_message_is_sent_as_a_new_message(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    OutboundMessage.objects.create(
        bot=bot,
        chat_id=CHAT,
        method="editMessageText",
        payload={"chat_id": CHAT, "message_id": 999, "text": "fresh"},
    )

    outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)

    message = OutboundMessage.objects.get()
    assert (message.status, message.method) == (Status.SENT, "sendMessage")
    assert [c["params"]["text"] for c in telegram_api.calls("sendMessage")] == ["fresh"]


def test_demo_mode_marks_replies_sent_without_calling_telegram(
    telegram_api: FakeTelegramControl,
) -> None:
    bot = BotFactory.create(token="")
    _queue(bot, "one")

    assert outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT) == 1

    assert _statuses(bot) == [Status.SENT]
    assert telegram_api.calls() == []


def test_a_row_in_flight_under_lease_is_not_taken_by_another_worker(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    _queue(
        bot,
        "one",
        status=Status.IN_FLIGHT,
        attempts=1,
        lease_until=timezone.now() + timedelta(seconds=30),
    )

    assert outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT) == 0

    assert telegram_api.calls() == []


def test_sweep_sends_rows_left_pending_and_rows_whose_lease_expired(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    old = timezone.now() - timedelta(minutes=5)
    _queue(bot, "left pending", chat_id=1)
    _queue(
        bot, "stuck", chat_id=2, status=Status.IN_FLIGHT, attempts=1, lease_until=old
    )
    _queue(bot, "fresh", chat_id=3)
    OutboundMessage.objects.filter(chat_id__in=[1, 2]).update(created_at=old)

    enqueued = outbox_sweep()

    assert enqueued == 2
    assert sorted(c["params"]["text"] for c in telegram_api.calls("sendMessage")) == [
        "left pending",
        "stuck",
    ]
    assert OutboundMessage.objects.get(chat_id=3).status == Status.PENDING


@pytest.mark.django_db(transaction=True)
def test_without_beat_the_webhook_sweeps_replies_left_pending(
    demo_bot: Bot, telegram_api: FakeTelegramControl, settings: Any
) -> None:
    from bots.services import outbox
    from tests.bots.chat_user import ChatUser

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.OUTBOX_SWEEP_INTERVAL_SECONDS = 1.0
    outbox._last_sweep = 0.0
    old = timezone.now() - timedelta(minutes=1)
    _queue(demo_bot, "put off earlier", chat_id=777)
    OutboundMessage.objects.filter(chat_id=777).update(created_at=old)

    ChatUser(bot=demo_bot, telegram=telegram_api, user_id=778).say("/start")

    sent = [c["params"]["text"] for c in telegram_api.calls("sendMessage")]
    assert "put off earlier" in sent
    assert OutboundMessage.objects.get(chat_id=777).status == Status.SENT


def test_a_bot_at_its_message_limit_still_answers_buttons_and_shows_typing(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    # given a bot that has used up Telegram's messages for this second
    for other_chat in range(settings.OUTBOX_BOT_PER_SECOND):
        assert send_limits_admit(bot_id=bot.pk, chat_id=other_chat + 1) == 0.0
    for method, payload in [
        ("answerCallbackQuery", {"callback_query_id": "cb-1"}),
        ("sendChatAction", {"chat_id": CHAT, "action": "typing"}),
    ]:
        OutboundMessage.objects.create(
            bot=bot, chat_id=CHAT, method=method, payload=payload
        )
    _queue(bot, "one")

    # when the chat's outbox is drained
    sent = outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)

    # then the button's answer and the typing indicator go out at once and
    # the message waits for the next second
    assert sent == 2
    assert [c["method"] for c in telegram_api.calls()] == [
        "answerCallbackQuery",
        "sendChatAction",
    ]
    assert _statuses(bot) == [Status.SENT, Status.SENT, Status.PENDING]
    waiting = OutboundMessage.objects.get(method="sendMessage")
    assert waiting.next_attempt_at is not None
    assert waiting.next_attempt_at > timezone.now()


@pytest.mark.django_db(transaction=True)
def test_a_row_added_while_another_task_sends_the_head_goes_with_that_task(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    # Given a task sending the chat's only row, held at the Bot API
    telegram_api.add_fault(method="sendMessage", delay_ms=600, times=1)
    _queue(bot, "one")

    def drain_in_thread() -> None:
        try:
            outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)
        finally:
            connection.close()

    first = threading.Thread(target=drain_in_thread)
    first.start()
    deadline = time.monotonic() + 5
    while not telegram_api.calls("sendMessage") and time.monotonic() < deadline:
        time.sleep(0.02)

    # When a second row arrives and its own task finds the head in flight
    _queue(bot, "two")
    second = outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)
    first.join(timeout=10)

    # Then the first task, done with the head, sends the new row as well
    assert second == 0
    assert [c["params"]["text"] for c in telegram_api.calls("sendMessage")] == [
        "one",
        "two",
    ]
    assert _statuses(bot) == [Status.SENT, Status.SENT]
