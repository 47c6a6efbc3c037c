import psycopg
from celery.signals import worker_init, worker_process_init
from django.conf import settings
from django.db import connections

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
