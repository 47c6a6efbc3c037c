"""A Celery worker's metrics: an exporter on its own port and a monitor.

The exporter (``WORKER_METRICS_PORT``, 9808 unless set; 0 turns it off)
merges the samples files that the worker's processes write to the directory
``botfactory.multiproc`` gave it. The monitor, a daemon thread of the
worker's main process, samples every ``METRICS_MONITOR_INTERVAL_SECONDS``
what no single task knows: the outbox backlog, the broker queues' lengths,
how many workers are alive (a heartbeat key per worker in Redis, with a
TTL) and whether PostgreSQL and Redis answer.
"""

import logging
import math
import os
import shutil
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.utils.dateparse import parse_datetime
from kombu.transport.redis import Channel as RedisChannel
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from redis.backoff import NoBackoff
from redis.retry import Retry

from botfactory.database import DeadlineConnection
from botfactory.metrics import (
    CELERY_QUEUE_LENGTH,
    CELERY_WORKERS_ALIVE,
    DEPENDENCY_UP,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
)
from botfactory.multiproc import CREATED_ENV, MULTIPROC_ENV

logger = logging.getLogger(__name__)

# Each check gives up after this long, so one tick stays short.
CHECK_TIMEOUT_SECONDS = 2.0
# A heartbeat outlives a few missed ticks, never a dead worker for long.
HEARTBEAT_TICKS = 3
_HEARTBEAT_MIN_SECONDS = 2
_LIVE_GAUGE_PREFIX = "gauge_live"

# The monitor sets gauges under this lock, and a fork waits for it: a
# prefork child forked while the thread held prometheus_client's own lock
# (inside ``Gauge.set``) would deadlock on its first metric.
_gauges_lock = threading.Lock()
os.register_at_fork(
    before=_gauges_lock.acquire,
    after_in_parent=_gauges_lock.release,
    after_in_child=_gauges_lock.release,
)


def _redis_glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


def heartbeat_key_prefix() -> str:
    """Return the prefix of the workers' heartbeat keys in Redis."""
    return f"{settings.CACHE_KEY_PREFIX}:metrics:worker:"


def _outbox_sql() -> tuple[str, list[str]]:
    from bots.models import OutboundMessage

    table = OutboundMessage._meta.db_table
    statuses = [OutboundMessage.Status.PENDING, OutboundMessage.Status.IN_FLIGHT]
    sql = f"SELECT count(*), min(created_at) FROM {table} WHERE status IN (%s, %s)"

    return sql, [str(status) for status in statuses]


def _as_datetime(value: Any) -> datetime | None:
    # SQLite hands an aggregate back as text, without its column's type.
    if isinstance(value, str):
        value = parse_datetime(value)
    if not isinstance(value, datetime):
        return None

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def outbox_state_get() -> tuple[int, float]:
    """Return how many outbound messages are unsent and the oldest one's age.

    Reads on a connection of its own, never a pooled one: the monitor runs
    in the prefork parent, whose pool the children would inherit broken.
    Raises psycopg.Error or DatabaseError when the database fails.
    """
    sql, params = _outbox_sql()
    database = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        if database.vendor == "postgresql":
            options = {
                **database.get_connection_params(),
                "autocommit": True,
                "connect_timeout": math.ceil(CHECK_TIMEOUT_SECONDS),
                "application_name": "botfactory-metrics",
                "options": f"-c statement_timeout={int(CHECK_TIMEOUT_SECONDS * 1000)}",
            }
            with DeadlineConnection.connect(**options) as conn:
                row = conn.execute(sql, params).fetchone()
        else:
            with database.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
    finally:
        database.close()

    count, oldest = (row or (0, None))[:2]
    created = _as_datetime(oldest)
    age = (datetime.now(UTC) - created).total_seconds() if created else 0.0

    return int(count or 0), max(age, 0.0)


def _queue_keys(name: str, options: dict[str, Any]) -> list[str]:
    # The keys kombu's Redis transport keeps a queue in: one list per
    # priority step, all under the broker's global key prefix.
    prefix = str(options.get("global_keyprefix", ""))
    separator = str(options.get("sep", RedisChannel.sep))
    steps = options.get("priority_steps", RedisChannel.priority_steps)

    return [
        f"{prefix}{name}{separator}{step}" if step else f"{prefix}{name}"
        for step in steps
    ]


def broker_queues_list(app: Any) -> list[str]:
    """Return the queues a deployment uses: this worker's, the default, routed.

    Every worker reports every queue, so that a queue whose own workers are
    all gone still has its length watched.
    """
    names = set(app.amqp.queues.keys()) | {app.conf.task_default_queue}
    routes = app.conf.task_routes or {}
    if isinstance(routes, dict):
        names |= {
            str(route["queue"])
            for route in routes.values()
            if isinstance(route, dict) and route.get("queue")
        }

    return sorted(names)


def queue_lengths_get(
    client: redis.Redis, queues: list[str], *, transport_options: dict[str, Any]
) -> dict[str, int]:
    """Return the number of messages waiting in each broker queue (LLEN).

    Raises redis.RedisError when Redis fails.
    """
    keys = {name: _queue_keys(name, transport_options) for name in queues}
    with client.pipeline(transaction=False) as pipe:
        for name in queues:
            for key in keys[name]:
                pipe.llen(key)
        sizes = iter(pipe.execute())

    return {name: sum(int(next(sizes)) for _key in keys[name]) for name in queues}


def workers_alive_count(client: redis.Redis, *, hostname: str, ttl: int) -> int:
    """Renew this worker's heartbeat and count the heartbeats alive.

    Raises redis.RedisError when Redis fails.
    """
    prefix = heartbeat_key_prefix()
    client.set(f"{prefix}{hostname}", "1", ex=ttl)
    pattern = f"{_redis_glob_escape(prefix)}*"

    return sum(1 for _key in client.scan_iter(match=pattern, count=500))


