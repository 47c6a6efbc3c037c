"""Per-user export and delete: the API, the command and the bot's own tables."""

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from bots.models import (
    BlockedChat,
    Bot,
    Conversation,
    LlmRequest,
    OutboundMessage,
    ProcessedUpdate,
    SpecVersion,
)
from bots.services.privacy import NOT_COVERED
from bots.services.specs import spec_publish
from bots.sql import sql_run
from bots.sql.postgresql import APPLIED_TABLE, schema_name
from dsl import SpecInvalidError, spec_validate
from tests.bots.chat_user import ChatUser
from tests.bots.test_api import _token_client
from tests.bots.test_hostile import _demo_spec, _to_phone_step
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl

ANN = 5580001
BOB = 5580002
GROUP = -1005580003
PRIVACY = {
    "export": (
        "SELECT drink, size, quantity, name, phone FROM orders"
        " WHERE user_id = :telegram_user_id ORDER BY id"
    ),
    "delete": "DELETE FROM orders WHERE user_id = :telegram_user_id RETURNING id",
}
MODELS = (Conversation, ProcessedUpdate, OutboundMessage, LlmRequest, BlockedChat)
EMPTY: dict[str, list[Any]] = {
    "conversations": [],
    "processed_updates": [],
    "outbound_messages": [],
    "llm_requests": [],
    "blocked_chats": [],
}
NO_DELETIONS = {
    "conversations": 0,
    "processed_updates": 0,
    "outbound_messages": 0,
    "llm_requests": 0,
    "blocked_chats": 0,
}


@pytest.fixture(autouse=True)
def _chat_limit_out_of_the_way(settings: Any) -> None:
    # These tests are about stored rows, not Telegram's pace: a throttled
    # reply would stay pending until the next update.
    settings.OUTBOX_CHAT_BURST = 1000


@pytest.fixture
def api(transactional_db: None) -> APIClient:
    user: AbstractUser = get_user_model().objects.create_user(
        username="privacy-officer", password=None, is_staff=True, is_superuser=True
    )

    return _token_client(user)


