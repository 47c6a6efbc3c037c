"""The ``workers`` fixture: real ``celery worker`` processes that drain the
outbox of this test's database through its broker."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from botfactory.celery import app
from tests.bots.test_llm_workers import Workers
from tests.fakes.control import FakeTelegramControl


@pytest.fixture
def workers(
    transactional_db: None,
    telegram_api: FakeTelegramControl,
    settings: Any,
    tmp_path: Path,
) -> Iterator[Workers]:
    """Start ``celery worker`` processes on this test's database and broker."""
    # No language model is asked here: the workers get the echo provider.
    settings.OPENAI_API_KEY = ""
    app.conf.task_always_eager = False
    started = Workers(settings, tmp_path)
    yield started
    started.stop()
    app.conf.task_always_eager = True
