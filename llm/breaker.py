"""A circuit breaker per provider, shared by every process through Redis.

It counts provider attempts, not requests. Closed: every attempt goes
through, and ``threshold`` failed attempts in a row open it. Open: attempts
are rejected at once until ``cooldown`` has passed. Then the first attempt
takes the probe lease (a key with a time-to-live, so a prober that dies
frees it) and the breaker is half-open: every other attempt is rejected
until the probe succeeds (closed) or fails (open again). Results of
attempts that began in another state (a failure that lands after the
breaker opened, a late success while it is open) change nothing, so
concurrent failures can neither overshoot the count nor lose it. Each
transition is one Lua script, so it is atomic across processes; a process
that starts never writes the state, so it cannot reset a shared open one.
"""

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

import redis

from botfactory.metrics import CIRCUIT_BREAKER_OPEN, CIRCUIT_BREAKER_TRANSITIONS
from llm import store

logger = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]
_STATES: dict[str, State] = {"open": "open", "half_open": "half_open"}

# Milliseconds from Redis's own clock, so that every process agrees on when
# the cooldown ends.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: state hash, probe lease. ARGV: cooldown ms, lease ms, token.
# Returns {decision, state before}.
_ADMIT = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then
  return {'allow', state}
end
if state == 'open' then
  local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  if now - opened < tonumber(ARGV[1]) then
    return {'reject', state}
  end
end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'half_open')
  return {'probe', state}
end
return {'reject', state}
"""
)

# KEYS: state hash, probe lease. ARGV: threshold, token ('' if no probe).
# Returns {result, consecutive failures}.
_FAILURE = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  if failures >= tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
    return {'opened', failures}
  end
  return {'counted', failures}
end
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
if state == 'half_open' and ARGV[2] ~= ''
    and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  return {'opened', failures}
end
return {'ignored', failures}
"""
)

# KEYS: state hash, probe lease. ARGV: token ('' if no probe).
_SUCCESS = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then
  redis.call('HSET', KEYS[1], 'failures', 0)
  return 'reset'
end
if state == 'half_open' and ARGV[1] ~= ''
    and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'opened_at', 0)
  return 'closed'
end
return 'ignored'
"""

# KEYS: probe lease. ARGV: token. A probe that ended without a verdict (a
# client error) frees the lease for the next attempt.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Admission:
    """The breaker's answer to one attempt."""

    allowed: bool
    # Set when this attempt is the half-open probe.
    probe_token: str | None
    # Whether the answer came from Redis (shared) or process memory.
    shared: bool


@dataclass(frozen=True)
class BreakerSnapshot:
    state: State
    failures: int
    opened_at_ms: int
    probe_held: bool


def _text(value: Any) -> str:
    return store.decode(value) or ""


