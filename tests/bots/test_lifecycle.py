"""Pruning of old records and the idle-conversation rule."""

import contextlib
import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bots.models import (
    Bot,
    Conversation,
    LlmRequest,
    OutboundMessage,
    ProcessedUpdate,
)
from bots.services.lifecycle import data_prune
from bots.services.specs import spec_publish
from bots.sql import (
    sql_connections_close,
    sql_provision,
    sql_run,
    sql_schema_apply,
)
from bots.sql.postgresql import APPLIED_TABLE, schema_name
from bots.sql.sqlite import database_path
from bots.tasks import data_prune_task
from tests.botfactory.test_settings import _refused, _startup_error, env  # noqa: F401
from tests.bots.chat_user import ChatUser, texts
from tests.bots.sql.helpers import DEMO_DIR, bot_create, order_insert
from tests.bots.test_hostile import INACTIVE, _demo_spec
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
HOURS_48 = timedelta(hours=48)
DAYS_7 = timedelta(days=7)
DAYS_30 = timedelta(days=30)
ANN = 5570001

Status = OutboundMessage.Status


@pytest.fixture(autouse=True)
def _chat_limit_out_of_the_way(settings: Any) -> None:
    # These tests are about stored rows, not Telegram's pace: a throttled
    # reply would stay pending until the next update.
    settings.OUTBOX_CHAT_BURST = 1000


# Pruning


def _aged(model: Any, row: Any, age: timedelta) -> Any:
    # created_at is auto_now_add: only an UPDATE can date a row back.
    model.objects.filter(pk=row.pk).update(created_at=NOW - age)

    return row.pk


def _update(bot: Bot, update_id: int, age: timedelta) -> int:
    row = ProcessedUpdate.objects.create(
        bot=bot, update_id=update_id, outcome="processed"
    )

    return int(_aged(ProcessedUpdate, row, age))


def _message(bot: Bot, status: str, age: timedelta) -> int:
    row = OutboundMessage.objects.create(
        bot=bot, chat_id=ANN, method="sendMessage", payload={"text": "x"}, status=status
    )

    return int(_aged(OutboundMessage, row, age))


def _llm(bot: Bot, conversation: Conversation, status: str, age: timedelta) -> int:
    row = LlmRequest.objects.create(
        bot=bot,
        conversation=conversation,
        update_id=LlmRequest.objects.count() + 1,
        node_id="ask",
        request_key="k",
        request={},
        status=status,
    )

    return int(_aged(LlmRequest, row, age))


def _ids(model: Any) -> list[int]:
    return list(model.objects.order_by("pk").values_list("pk", flat=True))


@pytest.fixture
def bot(db: None) -> Bot:
    created: Bot = BotFactory.create()

    return created


def test_processed_updates_older_than_48_hours_are_pruned_newer_kept(bot: Bot) -> None:
    older = _update(bot, 1, HOURS_48 + SECOND)
    exactly = _update(bot, 2, HOURS_48)
    newer = _update(bot, 3, HOURS_48 - SECOND)
    fresh = _update(bot, 4, timedelta(0))

    result = data_prune(now=NOW)

    assert result.processed_updates == 1
    assert older not in _ids(ProcessedUpdate)
    assert _ids(ProcessedUpdate) == [exactly, newer, fresh]


def test_sent_and_failed_messages_are_pruned_after_their_own_retention(
    bot: Bot,
) -> None:
    sent_older = _message(bot, Status.SENT, DAYS_7 + SECOND)
    sent_newer = _message(bot, Status.SENT, DAYS_7 - SECOND)
    failed_past_sent = _message(bot, Status.FAILED, DAYS_7 + SECOND)
    failed_older = _message(bot, Status.FAILED, DAYS_30 + SECOND)
    failed_newer = _message(bot, Status.FAILED, DAYS_30 - SECOND)
    pending_ancient = _message(bot, Status.PENDING, DAYS_30 * 3)
    in_flight_ancient = _message(bot, Status.IN_FLIGHT, DAYS_30 * 3)

    result = data_prune(now=NOW)

    assert (result.outbound_sent, result.outbound_failed) == (1, 1)
    assert {sent_older, failed_older} & set(_ids(OutboundMessage)) == set()
    assert _ids(OutboundMessage) == [
        sent_newer,
        failed_past_sent,
        failed_newer,
        pending_ancient,
        in_flight_ancient,
    ]


