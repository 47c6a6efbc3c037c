"""Health probes: ``/health`` for the process, ``/health/db`` for PostgreSQL
and Redis.

Each dependency check runs in its own thread on a fresh connection (never a
pooled one, which a busy or broken pool could hold back), and the view waits
for both together at most ``CHECK_TIMEOUT_SECONDS``: a dependency that hangs
is reported as ``timeout`` instead of holding the probe. A check still
running is joined by the next probe rather than started again, so a hung
dependency costs one thread per process, however often it is probed.
"""

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

OK = "ok"
DOWN = "down"
TIMEOUT = "timeout"
NOT_CONFIGURED = "not_configured"
_HEALTHY = (OK, NOT_CONFIGURED)

# Both checks together take at most this long, which leaves a probe's answer
# well within two seconds on a loaded machine.
CHECK_TIMEOUT_SECONDS = 1.0
# psycopg raises any connect_timeout under two seconds to two seconds; the
# view stops waiting earlier, the check's thread ends at this bound.
_CONNECT_TIMEOUT_SECONDS = 2

_probes: dict[tuple[str, str], "_Probe"] = {}
_last_results: dict[str, str] = {}
_lock = threading.Lock()


class _Probe:
    """One check running in a daemon thread, and its result once it ends."""

    def __init__(self, name: str, check: Callable[[], str]) -> None:
        self.name = name
        self.result = DOWN
        self.done = threading.Event()
        self._check = check
        self._thread = threading.Thread(
            target=self._run, name=f"health-{name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._check()
        except Exception:
            # The top of the check's own thread: nothing above it would log.
            logger.exception("Health check %s failed unexpectedly.", self.name)
        finally:
            self.done.set()


def _probe(name: str, target: str, check: Callable[[], str]) -> _Probe:
    """Start a check of ``target``, or return the one still running."""
    with _lock:
        probe = _probes.get((name, target))
        if probe is None or probe.done.is_set():
            probe = _Probe(name, check)
            _probes[(name, target)] = probe
            probe.start()

    return probe


def _postgresql_ping(params: dict[str, Any]) -> None:
    timeout_ms = int(CHECK_TIMEOUT_SECONDS * 1000)
    params = {
        **params,
        "autocommit": True,
        "connect_timeout": _CONNECT_TIMEOUT_SECONDS,
        "application_name": "botfactory-health",
        "options": f"-c statement_timeout={timeout_ms}",
    }
    with psycopg.connect(**params) as conn:
        conn.execute("SELECT 1")


def _database_check() -> str:
    database = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        if database.vendor == "postgresql":
            _postgresql_ping(database.get_connection_params())
        else:
            with database.cursor() as cursor:
                cursor.execute("SELECT 1")
    except (psycopg.errors.ConnectionTimeout, psycopg.errors.QueryCanceled):
        return TIMEOUT
    except (psycopg.Error, DatabaseError):
        return DOWN
    finally:
        database.close()

    return OK


def _redis_check(url: str) -> str:
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
        # redis-py retries a failed command three times by default.
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except redis.exceptions.TimeoutError:
        return TIMEOUT
    except redis.exceptions.RedisError:
        return DOWN
    finally:
        client.close()

    return OK


def _log_changes(results: dict[str, str]) -> None:
    """Log a dependency's state when it changes, not at every probe."""
    with _lock:
        previous = {name: _last_results.get(name) for name in results}
        _last_results.update(results)
    for name, result in results.items():
        if result == previous[name]:
            continue
        if result not in _HEALTHY:
            logger.warning("Health check %s: %s.", name, result)
        elif previous[name] not in (None, *_HEALTHY):
            logger.info("Health check %s: %s again.", name, result)


def dependencies_check() -> dict[str, str]:
    """Check PostgreSQL and Redis; return each one's state by name.

    A state is ``ok``, ``down``, ``timeout`` or, for Redis in the embedded
    default, ``not_configured``. Returns within ``CHECK_TIMEOUT_SECONDS``.
    """
    deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS
    probes = {"database": _probe("database", DEFAULT_DB_ALIAS, _database_check)}
    redis_url = settings.REDIS_URL
    if redis_url:
        probes["redis"] = _probe("redis", redis_url, partial(_redis_check, redis_url))

    results = {"database": TIMEOUT, "redis": NOT_CONFIGURED}
    for name, probe in probes.items():
        ended = probe.done.wait(max(0.0, deadline - time.monotonic()))
        results[name] = probe.result if ended else TIMEOUT
    _log_changes(results)

    return results


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Answer that the process is alive, touching neither database nor Redis."""
    return JsonResponse({"status": "ok"})


@require_GET
def health_db(request: HttpRequest) -> JsonResponse:
    """Answer 200 when PostgreSQL answers (``degraded`` without Redis), else 503."""
    checks = dependencies_check()
    if checks["database"] != OK:
        body: dict[str, Any] = {
            "status": "unavailable",
            "code": "db_unavailable",
            "checks": checks,
        }
        status = 503
    else:
        healthy = checks["redis"] in _HEALTHY
        body = {"status": "ok" if healthy else "degraded", "checks": checks}
        status = 200

    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"

    return response
