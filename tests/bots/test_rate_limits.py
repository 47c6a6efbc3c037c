"""Telegram's sending limits, kept across processes: per chat, per group and
per bot, in Redis or, in the embedded default, in the local-memory cache."""

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from bots.models import Bot, OutboundMessage
from bots.services import send_limits
from bots.services.outbox import outbox_chat_drain
from bots.services.send_limits import SendLimits, send_limits_admit, send_limits_pause
from tests.bots.outbox_support import (
    accepted_texts,
    enqueue,
    most_in_window,
    queue,
    wait_until_settled,
    workers_warm_up,
)
from tests.bots.test_llm_workers import Workers
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

pytest_plugins = ["tests.bots.outbox_fixtures"]

Status = OutboundMessage.Status
CHAT = 6610001
GROUP = -1006610001
# What Telegram asks for, as the settings' defaults give it.
TELEGRAM = SendLimits(
    chat_burst=3,
    chat_per_second=1.0,
    group_limit=20,
    group_window_seconds=60.0,
    bot_per_second=30,
)
# Scheduling on two shared cores: a call reaches the fake a little after
# its slot was taken, and not always equally late.
JITTER_SECONDS = 0.4


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["redis", "local"])
def backend(request: pytest.FixtureRequest, settings: Any) -> str:
    """Keep the limits in Redis, or in the local-memory cache as the embedded
    default does."""
    if request.param == "local":
        settings.REDIS_URL = None
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": f"send-limits-{id(request)}",
            }
        }

    return str(request.param)


