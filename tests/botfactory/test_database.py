from typing import Any

import psycopg
import pytest
from celery.signals import worker_init, worker_process_init
from django.conf import settings
from django.db import connections
from psycopg_pool import ConnectionPool

from botfactory.celery import _install_database_deadline
from botfactory.database import (
    TRUSTED_SECONDS,
    DeadlineConnection,
    _check_unless_fresh,
    database_deadline_install,
)


def test_a_celery_worker_process_bounds_its_database_waits() -> None:
    pool = connections["default"].pool  # type: ignore[attr-defined]
    pool.connection_class = psycopg.Connection
    DeadlineConnection.command_timeout = None

    worker_process_init.send(sender=None)

    assert pool.connection_class is DeadlineConnection
    assert DeadlineConnection.command_timeout == settings.DATABASE_COMMAND_TIMEOUT


def test_solo_and_thread_pools_install_the_deadline_at_worker_start() -> None:
    receivers = [receiver() for _, receiver in worker_init.receivers]

    assert _install_database_deadline in receivers


def _pool() -> ConnectionPool:
    params = connections["default"].get_connection_params()
    return ConnectionPool(
        kwargs={**params, "autocommit": True},
        connection_class=DeadlineConnection,
        check=_check_unless_fresh,
        min_size=1,
        max_size=1,
        open=True,
    )


def _backend_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def _terminate(pid: int) -> None:
    with psycopg.connect(
        **connections["default"].get_connection_params(), autocommit=True
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db
def test_the_pool_replaces_a_dropped_connection_it_has_not_heard_from_lately() -> None:
    # Given a pooled connection whose server session was ended while idle,
    # and which last had an answer longer ago than the trusted window
    pool = _pool()
    try:
        with pool.connection() as conn:
            first = _backend_pid(conn)
        _terminate(first)
        with pool.connection() as conn:
            conn.answered_at -= TRUSTED_SECONDS + 1  # type: ignore[attr-defined]

        # When it is handed out again
        with pool.connection() as conn:
            second = _backend_pid(conn)

        # Then the check found it dead and a new session serves
        assert second != first
        assert pool.get_stats()["connections_lost"] == 1
    finally:
        pool.close()


@pytest.mark.django_db
def test_the_pool_skips_the_check_of_a_connection_that_just_answered() -> None:
    # Given a pooled connection that answered a moment ago
    pool = _pool()
    try:
        with pool.connection() as conn:
            _backend_pid(conn)

        # When it is handed out again at once, then no check query is made
        with pool.connection() as conn:
            answered = conn.answered_at  # type: ignore[attr-defined]
        with pool.connection() as conn:
            assert conn.answered_at == answered  # type: ignore[attr-defined]
        assert pool.get_stats().get("connections_lost", 0) == 0
    finally:
        pool.close()


def test_installing_the_deadline_gives_the_pool_the_window_check() -> None:
    pool = connections["default"].pool  # type: ignore[attr-defined]
    pool._check = ConnectionPool.check_connection

    database_deadline_install(settings.DATABASE_COMMAND_TIMEOUT)

    assert pool._check is _check_unless_fresh
