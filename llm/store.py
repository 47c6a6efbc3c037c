"""Where the breaker and the response cache keep their shared state.

With ``REDIS_URL`` set that is Redis, shared by every process; in the
embedded default it is Django's local-memory cache, which serves the one
process there is. Redis failing must never fail or stall a completion: its
client has socket timeouts (the cache settings), and after an error this
process leaves Redis alone for ``REDIS_RETRY_SECONDS`` and keeps breaker
state in its own memory meanwhile (closed-but-not-shared at first).
"""

import logging
import threading
import time
from typing import Any, cast

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache

logger = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 5.0

_local_lock = threading.RLock()
_fallback_cache: BaseCache | None = None
_redis_down_until = 0.0


def uses_redis() -> bool:
    """Tell whether state is shared through Redis (``REDIS_URL`` is set)."""
    return bool(settings.REDIS_URL)


def redis_available() -> bool:
    """Tell whether Redis may be tried now (no recent error in this process)."""
    return uses_redis() and time.monotonic() >= _redis_down_until


def redis_failed(exc: redis.RedisError) -> None:
    """Note that Redis failed, so this process leaves it alone for a while."""
    global _redis_down_until
    if time.monotonic() >= _redis_down_until:
        logger.warning(
            "Redis failed for LLM state; using process memory for %.0f s (%s)",
            REDIS_RETRY_SECONDS,
            type(exc).__name__,
        )
    _redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS


def redis_client() -> redis.Redis:
    """Return the raw client of the default (django-redis) cache."""
    from django_redis import get_redis_connection

    return cast(redis.Redis, get_redis_connection("default"))


def redis_key(name: str) -> str:
    """Return ``name`` under the cache's key prefix, as the cache would."""
    return str(caches["default"].make_key(name))


def local_cache() -> BaseCache:
    """Return this process's cache for LLM state when Redis is not used.

    The default cache in the embedded default; a private local-memory cache
    while Redis is unavailable.
    """
    global _fallback_cache
    if not uses_redis():
        return caches["default"]
    with _local_lock:
        if _fallback_cache is None:
            _fallback_cache = LocMemCache("llm-fallback", {"OPTIONS": {}})

        return _fallback_cache


def local_lock() -> threading.RLock:
    """Return the lock that makes local read-modify-write steps atomic."""
    return _local_lock


def decode(value: Any) -> str | None:
    """Return a Redis reply as text (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")

    return str(value)
