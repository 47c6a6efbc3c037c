"""Waking the senders once outbox rows commit.

With Redis as the broker, a committed chat joins the ready chats (a sorted
set, oldest first), and a bounded number of sender tasks (``OUTBOX_SENDERS``
slots) drain them: under load one task sends for many chats, instead of one
task published and run per update. A sender that has sent waits a moment
for the next ready chat before it gives its slot up, so a steady stream of
updates keeps the same senders busy and publishes no task at all. The ready
chats and the slots are hints, never the record: the rows are in
PostgreSQL, and the sweep sends whatever a lost hint leaves.

Elsewhere (tasks run in-process, or Redis failing) each chat gets a send
task of its own, unless one is already waiting for it (a mark in the
cache).
"""

import logging
import time
from typing import Any, cast

import redis
from django.conf import settings
from django.core.cache import caches

logger = logging.getLogger(__name__)

# How long a queued send task stands for its chat: past it, a new row
# enqueues another task even if the first never ran (its message was lost).
_QUEUED_MARK_SECONDS = 10
# A slot held by a sender that died frees itself after this long; a live
# sender renews it before each chat.
_SLOT_SECONDS = 30

# KEYS: the ready chats, then each slot. ARGV: slot seconds, the time, then
# the chats. Adds the chats (one already waiting keeps its place), then takes
# the first free slot: its number, or -1 when every slot has a sender
# already, which will find the chats.
_WAKE = """
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[i])
end
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    return i - 2
  end
end
return -1
"""
# KEYS: the ready chats, the slot. ARGV: slot seconds. Gives the slot up,
# unless chats came in meanwhile (their wake found the slot taken): then it
# is kept, and 1 returned.
_RELEASE = """
redis.call('DEL', KEYS[2])
if redis.call('ZCARD', KEYS[1]) > 0
    and redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return 1
end
return 0
"""

_scripts: dict[tuple[int, str], Any] = {}
# Per connection pool of the cache and wait: see _waiting_client.
_waiting_clients: dict[tuple[int, float], redis.Redis] = {}


def _client() -> redis.Redis:
    from django_redis import get_redis_connection

    return cast(redis.Redis, get_redis_connection("default"))


def _key(name: str) -> str:
    return str(caches["default"].make_key(name))


def _ready_key() -> str:
    return _key("outbox:ready-chats")


def _slot_key(slot: int) -> str:
    return _key(f"outbox:sender:{slot}")


def _run(source: str, keys: list[str], args: list[Any]) -> int:
    client = _client()
    script = _scripts.get((id(client), source))
    if script is None:
        script = _scripts[(id(client), source)] = client.register_script(source)

    return int(script(keys=keys, args=args))


def _waiting_client(wait: float) -> redis.Redis:
    """A client of the cache's Redis whose reads outlast a blocking wait of
    ``wait`` seconds by the margin every other command gets."""
    pool = _client().connection_pool
    key = (id(pool), wait)
    client = _waiting_clients.get(key)
    if client is None:
        timeout = wait + float(pool.connection_kwargs.get("socket_timeout") or 1.0)
        client = _waiting_clients[key] = redis.Redis(
            connection_pool=redis.ConnectionPool(
                connection_class=pool.connection_class,
                **{**pool.connection_kwargs, "socket_timeout": timeout},
            )
        )

    return client


def sender_slot_free(slot: int) -> None:
    """Free ``slot`` for a new sender; never raise."""
    try:
        _client().delete(_slot_key(slot))
    except redis.RedisError:
        # It frees itself once its time is up.
        logger.warning("Could not free sender slot %s.", slot)


def _uses_ready_set() -> bool:
    from bots.tasks import outbox_drain_task

    return bool(settings.REDIS_URL) and not outbox_drain_task.app.conf.task_always_eager


def send_enqueue(bot_id: int, chat_id: int, countdown: float = 0.0) -> None:
    """Publish the send task of one chat, to run after ``countdown`` seconds."""
    from bots.tasks import outbox_send_task

    if countdown > 0 and outbox_send_task.app.conf.task_always_eager:
        # A task run in-process cannot wait: it would find the row not yet
        # due. The sweep sends it once it is.
        return
    outbox_send_task.apply_async((bot_id, chat_id), countdown=countdown)


def _queued_key(bot_id: int, chat_id: int) -> str:
    return f"outbox:queued:{bot_id}:{chat_id}"


