"""PostgreSQL stopped and frozen under steady webhook load.

gunicorn with two workers serves the demo bot (with a token, so its replies
reach the fake Bot API) from a throwaway cluster. Chats post an update
about once a second and re-deliver each one as Telegram does until it is
answered 200. The cluster is stopped (or frozen) while they do, then brought back;
in the end every update must be processed exactly once: one processed-update
row, one reply at the fake Bot API, and the conversation one step further
per update. The bounds on single requests are in
``tests/botfactory/test_outage.py``; run with ``-s`` to see the figures.
"""

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bots.models import Conversation, OutboundMessage, ProcessedUpdate
from tests.bots.conftest import DEMO_SECRET, DEMO_TOKEN
from tests.bots.hostile_server import gunicorn
from tests.bots.redelivery import RedeliveringSender
from tests.fakes.control import FakeTelegramControl
from tests.pgcluster import PgCluster, pg_cluster

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATABASE = "botfactory_load"
STATEMENT_TIMEOUT_MS = 2000
# The server's DATABASE_COMMAND_TIMEOUT: its default, the statement timeout
# plus one second.
COMMAND_TIMEOUT = STATEMENT_TIMEOUT_MS / 1000 + 1.0
WORKERS = 2
# Twice as many chats as workers, as Telegram opens many connections at once:
# a request may wait for a worker while the one before it is refused.
CHATS = 2 * WORKERS
QUEUE_DEPTH = CHATS // WORKERS
# A refused connection: the pool's 1.5 s wait plus a margin, per request.
STOPPED_BOUND = 2.0
# A frozen server: the command timeout plus a margin for a busy machine.
FROZEN_BOUND = COMMAND_TIMEOUT + 1.0
# The first 200 after the server is back: one re-delivery pause (0.2 s)
# plus a request that opens a fresh connection, on a loaded machine.
RECOVERY_BOUND = 2.0
OUTAGE_SECONDS = 8.0
# A request caught by the freeze holds its worker for the command timeout,
# and the one queued behind it as long again: a longer outage leaves time
# for answers that begin and end within it.
FROZEN_SECONDS = 12.0
HEALTHY_UPDATES = 3
# A chat writes about once a second, the pace Telegram lets a bot answer in
# one chat, so that replies wait for the outage and not for that limit.
PAUSE_SECONDS = 1.0
PROMPT = "Which drink would you like?"
SWEEP = (
    "import django; django.setup(); "
    "from bots.services.outbox import outbox_sweep; "
    "print(outbox_sweep(older_than_seconds=0))"
)


def _server_env(cluster: PgCluster, telegram_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": cluster.url(DATABASE),
        "DATABASE_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS),
        # Tasks run in the web process: each reply is sent right after its
        # update commits, and a send cut off by the outage waits for a sweep.
        "REDIS_URL": "",
        "DOTENV_PATH": "/dev/null",
        "LOG_LEVEL": "error",
        "TELEGRAM_API_URL": telegram_url,
        "TELEGRAM_TIMEOUT_SECONDS": "3",
        # A send whose result could not be recorded is retried this soon.
        "OUTBOX_LEASE_SECONDS": "5",
    }


