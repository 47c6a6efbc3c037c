"""The outbox against a failing Bot API: flood control, server errors and
timeouts, blocked users, refused markup, stale callback queries, migrated
groups, and workers killed in the middle of a send."""

import os
import signal
import time
from typing import Any

import pytest
from django.utils import timezone

from bots.models import BlockedChat, Bot, Conversation, OutboundMessage
from bots.services.outbox import outbox_chat_drain, outbox_sweep
from tests.bots.chat_user import ChatUser, texts
from tests.bots.outbox_support import (
    accepted_texts,
    enqueue,
    queue,
    wait_for_calls,
    wait_until_settled,
)
from tests.bots.test_llm_workers import Workers
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

pytest_plugins = ["tests.bots.outbox_fixtures"]

Status = OutboundMessage.Status
CHAT = 6620001
WELCOME = "Welcome to the Café Bot, Ann! What would you like?"
STALE_QUERY = (
    "Bad Request: query is too old and response timeout expired or query ID is invalid"
)
CANT_PARSE = (
    'Bad Request: can\'t parse entities: Unsupported start tag "tg-emoji" at '
    "byte offset 4"
)


def _as_reported(description: str) -> str:
    """Return a Bot API error as python-telegram-bot reports it."""
    return description.removeprefix("Bad Request: ").capitalize()


def _rows(bot: Bot) -> list[tuple[str, int]]:
    return list(
        OutboundMessage.objects.filter(bot=bot)
        .order_by("id")
        .values_list("status", "attempts")
    )


def _make_due(bot: Bot) -> None:
    OutboundMessage.objects.filter(bot=bot).update(next_attempt_at=timezone.now())


@pytest.fixture
def bot(telegram_api: FakeTelegramControl) -> Bot:
    return BotFactory.create()


# Server errors and timeouts


@pytest.mark.django_db
def test_a_server_error_is_retried_with_growing_backoff_until_the_last_attempt(
    bot: Bot, telegram_api: FakeTelegramControl, settings: Any
) -> None:
    # given a Bot API that answers 502 to every message
    settings.OUTBOX_MAX_ATTEMPTS = 4
    telegram_api.add_fault(method="sendMessage", status=502)
    queue(bot, CHAT, "one", "two")

    # when the chat is drained once per attempt, each retry made due
    backoffs = []
    for _attempt in range(settings.OUTBOX_MAX_ATTEMPTS):
        before = timezone.now()
        outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)
        head = OutboundMessage.objects.filter(bot=bot).order_by("id").first()
        assert head is not None
        if head.status == Status.PENDING:
            assert head.next_attempt_at is not None
            backoffs.append((head.next_attempt_at - before).total_seconds())
            _make_due(bot)

    # then each wait is 2^attempt seconds, jittered down by at most half, the
    # head fails for good after the last attempt and the next row goes on
    for attempt, backoff in enumerate(backoffs, start=1):
        assert 2**attempt * 0.5 <= backoff <= 2**attempt + 0.5, (attempt, backoff)
    assert len(backoffs) == settings.OUTBOX_MAX_ATTEMPTS - 1
    head = OutboundMessage.objects.filter(bot=bot).order_by("id").first()
    assert head is not None
    assert (head.status, head.attempts, head.last_error) == (
        Status.FAILED,
        4,
        "Bad Gateway",
    )
    calls = telegram_api.calls("sendMessage")
    assert [(c["params"]["text"], c["status"]) for c in calls] == [
        ("one", 502),
        ("one", 502),
        ("one", 502),
        ("one", 502),
        ("two", 502),
    ]
    assert _rows(bot) == [(Status.FAILED, 4), (Status.PENDING, 1)]


@pytest.mark.django_db
def test_a_timed_out_call_is_retried_and_sent_when_the_api_answers_in_time(
    bot: Bot, telegram_api: FakeTelegramControl, settings: Any
) -> None:
    # given a Bot API that answers the first two messages too late
    settings.TELEGRAM_TIMEOUT_SECONDS = 0.5
    settings.OUTBOX_MAX_ATTEMPTS = 3
    telegram_api.add_fault(method="sendMessage", delay_ms=1500, times=2)
    queue(bot, CHAT, "one")

    # when the chat is drained until the row settles
    for _attempt in range(settings.OUTBOX_MAX_ATTEMPTS):
        outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)
        _make_due(bot)

    # then the third attempt sent it
    row = OutboundMessage.objects.get(bot=bot)
    assert (row.status, row.attempts) == (Status.SENT, 3)
    assert row.last_error == "Timed out"
    # and, since the slow calls were carried out once their delay was over,
    # the chat shows the message three times: a timeout is a duplicate window
    calls = wait_for_calls(
        telegram_api,
        bot.token,
        lambda calls: [call["status"] for call in calls] == [200] * 3,
        seconds=10,
    )
    assert accepted_texts(calls) == {"one": 3}