class CircuitBreaker:
    """One provider's breaker; cheap to build, all state lives in the store."""

    def __init__(
        self,
        *,
        provider: str,
        threshold: int,
        cooldown_seconds: float,
        probe_ttl_seconds: float,
    ) -> None:
        self.provider = provider
        self.threshold = threshold
        self.cooldown_ms = max(int(cooldown_seconds * 1000), 1)
        self.probe_ttl_ms = max(int(probe_ttl_seconds * 1000), 1)
        self._state_name = f"llm:breaker:{provider}"
        self._probe_name = f"llm:breaker:{provider}:probe"

    # The public API.

    def admit(self) -> Admission:
        """Ask whether one attempt may call the provider now."""
        token = secrets.token_hex(8)
        shared = store.redis_available()
        decision, before = self._admit_shared(token) if shared else ("", "")
        if not decision:
            shared = False
            decision, before = self._admit_local(token)

        if decision == "probe":
            if before == "open":
                self._transition("half_open")
                logger.info("Circuit breaker half-open for provider %s", self.provider)
            else:
                logger.warning(
                    "Circuit breaker probe lease expired for provider %s; "
                    "admitting another probe",
                    self.provider,
                )
        CIRCUIT_BREAKER_OPEN.labels(provider=self.provider).set(
            0 if decision == "allow" else 1
        )

        return Admission(
            allowed=decision != "reject",
            probe_token=token if decision == "probe" else None,
            shared=shared,
        )

    def record_success(self, admission: Admission) -> None:
        """Record that an admitted attempt succeeded."""
        result = self._run(admission, "success")
        if result == "closed":
            self._transition("closed")
            CIRCUIT_BREAKER_OPEN.labels(provider=self.provider).set(0)
            logger.info("Circuit breaker closed for provider %s", self.provider)

    def record_failure(self, admission: Admission) -> None:
        """Record that an admitted attempt failed in a way that counts."""
        result = self._run(admission, "failure")
        if result == "opened":
            self._transition("open")
            CIRCUIT_BREAKER_OPEN.labels(provider=self.provider).set(1)
            logger.warning("Circuit breaker opened for provider %s", self.provider)

    def record_neutral(self, admission: Admission) -> None:
        """Record an attempt that says nothing about the provider's health.

        A probe that ends so frees its lease, leaving the breaker half-open.
        """
        if admission.probe_token is not None:
            self._run(admission, "release")

    def snapshot(self) -> BreakerSnapshot:
        """Return the current state, for operators and tests."""
        if store.redis_available():
            try:
                client = store.redis_client()
                fields = client.hgetall(store.redis_key(self._state_name))
                probe = client.exists(store.redis_key(self._probe_name))
            except redis.RedisError as exc:
                store.redis_failed(exc)
            else:
                data = {_text(key): _text(value) for key, value in fields.items()}
                return self._snapshot(data, probe_held=bool(probe))

        cache = store.local_cache()
        with store.local_lock():
            data = dict(cache.get(self._state_name) or {})
            probe_held = cache.get(self._probe_name) is not None

        return self._snapshot(data, probe_held=probe_held)

    # Shared state in Redis.

    def _keys(self) -> list[str]:
        return [store.redis_key(self._state_name), store.redis_key(self._probe_name)]

    def _script(self, source: str, keys: list[str], args: list[Any]) -> Any | None:
        try:
            script = store.redis_client().register_script(source)
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            store.redis_failed(exc)
            return None

    def _admit_shared(self, token: str) -> tuple[str, str]:
        reply = self._script(
            _ADMIT, self._keys(), [self.cooldown_ms, self.probe_ttl_ms, token]
        )
        if reply is None:
            return "", ""

        return _text(reply[0]), _text(reply[1])

    def _run(self, admission: Admission, step: str) -> str:
        token = admission.probe_token or ""
        if admission.shared and store.redis_available():
            reply: Any
            if step == "failure":
                reply = self._script(_FAILURE, self._keys(), [self.threshold, token])
                reply = None if reply is None else reply[0]
            elif step == "success":
                reply = self._script(_SUCCESS, self._keys(), [token])
            else:
                reply = self._script(_RELEASE, self._keys()[1:], [token])
            if reply is not None:
                return _text(reply)
        if admission.shared:
            # Redis failed between the admission and its result: the shared
            # state is out of reach, and this process's own has no record of
            # the attempt, so the result is dropped.
            return "ignored"

        return self._run_local(token, step)

    # Process-local state (embedded default, or Redis unavailable).

    def _admit_local(self, token: str) -> tuple[str, str]:
        cache = store.local_cache()
        with store.local_lock():
            data = dict(cache.get(self._state_name) or {})
            state = data.get("state", "closed")
            if state == "closed":
                return "allow", state
            now = int(time.time() * 1000)
            if (
                state == "open"
                and now - int(data.get("opened_at", 0)) < self.cooldown_ms
            ):
                return "reject", state
            if not cache.add(self._probe_name, token, timeout=self.probe_ttl_ms / 1000):
                return "reject", state
            data["state"] = "half_open"
            cache.set(self._state_name, data, timeout=None)

            return "probe", state

    def _run_local(self, token: str, step: str) -> str:
        cache = store.local_cache()
        with store.local_lock():
            data = dict(cache.get(self._state_name) or {})
            state = data.get("state", "closed")
            is_probe = bool(token) and cache.get(self._probe_name) == token
            result = "ignored"
            if step == "failure" and state == "closed":
                data["failures"] = int(data.get("failures", 0)) + 1
                result = "counted"
                if data["failures"] >= self.threshold:
                    data.update(state="open", opened_at=int(time.time() * 1000))
                    result = "opened"
            elif step == "failure" and state == "half_open" and is_probe:
                cache.delete(self._probe_name)
                data.update(state="open", opened_at=int(time.time() * 1000))
                result = "opened"
            elif step == "success" and state == "closed":
                data["failures"] = 0
                result = "reset"
            elif step == "success" and state == "half_open" and is_probe:
                cache.delete(self._probe_name)
                data = {"state": "closed", "failures": 0, "opened_at": 0}
                result = "closed"
            elif step == "release" and is_probe:
                cache.delete(self._probe_name)
            cache.set(self._state_name, data, timeout=None)

        return result

    def _snapshot(self, data: dict[str, Any], *, probe_held: bool) -> BreakerSnapshot:
        return BreakerSnapshot(
            state=_STATES.get(str(data.get("state")), "closed"),
            failures=int(data.get("failures") or 0),
            opened_at_ms=int(data.get("opened_at") or 0),
            probe_held=probe_held,
        )

    def _transition(self, state: State) -> None:
        CIRCUIT_BREAKER_TRANSITIONS.labels(provider=self.provider, state=state).inc()