class Recording(ChatUser):
    """A chat user who remembers the ids of the updates they sent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.update_ids: list[int] = []

    def post(self, update: dict[str, Any]) -> int:
        self.update_ids.append(update["update_id"])

        return super().post(update)


def _users(bot: Bot, telegram: FakeTelegramControl) -> dict[str, Recording]:
    """Ann orders in private and starts a wizard in a group; Bob orders too."""
    ann = Recording(bot=bot, telegram=telegram, user_id=ANN)
    ann_group = Recording(
        bot=bot, telegram=telegram, user_id=ANN, chat_id=GROUP, chat_type="supergroup"
    )
    bob = Recording(bot=bot, telegram=telegram, user_id=BOB, first_name="Bob")
    bob_group = Recording(
        bot=bot,
        telegram=telegram,
        user_id=BOB,
        first_name="Bob",
        chat_id=GROUP,
        chat_type="supergroup",
    )
    for user in (ann, bob):
        _to_phone_step(user, name=user.first_name)
        user.say("/skip")
    ann_group.say("/order")
    bob_group.say("/order")
    BlockedChat.objects.create(bot=bot, chat_id=ANN, reason="kicked")
    BlockedChat.objects.create(bot=bot, chat_id=GROUP, reason="left")
    conversation = Conversation.objects.get(bot=bot, chat_id=ANN)
    LlmRequest.objects.create(
        bot=bot,
        conversation=conversation,
        update_id=ann.update_ids[-1],
        node_id="ask_answer",
        request_key="k1",
        request={"prompt": "Is the latte hot?"},
        status="done",
        answer="Echo: Is the latte hot?",
    )

    return {"ann": ann, "ann_group": ann_group, "bob": bob, "bob_group": bob_group}


def _other_bot_with_ann() -> Bot:
    other: Bot = BotFactory.create()
    conversation = Conversation.objects.create(bot=other, chat_id=ANN, state={"x": 1})
    ProcessedUpdate.objects.create(bot=other, update_id=1, outcome="processed")
    OutboundMessage.objects.create(
        bot=other,
        conversation=conversation,
        chat_id=ANN,
        update_id=1,
        method="sendMessage",
        payload={},
    )
    BlockedChat.objects.create(bot=other, chat_id=ANN, reason="kicked")

    return other


def _counts(bot: Bot) -> dict[str, int]:
    return {model.__name__: model.objects.filter(bot=bot).count() for model in MODELS}


def _orders(bot: Bot) -> list[tuple[int, str]]:
    outcome = sql_run(
        bot=bot,
        node_id="check",
        statement="SELECT user_id, name FROM orders ORDER BY id",
        params={},
        mode="read",
        timeout_ms=2000,
        max_rows=100,
        update_id=0,
    )
    assert outcome.error is None

    return [(row["user_id"], row["name"]) for row in outcome.rows]


def _with_privacy(bot: Bot) -> None:
    spec_publish(bot=bot, source={**_demo_spec(), "privacy": PRIVACY})


def _without_privacy(bot: Bot) -> None:
    # The demo declares its statements; a bot that declares none is covered
    # by the runtime's rows alone.
    source = {key: value for key, value in _demo_spec().items() if key != "privacy"}
    spec_publish(bot=bot, source=source)


def _applied_privacy_records(bot: Bot) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT count(*) FROM "{schema_name(bot.pk)}"."{APPLIED_TABLE}"'
            " WHERE node_id LIKE 'privacy.%%'"
        )
        row = cursor.fetchone()
    assert row is not None

    return int(row[0])


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _expected_export(bot: Bot, users: dict[str, Recording]) -> dict[str, Any]:
    """Ann's rows as the export should show them, read back from the tables."""
    private = Conversation.objects.get(bot=bot, chat_id=ANN)
    group = Conversation.objects.get(bot=bot, chat_id=GROUP, user_id=ANN)
    live = SpecVersion.objects.filter(bot=bot).order_by("-number").first()
    assert live is not None
    messages = OutboundMessage.objects.filter(
        conversation__in=[private, group]
    ).order_by("pk")
    request = LlmRequest.objects.get(bot=bot)
    blocked = BlockedChat.objects.get(bot=bot, chat_id=ANN)
    update_ids = sorted(users["ann"].update_ids + users["ann_group"].update_ids)

    return {
        "bot_id": bot.pk,
        "telegram_user_id": ANN,
        "conversations": [
            {
                "chat_id": c.chat_id,
                "thread_id": 0,
                "user_id": c.user_id,
                "spec_version": live.number,
                "state": c.state,
                "locale": "en",
                "last_update_id": c.last_update_id,
                "created_at": _time(c.created_at),
                "updated_at": _time(c.updated_at),
            }
            for c in (private, group)
        ],
        "processed_updates": [
            {
                "update_id": u.update_id,
                "outcome": "processed",
                "created_at": _time(u.created_at),
            }
            for u in ProcessedUpdate.objects.filter(
                bot=bot, update_id__in=update_ids
            ).order_by("update_id")
        ],
        "outbound_messages": [
            {
                "chat_id": m.chat_id,
                "update_id": m.update_id,
                "method": m.method,
                "payload": m.payload,
                "status": "sent",
                "telegram_message_id": m.telegram_message_id,
                "created_at": _time(m.created_at),
                "sent_at": _time(m.sent_at),
            }
            for m in messages
        ],
        "llm_requests": [
            {
                "update_id": request.update_id,
                "node_id": "ask_answer",
                "status": "done",
                "request": {"prompt": "Is the latte hot?"},
                "answer": "Echo: Is the latte hot?",
                "created_at": _time(request.created_at),
                "finished_at": None,
            }
        ],
        "blocked_chats": [
            {
                "chat_id": ANN,
                "reason": "kicked",
                "created_at": _time(blocked.created_at),
            }
        ],
        "bot_data": {"covered": False, "detail": NOT_COVERED},
    }


