"""Redis stopped, and restarted empty, under webhook load.

A throwaway ``redis-server`` (``--save ""``: a restart keeps nothing) is the
cache, the breaker's store and the Celery broker of a gunicorn with two
workers, one ``celery worker`` (outbox and LLM queues) and ``celery beat``
(the sweeps, every second). Chats post updates and re-deliver each until it
is answered 200, and some updates a second time after their 200.
PostgreSQL keeps the processed updates, the conversations and the outbox,
so whatever Redis loses, every update is processed once and every reply is
sent once. Run with ``-s`` to see the figures.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings

from bots.models import Bot, Conversation, LlmRequest, OutboundMessage, ProcessedUpdate
from tests.bots.conftest import DEMO_SECRET, DEMO_TOKEN
from tests.bots.hostile_server import database_url, demo_server_env, free_port, gunicorn
from tests.bots.llm_support import prompt_messages, visible_texts
from tests.bots.redelivery import RedeliveringSender, update_body
from tests.fakes.control import FakeTelegramControl
from tests.fakes.openai_api import expected_answer
from tests.fakes.openai_control import FakeOpenAI, llm_settings_for

# The fake OpenAI API's fixtures.
pytest_plugins = ["tests.bots.llm_fixtures"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
CHATS = 4
HEALTHY_UPDATES = 3
# Under steady load each chat writes about once a second, the pace Telegram
# lets a bot answer in one chat, so that replies wait for the outage and not
# for that limit; twice as many chats make up the load.
STEADY_CHATS = 2 * CHATS
PAUSE_SECONDS = 1.0
OUTAGE_SECONDS = 8.0
# A fresh interpreter per process on two shared cores.
START_SECONDS = 60.0
# Beat's outbox sweep takes rows older than 10 s; the broker reconnects
# with a growing backoff (2, 4, 6 s...).
SETTLE_SECONDS = 90.0
# With Redis down each publish after a commit fails at once (one retry) and
# is logged; the answer stays well under this.
WEBHOOK_BOUND = 1.0
PROMPT = "Which drink would you like?"
ASK_PROMPT = "What would you like to ask the barista?"
QUESTION = "Is the oat milk still there?"


class RedisServer:
    """A ``redis-server`` on ``port`` that keeps nothing across a restart."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        # A new directory each time: nothing on disk to load either.
        data = self.root / f"redis-{self.starts}"
        data.mkdir()
        self.starts += 1
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        deadline = time.monotonic() + 10.0
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert self.process.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=1.0)


