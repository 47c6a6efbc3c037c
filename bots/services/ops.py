"""What operators see of one bot: traffic, errors, backlog, LLM, webhook.

Counts come from the database, since Prometheus counters hold no history
that a page could show. The LLM response cache knows nothing of bots, so
the task that answers a bot's LLM node counts its hits and misses here, in
the shared cache, per bot and hour.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.core.cache import cache
from django.db.models import Count, Min, Q
from django.utils import timezone

from bots.models import Bot, LlmRequest, OutboundMessage, ProcessedUpdate
from bots.telegram import TelegramError, telegram_webhook_info_get
from llm.services import breaker_get

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# The page waits no longer than this for Telegram; it shows "unavailable".
WEBHOOK_INFO_TIMEOUT_SECONDS = 2.0
# Hourly cache counters are kept a little over the day the page shows.
_CACHE_COUNT_TTL_SECONDS = 26 * 3600
_CACHE_HOURS = 24

Outcome = ProcessedUpdate.Outcome
Status = OutboundMessage.Status


@dataclass(frozen=True)
class WindowCounts:
    """Updates by outcome, and failures, over one window (hour or day)."""

    processed: int
    ignored: int
    dropped: int
    send_failures: int
    llm_fallbacks: int

    @property
    def updates(self) -> int:
        return self.processed + self.ignored + self.dropped

    @property
    def errors(self) -> int:
        return self.send_failures + self.llm_fallbacks


@dataclass(frozen=True)
class OutboxBacklog:
    pending: int
    in_flight: int
    oldest_pending_seconds: float | None


@dataclass(frozen=True)
class LlmOps:
    open: int
    breaker_state: str
    breaker_failures: int
    cache_hits: int
    cache_misses: int

    @property
    def cache_hit_rate(self) -> float | None:
        total = self.cache_hits + self.cache_misses

        return self.cache_hits / total if total else None


@dataclass(frozen=True)
class WebhookInfo:
    """Telegram's view of the webhook; ``available`` false when not reached."""

    available: bool
    url_host: str = ""
    pending_update_count: int = 0
    last_error_at: datetime | None = None
    last_error_message: str = ""
    problem: str = ""


@dataclass(frozen=True)
class BotOps:
    at: datetime
    is_demo: bool
    hour: WindowCounts
    day: WindowCounts
    outbox: OutboxBacklog
    llm: LlmOps
    webhook: WebhookInfo | None


def _hour_key(bot_id: int, moment: datetime, kind: str) -> str:
    return f"ops:llm_cache:{bot_id}:{moment.astimezone(UTC):%Y%m%d%H}:{kind}"


def llm_cache_count(*, bot_id: int, hit: bool, now: datetime | None = None) -> None:
    """Count one LLM response cache lookup of a bot, in this hour's counter.

    Best effort: with the cache down the lookup simply goes uncounted.
    """
    key = _hour_key(bot_id, now or timezone.now(), "hit" if hit else "miss")
    # add() then incr(): incr alone refuses a missing key. A counter that
    # expires between the two is only lost, never wrong by more than one.
    cache.add(key, 0, timeout=_CACHE_COUNT_TTL_SECONDS)
    try:
        cache.incr(key)
    except ValueError:
        cache.add(key, 1, timeout=_CACHE_COUNT_TTL_SECONDS)


def _cache_counts(bot_id: int, now: datetime) -> tuple[int, int]:
    hours = [now - timedelta(hours=back) for back in range(_CACHE_HOURS)]
    keys = {
        kind: [_hour_key(bot_id, moment, kind) for moment in hours]
        for kind in ("hit", "miss")
    }
    found = cache.get_many(keys["hit"] + keys["miss"]) or {}

    def total(kind: str) -> int:
        return sum(int(found.get(key) or 0) for key in keys[kind])

    return total("hit"), total("miss")


def _update_counts(bot: Bot, now: datetime) -> dict[str, dict[str, int]]:
    rows = (
        ProcessedUpdate.objects.filter(bot=bot, created_at__gte=now - DAY)
        .values("outcome")
        .annotate(
            day=Count("id"), hour=Count("id", filter=Q(created_at__gte=now - HOUR))
        )
    )
    counts: dict[str, dict[str, int]] = {"hour": {}, "day": {}}
    for row in rows:
        counts["hour"][row["outcome"]] = row["hour"]
        counts["day"][row["outcome"]] = row["day"]

    return counts


