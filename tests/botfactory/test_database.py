import json
import os
import subprocess
import sys

import psycopg
from celery.signals import worker_init, worker_process_init
from django.conf import settings
from django.db import connection, connections

from botfactory.celery import _install_database_deadline
from botfactory.database import DeadlineConnection


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