def _send_enqueue_unless_queued(bot_id: int, chat_id: int) -> None:
    # A send task already waiting for this chat will find the new rows: it
    # forgets the mark before it reads the outbox, and the rows were
    # committed before the mark was looked at. A lost task delays the chat
    # only until the mark expires or the sweep runs.
    key = _queued_key(bot_id, chat_id)
    try:
        fresh = caches["default"].add(key, 1, timeout=_QUEUED_MARK_SECONDS)
    except Exception:
        fresh = True
    if not fresh:
        return

    try:
        send_enqueue(bot_id, chat_id)
    except Exception:
        send_mark_forget(bot_id, chat_id)
        raise


def send_mark_forget(bot_id: int, chat_id: int) -> None:
    """Forget that a send task waits for the chat; never raise."""
    if _uses_ready_set():
        # Senders are woken through the ready chats then: no mark was set.
        return
    try:
        caches["default"].delete(_queued_key(bot_id, chat_id))
    except Exception:
        logger.warning("Could not clear the send mark of a chat of bot %s.", bot_id)


def senders_wake(bot_id: int, chat_ids: list[int]) -> None:
    """Have the chats' new rows sent: a sender slot, or a task per chat.

    Runs after the rows commit. Raises the broker's error when no task could
    be published, and Redis's when it cannot be reached; the rows stay for
    the sweep.
    """
    if not _uses_ready_set():
        for chat_id in chat_ids:
            _send_enqueue_unless_queued(bot_id, chat_id)
        return

    slots = [_slot_key(slot) for slot in range(settings.OUTBOX_SENDERS)]
    members = [f"{bot_id}:{chat_id}" for chat_id in chat_ids]
    try:
        # redis-py replaces a pooled connection that a restart dropped.
        slot = _run(
            _WAKE, [_ready_key(), *slots], [_SLOT_SECONDS, time.time(), *members]
        )
    except (redis.ConnectionError, redis.TimeoutError):
        # The broker is this same Redis: a task could not be published
        # either, and trying would cost every update its publish retry.
        logger.warning("Redis is unreachable; the sweep sends the new rows.")
        raise
    except redis.RedisError:
        logger.warning("Redis failed to take the ready chats; one task per chat.")
        for chat_id in chat_ids:
            send_enqueue(bot_id, chat_id)
        return
    if slot < 0:
        return

    from bots.tasks import outbox_drain_task

    try:
        outbox_drain_task.apply_async((slot,))
    except Exception:
        # Free the slot, so the next commit tries again.
        sender_slot_free(slot)
        raise


def ready_chat_pop(slot: int, wait: float = 0.0) -> tuple[int, int] | None:
    """Take the oldest ready chat for the sender holding ``slot``, renewing its hold.

    With ``wait``, wait up to that many seconds for one to come. Return
    (bot id, chat id), or None when no chat is ready. Raises
    redis.RedisError.
    """
    client = _waiting_client(wait) if wait > 0 else _client()
    pipe = client.pipeline(transaction=False)
    # Renewed first: a blocking pop holds back what follows it.
    pipe.expire(_slot_key(slot), _SLOT_SECONDS)
    if wait > 0:
        pipe.bzpopmin(_ready_key(), timeout=wait)
    else:
        pipe.zpopmin(_ready_key())
    _renewed, popped = pipe.execute()
    if not popped:
        return None
    # ZPOPMIN answers [(member, score)], BZPOPMIN (key, member, score).
    member = popped[0][0] if wait <= 0 else popped[1]
    bot_id, _, chat_id = member.decode("ascii").partition(":")

    return int(bot_id), int(chat_id)


def sender_slot_release(slot: int) -> bool:
    """Give ``slot`` up; return True when chats came meanwhile and it is kept.

    Raises redis.RedisError.
    """
    return _run(_RELEASE, [_ready_key(), _slot_key(slot)], [_SLOT_SECONDS]) == 1


def ready_chat_return(bot_id: int, chat_id: int) -> None:
    """Put a chat its sender could not drain back among the ready; never raise."""
    try:
        _client().zadd(_ready_key(), {f"{bot_id}:{chat_id}": time.time()}, nx=True)
    except redis.RedisError:
        # Its rows are in the database: the sweep sends them.
        logger.warning("Could not return a chat of bot %s to the ready chats.", bot_id)


def sender_slot_hand_over(slot: int, countdown: float = 0.0) -> None:
    """Pass ``slot``, still held, to a new task, to start after ``countdown``.

    Frees the slot if no task can be had, and raises the broker's error.
    """
    from bots.tasks import outbox_drain_task

    try:
        outbox_drain_task.apply_async((slot,), countdown=countdown)
    except Exception:
        sender_slot_free(slot)
        raise
