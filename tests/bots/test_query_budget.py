"""How many statements and round trips an update costs: the webhook's hot
path, counted.

Every round trip to PostgreSQL while the conversation's row is locked is a
wait every update pays, so a new one here is a cost. The spec and the
translations come from per-process caches and cost nothing once warm.
"""

import tempfile
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bots.models import Conversation, OutboundMessage, ProcessedUpdate
from bots.services import outbox_wake
from tests.bots.conftest import Webhook
from tests.bots.hostile_server import locked_elsewhere

CHAT_ID = 5_551_001


def _message(update_id: int, text: str) -> dict[str, Any]:
    user = {"id": CHAT_ID, "is_bot": False, "first_name": "Ann", "language_code": "en"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "chat": {"id": CHAT_ID, "type": "private"},
            "from": user,
            "text": text,
        },
    }


@pytest.fixture
def statements(webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> Webhook:
    # The send task's own statements are the outbox's, not the webhook's.
    monkeypatch.setattr(outbox_wake, "send_enqueue", lambda *args, **kwargs: None)
    assert webhook.post(_message(1, "/start")).status_code == 200

    return webhook


def _sql(webhook: Webhook, update: dict[str, Any]) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert webhook.post(update).status_code == 200

    return [
        query["sql"].split(" ", 2)[0] + " " + _table(query["sql"]) for query in captured
    ]


def _table(sql: str) -> str:
    for word in sql.replace('"', " ").split():
        if word.startswith("bots_"):
            return word
    return ""


def _round_trips(webhook: Webhook, update: dict[str, Any]) -> list[str]:
    """The messages after which the client waits for the server: each simple
    query, and each Sync ending a batch of extended-protocol statements,
    named by their first words (a statement already prepared on the
    connection sends no Parse, and so adds no name)."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            assert webhook.post(update).status_code == 200
        finally:
            pgconn.untrace()
        trace.seek(0)
        sent = [line.split("\t") for line in trace.read().decode().splitlines()]

    waits = []
    statements: list[str] = []
    for direction, _length, message, *rest in sent:
        if direction != "F":
            continue
        if message == "Parse":
            statements.append(rest[0].split('"')[3].split(" ", 1)[0])
        elif message == "Query":
            waits.append(rest[0].strip().strip('"'))
        elif message == "Sync":
            waits.append("+".join(statements))
            statements = []

    return waits


def test_an_update_of_a_known_conversation_costs_seven_statements(
    statements: Webhook,
) -> None:
    assert _sql(statements, _message(2, "/start")) == [
        "SELECT bots_bot",
        "BEGIN ",
        "INSERT bots_processedupdate",
        "SELECT bots_conversation",
        "UPDATE bots_conversation",
        "INSERT bots_outboundmessage",
        "COMMIT ",
    ]


def test_an_update_of_a_known_conversation_waits_for_five_round_trips(
    statements: Webhook,
) -> None:
    # The bot, then the transaction: the claim with the conversation's lock,
    # the new state with the replies, the commit.
    assert _round_trips(statements, _message(2, "/start")) == [
        "SELECT",
        "BEGIN",
        "INSERT+SELECT",
        "UPDATE+INSERT",
        "COMMIT",
    ]


def test_a_chat_s_first_update_claims_then_creates_its_conversation(
    webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_wake, "send_enqueue", lambda *args, **kwargs: None)

    assert _sql(webhook, _message(1, "/start")) == [
        "SELECT bots_bot",
        "BEGIN ",
        "INSERT bots_processedupdate",
        "SELECT bots_conversation",
        "INSERT bots_conversation",
        "SELECT bots_conversation",
        "UPDATE bots_conversation",
        "INSERT bots_outboundmessage",
        "COMMIT ",
    ]


def test_a_duplicate_update_costs_the_claim_alone(statements: Webhook) -> None:
    assert _sql(statements, _message(1, "/start")) == [
        "SELECT bots_bot",
        "BEGIN ",
        "INSERT bots_processedupdate",
        "SELECT bots_conversation",
        "COMMIT ",
    ]


def test_a_save_failing_in_its_batch_answers_503_and_changes_nothing(
    statements: Webhook,
) -> None:
    # Given a known conversation, and another session holding the outbox
    # table against inserts, with the webhook giving up on a lock in 100 ms
    conversation = Conversation.objects.get()
    before = (conversation.state, conversation.last_update_id)
    outbox = OutboundMessage.objects.count()
    table = OutboundMessage._meta.db_table
    with locked_elsewhere(f"LOCK TABLE {table} IN SHARE MODE"):
        # When an update's new state and replies are saved
        answer = statements.post(_message(2, "Order a drink"))

    # Then it is a 503 that Telegram retries, and the claim, the state and
    # the outbox are as they were
    assert (answer.status_code, answer.json()["code"]) == (503, "db_unavailable")
    assert not ProcessedUpdate.objects.filter(update_id=2).exists()
    conversation.refresh_from_db()
    assert (conversation.state, conversation.last_update_id) == before
    assert OutboundMessage.objects.count() == outbox

    # and Telegram's retry is processed
    assert statements.post(_message(2, "Order a drink")).status_code == 200
    assert ProcessedUpdate.objects.filter(update_id=2).count() == 1
    assert OutboundMessage.objects.count() > outbox