def test_finished_llm_requests_are_pruned_and_open_ones_kept(bot: Bot) -> None:
    conversation = Conversation.objects.create(bot=bot, chat_id=ANN)
    done_older = _llm(bot, conversation, "done", DAYS_7 + SECOND)
    failed_older = _llm(bot, conversation, "failed", DAYS_7 + SECOND)
    done_newer = _llm(bot, conversation, "done", DAYS_7 - SECOND)
    pending_ancient = _llm(bot, conversation, "pending", DAYS_30)
    running_ancient = _llm(bot, conversation, "running", DAYS_30)

    result = data_prune(now=NOW)

    assert result.llm_requests == 2
    assert {done_older, failed_older} & set(_ids(LlmRequest)) == set()
    assert _ids(LlmRequest) == [done_newer, pending_ancient, running_ancient]


def test_a_pruned_message_that_a_kept_llm_request_points_at_is_let_go(
    bot: Bot,
) -> None:
    conversation = Conversation.objects.create(bot=bot, chat_id=ANN)
    thinking = _message(bot, Status.SENT, DAYS_7 + SECOND)
    request = _llm(bot, conversation, "done", DAYS_7 - SECOND)
    LlmRequest.objects.filter(pk=request).update(thinking_message_id=thinking)

    result = data_prune(now=NOW)

    assert (result.llm_requests, result.outbound_sent) == (0, 1)
    assert LlmRequest.objects.get(pk=request).thinking_message_id is None
    assert _ids(OutboundMessage) == []


def test_a_backlog_is_deleted_in_statements_of_at_most_the_batch_size(
    bot: Bot, settings: Any
) -> None:
    settings.PRUNE_BATCH_SIZE = 2
    for update_id in range(1, 6):
        _update(bot, update_id, HOURS_48 * 2)
    kept = _update(bot, 6, timedelta(0))

    with CaptureQueriesContext(connection) as queries:
        result = data_prune(now=NOW)

    deletes = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith('DELETE FROM "bots_processedupdate"')
    ]
    assert result.processed_updates == 5
    assert len(deletes) == 3
    assert [query.split(" IN (")[1].count(",") + 1 for query in deletes] == [2, 2, 1]
    assert _ids(ProcessedUpdate) == [kept]


def test_prune_data_prints_its_counts_and_a_rerun_finds_nothing(bot: Bot) -> None:
    now = timezone.now()
    for update_id in (1, 2):
        row = ProcessedUpdate.objects.create(
            bot=bot, update_id=update_id, outcome="processed"
        )
        ProcessedUpdate.objects.filter(pk=row.pk).update(
            created_at=now - HOURS_48 - timedelta(minutes=1)
        )
    message = OutboundMessage.objects.create(
        bot=bot, chat_id=ANN, method="sendMessage", payload={}, status=Status.SENT
    )
    OutboundMessage.objects.filter(pk=message.pk).update(
        created_at=now - DAYS_7 - timedelta(minutes=1)
    )

    first, second = io.StringIO(), io.StringIO()
    call_command("prune_data", stdout=first)
    call_command("prune_data", stdout=second)

    assert first.getvalue() == (
        "pruned processed_updates=2 outbound_sent=1 outbound_failed=0 "
        "llm_requests=0 sql_applied_updates=0\n"
    )
    assert second.getvalue() == (
        "pruned processed_updates=0 outbound_sent=0 outbound_failed=0 "
        "llm_requests=0 sql_applied_updates=0\n"
    )