def _outbox(bot: Bot, now: datetime) -> dict[str, Any]:
    return OutboundMessage.objects.filter(
        Q(status__in=[Status.PENDING, Status.IN_FLIGHT])
        | Q(status=Status.FAILED, created_at__gte=now - DAY),
        bot=bot,
    ).aggregate(
        pending=Count("id", filter=Q(status=Status.PENDING)),
        in_flight=Count("id", filter=Q(status=Status.IN_FLIGHT)),
        failed_hour=Count(
            "id", filter=Q(status=Status.FAILED, created_at__gte=now - HOUR)
        ),
        failed_day=Count("id", filter=Q(status=Status.FAILED)),
        oldest_pending=Min("created_at", filter=Q(status=Status.PENDING)),
    )


def _llm_requests(bot: Bot, now: datetime) -> dict[str, Any]:
    failed = LlmRequest.Status.FAILED
    return LlmRequest.objects.filter(
        Q(status__in=[LlmRequest.Status.PENDING, LlmRequest.Status.RUNNING])
        | Q(status=failed, created_at__gte=now - DAY),
        bot=bot,
    ).aggregate(
        open=Count("id", filter=~Q(status=failed)),
        failed_hour=Count("id", filter=Q(status=failed, created_at__gte=now - HOUR)),
        failed_day=Count("id", filter=Q(status=failed)),
    )


def _window(
    updates: dict[str, int], outbox: dict[str, Any], llm: dict[str, Any], name: str
) -> WindowCounts:
    return WindowCounts(
        processed=updates.get(Outcome.PROCESSED, 0),
        ignored=updates.get(Outcome.IGNORED, 0),
        dropped=updates.get(Outcome.DROPPED, 0),
        send_failures=outbox[f"failed_{name}"],
        llm_fallbacks=llm[f"failed_{name}"],
    )


def bot_webhook_info_get(*, bot: Bot) -> WebhookInfo | None:
    """Ask Telegram for the bot's webhook, live; None for a bot in demo mode.

    Never raises for Telegram's sake: an error or a slow answer comes back
    as an unavailable WebhookInfo. Only the URL's host is kept; the secret
    is never part of what Telegram returns.
    """
    if bot.is_demo:
        return None

    try:
        info = telegram_webhook_info_get(
            token=bot.token, timeout_seconds=WEBHOOK_INFO_TIMEOUT_SECONDS
        )
    except TelegramError as exc:
        logger.warning(
            "getWebhookInfo failed for bot %s: %s", bot.pk, type(exc).__name__
        )
        return WebhookInfo(available=False, problem=type(exc).__name__)

    error_date = info.get("last_error_date")

    return WebhookInfo(
        available=True,
        url_host=urlsplit(str(info.get("url") or "")).hostname or "",
        pending_update_count=int(info.get("pending_update_count") or 0),
        last_error_at=(
            datetime.fromtimestamp(error_date, tz=UTC)
            if isinstance(error_date, int) and error_date > 0
            else None
        ),
        last_error_message=str(info.get("last_error_message") or ""),
    )


def bot_ops_get(
    *, bot: Bot, now: datetime | None = None, with_webhook: bool = True
) -> BotOps:
    """Return the bot's operations summary as of ``now``.

    The windows are the last hour and the last day up to ``now``, a row
    created exactly at the window's start included. Failed sends and LLM
    fallbacks are counted by when their row was created.
    """
    now = now or timezone.now()
    updates = _update_counts(bot, now)
    outbox = _outbox(bot, now)
    llm = _llm_requests(bot, now)
    snapshot = breaker_get().snapshot()
    hits, misses = _cache_counts(bot.pk, now)

    oldest = outbox["oldest_pending"]

    return BotOps(
        at=now,
        is_demo=bot.is_demo,
        hour=_window(updates["hour"], outbox, llm, "hour"),
        day=_window(updates["day"], outbox, llm, "day"),
        outbox=OutboxBacklog(
            pending=outbox["pending"],
            in_flight=outbox["in_flight"],
            oldest_pending_seconds=(
                max((now - oldest).total_seconds(), 0.0) if oldest else None
            ),
        ),
        llm=LlmOps(
            open=llm["open"],
            breaker_state=snapshot.state,
            breaker_failures=snapshot.failures,
            cache_hits=hits,
            cache_misses=misses,
        ),
        webhook=bot_webhook_info_get(bot=bot) if with_webhook else None,
    )
