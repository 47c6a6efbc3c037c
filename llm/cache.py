"""The response cache, with one call in flight per key.

The first request for a key takes a lock (SET NX PX) and calls the
provider; identical requests meanwhile poll for its result, and call the
provider themselves once the holder gives up the lock without a result or
their wait runs out. Redis failing turns the cache off for the request:
a miss, no lock, no wait.
"""

import hashlib
import json
import logging
import secrets
import time
from dataclasses import asdict
from typing import Any

import redis

from llm import store
from llm.types import Completion, CompletionRequest

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def response_cache_key(*, provider: str, model: str, request: CompletionRequest) -> str:
    """Return the cache key of a request: a digest of what shapes the answer."""
    canonical = json.dumps(
        {
            "provider": provider,
            "model": model,
            "messages": [
                [message.role, message.content] for message in request.messages
            ],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )

    return "llm:response:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _encode(completion: Completion) -> str:
    return json.dumps(asdict(completion), ensure_ascii=False)


def _decode(raw: str | None) -> Completion | None:
    if raw is None:
        return None
    try:
        data: dict[str, Any] = json.loads(raw)
        return Completion(
            text=str(data["text"]),
            provider=str(data["provider"]),
            model=str(data["model"]),
            prompt_tokens=int(data["prompt_tokens"]),
            completion_tokens=int(data["completion_tokens"]),
            cached=True,
        )
    except (ValueError, KeyError, TypeError):
        # A value written by another version: treat it as a miss.
        return None


class ResponseCache:
    """Get, store and single-flight completions under one key."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.lock_key = f"{key}:lock"
        self.token = secrets.token_hex(8)
        self.shared = store.redis_available()

    def get(self) -> Completion | None:
        """Return the cached completion, or None on a miss."""
        if self.shared:
            try:
                raw = store.redis_client().get(store.redis_key(self.key))
            except redis.RedisError as exc:
                store.redis_failed(exc)
                self.shared = False
                return None
            return _decode(store.decode(raw))
        if store.uses_redis():
            # Redis is down: no cache rather than a cache per process.
            return None

        return _decode(store.local_cache().get(self.key))

    def put(self, completion: Completion, *, ttl_seconds: int) -> None:
        """Store a completion for ``ttl_seconds``."""
        value = _encode(completion)
        if self.shared:
            try:
                store.redis_client().set(
                    store.redis_key(self.key), value, ex=ttl_seconds
                )
            except redis.RedisError as exc:
                store.redis_failed(exc)
                self.shared = False
            return
        if not store.uses_redis():
            store.local_cache().set(self.key, value, timeout=ttl_seconds)

    def lock(self, *, ttl_seconds: float) -> bool:
        """Try to become the one caller for this key; True if this one is.

        Without a working shared store every request is its own caller.
        """
        ttl_ms = max(int(ttl_seconds * 1000), 1)
        if self.shared:
            try:
                taken = store.redis_client().set(
                    store.redis_key(self.lock_key), self.token, nx=True, px=ttl_ms
                )
            except redis.RedisError as exc:
                store.redis_failed(exc)
                self.shared = False
                return True
            return bool(taken)
        if store.uses_redis():
            return True

        return bool(
            store.local_cache().add(self.lock_key, self.token, timeout=ttl_ms / 1000)
        )

    def unlock(self) -> None:
        """Give up the lock if this caller still holds it."""
        if self.shared:
            try:
                script = store.redis_client().register_script(_UNLOCK)
                script(keys=[store.redis_key(self.lock_key)], args=[self.token])
            except redis.RedisError as exc:
                store.redis_failed(exc)
                self.shared = False
            return
        if store.uses_redis():
            return
        cache = store.local_cache()
        with store.local_lock():
            if cache.get(self.lock_key) == self.token:
                cache.delete(self.lock_key)

    def wait(self, *, until: float) -> Completion | None:
        """Poll for the result of the call in flight until ``until``.

        Return it, or None as soon as the lock is free (the holder failed),
        so that the caller may take the lock, or when time runs out.
        """
        while time.monotonic() < until:
            completion = self.get()
            if completion is not None:
                return completion
            if not self._locked():
                # The result may have landed between the two looks.
                return self.get()
            time.sleep(min(POLL_SECONDS, max(until - time.monotonic(), 0)))

        return self.get()

    def _locked(self) -> bool:
        if self.shared:
            try:
                return bool(store.redis_client().exists(store.redis_key(self.lock_key)))
            except redis.RedisError as exc:
                store.redis_failed(exc)
                self.shared = False
                return False
        if store.uses_redis():
            return False

        return store.local_cache().get(self.lock_key) is not None
