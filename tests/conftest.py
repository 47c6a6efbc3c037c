import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.control import (
    FakeTelegramControl,
    start_fake_telegram_subprocess,
    stop_fake_telegram_subprocess,
)


def pytest_configure(config: pytest.Config) -> None:
    # Each test process gets its own cache and broker key space in the shared
    # Redis, so parallel workers and earlier runs never see each other's keys.
    if not config.pluginmanager.hasplugin("django"):
        return
    from django.conf import settings

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    prefix = f"{settings.CACHE_KEY_PREFIX}-{worker}-{uuid.uuid4().hex[:8]}"
    settings.CACHES["default"]["KEY_PREFIX"] = prefix
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "global_keyprefix": f"{prefix}:celery:",
    }
    # A test walks a conversation faster than anyone types, and its in-process
    # tasks cannot wait out Telegram's per-chat limit; that limit has tests of
    # its own (tests/bots/test_rate_limits.py).
    settings.OUTBOX_CHAT_BURST = 1000


def pytest_unconfigure(config: pytest.Config) -> None:
    if not config.pluginmanager.hasplugin("django"):
        return
    from django.core.cache import cache

    delete_pattern = getattr(cache, "delete_pattern", None)
    if delete_pattern is not None:
        delete_pattern("*")


# Test databases (and the bot roles named after them) get a suffix per run,
# so two runs against one PostgreSQL server never collide.
_RUN_ID = uuid.uuid4().hex[:6]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None,
) -> None:
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        return
    test = database.setdefault("TEST", {})
    base = test.get("NAME") or f"test_{database['NAME']}"
    test["NAME"] = f"{base}_{_RUN_ID}"


@pytest.fixture(autouse=True)
def _tasks_run_in_process(request: pytest.FixtureRequest) -> None:
    """Run Celery tasks in-process unless a test starts a real worker."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    from botfactory.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    _outbox_hints_clear()


def _outbox_hints_clear() -> None:
    """Empty the ready chats and free the sender slots in Redis.

    The key space is this process's, shared by its tests: a slot that an
    earlier test's worker held when it was stopped would keep this test's
    chats waiting for the sweep, which tests do not run.
    """
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    from bots.services import outbox_wake

    slots = range(max(settings.OUTBOX_SENDERS, 64))
    keys = [outbox_wake._ready_key(), *map(outbox_wake._slot_key, slots)]
    outbox_wake._client().delete(*keys)


@pytest.fixture(scope="session")
def fake_telegram_url() -> Iterator[str]:
    process, url = start_fake_telegram_subprocess()
    yield url
    stop_fake_telegram_subprocess(process)


@pytest.fixture
def telegram_api(
    fake_telegram_url: str, settings: Any
) -> Iterator[FakeTelegramControl]:
    """The fake Telegram Bot API, emptied, with the runtime pointed at it."""
    settings.TELEGRAM_API_URL = fake_telegram_url
    settings.TELEGRAM_TIMEOUT_SECONDS = 3.0
    with FakeTelegramControl(fake_telegram_url) as control:
        control.clear_faults()
        control.clear_calls()
        yield control
        control.clear_faults()
