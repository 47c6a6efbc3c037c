from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from bots.models import (
    Bot,
    BotAccess,
    Conversation,
    LlmRequest,
    OutboundMessage,
    ProcessedUpdate,
)
from bots.services.ops import (
    LlmOps,
    OutboxBacklog,
    WindowCounts,
    bot_ops_get,
    llm_cache_count,
)
from bots.telegram import telegram_call
from llm.services import breaker_get
from tests.factories import BotAccessFactory, BotFactory
from tests.fakes.control import FakeTelegramControl

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
TINY = timedelta(microseconds=1)
SECRET = "ops-page_webhook-secret-never-shown-0123"


@pytest.fixture
def provider(settings: Any) -> Iterator[str]:
    """A breaker of its own, forgotten afterwards."""
    settings.LLM_PROVIDER_NAME = "ops-test-provider"
    yield settings.LLM_PROVIDER_NAME
    cache.delete("llm:breaker:ops-test-provider")
    cache.delete("llm:breaker:ops-test-provider:probe")


def _update(bot: Bot, update_id: int, outcome: str, at: datetime) -> None:
    row = ProcessedUpdate.objects.create(bot=bot, update_id=update_id, outcome=outcome)
    ProcessedUpdate.objects.filter(pk=row.pk).update(created_at=at)


def _outbound(bot: Bot, status: str, at: datetime) -> None:
    row = OutboundMessage.objects.create(
        bot=bot, chat_id=1, method="sendMessage", payload={}, status=status
    )
    OutboundMessage.objects.filter(pk=row.pk).update(created_at=at)


def _llm_request(bot: Bot, number: int, status: str, at: datetime) -> None:
    conversation, _created = Conversation.objects.get_or_create(bot=bot, chat_id=1)
    row = LlmRequest.objects.create(
        bot=bot,
        conversation=conversation,
        update_id=number,
        node_id="ask",
        request_key=f"k{number}",
        status=status,
        request={},
    )
    LlmRequest.objects.filter(pk=row.pk).update(created_at=at)


@pytest.mark.django_db
def test_counts_are_exact_at_the_hour_and_day_boundaries(provider: str) -> None:
    bot = BotFactory.create()
    other = BotFactory.create()
    _update(bot, 1, "processed", NOW - HOUR)  # hour and day: the start counts
    _update(bot, 2, "processed", NOW - HOUR - TINY)  # day only
    _update(bot, 3, "ignored", NOW - TINY)  # hour and day
    _update(bot, 4, "dropped", NOW - DAY)  # day only
    _update(bot, 5, "processed", NOW - DAY - TINY)  # neither
    _update(other, 1, "processed", NOW - TINY)  # another bot's
    _outbound(bot, "pending", NOW - timedelta(minutes=30))
    _outbound(bot, "pending", NOW - timedelta(minutes=5))
    _outbound(bot, "in_flight", NOW - timedelta(minutes=1))
    _outbound(bot, "failed", NOW - HOUR)
    _outbound(bot, "failed", NOW - DAY)
    _outbound(bot, "failed", NOW - DAY - TINY)
    _outbound(bot, "sent", NOW - TINY)
    _outbound(other, "pending", NOW - DAY * 3)
    _llm_request(bot, 1, "pending", NOW - TINY)
    _llm_request(bot, 2, "running", NOW - DAY * 2)
    _llm_request(bot, 3, "failed", NOW - HOUR - TINY)
    _llm_request(bot, 4, "done", NOW - TINY)

    ops = bot_ops_get(bot=bot, now=NOW, with_webhook=False)

    assert ops.hour == WindowCounts(
        processed=1, ignored=1, dropped=0, send_failures=1, llm_fallbacks=0
    )
    assert ops.day == WindowCounts(
        processed=2, ignored=1, dropped=1, send_failures=2, llm_fallbacks=1
    )
    assert (ops.hour.updates, ops.hour.errors, ops.day.updates, ops.day.errors) == (
        2,
        1,
        4,
        3,
    )
    assert ops.outbox == OutboxBacklog(
        pending=2, in_flight=1, oldest_pending_seconds=1800.0
    )
    assert ops.llm == LlmOps(
        open=2,
        breaker_state="closed",
        breaker_failures=0,
        cache_hits=0,
        cache_misses=0,
    )
    assert ops.llm.cache_hit_rate is None


@pytest.mark.django_db
def test_cache_hit_rate_counts_the_last_24_hours_per_bot(provider: str) -> None:
    bot = BotFactory.create()
    other = BotFactory.create()
    for hit in (True, True, False):
        llm_cache_count(bot_id=bot.pk, hit=hit, now=NOW)
    llm_cache_count(bot_id=bot.pk, hit=True, now=NOW - timedelta(hours=23))
    llm_cache_count(bot_id=bot.pk, hit=False, now=NOW - timedelta(hours=24))
    llm_cache_count(bot_id=other.pk, hit=False, now=NOW)

    ops = bot_ops_get(bot=bot, now=NOW, with_webhook=False)

    assert (ops.llm.cache_hits, ops.llm.cache_misses) == (3, 1)
    assert ops.llm.cache_hit_rate == 0.75