def _python(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    return result.stdout


def _rows(cluster: PgCluster, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with psycopg.connect(cluster.url(DATABASE), connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def _open_replies(cluster: PgCluster, chat_ids: list[int]) -> int:
    table = OutboundMessage._meta.db_table
    ((count,),) = _rows(
        cluster,
        f"SELECT count(*) FROM {table} WHERE chat_id = ANY(%s)"
        " AND status IN ('pending', 'in_flight')",
        [chat_ids],
    )

    return int(count)


def _sweep_until_sent(
    cluster: PgCluster, env: dict[str, str], chat_ids: list[int]
) -> tuple[int, int]:
    """Sweep as beat would until no reply is open.

    Return how many replies were open at first, and the sweeps it took.
    """
    left_open = _open_replies(cluster, chat_ids)
    sweeps = 0
    deadline = time.monotonic() + 60.0
    while _open_replies(cluster, chat_ids):
        assert time.monotonic() < deadline, "the sweep never sent every reply"
        _python(env, "-c", SWEEP)
        sweeps += 1
        # A send cut off mid-call waits for its lease (OUTBOX_LEASE_SECONDS).
        time.sleep(0.5)

    return left_open, sweeps


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[PgCluster, int]]:
    """A throwaway cluster with the demo bot; yields it and the bot's id."""
    with pg_cluster() as cluster:
        cluster.create_database(DATABASE)
        env = {"DATABASE_URL": cluster.url(DATABASE), "DOTENV_PATH": "/dev/null"}
        _python(env, "manage.py", "migrate", "--no-input")
        out = _python(
            env,
            "manage.py",
            "load_demo_bot",
            "--token",
            DEMO_TOKEN,
            "--webhook-secret",
            DEMO_SECRET,
        )
        match = re.search(r"bot_id=(\d+)", out)
        assert match is not None, out
        yield cluster, int(match.group(1))


@pytest.fixture
def server(
    cluster: tuple[PgCluster, int], fake_telegram_url: str
) -> Iterator[tuple[str, dict[str, str]]]:
    env = _server_env(cluster[0], fake_telegram_url)
    with gunicorn(workers=WORKERS, env=env) as url:
        yield url, env


def _wait_accepted(sender: RedeliveringSender, *, each: int) -> None:
    """Wait until every chat has had ``each`` more updates accepted."""
    since = {chat: len(sender.accepted.get(chat, [])) for chat in sender.chat_ids}
    deadline = time.monotonic() + 60.0
    while any(
        len(sender.accepted.get(chat, [])) < since[chat] + each
        for chat in sender.chat_ids
    ):
        assert time.monotonic() < deadline, "the load stalled"
        time.sleep(0.05)


def _exactly_once(
    cluster: PgCluster,
    bot_id: int,
    sender: RedeliveringSender,
    telegram: FakeTelegramControl,
) -> dict[str, int]:
    """Check that every accepted update was processed once; return counts."""
    accepted = sender.accepted_ids()
    chats = sender.chat_ids
    processed = _rows(
        cluster,
        f"SELECT update_id, outcome FROM {ProcessedUpdate._meta.db_table}"
        " WHERE bot_id = %s AND update_id BETWEEN %s AND %s ORDER BY update_id",
        [bot_id, accepted[0], accepted[-1] + 1000],
    )
    outbox = _rows(
        cluster,
        f"SELECT chat_id, status FROM {OutboundMessage._meta.db_table}"
        " WHERE chat_id = ANY(%s)",
        [chats],
    )
    conversations = _rows(
        cluster,
        f"SELECT chat_id, state, last_update_id FROM {Conversation._meta.db_table}"
        " WHERE bot_id = %s AND chat_id = ANY(%s) ORDER BY chat_id",
        [bot_id, chats],
    )
    replies = Counter(
        int(call["params"]["chat_id"])
        for call in telegram.calls("sendMessage", token=DEMO_TOKEN)
        if call["status"] == 200 and int(call["params"]["chat_id"]) in chats
    )
    texts = {
        call["params"]["text"]
        for call in telegram.calls("sendMessage", token=DEMO_TOKEN)
        if int(call["params"]["chat_id"]) in chats
    }
    expected = {chat: len(sender.accepted[chat]) for chat in chats}

    assert sender.lost == []
    assert processed == [(update_id, "processed") for update_id in accepted]
    assert Counter(chat for chat, _ in outbox) == expected
    assert {status for _, status in outbox} == {"sent"}
    assert dict(replies) == expected
    assert texts == {PROMPT}
    assert [
        (chat, json.loads(state) if isinstance(state, str) else state, last)
        for chat, state, last in conversations
    ] == [
        (chat, _ordering_state(expected[chat]), sender.accepted[chat][-1])
        for chat in chats
    ]

    return {
        "sent": len(sender.deliveries),
        "accepted": len(accepted),
        "processed": len(processed),
        "replies": sum(replies.values()),
        "duplicates": sum(replies.values()) - len(accepted),
        "losses": len(accepted) - len(processed),
    }


def _ordering_state(orders: int) -> dict[str, Any]:
    """The state of a chat that has sent ``/order`` ``orders`` times."""
    return {
        "node": "order",
        "step": 0,
        "attempts": 0,
        "history": [],
        "page": 0,
        "generation": orders,
        "vars": {},
        "pending_sql": None,
        "pending_llm": None,
        "chain": 0,
        "reply_keyboard": False,
        "edit_target": None,
    }


def _report(title: str, counts: dict[str, int], figures: dict[str, float]) -> None:
    shown = ", ".join(f"{name} {value}" for name, value in counts.items())
    times = ", ".join(f"{name} {value:.2f} s" for name, value in figures.items())
    print(f"\n{title}: {shown}; {times}")


def test_stopped_database_under_load_refuses_with_503_and_loses_nothing(
    cluster: tuple[PgCluster, int],
    server: tuple[str, dict[str, str]],
    telegram_api: FakeTelegramControl,
) -> None:
    # given chats posting updates steadily to two workers
    pg, bot_id = cluster
    url, env = server
    chats = [8100001 + n for n in range(CHATS)]
    sender = RedeliveringSender(
        url=url,
        bot_id=bot_id,
        secret=DEMO_SECRET,
        chat_ids=chats,
        text="/order",
        pause_seconds=PAUSE_SECONDS,
    )
    sender.start()
    try:
        _wait_accepted(sender, each=HEALTHY_UPDATES)

        # when the database shuts down for several seconds and starts again
        stopping = time.monotonic()
        pg.stop("fast")
        stopped = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        starting = time.monotonic()
        pg.start()
        started = time.monotonic()
        _wait_accepted(sender, each=HEALTHY_UPDATES)
    finally:
        sender.stop()
        if pg.postmaster_pid() is None:
            pg.start()
    left_open, sweeps = _sweep_until_sent(pg, env, chats)

    # then every answer is a 200 or a 503 db_unavailable, never a 500, and
    # every one while the server was down is a 503 within two seconds for
    # each request ahead of it at its worker
    assert set(sender.statuses()) == {(200, None), (503, "db_unavailable")}
    outage = sender.between(stopped, starting)
    assert len(outage) >= CHATS
    assert {(d.status, d.code) for d in outage} == {(503, "db_unavailable")}
    assert max(d.seconds for d in outage) < QUEUE_DEPTH * STOPPED_BOUND
    first_503 = sender.first_after(stopping, status=503)
    recovery = sender.first_after(started, status=200)
    assert first_503 is not None and first_503 < QUEUE_DEPTH * STOPPED_BOUND
    assert recovery is not None and recovery < RECOVERY_BOUND

    # and once re-delivered, every update was processed exactly once
    counts = _exactly_once(pg, bot_id, sender, telegram_api)
    refused = sum(1 for d in sender.deliveries if d.status == 503)
    _report(
        "stopped database under load",
        {
            **counts,
            "refused (503)": refused,
            "replies left open": left_open,
            "sweeps": sweeps,
        },
        {
            "outage": starting - stopped,
            "first 503 after the stop began": first_503,
            "slowest 503": max(d.seconds for d in outage),
            "first 200 after the start": recovery,
        },
    )


def test_frozen_database_under_load_refuses_within_the_bound_and_loses_nothing(
    cluster: tuple[PgCluster, int],
    server: tuple[str, dict[str, str]],
    telegram_api: FakeTelegramControl,
) -> None:
    # given chats posting updates steadily to two workers
    pg, bot_id = cluster
    url, env = server
    chats = [8200001 + n for n in range(CHATS)]
    sender = RedeliveringSender(
        url=url,
        bot_id=bot_id,
        secret=DEMO_SECRET,
        chat_ids=chats,
        text="/order",
        pause_seconds=PAUSE_SECONDS,
    )
    sender.start()
    try:
        _wait_accepted(sender, each=HEALTHY_UPDATES)

        # when every process of the cluster is frozen, then thawed
        freezing = time.monotonic()
        frozen_pids = pg.freeze()
        frozen = time.monotonic()
        time.sleep(FROZEN_SECONDS)
        thawing = time.monotonic()
        pg.thaw()
        _wait_accepted(sender, each=HEALTHY_UPDATES)
    finally:
        pg.thaw()
        sender.stop()
    left_open, sweeps = _sweep_until_sent(pg, env, chats)

    # then every answer is a 200 or a 503 db_unavailable, never a 500; every
    # one during the freeze ends within the command timeout's bound for each
    # request ahead of it at its worker
    assert len(frozen_pids) > 1
    assert set(sender.statuses()) == {(200, None), (503, "db_unavailable")}
    outage = sender.between(frozen, thawing)
    assert len(outage) >= WORKERS
    assert {(d.status, d.code) for d in outage} == {(503, "db_unavailable")}
    overlapping = [
        d for d in sender.deliveries if d.ended > freezing and d.started < thawing
    ]
    slowest = max(d.seconds for d in overlapping)
    assert slowest < QUEUE_DEPTH * FROZEN_BOUND
    first_503 = sender.first_after(freezing, status=503)
    recovery = sender.first_after(thawing, status=200)
    assert first_503 is not None and first_503 < QUEUE_DEPTH * FROZEN_BOUND
    assert recovery is not None and recovery < RECOVERY_BOUND

    # and once re-delivered, every update was processed exactly once
    counts = _exactly_once(pg, bot_id, sender, telegram_api)
    refused = sum(1 for d in sender.deliveries if d.status == 503)
    _report(
        f"frozen database under load (command timeout {COMMAND_TIMEOUT:.1f} s)",
        {
            **counts,
            "refused (503)": refused,
            "replies left open": left_open,
            "sweeps": sweeps,
        },
        {
            "outage": thawing - frozen,
            "first 503 after the freeze began": first_503,
            "slowest answer": slowest,
            "first 200 after the thaw": recovery,
        },
    )