def test_the_prune_task_is_scheduled_by_beat_and_answers_its_counts(
    bot: Bot,
) -> None:
    _update(bot, 1, timedelta(days=30))

    counts = data_prune_task.delay().get()

    assert settings.CELERY_BEAT_SCHEDULE["data-prune"] == {
        "task": "bots.data_prune",
        "schedule": 3600.0,
    }
    assert counts == {
        "processed_updates": 1,
        "outbound_sent": 0,
        "outbound_failed": 0,
        "llm_requests": 0,
        "sql_applied_updates": 0,
    }


def _applied_write(bot: Bot, update_id: int) -> None:
    outcome = sql_run(
        bot=bot,
        node_id="save_order",
        statement=(
            "INSERT INTO orders (user_id, chat_id, drink) VALUES (:user_id, 1, 'tea')"
        ),
        params={"user_id": ANN},
        mode="write",
        timeout_ms=2000,
        max_rows=10,
        update_id=update_id,
    )
    assert outcome.error is None


def _applied_ids(bot: Bot) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT update_id FROM "{schema_name(bot.pk)}"."{APPLIED_TABLE}"'
            " ORDER BY update_id"
        )
        return [row[0] for row in cursor.fetchall()]


def test_a_bots_applied_write_records_age_out_with_the_dedup_records(
    demo_bot: Bot, settings: Any
) -> None:
    settings.PRUNE_BATCH_SIZE = 2
    for update_id in (1, 2, 3, 4):
        _applied_write(demo_bot, update_id)
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{schema_name(demo_bot.pk)}"."{APPLIED_TABLE}" SET created_at ='
            " CASE WHEN update_id < 4 THEN %s ELSE %s END",
            [now - HOURS_48 - SECOND, now - HOURS_48 + SECOND],
        )

    result = data_prune(now=now)

    assert result.sql_applied_updates == 3
    assert _applied_ids(demo_bot) == [4]


def test_applied_write_records_of_a_sqlite_bot_age_out_too(
    db: None, settings: Any, tmp_path: Path
) -> None:
    settings.IS_POSTGRESQL = False
    settings.DATA_DIR = tmp_path
    bot = bot_create(allows_sql_writes=True)
    sql_provision(bot=bot)
    sql_schema_apply(
        bot=bot, statements=(DEMO_DIR / "schema_sqlite.sql").read_text("utf-8")
    )
    for update_id in (1, 2, 3):
        assert order_insert(bot, update_id=update_id).error is None
    now = timezone.now()
    stamp = "%Y-%m-%d %H:%M:%S"
    with contextlib.closing(sqlite3.connect(database_path(bot.pk))) as conn:
        conn.execute(
            "UPDATE bf_applied_update SET created_at = CASE WHEN update_id < 3"
            " THEN ? ELSE ? END",
            (
                (now - HOURS_48 - SECOND).astimezone(UTC).strftime(stamp),
                (now - HOURS_48 + SECOND).astimezone(UTC).strftime(stamp),
            ),
        )
        conn.commit()

    try:
        result = data_prune(now=now)
        with contextlib.closing(sqlite3.connect(database_path(bot.pk))) as conn:
            left = conn.execute("SELECT update_id FROM bf_applied_update").fetchall()
    finally:
        sql_connections_close()

    assert result.sql_applied_updates == 2
    assert left == [(3,)]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "PROCESSED_UPDATE_RETENTION_HOURS",
            "24",
            "PROCESSED_UPDATE_RETENTION_HOURS must be at least 25; got 24.",
        ),
        (
            "OUTBOX_FAILED_RETENTION_DAYS",
            "3",
            "OUTBOX_FAILED_RETENTION_DAYS must be at least OUTBOX_SENT_RETENTION_DAYS.",
        ),
        (
            "CONVERSATION_IDLE_EXPIRY_SECONDS",
            "59",
            "CONVERSATION_IDLE_EXPIRY_SECONDS must be 0 (never) or at least 60.",
        ),
    ],
)
def test_a_retention_that_is_too_short_stops_startup(
    env: dict[str, str],  # noqa: F811
    name: str,
    value: str,
    message: str,
) -> None:
    env[name] = value

    assert _startup_error(env) == _refused(message)