@pytest.mark.django_db
def test_a_call_that_always_times_out_fails_after_the_last_attempt(
    bot: Bot, telegram_api: FakeTelegramControl, settings: Any
) -> None:
    settings.TELEGRAM_TIMEOUT_SECONDS = 0.5
    settings.OUTBOX_MAX_ATTEMPTS = 2
    telegram_api.add_fault(method="sendMessage", hang=True)
    queue(bot, CHAT, "one")

    for _attempt in range(settings.OUTBOX_MAX_ATTEMPTS + 1):
        outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)
        _make_due(bot)

    row = OutboundMessage.objects.get(bot=bot)
    assert (row.status, row.attempts, row.last_error) == (
        Status.FAILED,
        2,
        "Timed out",
    )
    assert row.sent_at is None
    assert [c["status"] for c in telegram_api.calls("sendMessage")] == [0, 0]


# A user who blocked the bot


@pytest.mark.django_db(transaction=True)
def test_a_blocked_chat_gets_nothing_more_until_the_user_lets_the_bot_back(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    # given a user who blocked the bot: its answer is refused with 403
    telegram_api.add_fault(
        method="sendMessage",
        status=403,
        description="Forbidden: bot was blocked by the user",
    )
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=CHAT)
    assert texts(ann.say("/start")) == [("sendMessage", WELCOME)]
    assert list(BlockedChat.objects.values_list("chat_id", flat=True)) == [CHAT]

    # when a reply is queued later (as a late LLM answer would be)
    queue(demo_bot, CHAT, "late answer")
    assert outbox_chat_drain(bot_id=demo_bot.pk, chat_id=CHAT) == 0

    # then it is closed unsent and Telegram heard nothing more
    assert [c["status"] for c in telegram_api.calls("sendMessage")] == [403]
    late = OutboundMessage.objects.get(payload__text="late answer")
    assert (late.status, late.attempts, late.last_error) == (
        Status.FAILED,
        0,
        "chat unreachable",
    )

    # and once the user unblocks the bot (my_chat_member), replies go again
    telegram_api.clear_faults()
    member = {
        "update_id": 66200011,
        "my_chat_member": {
            "chat": {"id": CHAT, "type": "private"},
            "from": {"id": CHAT, "is_bot": False, "first_name": "Ann"},
            "date": 1767261600,
            "old_chat_member": {
                "status": "kicked",
                "user": {"id": 1, "is_bot": True, "first_name": "Bot"},
            },
            "new_chat_member": {
                "status": "member",
                "user": {"id": 1, "is_bot": True, "first_name": "Bot"},
            },
        },
    }
    ann.post(member)
    assert not BlockedChat.objects.exists()
    assert texts(ann.say("/start")) == [("sendMessage", WELCOME)]


# Markup Telegram cannot parse


@pytest.mark.django_db
def test_markup_telegram_cannot_parse_is_sent_once_more_as_plain_text(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    # given a Bot API that refuses the markup of the first message once
    telegram_api.add_fault(
        method="sendMessage", status=400, description=CANT_PARSE, times=1
    )
    html = '<b>Latte</b> &amp; <i>cake</i> &lt;3 <a href="https://e.x/m">menu</a>'
    queue(bot, CHAT, html, parse_mode="HTML")
    queue(bot, CHAT, "next")

    # when the chat is drained
    outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)

    # then it goes again without parse_mode, as the text the user would read
    calls = telegram_api.calls("sendMessage")
    assert [(c["params"], c["status"]) for c in calls] == [
        ({"chat_id": str(CHAT), "text": html, "parse_mode": "HTML"}, 400),
        ({"chat_id": str(CHAT), "text": "Latte & cake <3 menu"}, 200),
        ({"chat_id": str(CHAT), "text": "next"}, 200),
    ]
    assert _rows(bot) == [(Status.SENT, 2), (Status.SENT, 1)]


@pytest.mark.django_db
def test_plain_text_refused_as_well_is_final(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    telegram_api.add_fault(
        method="sendMessage", chat_id=CHAT, status=400, description=CANT_PARSE
    )
    queue(bot, CHAT, "<b>bold</b>", parse_mode="HTML")

    outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)
    _make_due(bot)
    outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)

    calls = telegram_api.calls("sendMessage")
    assert [c["params"].get("parse_mode") for c in calls] == ["HTML", None]
    row = OutboundMessage.objects.get(bot=bot)
    assert (row.status, row.attempts, row.last_error) == (
        Status.FAILED,
        2,
        _as_reported(CANT_PARSE),
    )
    assert row.payload == {"chat_id": CHAT, "text": "bold"}


