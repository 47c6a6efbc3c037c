from collections.abc import Iterator

import pytest
import redis
from django.conf import settings as django_settings

from botfactory.celery import app

# The demo bot, for the end-to-end log check.
from tests.bots.conftest import demo_bot

__all__ = ["demo_bot"]


@pytest.fixture
def broker_prefix() -> Iterator[str]:
    """This test run's key prefix; its broker keys are removed afterwards."""
    prefix = str(django_settings.CACHES["default"]["KEY_PREFIX"])
    # Tasks go to the real broker, for the worker subprocesses to take.
    app.conf.task_always_eager = False
    yield prefix
    client = redis.Redis.from_url(str(django_settings.REDIS_URL))
    for key in client.scan_iter(match=f"{prefix}:celery:*"):
        client.delete(key)
    client.close()