# Idle conversations


def _idle_for(seconds: float) -> None:
    # updated_at is auto_now: only an UPDATE can date the last activity back.
    Conversation.objects.update(updated_at=timezone.now() - timedelta(seconds=seconds))


def _at_quantity_step(user: ChatUser) -> None:
    user.say("/start")
    user.press("☕ Order a drink")
    user.press("Latte")
    user.press("Small")


def test_a_conversation_idle_past_the_expiry_starts_over_at_the_live_start(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=ANN)
    _at_quantity_step(ann)
    before = Conversation.objects.get()
    assert (before.state["node"], before.state["step"]) == ("order", 2)
    assert before.state["vars"] == {"drink": "latte", "size": "small"}
    new, _warnings = spec_publish(bot=demo_bot, source=_demo_spec(), message="v2")
    _idle_for(settings.CONVERSATION_IDLE_EXPIRY_SECONDS + 1)

    reply = ann.say("3")

    after = Conversation.objects.get()
    assert texts(reply) == [("sendMessage", "Please use the buttons below.")]
    assert after.spec_version_id == new.pk
    assert after.state == {
        **before.state,
        "node": "main",
        "step": 0,
        "attempts": 0,
        "history": [],
        "vars": {},
        "chain": 0,
        "edit_target": None,
    }


def test_a_conversation_idle_just_under_the_expiry_goes_on(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=ANN)
    _at_quantity_step(ann)
    pinned = Conversation.objects.get().spec_version_id
    spec_publish(bot=demo_bot, source=_demo_spec(), message="v2")
    _idle_for(settings.CONVERSATION_IDLE_EXPIRY_SECONDS - 60)

    reply = ann.say("3")

    after = Conversation.objects.get()
    assert texts(reply) == [
        ("sendMessage", "What name should we call out when it's ready?")
    ]
    assert after.spec_version_id == pinned
    assert (after.state["node"], after.state["step"]) == ("order", 3)
    assert after.state["vars"] == {"drink": "latte", "size": "small", "quantity": 3}


@pytest.mark.parametrize(("idle", "reset"), [(121, True), (119, False)])
def test_a_spec_sets_its_own_idle_expiry(
    demo_bot: Bot, telegram_api: FakeTelegramControl, idle: int, reset: bool
) -> None:
    spec_publish(bot=demo_bot, source={**_demo_spec(), "idle_expiry_seconds": 120})
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=ANN)
    _at_quantity_step(ann)
    _idle_for(idle)

    ann.say("3")

    state = Conversation.objects.get().state
    if reset:
        assert (state["node"], state["step"], state["vars"]) == ("main", 0, {})
    else:
        assert (state["node"], state["step"], state["vars"]["quantity"]) == (
            "order",
            3,
            3,
        )


def test_a_button_sent_before_the_reset_is_inactive_after_it(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=ANN)
    ann.say("/start")
    ann.press("☕ Order a drink")
    message_id, buttons = ann.last_keyboard()
    tea = next(b["callback_data"] for b in buttons if b["text"] == "Tea")
    _idle_for(settings.CONVERSATION_IDLE_EXPIRY_SECONDS + 1)
    ann.say("hello")
    reset = Conversation.objects.get().state

    reply = ann.callback(tea, message_id)

    assert texts(reply) == [("answerCallbackQuery", INACTIVE)]
    assert Conversation.objects.get().state == reset
    assert (reset["node"], reset["vars"]) == ("main", {})


def test_start_after_the_reset_shows_the_menu_of_the_live_version(
    demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    ann = ChatUser(bot=demo_bot, telegram=telegram_api, user_id=ANN)
    _at_quantity_step(ann)
    _idle_for(settings.CONVERSATION_IDLE_EXPIRY_SECONDS + 1)

    reply = ann.say("/start")

    assert texts(reply) == [
        ("sendMessage", "Welcome to the Café Bot, Ann! What would you like?")
    ]
    state = Conversation.objects.get().state
    assert (state["node"], state["step"], state["vars"]) == ("main", 0, {})
