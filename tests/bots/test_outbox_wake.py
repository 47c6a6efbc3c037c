"""Waking the senders through Redis: the ready chats and the sender slots."""

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from django.conf import settings as django_settings

from botfactory.celery import app
from bots.models import Bot, OutboundMessage
from bots.services import outbox_wake
from bots.services.outbox import outbox_ready_drain, outbox_schedule
from tests.bots.hostile_server import PROJECT_ROOT, free_port, locked_elsewhere
from tests.bots.test_outage_redis import RedisServer
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

pytestmark = pytest.mark.django_db

CHATS = [7100001, 7100002, 7100003]


@pytest.fixture
def broker(settings: Any) -> Iterator[redis.Redis]:
    """The real Redis broker, with the tasks published, not run in-process."""
    settings.OUTBOX_SENDERS = 2
    app.conf.task_always_eager = False
    client = redis.Redis.from_url(str(django_settings.REDIS_URL))
    yield client
    app.conf.task_always_eager = True
    # This process's keys only: other test processes share the Redis.
    prefix = django_settings.CACHES["default"]["KEY_PREFIX"]
    for key in client.scan_iter(match=f"{prefix}*"):
        if b"outbox" in key or b":celery:" in key:
            client.delete(key)
    client.close()


def _published(client: redis.Redis) -> list[tuple[str, Any]]:
    messages = [json.loads(raw) for raw in client.lrange(_queue_key(), 0, -1)]
    return sorted(
        (message["headers"]["task"], message["headers"]["argsrepr"])
        for message in messages
    )


def _queue_key() -> str:
    prefix = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    return f"{prefix}celery"


def _ready(client: redis.Redis) -> set[bytes]:
    return set(cast(list[bytes], client.zrange(outbox_wake._ready_key(), 0, -1)))


def _slots(client: redis.Redis) -> list[bool]:
    return [
        bool(client.exists(outbox_wake._slot_key(slot)))
        for slot in range(django_settings.OUTBOX_SENDERS)
    ]


def _queue(bot: Bot, chat_id: int, text: str) -> None:
    OutboundMessage.objects.create(
        bot=bot,
        chat_id=chat_id,
        method="sendMessage",
        payload={"chat_id": chat_id, "text": text},
    )


def test_each_free_slot_gets_one_sender_and_busy_slots_none(
    broker: redis.Redis, django_capture_on_commit_callbacks: Any
) -> None:
    # Given two sender slots
    bot = BotFactory.create()

    # When three chats get rows, one commit each
    for chat_id in CHATS:
        with django_capture_on_commit_callbacks(execute=True):
            _queue(bot, chat_id, "hi")
            outbox_schedule(bot_id=bot.pk, chat_ids={chat_id})

    # Then two sender tasks were published, one per slot, and every chat
    # waits among the ready chats for them
    assert _published(broker) == [
        ("bots.outbox_drain", "(0,)"),
        ("bots.outbox_drain", "(1,)"),
    ]
    assert _ready(broker) == {f"{bot.pk}:{chat_id}".encode() for chat_id in CHATS}
    assert _slots(broker) == [True, True]


def test_a_sender_sends_every_ready_chat_then_frees_its_slot(
    broker: redis.Redis,
    telegram_api: FakeTelegramControl,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given three ready chats, with two rows in the first
    bot = BotFactory.create()
    for chat_id in CHATS:
        with django_capture_on_commit_callbacks(execute=True):
            _queue(bot, chat_id, f"to {chat_id}")
            if chat_id == CHATS[0]:
                _queue(bot, chat_id, "again")
            outbox_schedule(bot_id=bot.pk, chat_ids={chat_id})

    # When the sender of slot 0 runs
    sent = outbox_ready_drain(slot=0)

    # Then it sent all four, in order per chat, and gave its slot up
    assert sent == 4
    by_chat: dict[str, list[str]] = {}
    for call in telegram_api.calls("sendMessage"):
        by_chat.setdefault(call["params"]["chat_id"], []).append(call["params"]["text"])
    assert by_chat == {
        str(CHATS[0]): [f"to {CHATS[0]}", "again"],
        str(CHATS[1]): [f"to {CHATS[1]}"],
        str(CHATS[2]): [f"to {CHATS[2]}"],
    }
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {"sent"}
    assert _ready(broker) == set()
    assert _slots(broker) == [False, True]


def _drain_beside(script: str, args: list[str], **popen: Any) -> int:
    """Run the sender of slot 0 while ``script`` runs in another process,
    once that process says it is ready; return the messages sent."""
    other = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        **popen,
    )
    assert other.stdout is not None
    assert other.stdout.readline() == "ready\n"
    try:
        return outbox_ready_drain(slot=0)
    finally:
        assert other.wait(timeout=30) == 0


def _sent(telegram_api: FakeTelegramControl) -> list[tuple[str, str]]:
    return [
        (call["params"]["chat_id"], call["params"]["text"])
        for call in telegram_api.calls("sendMessage")
    ]


