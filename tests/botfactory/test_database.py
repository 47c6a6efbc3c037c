import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from celery.signals import worker_init, worker_process_init
from django.conf import settings
from django.db import connection, connections

from botfactory import database
from botfactory.celery import _install_database_pool
from botfactory.database import DeadlineConnection, pooled_connection_check
from tests.bots.hostile_server import database_url


def test_a_celery_worker_process_bounds_its_database_waits() -> None:
    pool = connections["default"].pool  # type: ignore[attr-defined]
    pool.connection_class = psycopg.Connection
    DeadlineConnection.command_timeout = None

    worker_process_init.send(sender=None)

    assert pool.connection_class is DeadlineConnection
    assert DeadlineConnection.command_timeout == settings.DATABASE_COMMAND_TIMEOUT
    assert pool._check is pooled_connection_check


def test_solo_and_thread_pools_install_the_deadline_at_worker_start() -> None:
    receivers = [receiver() for _, receiver in worker_init.receivers]

    assert _install_database_pool in receivers


def test_a_statement_run_five_times_is_prepared_on_its_connection(db: None) -> None:
    statement = "SELECT $1::int + 41"
    prepared = "SELECT count(*) FROM pg_prepared_statements WHERE statement = %s"
    counts = []

    with connection.cursor() as cursor:
        for run in range(1, 7):
            cursor.execute("SELECT %s::int + 41", [run])
            assert cursor.fetchone() == (run + 41,)
            cursor.execute(prepared, [statement])
            counts.append(cursor.fetchone()[0])

    # Bound by the server from the first run; prepared at the sixth.
    assert counts == [0, 0, 0, 0, 0, 1]


def test_prepared_statements_can_be_turned_off_for_a_pooler() -> None:
    code = (
        "import json; from django.conf import settings; "
        "o = settings.DATABASES['default']['OPTIONS']; "
        "print(json.dumps([o['server_side_binding'], o['prepare_threshold']]))"
    )
    env = {**os.environ, "DATABASE_PREPARED_STATEMENTS": "0"}

    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**env, "DJANGO_SETTINGS_MODULE": "botfactory.settings"},
        capture_output=True,
        text=True,
        check=True,
    )

    assert json.loads(result.stdout) == [False, None]
    options = settings.DATABASES["default"]["OPTIONS"]
    assert (options["server_side_binding"], options["prepare_threshold"]) == (True, 5)


@pytest.fixture
def pooled() -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
    """A connection as the pool keeps it (autocommit, idle), and a watcher."""
    url = database_url(connection.settings_dict)
    with (
        psycopg.connect(url, autocommit=True) as conn,
        psycopg.connect(url, autocommit=True) as watcher,
    ):
        conn.execute("SELECT 'last statement'")
        yield conn, watcher


def _last_statement(
    watcher: psycopg.Connection[Any], conn: psycopg.Connection[Any]
) -> str:
    row = watcher.execute(
        "SELECT query FROM pg_stat_activity WHERE pid = %s", [conn.info.backend_pid]
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_the_pool_check_sends_an_empty_query_to_a_connection_it_has_not_checked(
    db: None, pooled: tuple[psycopg.Connection[Any], psycopg.Connection[Any]]
) -> None:
    conn, watcher = pooled

    pooled_connection_check(conn)

    assert _last_statement(watcher, conn) == ""


def test_the_pool_check_spares_a_recently_checked_idle_connection_the_round_trip(
    db: None, pooled: tuple[psycopg.Connection[Any], psycopg.Connection[Any]]
) -> None:
    # Given a connection checked, then used
    conn, watcher = pooled
    pooled_connection_check(conn)
    conn.execute("SELECT 'used since'")

    # When the pool checks it again at once, then nothing reaches the server
    pooled_connection_check(conn)
    assert _last_statement(watcher, conn) == "SELECT 'used since'"


def test_the_pool_check_queries_again_once_the_last_full_check_is_old(
    db: None,
    pooled: tuple[psycopg.Connection[Any], psycopg.Connection[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn, watcher = pooled
    pooled_connection_check(conn)
    conn.execute("SELECT 'used since'")
    monkeypatch.setattr(database, "FULL_CHECK_SECONDS", 0.0)

    pooled_connection_check(conn)

    assert _last_statement(watcher, conn) == ""


def test_the_pool_check_fails_a_recently_checked_connection_the_server_ended(
    db: None, pooled: tuple[psycopg.Connection[Any], psycopg.Connection[Any]]
) -> None:
    # Given a connection checked a moment ago, whose session the server ends
    conn, watcher = pooled
    pooled_connection_check(conn)
    pid = conn.info.backend_pid
    watcher.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])

    # When the pool checks it, then the check fails, so the pool replaces it
    with pytest.raises(psycopg.OperationalError):
        pooled_connection_check(conn)
    assert conn.closed
