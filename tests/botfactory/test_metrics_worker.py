"""A real ``celery worker`` serves its own metrics on WORKER_METRICS_PORT:
what its prefork children counted, and what its monitor samples."""

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from botfactory.celery import app
from botfactory.multiproc import is_worker_command
from botfactory.worker_metrics import dead_children_mark
from bots.models import Bot, OutboundMessage
from bots.tasks import outbox_send_task
from tests.botfactory.metrics_support import (
    broker_env,
    celery_worker,
    per_process,
    scrape,
    stale_counts_leave,
    total,
    wait_for,
)
from tests.bots.hostile_server import free_port
from tests.fakes.control import FakeTelegramControl

pytestmark = pytest.mark.django_db(transaction=True)

Status = OutboundMessage.Status
PARKED_QUEUE = "bftest.parked"
PARKED_AGE_SECONDS = 120
# The age is sampled every half second by a worker on a busy machine.
AGE_MARGIN_SECONDS = 60


def _gauge(samples: list[Any], name: str, **labels: str) -> float:
    return total(samples, name, **labels)


def _queue(bot: Bot, chat_id: int, *texts: str, **fields: Any) -> None:
    for text in texts:
        OutboundMessage.objects.create(
            bot=bot,
            chat_id=chat_id,
            method="sendMessage",
            payload={"chat_id": chat_id, "text": text},
            **fields,
        )


def _statuses(chat_id: int) -> list[str]:
    return list(
        OutboundMessage.objects.filter(chat_id=chat_id)
        .order_by("id")
        .values_list("status", flat=True)
    )


def _stale_counts(path: Path, **program_args: int) -> None:
    """Leave a samples file in ``path``, as a worker of an earlier run would."""
    program = (
        "from botfactory.metrics import DB_UNAVAILABLE; "
        f"DB_UNAVAILABLE.inc({program_args['db_unavailable']})"
    )
    stale_counts_leave(path, program)


def test_worker_exports_its_sends_the_outbox_queues_and_live_workers(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    fake_telegram_url: str,
    broker_prefix: str,
    tmp_path: Path,
) -> None:
    env = broker_env(
        prefix=broker_prefix,
        telegram_url=fake_telegram_url,
        WORKER_METRICS_DIR=str(tmp_path / "worker"),
    )
    # given three replies parked for an hour, the oldest two minutes old,
    parked = 990001
    _queue(
        demo_bot,
        parked,
        "later 1",
        "later 2",
        "later 3",
        next_attempt_at=timezone.now() + timedelta(hours=1),
    )
    OutboundMessage.objects.filter(chat_id=parked).update(
        created_at=timezone.now() - timedelta(seconds=PARKED_AGE_SECONDS)
    )
    # a chat that blocked the bot and one that did not
    blocked, open_chat = 990002, 990003
    telegram_api.add_fault(
        method="sendMessage",
        chat_id=str(blocked),
        status=403,
        description="Forbidden: bot was blocked by the user",
    )
    _queue(demo_bot, blocked, "hello?")
    _queue(demo_bot, open_chat, "one", "two", "three", "four")
    run = uuid.uuid4().hex[:8]

    # and two workers: one with two prefork children that takes the outbox
    # queue (not the parked one), one that only waits on an idle queue
    with (
        celery_worker(
            env=env,
            hostname=f"metrics-a-{run}@localhost",
            queues=f"celery,{PARKED_QUEUE}",
            exclude=PARKED_QUEUE,
        ) as worker,
        celery_worker(
            env={**env, "WORKER_METRICS_DIR": str(tmp_path / "idle")},
            hostname=f"metrics-b-{run}@localhost",
            queues="bftest.idle",
            pool="solo",
            concurrency=1,
        ) as idle,
    ):
        # when both chats' sends are enqueued, and three tasks wait unconsumed
        outbox_send_task.delay(demo_bot.pk, open_chat)
        outbox_send_task.delay(demo_bot.pk, blocked)
        for _ in range(3):
            app.send_task("bots.outbox_sweep", queue=PARKED_QUEUE)
        wait_for(
            lambda: (
                _statuses(open_chat) == [Status.SENT] * 4
                and _statuses(blocked) == [Status.FAILED]
            ),
            within=60.0,
            what="the sends",
        )
        samples = wait_for(
            lambda: (
                (found := scrape(worker.url))
                and _gauge(found, "botfactory_outbox_backlog") == 3
                and _gauge(found, "botfactory_celery_queue_length", queue=PARKED_QUEUE)
                == 3
                and _gauge(found, "botfactory_celery_workers_alive") == 2
                and found
            ),
            within=30.0,
            what="the monitor's sample",
        )
        idle_samples = scrape(idle.url)
        children = per_process(tmp_path / "worker")
        idle.process.terminate()
        idle.process.wait(timeout=30)
        alone = wait_for(
            lambda: (
                (found := scrape(worker.url))
                and _gauge(found, "botfactory_celery_workers_alive") == 1
                and found
            ),
            within=30.0,
            what="the heartbeat of the stopped worker to go",
        )

    # then the worker's page shows what its children sent, by result
    sends = "botfactory_telegram_sends_total"
    assert total(samples, sends, method="sendMessage", result="ok") == 4
    assert total(samples, sends, result="failed", error_code="403") == 1
    assert total(samples, sends) == 5
    assert sum(total(found, sends) for found in children.values()) == 5
    assert total(idle_samples, sends) == 0

    # and what its monitor sampled: the backlog and its age, the queues,
    # the live workers and the dependencies
    age = _gauge(samples, "botfactory_outbox_oldest_unsent_age_seconds")
    assert PARKED_AGE_SECONDS <= age < PARKED_AGE_SECONDS + AGE_MARGIN_SECONDS
    assert _gauge(samples, "botfactory_celery_queue_length", queue="celery") == 0
    assert _gauge(samples, "botfactory_celery_queue_length", queue="llm") == 0
    assert _gauge(samples, "botfactory_dependency_up", dependency="database") == 1
    assert _gauge(samples, "botfactory_dependency_up", dependency="redis") == 1
    assert _gauge(idle_samples, "botfactory_celery_workers_alive") == 2
    assert _gauge(alone, "botfactory_celery_workers_alive") == 1