@contextmanager
def _celery(
    args: list[str], *, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``celery -A botfactory <args>`` in its own process group."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "botfactory", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Stack:
    url: str
    redis: RedisServer
    worker: subprocess.Popen[bytes]
    beat: subprocess.Popen[bytes]
    logs: Path
    prefix: str

    def worker_log(self) -> str:
        return (self.logs / "worker.log").read_text(errors="replace")

    def queued_tasks(self) -> Counter[str]:
        """Count the tasks waiting in the broker's queues, by name."""
        client = self.redis.client()
        try:
            raw = [
                message
                for queue in ("celery", "llm")
                for message in client.lrange(f"{self.prefix}:celery:{queue}", 0, -1)
            ]
        finally:
            client.close()

        return Counter(json.loads(message)["headers"]["task"] for message in raw)


@pytest.fixture
def stack(
    demo_bot: Bot,
    fake_telegram_url: str,
    openai_api: FakeOpenAI,
    tmp_path: Path,
) -> Iterator[Stack]:
    """gunicorn, a worker and beat on a throwaway Redis and the test database."""
    server = RedisServer(tmp_path)
    server.start()
    prefix = f"bfredis-{uuid.uuid4().hex[:8]}"
    env = {
        **demo_server_env(
            database=settings.DATABASES["default"], telegram_url=fake_telegram_url
        ),
        **{name: str(value) for name, value in llm_settings_for(openai_api).items()},
        "REDIS_URL": server.url,
        "CACHE_KEY_PREFIX": prefix,
        "LLM_MAX_ATTEMPTS": "2",
        "OUTBOX_SWEEP_INTERVAL_SECONDS": "1",
        "LLM_SWEEP_AFTER_SECONDS": "2",
        "WORKER_METRICS_PORT": "0",
        "LOG_FORMAT": "text",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    celery_env = {
        key: value for key, value in os.environ.items() if not key.startswith("PYTEST")
    }
    celery_env.update(env)
    celery_env["DATABASE_URL"] = database_url(settings.DATABASES["default"])
    with ExitStack() as running:
        running.callback(server.stop)
        worker = running.enter_context(
            _celery(
                [
                    "worker",
                    "-Q",
                    "celery,llm",
                    "-P",
                    "threads",
                    "-c",
                    "4",
                    "-n",
                    f"outage-{uuid.uuid4().hex[:6]}@%h",
                    "--loglevel",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                env=celery_env,
                log=tmp_path / "worker.log",
            )
        )
        beat = running.enter_context(
            _celery(
                [
                    "beat",
                    "-s",
                    str(tmp_path / "beat-schedule"),
                    "--loglevel",
                    "WARNING",
                ],
                env=celery_env,
                log=tmp_path / "beat.log",
            )
        )
        url = running.enter_context(gunicorn(workers=WORKERS, env=env))
        yield Stack(
            url=url,
            redis=server,
            worker=worker,
            beat=beat,
            logs=tmp_path,
            prefix=prefix,
        )


def _post(stack: Stack, bot: Bot, *, update_id: int, chat_id: int, text: str) -> None:
    response = httpx.post(
        f"{stack.url}/telegram/{bot.pk}/webhook",
        json=update_body(update_id=update_id, chat_id=chat_id, text=text),
        headers={"X-Telegram-Bot-Api-Secret-Token": DEMO_SECRET},
        timeout=30.0,
    )
    assert (response.status_code, response.json()) == (200, {"ok": True})


def _wait(what: str, check: Any, *, seconds: float = SETTLE_SECONDS) -> float:
    """Poll ``check`` until it holds; return how long it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, f"{what} never happened"
        time.sleep(0.1)

    return time.monotonic() - started


def _wait_accepted(sender: RedeliveringSender, *, each: int) -> None:
    since = {chat: len(sender.accepted.get(chat, [])) for chat in sender.chat_ids}
    _wait(
        "the load's progress",
        lambda: all(
            len(sender.accepted.get(chat, [])) >= since[chat] + each
            for chat in sender.chat_ids
        ),
        seconds=START_SECONDS,
    )


def _all_sent(bot: Bot) -> bool:
    return not OutboundMessage.objects.filter(
        bot=bot, status__in=["pending", "in_flight"]
    ).exists()


def _llm_done(bot: Bot) -> bool:
    return LlmRequest.objects.filter(bot=bot, status="done").exists()


def _ask(stack: Stack, bot: Bot, *, chat_id: int, first_update_id: int) -> None:
    _post(stack, bot, update_id=first_update_id, chat_id=chat_id, text="/ask")
    _post(stack, bot, update_id=first_update_id + 1, chat_id=chat_id, text=QUESTION)


def _exactly_once(
    bot: Bot, sender: RedeliveringSender, telegram: FakeTelegramControl
) -> dict[str, int]:
    """Check that every accepted update was processed once; return counts."""
    accepted = sender.accepted_ids()
    chats = sender.chat_ids
    processed = list(
        ProcessedUpdate.objects.filter(bot=bot, update_id__gte=accepted[0])
        .order_by("update_id")
        .values_list("update_id", "outcome")
    )
    outbox = list(
        OutboundMessage.objects.filter(bot=bot, chat_id__in=chats).values_list(
            "chat_id", "status"
        )
    )
    conversations = list(
        Conversation.objects.filter(bot=bot, chat_id__in=chats)
        .order_by("chat_id")
        .values_list("chat_id", "state__generation", "state__node", "last_update_id")
    )
    calls = [
        call
        for call in telegram.calls("sendMessage", token=DEMO_TOKEN)
        if int(call["params"]["chat_id"]) in chats
    ]
    replies = Counter(int(call["params"]["chat_id"]) for call in calls)
    expected = {chat: len(sender.accepted[chat]) for chat in chats}

    assert sender.lost == []
    assert processed == [(update_id, "processed") for update_id in accepted]
    assert Counter(chat for chat, _ in outbox) == expected
    assert {status for _, status in outbox} == {"sent"}
    assert dict(replies) == expected
    assert {(call["status"], call["params"]["text"]) for call in calls} == {
        (200, PROMPT)
    }
    assert conversations == [
        (chat, expected[chat], "order", sender.accepted[chat][-1]) for chat in chats
    ]

    return {
        "sent": len(sender.deliveries),
        "re-deliveries after a 200": sender.repeats(),
        "accepted": len(accepted),
        "processed": len(processed),
        "replies": sum(replies.values()),
        "duplicates": sum(replies.values()) - len(accepted),
        "losses": len(accepted) - len(processed),
    }


def _answers_sent(telegram: FakeTelegramControl, chat_id: int) -> list[str]:
    return [
        call["params"]["text"]
        for call in telegram.calls(token=DEMO_TOKEN)
        if call["method"] in ("sendMessage", "editMessageText")
        and int(call["params"]["chat_id"]) == chat_id
        and call["status"] == 200
    ]


def _report(title: str, counts: dict[str, int], figures: dict[str, float]) -> None:
    shown = ", ".join(f"{name} {value}" for name, value in counts.items())
    times = ", ".join(f"{name} {value:.2f} s" for name, value in figures.items())
    print(f"\n{title}: {shown}; {times}")


def test_redis_stopped_under_load_costs_no_update_no_reply_and_no_error(
    demo_bot: Bot,
    stack: Stack,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
) -> None:
    # given a question whose provider call is held in flight by the worker
    asker = 8300000
    openai_api.control(hold=True)
    _ask(stack, demo_bot, chat_id=asker, first_update_id=8300000)
    _wait("the held call", lambda: any(c["status"] == 0 for c in openai_api.calls()))

    # and chats posting an update about once a second, some of them twice
    chats = [8300001 + n for n in range(STEADY_CHATS)]
    sender = RedeliveringSender(
        url=stack.url,
        bot_id=demo_bot.pk,
        secret=DEMO_SECRET,
        chat_ids=chats,
        text="/order",
        pause_seconds=PAUSE_SECONDS,
        repeat_every=3,
    )
    sender.start()
    try:
        _wait_accepted(sender, each=HEALTHY_UPDATES)

        # when Redis stops, the provider answers meanwhile, and Redis
        # starts again with nothing in it
        stopped = time.monotonic()
        stack.redis.stop()
        openai_api.control(hold=False)
        openai_api.release()
        probe = httpx.get(f"{stack.url}/health/db", timeout=10.0)
        time.sleep(OUTAGE_SECONDS)
        restarted = time.monotonic()
        stack.redis.start()
        _wait_accepted(sender, each=HEALTHY_UPDATES)
    finally:
        sender.stop()
    settled = _wait(
        "delivery of every reply", lambda: _all_sent(demo_bot) and _llm_done(demo_bot)
    )
    recovered = time.monotonic() - restarted

    # then every answer was a 200, quick even while Redis was down
    outage = sender.between(stopped, restarted)
    assert len(outage) >= CHATS
    assert set(sender.statuses()) == {(200, None)}
    assert max(d.seconds for d in outage) < WEBHOOK_BOUND
    assert (probe.status_code, probe.json()) == (
        200,
        {"status": "degraded", "checks": {"database": "ok", "redis": "down"}},
    )

    # and every update was processed once, re-deliveries included, and
    # every reply queued while the broker was gone was sent once
    counts = _exactly_once(demo_bot, sender, telegram_api)

    # and the answer that came back while Redis was down went through the
    # breaker and the cache without them: sent once, from the first attempt
    answer = expected_answer(prompt_messages(QUESTION))
    assert visible_texts(demo_bot, asker) == [ASK_PROMPT, answer]
    assert _answers_sent(telegram_api, asker).count(answer) == 1
    request = LlmRequest.objects.get(bot=demo_bot)
    assert (request.status, request.attempts, request.answer) == ("done", 1, answer)
    assert len(openai_api.calls()) == 1
    assert "Redis failed for LLM state; using process memory" in stack.worker_log()
    # and the worker, busy when Redis went, reconnected rather than exiting
    assert "Unrecoverable error" not in stack.worker_log()
    assert stack.worker.poll() is None
    assert stack.beat.poll() is None

    _report(
        "Redis stopped under load",
        counts,
        {
            "outage": restarted - stopped,
            "slowest webhook answer during it": max(d.seconds for d in outage),
            "every reply sent after the restart": recovered,
            "settled after the load stopped": settled,
        },
    )


def test_redis_restarted_empty_loses_queued_tasks_and_the_sweeps_send_every_reply(
    demo_bot: Bot,
    stack: Stack,
    telegram_api: FakeTelegramControl,
    openai_api: FakeOpenAI,
) -> None:
    # given a worker that takes nothing, so that the tasks wait in Redis
    os.killpg(stack.worker.pid, signal.SIGSTOP)
    chats = [8400001 + n for n in range(CHATS)]
    sender = RedeliveringSender(
        url=stack.url,
        bot_id=demo_bot.pk,
        secret=DEMO_SECRET,
        chat_ids=chats,
        text="/order",
        repeat_every=3,
    )
    asker = 8400000
    try:
        sender.start()
        _ask(stack, demo_bot, chat_id=asker, first_update_id=8400000)
        _wait_accepted(sender, each=HEALTHY_UPDATES)
        sender.stop()
        queued = stack.queued_tasks()
        waiting = OutboundMessage.objects.filter(bot=demo_bot, status="pending").count()
        assert LlmRequest.objects.get(bot=demo_bot).status == "pending"

        # when Redis restarts with nothing in it, and the worker goes on
        stack.redis.stop()
        stack.redis.start()
        restarted = time.monotonic()
        after = stack.queued_tasks()
    finally:
        os.killpg(stack.worker.pid, signal.SIGCONT)
    _wait(
        "delivery of every reply", lambda: _all_sent(demo_bot) and _llm_done(demo_bot)
    )
    recovered = time.monotonic() - restarted

    # then the tasks were lost with Redis, yet the sweeps sent every reply
    # once and the question was answered once
    # (one sender task per slot, the chats beyond waiting among the ready chats;
    # the stopped worker's pending read of the queue may hold one of them)
    assert queued["bots.outbox_drain"] in (
        settings.OUTBOX_SENDERS - 1,
        settings.OUTBOX_SENDERS,
    )
    assert queued["bots.llm_answer"] == 1
    # (beat may have published a sweep into the new Redis already)
    assert after["bots.outbox_drain"] == after["bots.llm_answer"] == 0
    counts = _exactly_once(demo_bot, sender, telegram_api)
    answer = expected_answer(prompt_messages(QUESTION))
    assert visible_texts(demo_bot, asker) == [ASK_PROMPT, answer]
    assert _answers_sent(telegram_api, asker).count(answer) == 1
    request = LlmRequest.objects.get(bot=demo_bot)
    assert (request.status, request.attempts, request.answer) == ("done", 1, answer)
    assert len(openai_api.calls()) == 1
    assert set(sender.statuses()) == {(200, None)}
    assert "Unrecoverable error" not in stack.worker_log()
    assert stack.worker.poll() is None

    _report(
        "Redis restarted empty",
        {
            **counts,
            "send and answer tasks lost": queued["bots.outbox_drain"]
            + queued["bots.llm_answer"],
            "replies waiting": waiting,
        },
        {"every reply sent after the restart": recovered},
    )