def _webhook_set(bot: Bot) -> None:
    telegram_call(
        token=bot.token,
        method="setWebhook",
        params={
            "url": f"https://bots.example.com/telegram/{bot.pk}/webhook",
            "secret_token": SECRET,
        },
    )


@pytest.mark.django_db
def test_page_shows_counts_breaker_and_telegrams_view_of_the_webhook(
    admin_client: Client, telegram_api: FakeTelegramControl, provider: str
) -> None:
    bot = BotFactory.create(webhook_secret=SECRET)
    _webhook_set(bot)
    telegram_api.queue_updates(bot.token, [{"update_id": 1}, {"update_id": 2}])
    telegram_api.set_webhook_error(bot.token, "Connection refused", date=1767225600)
    _update(bot, 7, "processed", datetime.now(UTC) - timedelta(minutes=2))
    breaker = breaker_get()
    for _attempt in range(5):
        breaker.record_failure(breaker.admit())
    llm_cache_count(bot_id=bot.pk, hit=True)
    llm_cache_count(bot_id=bot.pk, hit=False)
    llm_cache_count(bot_id=bot.pk, hit=False)

    response = admin_client.get(f"/admin/bots/bot/{bot.pk}/studio/ops/")

    assert response.status_code == 200
    page = response.content.decode()
    ops = response.context["ops"]
    assert (ops.hour.processed, ops.day.processed) == (1, 1)
    assert ops.llm.breaker_state == "open"
    assert ops.webhook.available is True
    assert ops.webhook.url_host == "bots.example.com"
    assert ops.webhook.pending_update_count == 2
    assert ops.webhook.last_error_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert ops.webhook.last_error_message == "Connection refused"
    assert '<td class="host">bots.example.com</td>' in page
    assert '<td class="pending-updates">2</td>' in page
    assert "Connection refused" in page
    assert "33.3% hits (1 hits, 2 misses)" in page
    assert '<td class="breaker">open (5 failures in a row)</td>' in page
    assert f"/telegram/{bot.pk}/webhook" not in page
    assert SECRET not in page
    assert bot.token not in page
    assert [call["method"] for call in telegram_api.calls("getWebhookInfo")] == [
        "getWebhookInfo"
    ]


@pytest.mark.django_db
def test_telegram_failing_leaves_the_page_up_with_unavailable(
    admin_client: Client, telegram_api: FakeTelegramControl, provider: str
) -> None:
    bot = BotFactory.create()
    telegram_api.add_fault(method="getWebhookInfo", status=502)

    response = admin_client.get(f"/admin/bots/bot/{bot.pk}/studio/ops/")

    assert response.status_code == 200
    assert response.context["ops"].webhook.available is False
    assert '<p id="ops-webhook" class="unavailable">' in response.content.decode()


@pytest.mark.django_db
def test_telegram_unreachable_leaves_the_page_up_with_unavailable(
    admin_client: Client, settings: Any, provider: str
) -> None:
    # Nothing listens on port 9 of loopback: the connection is refused.
    settings.TELEGRAM_API_URL = "http://127.0.0.1:9"
    bot = BotFactory.create()

    response = admin_client.get(f"/admin/bots/bot/{bot.pk}/studio/ops/")

    assert response.status_code == 200
    assert '<p id="ops-webhook" class="unavailable">' in response.content.decode()


@pytest.mark.django_db
def test_a_bot_without_a_token_shows_demo_mode_and_asks_nobody(
    admin_client: Client, telegram_api: FakeTelegramControl, provider: str
) -> None:
    bot = BotFactory.create(token="")

    response = admin_client.get(f"/admin/bots/bot/{bot.pk}/studio/ops/")

    assert response.status_code == 200
    assert response.context["ops"].webhook is None
    assert '<p id="ops-webhook" class="demo">' in response.content.decode()
    assert telegram_api.calls() == []


@pytest.mark.django_db
def test_page_needs_view_access(provider: str) -> None:
    bot = BotFactory.create(token="")
    viewer = BotAccessFactory.create(bot=bot, level=BotAccess.Level.VIEW).user
    stranger = BotAccessFactory.create(level=BotAccess.Level.PUBLISH).user
    url = f"/admin/bots/bot/{bot.pk}/studio/ops/"
    allowed, refused = Client(), Client()
    allowed.force_login(viewer)
    refused.force_login(stranger)

    assert allowed.get(url).status_code == 200
    assert refused.get(url).status_code == 404