def test_worker_whose_database_is_down_keeps_exporting_and_counts_the_failures(
    broker_prefix: str, tmp_path: Path
) -> None:
    # given a worker whose database refuses connections, started on a
    # metrics directory that an earlier worker left counts in
    metrics_dir = tmp_path / "worker"
    _stale_counts(metrics_dir, db_unavailable=5)
    env = {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/botfactory",
        "DOTENV_PATH": os.devnull,
        "LOG_LEVEL": "error",
        "REDIS_URL": str(django_settings.REDIS_URL),
        "CACHE_KEY_PREFIX": broker_prefix,
        "WORKER_METRICS_DIR": str(metrics_dir),
    }

    with celery_worker(
        env=env,
        hostname=f"metrics-down-{uuid.uuid4().hex[:8]}@localhost",
        pool="solo",
        concurrency=1,
    ) as worker:
        first = scrape(worker.url)
        # when two send tasks run against it
        outbox_send_task.delay(1, 1)
        outbox_send_task.delay(1, 2)
        samples = wait_for(
            lambda: (
                (found := scrape(worker.url))
                and total(found, "botfactory_db_unavailable_total") == 2
                and found
            ),
            within=60.0,
            what="the failed tasks",
        )
        alive = worker.process.poll() is None

    # then each is counted, the earlier run's counts are gone, the monitor
    # reports the database down (and Redis up), and the worker lives on
    assert total(first, "botfactory_db_unavailable_total") == 0
    assert total(samples, "botfactory_db_unavailable_total") == 2
    assert _gauge(samples, "botfactory_dependency_up", dependency="database") == 0
    assert _gauge(samples, "botfactory_dependency_up", dependency="redis") == 1
    assert alive


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([".venv/bin/celery", "-A", "botfactory", "worker", "-l", "info"], True),
        (["/usr/lib/python3/site-packages/celery/__main__.py", "worker"], True),
        ([".venv/bin/celery", "-A", "botfactory", "beat"], False),
        (["manage.py", "worker"], False),
        (["gunicorn", "-c", "docker/gunicorn.conf.py"], False),
        ([], False),
    ],
)
def test_only_a_celery_worker_gets_a_metrics_directory_of_its_own(
    argv: list[str], expected: bool
) -> None:
    assert is_worker_command(argv) is expected


def test_a_dead_process_loses_its_live_gauges_and_keeps_its_counters(
    tmp_path: Path,
) -> None:
    # given the files of this process and of one that no longer exists
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead, alive = int(gone.stdout), os.getpid()
    for name in (
        f"gauge_livesum_{dead}.db",
        f"gauge_liveall_{dead}.db",
        f"counter_{dead}.db",
        f"gauge_livesum_{alive}.db",
    ):
        (tmp_path / name).write_bytes(b"")

    # when the monitor looks for processes that are gone
    marked = dead_children_mark(tmp_path)

    # then only the dead process's live gauges are removed
    assert marked == 1
    assert sorted(file.name for file in tmp_path.iterdir()) == [
        f"counter_{dead}.db",
        f"gauge_livesum_{alive}.db",
    ]
