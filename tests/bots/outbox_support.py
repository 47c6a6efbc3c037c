"""Helpers for the outbox's fault and rate-limit tests: rows queued straight
into the outbox, real ``celery worker`` processes that drain them, and what
the fake Bot API saw."""

import time
from collections import Counter
from typing import Any

from botfactory.celery import app
from bots.models import Bot, OutboundMessage
from bots.tasks import outbox_send_task
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

# Workers start in fresh interpreters on two shared cores.
WAIT_SECONDS = 90.0


def queue(bot: Bot, chat_id: int, *texts: str, **fields: Any) -> list[OutboundMessage]:
    """Store one sendMessage row per text for the chat, in order."""
    return [
        OutboundMessage.objects.create(
            bot=bot,
            chat_id=chat_id,
            method="sendMessage",
            payload={"chat_id": chat_id, "text": text, **fields},
        )
        for text in texts
    ]


def enqueue(bot: Bot, *chat_ids: int, copies: int = 1) -> None:
    """Send the drain task of each chat through the broker, ``copies`` times."""
    for _ in range(copies):
        for chat_id in chat_ids:
            outbox_send_task.delay(bot.pk, chat_id)


def wait_until_settled(bot: Bot, *, seconds: float = WAIT_SECONDS) -> None:
    """Wait until no row of the bot is pending or in flight."""
    deadline = time.monotonic() + seconds
    while OutboundMessage.objects.filter(
        bot=bot, status__in=["pending", "in_flight"]
    ).exists():
        assert time.monotonic() < deadline, "the outbox was never drained"
        time.sleep(0.05)


def wait_for_calls(
    telegram: FakeTelegramControl,
    token: str,
    predicate: Any,
    *,
    seconds: float = WAIT_SECONDS,
) -> list[dict[str, Any]]:
    """Return the bot's sendMessage calls once ``predicate(calls)`` holds."""
    deadline = time.monotonic() + seconds
    while True:
        calls = telegram.calls("sendMessage", token=token)
        if predicate(calls):
            return calls
        assert time.monotonic() < deadline, f"calls never matched: {len(calls)}"
        time.sleep(0.02)


def accepted_texts(calls: list[dict[str, Any]]) -> Counter[str]:
    """Count the texts of calls the fake accepted (answered 200)."""
    return Counter(call["params"]["text"] for call in calls if call["status"] == 200)


def most_in_window(times: list[float], window: float) -> int:
    """Return the most of ``times`` that fall in any span shorter than ``window``."""
    ordered = sorted(times)
    most = 0
    start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window:
            start += 1
        most = max(most, end - start + 1)

    return most


def workers_warm_up(telegram: FakeTelegramControl, *, count: int) -> None:
    """Wait until ``count`` workers answer, then have each send a message, so
    that no measured call pays for a process's first connection.

    Each warm-up call is held 300 ms, so that a worker busy with one leaves
    the next to another. Call it before adding the test's own faults.
    """
    deadline = time.monotonic() + WAIT_SECONDS
    while len(app.control.ping(timeout=0.5) or []) < count:
        assert time.monotonic() < deadline, "the workers never came up"

    bot = BotFactory.create()
    telegram.add_fault(token=bot.token, delay_ms=300)
    chats = list(range(1, 2 * count + 1))
    for chat in chats:
        queue(bot, chat, "warm-up")
    enqueue(bot, *chats)
    wait_until_settled(bot)
    telegram.clear_faults()