def dead_children_mark(path: Path) -> int:
    """Drop the live gauges of processes that are gone; return how many.

    A prefork child killed outright never says goodbye, so the monitor
    looks for files of pids that no longer exist.
    """
    pids = set()
    for file in path.glob(f"{_LIVE_GAUGE_PREFIX}*_*.db"):
        suffix = file.stem.rpartition("_")[2]
        if suffix.isdigit():
            pids.add(int(suffix))

    marked = 0
    for pid in pids:
        if not _process_exists(pid):
            mark_process_dead(pid, path=str(path))
            marked += 1

    return marked


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

    return True


class WorkerMonitor:
    """Samples the worker's surroundings into gauges, in a daemon thread."""

    def __init__(
        self,
        *,
        hostname: str,
        interval: float,
        queues: list[str],
        transport_options: dict[str, Any],
    ) -> None:
        self.hostname = hostname
        self.interval = interval
        self.queues = queues
        self.transport_options = transport_options
        self.ttl = max(_HEARTBEAT_MIN_SECONDS, math.ceil(interval * HEARTBEAT_TICKS))
        self._redis = self._redis_client()
        self._states: dict[str, bool] = {}
        self._failing = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="metrics-monitor", daemon=True
        )

    def _redis_client(self) -> redis.Redis | None:
        if not settings.REDIS_URL:
            return None

        return redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
            socket_timeout=CHECK_TIMEOUT_SECONDS,
            # redis-py retries three times by default; the next tick will.
            retry=Retry(NoBackoff(), 0),
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and take this worker's heartbeat away at once."""
        self._stopped.set()
        self._thread.join(timeout=CHECK_TIMEOUT_SECONDS * 3)
        if self._redis is None:
            return
        try:
            self._redis.delete(f"{heartbeat_key_prefix()}{self.hostname}")
        except redis.RedisError:
            logger.info("The worker's heartbeat could not be removed; it expires.")
        self._redis.close()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.tick()
            except Exception:
                # The top of the monitor's thread: log once, keep sampling.
                if not self._failing:
                    logger.exception("The metrics monitor failed; it keeps running.")
                self._failing = True
            else:
                if self._failing:
                    logger.info("The metrics monitor works again.")
                self._failing = False
            self._stopped.wait(self.interval)

    def _state_set(self, dependency: str, up: bool, error: Exception | None) -> None:
        with _gauges_lock:
            DEPENDENCY_UP.labels(dependency=dependency).set(1 if up else 0)
        previous = self._states.get(dependency)
        self._states[dependency] = up
        if previous == up:
            return
        if not up:
            logger.warning(
                "Metrics monitor: %s is unavailable (%s).",
                dependency,
                type(error).__name__,
            )
        elif previous is not None:
            logger.info("Metrics monitor: %s is available again.", dependency)

    def tick(self) -> None:
        """Sample once: the outbox, then Redis, then dead children's files."""
        try:
            backlog, age = outbox_state_get()
        except (psycopg.Error, DatabaseError) as exc:
            self._state_set("database", False, exc)
        else:
            with _gauges_lock:
                OUTBOX_BACKLOG.set(backlog)
                OUTBOX_OLDEST_AGE.set(age)
            self._state_set("database", True, None)

        if self._redis is not None:
            try:
                self._redis.ping()
                alive = workers_alive_count(
                    self._redis, hostname=self.hostname, ttl=self.ttl
                )
                lengths = queue_lengths_get(
                    self._redis,
                    self.queues,
                    transport_options=self.transport_options,
                )
            except redis.RedisError as exc:
                self._state_set("redis", False, exc)
            else:
                with _gauges_lock:
                    CELERY_WORKERS_ALIVE.set(alive)
                    for name, length in lengths.items():
                        CELERY_QUEUE_LENGTH.labels(queue=name).set(length)
                self._state_set("redis", True, None)

        path = os.environ.get(MULTIPROC_ENV)
        if path:
            dead_children_mark(Path(path))


@dataclass
class _Running:
    monitor: WorkerMonitor
    server: Any = None
    thread: threading.Thread | None = None


_running: _Running | None = None


def worker_metrics_start(
    *, hostname: str, queues: list[str], transport_options: dict[str, Any]
) -> None:
    """Start the exporter and the monitor in the worker's main process.

    Called once the worker is ready (its prefork children exist). Raises
    OSError when the port is taken.
    """
    global _running
    if _running is not None:
        return

    monitor = WorkerMonitor(
        hostname=hostname,
        interval=settings.METRICS_MONITOR_INTERVAL_SECONDS,
        queues=queues,
        transport_options=transport_options,
    )
    running = _Running(monitor=monitor)
    port = settings.WORKER_METRICS_PORT
    path = os.environ.get(MULTIPROC_ENV)
    if port and path:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        running.server, running.thread = start_http_server(
            port, addr=settings.WORKER_METRICS_ADDRESS, registry=registry
        )
        logger.info("Worker metrics on port %s.", port)
    monitor.start()
    _running = running


def worker_metrics_stop() -> None:
    """Stop the monitor and the exporter; remove a directory made for them."""
    global _running
    running, _running = _running, None
    if running is None:
        return

    running.monitor.stop()
    if running.server is not None:
        running.server.shutdown()
        running.server.server_close()
    created = os.environ.get(CREATED_ENV)
    if created and created == os.environ.get(MULTIPROC_ENV):
        shutil.rmtree(created, ignore_errors=True)