# A callback query answered too late


@pytest.mark.django_db
def test_a_stale_callback_query_fails_once_and_holds_nothing_back(
    bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    # given a button's answer that Telegram no longer accepts
    telegram_api.add_fault(
        method="answerCallbackQuery", status=400, description=STALE_QUERY
    )
    OutboundMessage.objects.create(
        bot=bot,
        chat_id=CHAT,
        method="answerCallbackQuery",
        payload={"callback_query_id": "cb-stale"},
    )
    queue(bot, CHAT, "the menu again")

    # when the chat is drained, and drained again later
    assert outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT) == 2
    _make_due(bot)
    assert outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT) == 0

    # then the answer was tried exactly once and the message still went
    assert [(c["method"], c["status"]) for c in telegram_api.calls()] == [
        ("answerCallbackQuery", 400),
        ("sendMessage", 200),
    ]
    assert _rows(bot) == [(Status.FAILED, 1), (Status.SENT, 1)]
    stale = OutboundMessage.objects.get(method="answerCallbackQuery")
    assert stale.last_error == _as_reported(STALE_QUERY)


# A group upgraded to a supergroup


@pytest.mark.django_db(transaction=True)
def test_a_migrated_group_keeps_its_conversation_and_later_replies_follow(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    # given a group that Telegram upgraded to a supergroup
    old_id, new_id = -4006620, -1004006620
    telegram_api.add_fault(
        method="sendMessage",
        chat_id=old_id,
        status=400,
        description="Bad Request: group chat was upgraded to a supergroup chat",
        parameters={"migrate_to_chat_id": new_id},
    )
    ann = ChatUser(
        bot=demo_bot,
        telegram=telegram_api,
        user_id=CHAT,
        chat_id=old_id,
        chat_type="group",
    )

    # when a member starts the bot there, and a reply for the old id is
    # queued afterwards (as a late LLM answer would be)
    ann.post(ann.message(text="/start"))
    conversation = Conversation.objects.get(bot=demo_bot)
    queue(demo_bot, old_id, "late answer")
    outbox_chat_drain(bot_id=demo_bot.pk, chat_id=old_id)

    # then the conversation moved to the new id, and both replies reached it
    assert (conversation.chat_id, conversation.user_id) == (new_id, CHAT)
    calls = telegram_api.calls("sendMessage")
    assert [(c["params"]["chat_id"], c["status"]) for c in calls] == [
        (str(old_id), 400),
        (str(new_id), 200),
        (str(old_id), 400),
        (str(new_id), 200),
    ]
    assert [c["params"]["text"] for c in calls][-1] == "late answer"
    assert set(OutboundMessage.objects.values_list("chat_id", "status")) == {
        (new_id, Status.SENT)
    }

    # and the member's next message, from the supergroup, continues it
    ann.chat_id, ann.chat_type = new_id, "supergroup"
    ann.post(ann.message(text="/start"))
    assert list(Conversation.objects.values_list("pk", "chat_id")) == [
        (conversation.pk, new_id)
    ]


# Several worker processes


def _start(workers: Workers, env: dict[str, str], count: int = 1) -> list[int]:
    return [workers.start(pool="solo", concurrency=1, **env) for _ in range(count)]


def test_retry_after_pauses_the_whole_bot_in_every_worker(
    workers: Workers, telegram_api: FakeTelegramControl, record_property: Any
) -> None:
    # given two workers sending to three chats, one message a second each
    # after a burst of three
    retry_after, grace = 3, 0.5
    _start(workers, {"OUTBOX_CHAT_BURST": "3", "OUTBOX_CHAT_PER_SECOND": "1"}, 2)
    bot = BotFactory.create()
    busy = [CHAT + n for n in range(3)]
    for chat in busy:
        queue(bot, chat, *[f"{chat} {n}" for n in range(6)])
    enqueue(bot, *busy)
    wait_for_calls(telegram_api, bot.token, lambda calls: len(calls) >= 3)

    # when a fourth chat's message is answered 429 retry_after=3
    flooded = CHAT + 10
    telegram_api.add_fault(
        method="sendMessage",
        chat_id=flooded,
        status=429,
        parameters={"retry_after": retry_after},
        times=1,
    )
    queue(bot, flooded, "flooded 0", "flooded 1")
    enqueue(bot, flooded)
    wait_until_settled(bot)

    # then no call of the bot reached Telegram until the pause ended, but for
    # one the other worker had already under way
    calls = telegram_api.calls("sendMessage", token=bot.token)
    [limited] = [call for call in calls if call["status"] == 429]
    start, end = limited["at"], limited["at"] + retry_after
    slipped = [call for call in calls if start < call["at"] < end]
    assert len(slipped) <= 1, slipped
    assert all(call["at"] < start + grace for call in slipped)
    # and afterwards every message arrived exactly once
    expected = [f"{chat} {n}" for chat in busy for n in range(6)]
    expected += ["flooded 0", "flooded 1"]
    assert accepted_texts(calls) == dict.fromkeys(expected, 1)
    after = [call for call in calls if call["at"] >= end]
    assert len(after) >= 2 + 3
    assert min(call["at"] for call in after) - end < 2.0
    record_property("pause_slipped_calls", len(slipped))
    record_property("pause_calls_after", len(after))
    record_property(
        "pause_first_after_seconds", round(min(c["at"] for c in after) - start, 2)
    )


# A worker killed with kill -9 while a message is in flight; the lease is
# over one call's bound (2 s timeout: 2 x 2 + 1 s), so only a dead worker's
# row is taken over.
_KILL_ENV = {"TELEGRAM_TIMEOUT_SECONDS": "2", "OUTBOX_LEASE_SECONDS": "6"}


def _kill_mid_send(
    workers: Workers, telegram_api: FakeTelegramControl, *, held: Any
) -> Bot:
    """Kill the worker whose first message the fake holds as ``held`` says,
    then start another and let the sweep hand it the row."""
    [pid] = _start(workers, _KILL_ENV)
    bot = BotFactory.create()
    queue(bot, CHAT, "one", "two", "three")
    enqueue(bot, CHAT)
    wait_for_calls(telegram_api, bot.token, held)

    os.kill(pid, signal.SIGKILL)
    workers.processes[0].wait(timeout=10)
    telegram_api.clear_faults()
    row = OutboundMessage.objects.filter(bot=bot).order_by("id").first()
    assert row is not None
    assert (row.status, row.attempts) == (Status.IN_FLIGHT, 1)

    _start(workers, _KILL_ENV)
    assert row.lease_until is not None
    while timezone.now() <= row.lease_until:
        time.sleep(0.1)
    assert outbox_sweep(older_than_seconds=0) == 1
    wait_until_settled(bot)

    return bot


def test_a_worker_killed_before_telegram_answers_leaves_no_duplicate(
    workers: Workers, telegram_api: FakeTelegramControl, record_property: Any
) -> None:
    # given a worker whose first message the Bot API holds unanswered
    telegram_api.add_fault(method="sendMessage", hang=True, times=1)

    # when the worker is killed with kill -9 and another takes over
    bot = _kill_mid_send(
        workers, telegram_api, held=lambda calls: [c["status"] for c in calls] == [0]
    )

    # then every message was delivered once: the held call never completed
    calls = telegram_api.calls("sendMessage", token=bot.token)
    assert [(c["params"]["text"], c["status"]) for c in calls] == [
        ("one", 0),
        ("one", 200),
        ("two", 200),
        ("three", 200),
    ]
    assert _rows(bot) == [(Status.SENT, 2), (Status.SENT, 1), (Status.SENT, 1)]
    record_property("killed_before_answer_duplicates", 0)


def test_a_worker_killed_after_telegram_accepted_sends_exactly_one_duplicate(
    workers: Workers, telegram_api: FakeTelegramControl, record_property: Any
) -> None:
    # given a worker whose first message the Bot API accepts, then holds the
    # answer to
    telegram_api.add_fault(method="sendMessage", delay_after_ms=30000, times=1)

    # when the worker is killed with kill -9 inside that window
    bot = _kill_mid_send(
        workers,
        telegram_api,
        held=lambda calls: [c["status"] for c in calls] == [200],
    )

    # then the first message reached the chat twice, the others once
    calls = telegram_api.calls("sendMessage", token=bot.token)
    assert [(c["params"]["text"], c["status"]) for c in calls] == [
        ("one", 200),
        ("one", 200),
        ("two", 200),
        ("three", 200),
    ]
    duplicates = sum(accepted_texts(calls).values()) - 3
    assert duplicates == 1
    assert _rows(bot) == [(Status.SENT, 2), (Status.SENT, 1), (Status.SENT, 1)]
    first = OutboundMessage.objects.filter(bot=bot).order_by("id").first()
    assert first is not None and first.telegram_message_id == 2
    # The window itself, for the messages sent normally: from the fake
    # accepting the call to the row marked sent.
    windows = [
        row.sent_at.timestamp() - call["at"]
        for row, call in zip(
            OutboundMessage.objects.filter(bot=bot).order_by("id")[1:],
            calls[2:],
            strict=True,
        )
        if row.sent_at is not None
    ]
    assert len(windows) == 2
    assert all(0 < window < 1.0 for window in windows), windows
    record_property("killed_after_accept_duplicates", duplicates)
    record_property("duplicate_window_ms", [round(w * 1000, 1) for w in windows])
