"""The outbox task path through a real Celery worker and the Redis broker."""

import time
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker

from botfactory.celery import app
from bots.models import Bot, OutboundMessage
from tests.bots.chat_user import ChatUser, texts
from tests.fakes.control import FakeTelegramControl

_DELIVERY_SECONDS = 15.0


@pytest.fixture
def celery_worker(demo_bot: Bot) -> Iterator[None]:
    app.conf.task_always_eager = False
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        yield
    app.conf.task_always_eager = True


def _wait_for_calls(
    telegram: FakeTelegramControl, method: str, count: int
) -> list[dict]:
    deadline = time.monotonic() + _DELIVERY_SECONDS
    while time.monotonic() < deadline:
        calls = telegram.calls(method)
        if len(calls) >= count:
            return calls
        time.sleep(0.05)

    raise AssertionError(f"{method} was not called {count} times in time")


def test_replies_are_sent_by_a_worker_after_the_webhook_answers(
    demo_bot: Bot, telegram_api: FakeTelegramControl, celery_worker: None
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=6660001)

    ann.post(ann.message(text="/start"))
    ann.post(ann.message(text="/help"))

    calls = _wait_for_calls(telegram_api, "sendMessage", 2)
    assert [text[:24] for _method, text in texts(calls)] == [
        "Welcome to the Café Bot,",
        "I take drink orders for ",
    ]
    deadline = time.monotonic() + _DELIVERY_SECONDS
    while OutboundMessage.objects.exclude(status="sent").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert list(OutboundMessage.objects.values_list("status", flat=True)) == [
        "sent",
        "sent",
    ]


def test_a_retry_after_is_honoured_by_the_worker(
    demo_bot: Bot, telegram_api: FakeTelegramControl, celery_worker: None
) -> None:
    telegram_api.add_fault(
        method="sendMessage", status=429, parameters={"retry_after": 1}, times=1
    )
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=6660002)

    ann.post(ann.message(text="/start"))

    calls = _wait_for_calls(telegram_api, "sendMessage", 2)
    assert [call["status"] for call in calls] == [429, 200]
    assert calls[1]["at"] - calls[0]["at"] >= 1.0
