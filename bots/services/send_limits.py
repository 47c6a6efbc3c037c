"""Telegram's sending limits, shared by every process that sends for a bot.

Telegram counts per bot token, which is one bot of the catalogue: about one
message a second in one chat (short bursts pass), 20 a minute in one group,
and about 30 a second over all chats. The outbox asks ``send_limits_admit``
before each message; the answer is either a slot taken now or how long to
wait. The limits are:

- per chat, a token bucket of ``OUTBOX_CHAT_BURST`` (3) messages that
  refills at ``OUTBOX_CHAT_PER_SECOND`` (1) a second;
- per group (a negative chat id), at most ``OUTBOX_GROUP_LIMIT`` (20) in
  any ``OUTBOX_GROUP_WINDOW_SECONDS`` (60) seconds, a sliding log;
- per bot, at most ``OUTBOX_BOT_PER_SECOND`` (30) in any second, a
  sliding log too, so that no window of a second ever holds more.

A slot is only taken when all three allow it. A 429 answer's
``retry_after`` pauses the whole bot (``send_limits_pause``), which every
process honours before its next message.

With ``REDIS_URL`` set the state is in Redis and each decision is one Lua
script, so the processes share it atomically. In the embedded default it
is in the local-memory cache, with the same rules. When Redis fails, a
process keeps the limits alone in its own memory for ``REDIS_RETRY_SECONDS``
and logs that once: a send never fails because Redis did, at the cost of
each process spending the limits by itself meanwhile.
"""

import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache

logger = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 5.0
# One second: the unit of Telegram's per-bot limit.
_BOT_WINDOW_MS = 1000.0

# KEYS: pause, chat bucket, group log ('' outside groups), bot log.
# ARGV: burst, refill per ms, group limit, group window ms, bot limit,
# bot window ms, log member. Returns the milliseconds to wait, 0 when a
# slot was taken.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local pause = redis.call('PTTL', KEYS[1])
if pause > 0 then
  return pause
end

local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local bucket = redis.call('HMGET', KEYS[2], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or burst
local at = tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(now - at, 0) * rate)
local wait = 0
if tokens < 1 then
  wait = (1 - tokens) / rate
end

local function log_wait(key, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count < limit then
    return 0
  end
  local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end

if KEYS[3] ~= '' then
  wait = math.max(wait, log_wait(KEYS[3], tonumber(ARGV[3]), tonumber(ARGV[4])))
end
wait = math.max(wait, log_wait(KEYS[4], tonumber(ARGV[5]), tonumber(ARGV[6])))
if wait > 0 then
  return math.max(math.ceil(wait), 1)
end

redis.call('HSET', KEYS[2], 'tokens', tokens - 1, 'at', now)
redis.call('PEXPIRE', KEYS[2], math.ceil(burst / rate) + 1000)
if KEYS[3] ~= '' then
  redis.call('ZADD', KEYS[3], now, ARGV[7])
  redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[4])))
end
redis.call('ZADD', KEYS[4], now, ARGV[7])
redis.call('PEXPIRE', KEYS[4], math.ceil(tonumber(ARGV[6])))
return 0
"""

# KEYS: pause. ARGV: pause ms. A pause is only ever made longer.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return redis.call('PTTL', KEYS[1])
"""

_local_lock = threading.Lock()
_scripts: dict[tuple[int, str], Any] = {}
_fallback_cache: BaseCache | None = None
_redis_down_until = 0.0


@dataclass(frozen=True)
class SendLimits:
    """The limits to keep; ``from_settings`` gives the configured ones."""

    chat_burst: int
    chat_per_second: float
    group_limit: int
    group_window_seconds: float
    bot_per_second: int

    @classmethod
    def from_settings(cls) -> "SendLimits":
        return cls(
            chat_burst=settings.OUTBOX_CHAT_BURST,
            chat_per_second=settings.OUTBOX_CHAT_PER_SECOND,
            group_limit=settings.OUTBOX_GROUP_LIMIT,
            group_window_seconds=settings.OUTBOX_GROUP_WINDOW_SECONDS,
            bot_per_second=settings.OUTBOX_BOT_PER_SECOND,
        )


def _names(*, bot_id: int, chat_id: int) -> tuple[str, str, str, str]:
    base = f"outbox:limits:{bot_id}"

    return (
        f"{base}:pause",
        f"{base}:chat:{chat_id}",
        f"{base}:group:{chat_id}" if chat_id < 0 else "",
        f"{base}:bot",
    )


def _redis_usable() -> bool:
    return bool(settings.REDIS_URL) and time.monotonic() >= _redis_down_until