@pytest.fixture
def redis_down(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the cache at a port where no Redis listens."""
    settings.CACHES = {
        **settings.CACHES,
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
        },
    }
    monkeypatch.setattr(send_limits, "_redis_down_until", 0.0)
    monkeypatch.setattr(send_limits, "_fallback_cache", None)
    yield
    send_limits._redis_down_until = 0.0


def _admits(bot_id: int, chat_id: int, count: int, limits: SendLimits) -> list[float]:
    return [
        send_limits_admit(bot_id=bot_id, chat_id=chat_id, limits=limits)
        for _ in range(count)
    ]


# One process


@pytest.mark.django_db
def test_a_chat_gets_its_burst_then_waits_for_the_bucket_to_refill(
    backend: str,
) -> None:
    bot = BotFactory.create()

    waits = _admits(bot.pk, CHAT, 4, TELEGRAM)

    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.9 <= waits[3] <= 1.0
    assert send_limits_admit(bot_id=bot.pk, chat_id=CHAT + 1, limits=TELEGRAM) == 0.0


@pytest.mark.django_db
def test_a_group_gets_twenty_messages_in_a_window_then_waits_for_the_oldest(
    backend: str,
) -> None:
    bot = BotFactory.create()
    limits = SendLimits(
        chat_burst=100,
        chat_per_second=100.0,
        group_limit=20,
        group_window_seconds=60.0,
        bot_per_second=30,
    )

    waits = _admits(bot.pk, GROUP, 21, limits)

    assert waits[:20] == [0.0] * 20
    assert 59.0 <= waits[20] <= 60.0
    # A private chat of the same bot is not held by the group.
    assert send_limits_admit(bot_id=bot.pk, chat_id=CHAT, limits=limits) == 0.0


@pytest.mark.django_db
def test_a_bot_sends_thirty_messages_a_second_over_all_its_chats(
    backend: str,
) -> None:
    bot = BotFactory.create()
    other = BotFactory.create()

    waits = [
        send_limits_admit(bot_id=bot.pk, chat_id=CHAT + n, limits=TELEGRAM)
        for n in range(31)
    ]

    assert waits[:30] == [0.0] * 30
    assert 0.0 < waits[30] <= 1.0
    assert send_limits_admit(bot_id=other.pk, chat_id=CHAT, limits=TELEGRAM) == 0.0


@pytest.mark.django_db
def test_a_refused_slot_takes_nothing_from_the_other_limits(backend: str) -> None:
    # given a bot with one message left this second and a chat with none
    bot = BotFactory.create()
    limits = SendLimits(
        chat_burst=1,
        chat_per_second=0.5,
        group_limit=20,
        group_window_seconds=60.0,
        bot_per_second=2,
    )
    assert send_limits_admit(bot_id=bot.pk, chat_id=CHAT, limits=limits) == 0.0

    # when the empty chat asks again and again
    refused = _admits(bot.pk, CHAT, 5, limits)

    # then another chat still gets the bot's last message
    assert all(wait > 0 for wait in refused)
    assert send_limits_admit(bot_id=bot.pk, chat_id=CHAT + 1, limits=limits) == 0.0


@pytest.mark.django_db
def test_a_pause_holds_every_chat_of_the_bot_and_is_never_shortened(
    backend: str,
) -> None:
    bot = BotFactory.create()
    other = BotFactory.create()

    send_limits_pause(bot_id=bot.pk, seconds=5)
    send_limits_pause(bot_id=bot.pk, seconds=1)

    waits = [
        send_limits_admit(bot_id=bot.pk, chat_id=chat, limits=TELEGRAM)
        for chat in (CHAT, GROUP)
    ]
    assert all(4.5 < wait <= 5.0 for wait in waits), waits
    assert send_limits_admit(bot_id=other.pk, chat_id=CHAT, limits=TELEGRAM) == 0.0


@pytest.mark.django_db
def test_with_redis_down_the_message_is_still_sent_and_the_limits_kept_locally(
    redis_down: None,
    telegram_api: FakeTelegramControl,
    caplog: pytest.LogCaptureFixture,
    settings: Any,
) -> None:
    settings.OUTBOX_CHAT_BURST = 3
    bot = BotFactory.create()
    queue(bot, CHAT, "one", "two", "three", "four")

    with caplog.at_level(logging.WARNING, logger="bots.services.send_limits"):
        sent = outbox_chat_drain(bot_id=bot.pk, chat_id=CHAT)

    assert sent == 3
    assert [c["params"]["text"] for c in telegram_api.calls("sendMessage")] == [
        "one",
        "two",
        "three",
    ]
    statuses = OutboundMessage.objects.order_by("id").values_list("status", "attempts")
    assert list(statuses) == [(Status.SENT, 1)] * 3 + [(Status.PENDING, 0)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Redis failed for the send limits; each process keeps its own for 5 s "
        "(ConnectionError)"
    ]


# Several worker processes


_WORKER_COUNT = 2


def _start(
    workers: Workers, telegram: FakeTelegramControl, limits: dict[str, str]
) -> None:
    for _ in range(_WORKER_COUNT):
        workers.start(pool="solo", concurrency=1, **limits)
    workers_warm_up(telegram, count=_WORKER_COUNT)


def _texts(prefix: str, count: int) -> list[str]:
    return [f"{prefix} {n}" for n in range(count)]


def _queue_texts(bot: Bot, chat_id: int, count: int) -> list[str]:
    texts = _texts(f"chat {chat_id}", count)
    queue(bot, chat_id, *texts)

    return texts


def _assert_within(times: list[float], allowed: Any) -> None:
    """Check that every span of calls holds at most ``allowed(its length)``,
    the length widened by the jitter of the calls' arrival."""
    for first in range(len(times)):
        for last in range(first + 1, len(times)):
            span = times[last] - times[first] + JITTER_SECONDS
            assert last - first + 1 <= allowed(span), (first, last, span)


def _delivered_once(calls: list[dict[str, Any]], texts: list[str]) -> None:
    assert accepted_texts(calls) == dict.fromkeys(texts, 1)
    assert [call["status"] for call in calls] == [200] * len(texts)


def test_a_private_chat_gets_its_burst_then_one_message_per_interval(
    workers: Workers, telegram_api: FakeTelegramControl, record_property: Any
) -> None:
    # given two workers and a chat limit of a burst of 3 refilling at 10 a
    # second (Telegram's 1 a second, sped up)
    rate, burst = 10.0, 3
    _start(
        workers,
        telegram_api,
        {"OUTBOX_CHAT_BURST": str(burst), "OUTBOX_CHAT_PER_SECOND": str(rate)},
    )
    bot = BotFactory.create()
    texts = _texts("private", 60)
    queue(bot, CHAT, *texts)

    # when both workers drain the chat
    enqueue(bot, CHAT, copies=3)
    wait_until_settled(bot)

    # then every message arrives once, in order, and no span holds more than
    # the burst plus what the bucket refilled in it
    calls = telegram_api.calls("sendMessage", token=bot.token)
    _delivered_once(calls, texts)
    assert [call["params"]["text"] for call in calls] == texts
    times = [call["at"] for call in calls]
    _assert_within(times, lambda span: burst + rate * span)
    spread = times[-1] - times[burst - 1]
    assert spread >= (len(texts) - burst) / rate - JITTER_SECONDS
    assert spread <= 2 * (len(texts) - burst) / rate
    # and waiting for the bucket cost no attempt
    attempts = OutboundMessage.objects.values_list("attempts", flat=True)
    assert set(attempts) == {1}
    record_property("private_60_spread_seconds", round(spread, 2))


def test_a_group_gets_at_most_its_limit_in_any_window(
    workers: Workers, telegram_api: FakeTelegramControl, record_property: Any
) -> None:
    # given two workers and a group limit of 20 in 4 seconds (Telegram's 20 a
    # minute, sped up), with the per-chat bucket out of the way
    window = 4.0
    _start(
        workers,
        telegram_api,
        {
            "OUTBOX_GROUP_LIMIT": "20",
            "OUTBOX_GROUP_WINDOW_SECONDS": str(window),
            "OUTBOX_CHAT_BURST": "1000",
            "OUTBOX_CHAT_PER_SECOND": "1000",
        },
    )
    bot = BotFactory.create()
    texts = _texts("group", 45)
    queue(bot, GROUP, *texts)

    # when both workers drain the group
    enqueue(bot, GROUP, copies=3)
    wait_until_settled(bot)

    # then every message arrives once and no window holds more than 20
    calls = telegram_api.calls("sendMessage", token=bot.token)
    _delivered_once(calls, texts)
    times = [call["at"] for call in calls]
    _assert_within(times, lambda span: 20 * (span // window + 1))
    assert most_in_window(times, window) <= 21
    assert times[-1] - times[0] >= 2 * window - JITTER_SECONDS
    record_property("group_45_most_in_4s", most_in_window(times, window))
    record_property("group_45_seconds", round(times[-1] - times[0], 2))


def test_a_bot_keeps_its_limit_per_second_over_many_chats(
    workers: Workers, telegram_api: FakeTelegramControl, record_property: Any
) -> None:
    # given two workers and a bot limit of 5 a second (Telegram's 30, lowered
    # so that two workers on a busy machine surely go faster than it)
    per_second = 5
    _start(workers, telegram_api, {"OUTBOX_BOT_PER_SECOND": str(per_second)})
    bot = BotFactory.create()
    chats = [CHAT + n for n in range(15)]
    texts = []
    for chat in chats:
        texts += _queue_texts(bot, chat, 2)

    # when both workers drain every chat
    enqueue(bot, *chats)
    wait_until_settled(bot)

    # then every message arrives once and no second holds more than 5
    calls = telegram_api.calls("sendMessage", token=bot.token)
    _delivered_once(calls, texts)
    times = [call["at"] for call in calls]
    _assert_within(times, lambda span: per_second * (span // 1.0 + 1))
    spread = times[-1] - times[0]
    assert spread >= (len(texts) - per_second) / per_second - JITTER_SECONDS
    record_property("bot_30_most_in_second", most_in_window(times, 1.0))
    record_property("bot_30_seconds", round(spread, 2))
