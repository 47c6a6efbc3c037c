"""How many statements an update costs: the webhook's hot path, counted.

Every statement is a round trip to PostgreSQL while the conversation's row
is locked, so a new one here is a cost every update pays. The spec and the
translations come from per-process caches and cost nothing once warm.
"""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bots.services import outbox_wake
from tests.bots.conftest import Webhook

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


def test_a_duplicate_update_costs_the_claim_alone(statements: Webhook) -> None:
    assert _sql(statements, _message(1, "/start")) == [
        "SELECT bots_bot",
        "BEGIN ",
        "INSERT bots_processedupdate",
        "COMMIT ",
    ]