def _redis_failed(exc: redis.RedisError) -> None:
    global _redis_down_until
    if time.monotonic() >= _redis_down_until:
        logger.warning(
            "Redis failed for the send limits; each process keeps its own "
            "for %.0f s (%s)",
            REDIS_RETRY_SECONDS,
            type(exc).__name__,
        )
    _redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS


def _script(source: str, names: tuple[str, ...], args: list[Any]) -> int | None:
    from django_redis import get_redis_connection

    cache = caches["default"]
    keys = [str(cache.make_key(name)) if name else "" for name in names]
    try:
        client = cast(redis.Redis, get_redis_connection("default"))
        script = _scripts.get((id(client), source))
        if script is None:
            # A script object hashes its source once and runs it by hash.
            script = _scripts[(id(client), source)] = client.register_script(source)
        return int(script(keys=keys, args=args))
    except redis.RedisError as exc:
        _redis_failed(exc)
        return None


def _local_cache() -> BaseCache:
    global _fallback_cache
    if not settings.REDIS_URL:
        return caches["default"]
    if _fallback_cache is None:
        _fallback_cache = LocMemCache("send-limits-fallback", {"OPTIONS": {}})

    return _fallback_cache


def _log_wait(log: list[float], *, now: float, limit: int, window: float) -> float:
    log[:] = [at for at in log if at > now - window]
    if len(log) < limit:
        return 0.0

    return log[len(log) - limit] + window - now


def _admit_local(names: tuple[str, str, str, str], limits: SendLimits) -> float:
    pause_name, chat_name, group_name, bot_name = names
    cache = _local_cache()
    now = time.time() * 1000
    rate = limits.chat_per_second / 1000
    group_window = limits.group_window_seconds * 1000
    with _local_lock:
        paused_until = cache.get(pause_name) or 0.0
        if paused_until > now:
            return paused_until - now

        tokens, at = cache.get(chat_name) or (float(limits.chat_burst), now)
        tokens = min(limits.chat_burst, tokens + max(now - at, 0.0) * rate)
        wait = (1 - tokens) / rate if tokens < 1 else 0.0
        group: list[float] = list(cache.get(group_name) or []) if group_name else []
        if group_name:
            group_wait = _log_wait(
                group, now=now, limit=limits.group_limit, window=group_window
            )
            wait = max(wait, group_wait)
        sent: list[float] = list(cache.get(bot_name) or [])
        bot_wait = _log_wait(
            sent, now=now, limit=limits.bot_per_second, window=_BOT_WINDOW_MS
        )
        wait = max(wait, bot_wait)
        if wait > 0:
            return max(wait, 1.0)

        cache.set(
            chat_name, (tokens - 1, now), timeout=limits.chat_burst / rate / 1000 + 1
        )
        if group_name:
            cache.set(group_name, [*group, now], timeout=group_window / 1000)
        cache.set(bot_name, [*sent, now], timeout=_BOT_WINDOW_MS / 1000)

    return 0.0


def send_limits_admit(
    *, bot_id: int, chat_id: int, limits: SendLimits | None = None
) -> float:
    """Take a slot for the bot to send one message to ``chat_id`` now.

    Return 0.0 when the slot was taken, else the seconds to wait before
    asking again (nothing was taken then). Raises nothing: Redis failing
    falls back to this process's own counters.
    """
    limits = limits or SendLimits.from_settings()
    names = _names(bot_id=bot_id, chat_id=chat_id)
    if _redis_usable():
        args = [
            limits.chat_burst,
            limits.chat_per_second / 1000,
            limits.group_limit,
            limits.group_window_seconds * 1000,
            limits.bot_per_second,
            _BOT_WINDOW_MS,
            f"{time.time_ns()}-{secrets.token_hex(4)}",
        ]
        waited = _script(_ADMIT, names, args)
        if waited is not None:
            return waited / 1000

    return _admit_local(names, limits) / 1000


def send_limits_pause(*, bot_id: int, seconds: float) -> None:
    """Hold every message of the bot for at least ``seconds`` from now.

    A shorter pause never cuts a longer one short. Raises nothing.
    """
    pause_name = _names(bot_id=bot_id, chat_id=0)[0]
    milliseconds = max(math.ceil(seconds * 1000), 1)
    if _redis_usable() and _script(_PAUSE, (pause_name,), [milliseconds]) is not None:
        return

    cache = _local_cache()
    until = time.time() * 1000 + milliseconds
    with _local_lock:
        if (cache.get(pause_name) or 0.0) < until:
            cache.set(pause_name, until, timeout=milliseconds / 1000 + 1)