def test_export_holds_exactly_the_users_rows_of_that_bot(
    api: APIClient, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    _without_privacy(demo_bot)
    users = _users(demo_bot, telegram_api)
    _other_bot_with_ann()
    expected = _expected_export(demo_bot, users)

    response = api.get(f"/bots/{demo_bot.pk}/users/{ANN}/data")

    assert response.status_code == 200
    export = response.json()
    assert export == expected
    # Every update Ann sent is accounted for, in private and in the group.
    assert [u["update_id"] for u in export["processed_updates"]] == sorted(
        users["ann"].update_ids + users["ann_group"].update_ids
    )
    assert [(c["chat_id"], c["user_id"]) for c in export["conversations"]] == [
        (ANN, 0),
        (GROUP, ANN),
    ]
    assert export["conversations"][0]["state"]["vars"]["name"] == "Ann"


def test_the_demo_bot_exports_its_own_orders_of_the_user(
    api: APIClient, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    _users(demo_bot, telegram_api)

    rows = api.get(f"/bots/{demo_bot.pk}/users/{ANN}/data").json()["bot_data"]

    assert rows["covered"] is True
    assert [
        {key: value for key, value in row.items() if key != "created_at"}
        for row in rows["rows"]
    ] == [
        {"drink": "latte", "size": "small", "quantity": 2, "name": "Ann", "phone": None}
    ]


def test_export_includes_the_bots_own_rows_when_the_spec_declares_them(
    api: APIClient, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    _users(demo_bot, telegram_api)
    _with_privacy(demo_bot)

    response = api.get(f"/bots/{demo_bot.pk}/users/{ANN}/data")

    assert response.status_code == 200
    assert response.json()["bot_data"] == {
        "covered": True,
        "rows": [
            {
                "drink": "latte",
                "size": "small",
                "quantity": 2,
                "name": "Ann",
                "phone": None,
            }
        ],
        "truncated": False,
    }
    assert _applied_privacy_records(demo_bot) == 0


def test_delete_removes_the_users_rows_and_leaves_everyone_elses(
    api: APIClient, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    users = _users(demo_bot, telegram_api)
    other = _other_bot_with_ann()
    _with_privacy(demo_bot)
    before = _counts(demo_bot)
    other_before = _counts(other)
    ann_export = api.get(f"/bots/{demo_bot.pk}/users/{ANN}/data").json()
    ann_updates = len(users["ann"].update_ids + users["ann_group"].update_ids)
    ann_messages = len(ann_export["outbound_messages"])

    response = api.delete(f"/bots/{demo_bot.pk}/users/{ANN}/data")

    assert response.status_code == 200
    assert response.json() == {
        "bot_id": demo_bot.pk,
        "telegram_user_id": ANN,
        "deleted": {
            "conversations": 2,
            "processed_updates": ann_updates,
            "outbound_messages": ann_messages,
            "llm_requests": 1,
            "blocked_chats": 1,
        },
        "bot_data": {"covered": True, "deleted": 1, "truncated": False},
    }
    assert _counts(demo_bot) == {
        "Conversation": before["Conversation"] - 2,
        "ProcessedUpdate": before["ProcessedUpdate"] - ann_updates,
        "OutboundMessage": before["OutboundMessage"] - ann_messages,
        "LlmRequest": 0,
        "BlockedChat": 1,
    }
    assert _counts(other) == other_before
    assert sorted(
        Conversation.objects.filter(bot=demo_bot).values_list("chat_id", "user_id")
    ) == [(GROUP, BOB), (BOB, 0)]
    assert _orders(demo_bot) == [(BOB, "Bob")]
    assert api.get(f"/bots/{demo_bot.pk}/users/{ANN}/data").json() == {
        "bot_id": demo_bot.pk,
        "telegram_user_id": ANN,
        **EMPTY,
        "bot_data": {"covered": True, "rows": [], "truncated": False},
    }
    assert _applied_privacy_records(demo_bot) == 0


def test_a_second_delete_finds_nothing(
    api: APIClient, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    _users(demo_bot, telegram_api)
    _with_privacy(demo_bot)
    api.delete(f"/bots/{demo_bot.pk}/users/{ANN}/data")
    before = _counts(demo_bot)

    response = api.delete(f"/bots/{demo_bot.pk}/users/{ANN}/data")

    assert response.status_code == 200
    assert response.json()["deleted"] == NO_DELETIONS
    assert response.json()["bot_data"] == {
        "covered": True,
        "deleted": 0,
        "truncated": False,
    }
    assert _counts(demo_bot) == before


def test_an_unknown_user_gets_an_empty_export_and_a_delete_of_nothing(
    api: APIClient, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    _without_privacy(demo_bot)
    _users(demo_bot, telegram_api)
    before = _counts(demo_bot)

    export = api.get(f"/bots/{demo_bot.pk}/users/999/data")
    deleted = api.delete(f"/bots/{demo_bot.pk}/users/999/data")

    assert export.status_code == 200
    assert export.json() == {
        "bot_id": demo_bot.pk,
        "telegram_user_id": 999,
        **EMPTY,
        "bot_data": {"covered": False, "detail": NOT_COVERED},
    }
    assert deleted.status_code == 200
    assert deleted.json() == {
        "bot_id": demo_bot.pk,
        "telegram_user_id": 999,
        "deleted": NO_DELETIONS,
        "bot_data": {"covered": False, "detail": NOT_COVERED},
    }
    assert _counts(demo_bot) == before


@pytest.mark.parametrize(
    "user_id", ["abc", "-5", "0", "1e3", "12.0", "%20", "١٢", "9" * 20]
)
@pytest.mark.parametrize("method", ["get", "delete"])
def test_a_user_id_that_is_not_a_positive_integer_is_a_400(
    api: APIClient, method: str, user_id: str
) -> None:
    bot = _other_bot_with_ann()
    before = _counts(bot)

    response = getattr(api, method)(f"/bots/{bot.pk}/users/{user_id}/data")

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The Telegram user id must be a positive integer.",
        "code": "user_id_invalid",
    }
    assert _counts(bot) == before


def test_a_failing_bot_delete_statement_deletes_nothing(
    api: APIClient, demo_bot: Bot, telegram_api: FakeTelegramControl
) -> None:
    _users(demo_bot, telegram_api)
    _with_privacy(demo_bot)
    Bot.objects.filter(pk=demo_bot.pk).update(allows_sql_writes=False)
    before = _counts(demo_bot)

    response = api.delete(f"/bots/{demo_bot.pk}/users/{ANN}/data")

    assert response.status_code == 409
    assert response.json() == {
        "detail": "The bot's own privacy statement failed.",
        "code": "bot_data_failed",
        "sql_error": "writes_not_allowed",
    }
    assert _counts(demo_bot) == before
    assert _orders(demo_bot) == [(ANN, "Ann"), (BOB, "Bob")]


@pytest.mark.parametrize("method", ["get", "delete"])
def test_only_staff_tokens_reach_user_data(transactional_db: None, method: str) -> None:
    bot: Bot = BotFactory.create()
    Conversation.objects.create(bot=bot, chat_id=ANN)
    outsider: AbstractUser = get_user_model().objects.create_user(
        username="outsider", password=None, is_staff=False
    )
    url = f"/bots/{bot.pk}/users/{ANN}/data"

    anonymous = getattr(APIClient(), method)(url)
    not_staff = getattr(_token_client(outsider), method)(url)

    assert (anonymous.status_code, anonymous.json()["code"]) == (
        401,
        "not_authenticated",
    )
    assert (not_staff.status_code, not_staff.json()["code"]) == (
        403,
        "permission_denied",
    )
    assert Conversation.objects.filter(bot=bot).count() == 1


def test_the_command_exports_to_a_file_and_deletes(
    api: APIClient, demo_bot: Bot, telegram_api: FakeTelegramControl, tmp_path: Path
) -> None:
    _users(demo_bot, telegram_api)
    _with_privacy(demo_bot)
    target = tmp_path / "ann.json"
    expected = api.get(f"/bots/{demo_bot.pk}/users/{ANN}/data").json()
    counts = {name: len(expected[name]) for name in EMPTY}
    exported, deleted = io.StringIO(), io.StringIO()

    call_command(
        "user_data", "demo", str(ANN), "--export", str(target), stdout=exported
    )
    call_command("user_data", "demo", str(ANN), "--delete", stdout=deleted)

    assert json.loads(target.read_text(encoding="utf-8")) == expected
    assert exported.getvalue() == (
        f"exported conversations=2 processed_updates={counts['processed_updates']} "
        f"outbound_messages={counts['outbound_messages']} llm_requests=1 "
        "blocked_chats=1 bot_data=1\n"
    )
    assert deleted.getvalue() == (
        f"deleted conversations=2 processed_updates={counts['processed_updates']} "
        f"outbound_messages={counts['outbound_messages']} llm_requests=1 "
        "blocked_chats=1 bot_data=1\n"
    )


@pytest.mark.parametrize(
    ("user_id", "known_bot", "message"),
    [
        (str(ANN), False, "No bot with id or slug 'nobody'."),
        ("x1", True, "The Telegram user id must be a positive integer."),
    ],
)
def test_the_command_refuses_bad_input_and_changes_nothing(
    transactional_db: None, user_id: str, known_bot: bool, message: str
) -> None:
    bot = _other_bot_with_ann()
    before = _counts(bot)

    with pytest.raises(CommandError) as excinfo:
        call_command(
            "user_data",
            bot.slug if known_bot else "nobody",
            user_id,
            "--delete",
            stdout=io.StringIO(),
        )

    assert str(excinfo.value) == message
    assert _counts(bot) == before


@pytest.mark.parametrize(
    ("privacy", "path", "message"),
    [
        (
            {"export": "SELECT * FROM orders WHERE user_id = :user_id"},
            "privacy.export",
            "Only :telegram_user_id is provided; not user_id",
        ),
        (
            {"delete": "DELETE FROM orders; DELETE FROM other"},
            "privacy.delete",
            None,
        ),
        ({"erase": "DELETE FROM orders"}, "privacy.erase", None),
    ],
)
def test_a_spec_with_bad_privacy_statements_is_refused(
    privacy: dict[str, str], path: str, message: str | None
) -> None:
    with pytest.raises(SpecInvalidError) as excinfo:
        spec_validate({**_demo_spec(), "privacy": privacy})

    assert [error.path for error in excinfo.value.errors] == [path]
    if message is not None:
        assert [error.message for error in excinfo.value.errors] == [message]