# For a script run in another process, with a Redis ``client``: says it is
# ready, then waits until a sender blocks waiting for a ready chat.
_UNTIL_A_SENDER_WAITS = """
client.ping()
print("ready", flush=True)
deadline = time.monotonic() + 5
while not any(c["cmd"] == "bzpopmin" for c in client.client_list()):
    if time.monotonic() > deadline:
        sys.exit("no sender waited")
    time.sleep(0.01)
"""

# Run in another process: once a sender waits, wakes the senders for one
# chat, as a web process does.
_WAKE_WHEN_A_SENDER_WAITS = (
    """
import sys, time
import django
django.setup()
from bots.services import outbox_wake
client = outbox_wake._client()
"""
    + _UNTIL_A_SENDER_WAITS
    + """
outbox_wake.senders_wake(int(sys.argv[1]), [int(sys.argv[2])])
"""
)


def test_a_sender_that_sent_waits_for_the_next_chat_so_no_task_is_published(
    broker: redis.Redis,
    telegram_api: FakeTelegramControl,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given a ready chat for the sender of slot 0, slot 1 busy, and a second
    # chat whose rows are queued but whose wake comes from another process
    # once the sender has sent the first and waits
    bot = BotFactory.create()
    with django_capture_on_commit_callbacks(execute=True):
        _queue(bot, CHATS[0], "first")
        outbox_schedule(bot_id=bot.pk, chat_ids={CHATS[0]})
    broker.set(outbox_wake._slot_key(1), "1")
    broker.delete(_queue_key())
    _queue(bot, CHATS[1], "second")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "botfactory.settings",
        "CACHE_KEY_PREFIX": str(django_settings.CACHES["default"]["KEY_PREFIX"]),
        "OUTBOX_SENDERS": "2",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    # When the sender of slot 0 runs
    sent = _drain_beside(
        _WAKE_WHEN_A_SENDER_WAITS,
        [str(bot.pk), str(CHATS[1])],
        env=env,
        cwd=PROJECT_ROOT,
    )

    # Then it sent both chats' rows itself: the wake found both slots held
    # and published no task
    assert sent == 2
    assert _sent(telegram_api) == [(str(CHATS[0]), "first"), (str(CHATS[1]), "second")]
    assert _published(broker) == []
    assert _ready(broker) == set()
    assert _slots(broker) == [False, True]


def test_ready_chats_are_taken_oldest_first_and_a_waiting_chat_keeps_its_place(
    broker: redis.Redis,
) -> None:
    # Given every slot busy, and three chats woken in turn, the first twice
    broker.set(outbox_wake._slot_key(0), "1")
    broker.set(outbox_wake._slot_key(1), "1")
    for chat_id in (CHATS[2], CHATS[0], CHATS[1], CHATS[2]):
        outbox_wake.senders_wake(5, [chat_id])

    # When a sender takes them, then they come in the order they first woke
    taken = [outbox_wake.ready_chat_pop(0) for _ in range(4)]
    assert taken == [(5, CHATS[2]), (5, CHATS[0]), (5, CHATS[1]), None]
    assert _published(broker) == []


def test_a_slot_is_kept_when_chats_came_while_its_sender_was_finding_none(
    broker: redis.Redis,
) -> None:
    # Given a sender holding slot 0 that found no chat, and a chat whose
    # wake found every slot taken
    broker.set(outbox_wake._slot_key(0), "1")
    broker.set(outbox_wake._slot_key(1), "1")
    broker.zadd(outbox_wake._ready_key(), {"1:2": 1.0})

    # When the sender gives its slot up, then it keeps it, to take the chat
    assert outbox_wake.sender_slot_release(0) is True
    assert _slots(broker) == [True, True]
    assert outbox_wake.ready_chat_pop(0) == (1, 2)

    # And with nothing ready the slot goes
    assert outbox_wake.ready_chat_pop(0) is None
    assert outbox_wake.sender_slot_release(0) is False
    assert _slots(broker) == [False, True]


def test_a_failed_publish_frees_the_slot_and_keeps_the_rows(
    broker: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given a broker that refuses the sender task
    bot = BotFactory.create()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    from bots.tasks import outbox_drain_task

    monkeypatch.setattr(outbox_drain_task, "apply_async", refuse)

    # When a chat's rows commit
    with django_capture_on_commit_callbacks(execute=True):
        _queue(bot, CHATS[0], "hi")
        outbox_schedule(bot_id=bot.pk, chat_ids={CHATS[0]})

    # Then the row waits for the sweep, and no slot is held by a task that
    # was never queued
    assert list(OutboundMessage.objects.values_list("status", flat=True)) == ["pending"]
    assert _slots(broker) == [False, False]
    assert _ready(broker) == {f"{bot.pk}:{CHATS[0]}".encode()}


@pytest.mark.django_db(transaction=True)
def test_a_sender_whose_database_fails_returns_its_chat_and_hands_its_slot_on(
    broker: redis.Redis,
) -> None:
    # Given two ready chats whose rows another connection holds locked, and
    # a database that gives up on a lock after 100 ms
    bot = BotFactory.create()
    for chat_id in CHATS[:2]:
        _queue(bot, chat_id, "hi")
        outbox_schedule(bot_id=bot.pk, chat_ids={chat_id})
    broker.delete(_queue_key())
    table = OutboundMessage._meta.db_table

    with locked_elsewhere(f"SELECT id FROM {table} FOR UPDATE"):
        # When the sender of slot 0 runs
        sent = outbox_ready_drain(slot=0)

    # Then it sent nothing, put its chat back with the other, kept its slot
    # and queued a task to take the slot up again in two seconds
    assert sent == 0
    assert _ready(broker) == {f"{bot.pk}:{chat_id}".encode() for chat_id in CHATS[:2]}
    assert _slots(broker)[0] is True
    assert _published(broker) == [("bots.outbox_drain", "(0,)")]
    (message,) = [json.loads(raw) for raw in broker.lrange(_queue_key(), 0, -1)]
    assert message["headers"]["eta"] is not None
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {"pending"}


def test_an_unreachable_redis_publishes_no_task_and_keeps_the_rows(
    broker: redis.Redis,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given a cache Redis that refuses every connection (the broker's
    # connection, already open, still answers)
    bot = BotFactory.create()
    caches_config = copy.deepcopy(settings.CACHES)
    caches_config["default"]["LOCATION"] = f"redis://127.0.0.1:{free_port()}/0"
    settings.CACHES = caches_config

    # When a chat's rows commit, then the wake raises Redis's error
    with pytest.raises(redis.ConnectionError):
        with django_capture_on_commit_callbacks(execute=False) as hooks:
            _queue(bot, CHATS[0], "hi")
            outbox_schedule(bot_id=bot.pk, chat_ids={CHATS[0]})
        (wake,) = hooks
        wake()

    # and nothing was published: the row waits for the sweep
    assert _published(broker) == []
    assert list(OutboundMessage.objects.values_list("status", flat=True)) == ["pending"]


def test_a_connection_dropped_by_redis_is_replaced_and_wakes_a_sender(
    broker: redis.Redis,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given the pooled connection of the wake, dropped by Redis
    bot = BotFactory.create()
    pooled = outbox_wake._client().client_id()
    assert broker.client_kill_filter(_id=str(pooled)) == 1

    # When a chat's rows commit
    with django_capture_on_commit_callbacks(execute=True):
        _queue(bot, CHATS[0], "hi")
        outbox_schedule(bot_id=bot.pk, chat_ids={CHATS[0]})

    # Then a new connection took a slot and published its sender
    assert _published(broker) == [("bots.outbox_drain", "(0,)")]
    assert _ready(broker) == {f"{bot.pk}:{CHATS[0]}".encode()}
    assert _slots(broker) == [True, False]


# Run in another process: once a sender waits for a ready chat, stalls
# Redis for 0.75 s (SIGSTOP: a fork for a snapshot, a slow script, a paused
# VM), while a web process wakes the senders for another chat.
_STALL_WHILE_A_SENDER_WAITS = (
    """
import os, signal, sys, time, redis
port, pid, key, member = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
client = redis.Redis(port=port)
"""
    + _UNTIL_A_SENDER_WAITS
    + """
waker = redis.Redis(port=port, socket_timeout=10).connection_pool.get_connection()
time.sleep(0.35)
os.kill(pid, signal.SIGSTOP)
try:
    waker.send_command("ZADD", key, "NX", time.time(), member)
    time.sleep(0.75)
finally:
    os.kill(pid, signal.SIGCONT)
waker.read_response()
"""
)


def test_a_redis_stall_while_a_sender_waits_loses_no_chat_and_no_slot(
    broker: redis.Redis,
    settings: Any,
    tmp_path: Path,
    telegram_api: FakeTelegramControl,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given one sender slot, on a Redis of the test's own, and a chat whose
    # sender has sent it and waits for the next
    server = RedisServer(tmp_path)
    server.start()
    try:
        settings.OUTBOX_SENDERS = 1
        caches_config = copy.deepcopy(settings.CACHES)
        caches_config["default"]["LOCATION"] = server.url
        settings.CACHES = caches_config
        private = redis.Redis.from_url(server.url)
        bot = BotFactory.create()
        with django_capture_on_commit_callbacks(execute=True):
            _queue(bot, CHATS[0], "first")
            outbox_schedule(bot_id=bot.pk, chat_ids={CHATS[0]})
        broker.delete(_queue_key())
        _queue(bot, CHATS[1], "second")
        assert server.process is not None

        # When Redis stalls for less than a second during the wait, and the
        # second chat is woken meanwhile
        sent = _drain_beside(
            _STALL_WHILE_A_SENDER_WAITS,
            [
                str(server.port),
                str(server.process.pid),
                outbox_wake._ready_key(),
                f"{bot.pk}:{CHATS[1]}",
            ],
        )

        # Then the sender, whose reads outlast its wait, sent both chats and
        # gave its slot up: nothing waits for the sweep, nothing is held
        assert sent == 2
        assert _sent(telegram_api) == [
            (str(CHATS[0]), "first"),
            (str(CHATS[1]), "second"),
        ]
        assert private.zcard(outbox_wake._ready_key()) == 0
        assert private.exists(outbox_wake._slot_key(0)) == 0
        assert _published(broker) == []
        private.close()
    finally:
        server.stop()
