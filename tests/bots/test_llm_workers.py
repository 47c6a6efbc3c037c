"""LLM answers through real ``celery worker`` processes: a worker killed with
kill -9 mid-call, and one thread-pool worker holding many calls at once."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from botfactory.celery import app
from bots.models import Bot, LlmRequest
from bots.services.llm import llm_sweep
from tests.bots.chat_user import ChatUser
from tests.bots.llm_support import (
    WAIT_SECONDS,
    ask,
    ask_node_publish,
    held_calls,
    outbox_sent,
    prompt_messages,
    settled,
    visible_texts,
)
from tests.fakes.control import FakeTelegramControl
from tests.fakes.openai_api import expected_answer
from tests.llm.conftest import PROJECT_ROOT, FakeOpenAI

# The fake OpenAI API's fixtures.
pytest_plugins = ["tests.bots.llm_fixtures"]

PROMPT = "What would you like to ask the barista?"


def _database_url(application_name: str) -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""

    return (
        f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        f"?application_name={application_name}"
    )


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))

    return found


class Workers:
    """``celery worker`` subprocesses sharing this test's database and broker."""

    def __init__(self, settings: Any, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.application_name = f"bf-llm-{uuid.uuid4().hex[:8]}"
        self.processes: list[subprocess.Popen[bytes]] = []

    def _env(self, **extra: str) -> dict[str, str]:
        settings = self.settings
        env = dict(os.environ)
        env.pop("PYTEST_XDIST_WORKER", None)
        env.update(
            DATABASE_URL=_database_url(self.application_name),
            CACHE_KEY_PREFIX=settings.CACHES["default"]["KEY_PREFIX"],
            TELEGRAM_API_URL=settings.TELEGRAM_API_URL,
            TELEGRAM_TIMEOUT_SECONDS=str(settings.TELEGRAM_TIMEOUT_SECONDS),
            OPENAI_BASE_URL=settings.OPENAI_BASE_URL,
            OPENAI_API_KEY=settings.OPENAI_API_KEY,
            LLM_MODEL=settings.LLM_MODEL,
            LLM_PROVIDER_NAME=settings.LLM_PROVIDER_NAME,
            LLM_MAX_ATTEMPTS=str(settings.LLM_MAX_ATTEMPTS),
            LLM_BACKOFF_INITIAL_SECONDS=str(settings.LLM_BACKOFF_INITIAL_SECONDS),
            LLM_BACKOFF_MAX_SECONDS=str(settings.LLM_BACKOFF_MAX_SECONDS),
            LLM_TASK_LEASE_GRACE_SECONDS="1",
            LOG_FORMAT="text",
            PYTHONPATH=str(PROJECT_ROOT),
        )
        env.update(extra)

        return env

    def start(self, *, pool: str, concurrency: int, **env: str) -> int:
        index = len(self.processes)
        log = (self.log_dir / f"worker-{index}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "botfactory",
                "worker",
                "-Q",
                "llm,celery",
                "-P",
                pool,
                "-c",
                str(concurrency),
                "-n",
                f"llm{index}-{uuid.uuid4().hex[:6]}@%h",
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=PROJECT_ROOT,
            env=self._env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes.append(process)

        return process.pid

    def log(self, index: int) -> str:
        return (self.log_dir / f"worker-{index}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                for child in _children(process.pid):
                    os.kill(child, signal.SIGKILL)
                process.kill()
                process.wait()


@pytest.fixture
def workers(
    demo_bot: Bot,
    openai_api: FakeOpenAI,
    settings: Any,
    tmp_path: Path,
) -> Iterator[Workers]:
    app.conf.task_always_eager = False
    started = Workers(settings, tmp_path)
    yield started
    started.stop()
    app.conf.task_always_eager = True


def _sent_with_text(telegram: FakeTelegramControl, token: str, text: str) -> int:
    return sum(
        1
        for call in telegram.calls(token=token)
        if call["params"].get("text") == text and call["status"] == 200
    )


def test_a_worker_child_killed_mid_call_ends_with_exactly_one_answer(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    workers: Workers,
) -> None:
    # given a prefork worker whose provider call is held in flight
    openai_api.control(hold=True)
    parent = workers.start(pool="prefork", concurrency=2)
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7720001)
    ask(ann, "Survive a crash?")
    held_calls(openai_api, 1)
    outbox_sent(demo_bot)

    # when its pool processes are killed with kill -9
    children = _children(parent)
    assert len(children) == 2, workers.log(0)
    for child in children:
        os.kill(child, signal.SIGKILL)

    # then the same task is delivered again and calls the provider again
    held_calls(openai_api, 2)
    openai_api.control(hold=False)
    openai_api.release()
    settled(demo_bot)

    # and the user gets exactly one answer, in place of the thinking message
    answer = expected_answer(prompt_messages("Survive a crash?"))
    assert visible_texts(demo_bot, ann.chat_id) == [PROMPT, answer]
    assert _sent_with_text(telegram_api, demo_bot.token, answer) == 1
    request = LlmRequest.objects.get(bot=demo_bot)
    assert (request.status, request.attempts, request.answer) == ("done", 2, answer)
    assert "WorkerLostError" in workers.log(0)


def test_a_whole_worker_killed_mid_call_is_taken_over_after_its_lease(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    workers: Workers,
) -> None:
    # given a thread-pool worker whose provider call is held in flight
    ask_node_publish(demo_bot, budget_seconds=3, cache_ttl_seconds=0)
    openai_api.control(hold=True)
    first = workers.start(pool="threads", concurrency=4)
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7720002)
    ask(ann, "Who answers now?")
    held_calls(openai_api, 1)
    outbox_sent(demo_bot)
    claimed = LlmRequest.objects.get(bot=demo_bot)
    assert (claimed.status, claimed.attempts) == ("running", 1)

    # when the worker is killed with kill -9, another starts, the provider
    # recovers and the sweep runs once the dead run's lease is over
    os.kill(first, signal.SIGKILL)
    workers.processes[0].wait(timeout=10)
    workers.start(pool="threads", concurrency=4)
    openai_api.control(hold=False)
    openai_api.release()
    assert llm_sweep(older_than_seconds=0) == 0
    assert claimed.lease_until is not None
    while timezone.now() <= claimed.lease_until:
        time.sleep(0.1)
    assert llm_sweep(older_than_seconds=0) == 1
    settled(demo_bot)

    # then the user gets exactly one answer, from the second worker
    answer = expected_answer(prompt_messages("Who answers now?"))
    assert visible_texts(demo_bot, ann.chat_id) == [PROMPT, answer]
    assert _sent_with_text(telegram_api, demo_bot.token, answer) == 1
    request = LlmRequest.objects.get(bot=demo_bot)
    assert (request.status, request.attempts) == ("done", 2)
    assert request.task_id != claimed.task_id


def test_one_thread_pool_worker_keeps_many_calls_in_flight_on_two_connections(
    demo_bot: Bot,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
    workers: Workers,
) -> None:
    # given one worker process with 8 threads but a pool of 2 connections
    openai_api.control(hold=True)
    workers.start(pool="threads", concurrency=8, DATABASE_POOL_MAX_SIZE="2")
    users = [
        ChatUser(bot=demo_bot, telegram=telegram_api, user_id=7720100 + n)
        for n in range(8)
    ]

    # when eight users ask at once
    for user in users:
        user.post(user.message(text="/ask"))
    outbox_sent(demo_bot)
    for n, user in enumerate(users):
        user.post(user.message(text=f"Question number {n}?"))

    # then all eight calls are in flight together, holding no connection
    held_calls(openai_api, 8)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [workers.application_name],
        )
        (connections,) = cursor.fetchone()
    assert connections <= 2

    # and once the provider answers, every user gets their own answer
    openai_api.control(hold=False)
    openai_api.release()
    settled(demo_bot, requests=8, seconds=WAIT_SECONDS)
    for n, user in enumerate(users):
        answer = expected_answer(prompt_messages(f"Question number {n}?"))
        assert visible_texts(demo_bot, user.chat_id) == [PROMPT, answer]
    assert LlmRequest.objects.filter(status="done", attempts=1).count() == 8
