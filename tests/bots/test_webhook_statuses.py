"""Every status the webhook answers, each on a bot with a conversation going.

A refused request must leave everything as it was: no claimed update, no
outbound message, the conversation untouched. The secret is checked before
the body is read, so a stranger cannot make the runtime read (or parse) a
single byte.
"""

import json
import logging
import re
import socket
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from bots.models import Bot, Conversation, OutboundMessage, ProcessedUpdate
from bots.services.bots import DEMO_DIR
from bots.services.specs import spec_publish
from tests.bots.conftest import DEMO_SECRET, fixture_update
from tests.bots.hostile_server import demo_server_env, gunicorn

CHAT = 5570001
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def _message(update_id: int, text: str) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1767261600,
            "chat": {"id": CHAT, "type": "private"},
            "from": {
                "id": CHAT,
                "is_bot": False,
                "first_name": "Ann",
                "language_code": "en",
            },
            "text": text,
        },
    }


def _post(
    bot_id: int,
    body: bytes | str,
    *,
    secret: str | None = DEMO_SECRET,
    content_type: str = "application/json",
    **extra: Any,
) -> Any:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    client = Client(raise_request_exception=False)

    return client.post(
        f"/telegram/{bot_id}/webhook",
        data=body,
        content_type=content_type,
        headers=headers,
        **extra,
    )


def _snapshot() -> tuple[list[Any], list[Any], list[Any]]:
    """Everything an update can change: claims, the outbox, conversations."""
    claims = ProcessedUpdate.objects.order_by("bot_id", "update_id").values_list(
        "bot_id", "update_id", "outcome"
    )
    outbox = OutboundMessage.objects.order_by("pk").values_list(
        "pk", "chat_id", "method", "payload"
    )
    conversations = Conversation.objects.order_by("pk").values_list(
        "pk", "state", "locale", "last_update_id", "spec_version_id"
    )

    return list(claims), list(outbox), list(conversations)


@pytest.fixture
def chatting(demo_bot: Bot) -> Bot:
    """The demo bot with one conversation in its order wizard."""
    for update_id, text in ((1, "/start"), (2, "/order")):
        response = _post(demo_bot.pk, json.dumps(_message(update_id, text)))
        assert response.status_code == 200
    assert Conversation.objects.get().state["node"] == "order"

    return demo_bot


def _refused(response: Any, status: int, code: str) -> None:
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert response["Content-Type"] == "application/json"


# 403: the secret, before anything else about the request


# Each test sends all its cases to one bot, so that the suite sets the demo
# bot up once per status rather than once per case; the result is checked
# case by case, and the snapshot after each one.


Cases = Mapping[str, tuple[bytes | str, dict[str, Any]]]


def _outcomes(bot: Bot, cases: Cases) -> dict[str, tuple[int, str | None, bool]]:
    """Post each case; return its status, error code and whether it changed
    anything."""
    outcomes = {}
    for name, (body, options) in cases.items():
        before = _snapshot()
        response = _post(bot.pk, body, **options)
        assert response["Content-Type"] == "application/json", name
        code = response.json().get("code")
        outcomes[name] = (response.status_code, code, _snapshot() != before)

    return outcomes


def test_a_wrong_or_missing_secret_is_403_and_changes_nothing(chatting: Bot) -> None:
    update = json.dumps(_message(3, "Latte"))
    secrets = {
        "missing": None,
        "empty": "",
        "wrong": "wrong",
        "longer": DEMO_SECRET + "x",
        "shorter": DEMO_SECRET[:-1],
        "other_case": DEMO_SECRET.upper(),
    }
    cases: Cases = {name: (update, {"secret": s}) for name, s in secrets.items()}

    outcomes = _outcomes(chatting, cases)

    assert outcomes == dict.fromkeys(cases, (403, "forbidden", False))


def test_a_wrong_secret_is_403_whatever_the_body(chatting: Bot) -> None:
    envelope = '{"update_id": 1}'
    cases: Cases = {
        "body_over_the_cap": ("x" * 600_000, {}),
        "invalid_json": ("{not json", {}),
        "deep_nesting": ("[" * 100_000, {}),
        "not_utf8": (b"\xff\xfe{", {}),
        "wrong_content_type": (envelope, {"content_type": "text/plain"}),
        "declared_over_the_cap": (envelope, {"CONTENT_LENGTH": "99999999999"}),
        "malformed_length": (envelope, {"CONTENT_LENGTH": "abc"}),
    }
    for _body, options in cases.values():
        options["secret"] = "wrong"

    outcomes = _outcomes(chatting, cases)

    assert outcomes == dict.fromkeys(cases, (403, "forbidden", False))


@pytest.fixture
def server(demo_bot: Bot, fake_telegram_url: str) -> Iterator[str]:
    env = demo_server_env(
        database=settings.DATABASES["default"], telegram_url=fake_telegram_url
    )
    with gunicorn(workers=1, env=env) as url:
        yield url


def _headers_only(server: str, bot: Bot, secret: str) -> bytes:
    """Send a request's headers that promise a body, and never send it.

    Return what the server answered within two seconds (b"" for nothing).
    """
    host, port = server.removeprefix("http://").split(":")
    head = (
        f"POST /telegram/{bot.pk}/webhook HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"{SECRET_HEADER}: {secret}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 1000\r\n"
        "\r\n"
    )
    answer = b""
    with socket.create_connection((host, int(port)), timeout=2.0) as sock:
        sock.sendall(head.encode())
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                    break
        except TimeoutError:
            pass

    return answer


def test_the_secret_is_checked_before_a_byte_of_the_body_is_read(
    server: str, demo_bot: Bot
) -> None:
    # given a client that sends headers promising a body and then nothing

    # when the secret is wrong, and (to show the difference) when it is right
    wrong = _headers_only(server, demo_bot, "wrong")
    right = _headers_only(server, demo_bot, DEMO_SECRET)

    # then a wrong secret is refused at once, without waiting for the body;
    # with the right one the server waits for the body it was promised
    status = re.match(rb"HTTP/1\.[01] (\d{3}) ", wrong)
    assert status is not None and status.group(1) == b"403"
    assert json.loads(wrong.partition(b"\r\n\r\n")[2])["code"] == "forbidden"
    assert right == b""
    assert ProcessedUpdate.objects.count() == 0


# 404: no such bot


def test_an_unknown_bot_is_404_and_changes_nothing(chatting: Bot) -> None:
    before = _snapshot()

    response = _post(chatting.pk + 1000, json.dumps(_message(3, "Latte")))

    _refused(response, 404, "bot_not_found")
    assert response.json()["detail"] == "No such bot."
    assert _snapshot() == before


# 413, 415: size and media type


def test_a_body_over_the_cap_is_413_and_changes_nothing(chatting: Bot) -> None:
    before = _snapshot()
    update = {**_message(3, "Latte"), "pad": "x" * settings.WEBHOOK_MAX_BODY_BYTES}

    response = _post(chatting.pk, json.dumps(update))

    _refused(response, 413, "payload_too_large")
    assert _snapshot() == before


def test_a_content_type_other_than_json_is_415_and_changes_nothing(
    chatting: Bot,
) -> None:
    update = json.dumps(_message(3, "Latte"))
    types = [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "text/json",
        "",
    ]
    cases: Cases = {kind: (update, {"content_type": kind}) for kind in types}

    outcomes = _outcomes(chatting, cases)

    assert outcomes == dict.fromkeys(cases, (415, "unsupported_media_type", False))


# 400: an envelope that is not an update


def test_a_malformed_envelope_is_400_and_changes_nothing(chatting: Bot) -> None:
    bodies: dict[str, bytes | str] = {
        "invalid": "{not json",
        "truncated": '{"update_id": 3, "message": {"text": "La',
        "blank": " \r\n",
        "array": "[1, 2]",
        "array_of_updates": '[{"update_id": 3}]',
        "string": '"text"',
        "number": "3",
        "null": "null",
        "missing_update_id": '{"message": {}}',
        "string_update_id": '{"update_id": "3"}',
        "float_update_id": '{"update_id": 3.0}',
        "exponent_update_id": '{"update_id": 3e0}',
        "boolean_update_id": '{"update_id": true}',
        "null_update_id": '{"update_id": null}',
        "list_update_id": '{"update_id": [3]}',
        "over_64_bits": '{"update_id": 9223372036854775808}',
        "under_64_bits": '{"update_id": -9223372036854775809}',
        "5000_digits": '{"update_id": 1' + "0" * 5000 + "}",
        "nan": '{"update_id": NaN}',
        "infinity": '{"update_id": Infinity}',
        "deeply_nested_array": "[" * 100_000 + "]" * 100_000,
        "deeply_nested_message": '{"update_id": 3, "message": '
        + '{"a": ' * 30_000
        + "1"
        + "}" * 30_001,
        "not_utf8": json.dumps(_message(3, "XX")).encode().replace(b"XX", b"\xc3("),
    }
    cases: Cases = {name: (body, {}) for name, body in bodies.items()}

    outcomes = _outcomes(chatting, cases)

    assert outcomes == dict.fromkeys(cases, (400, "bad_update", False))


# 200: a valid envelope the runtime does not act on


def test_a_valid_envelope_without_anything_to_act_on_is_200_and_ignored(
    chatting: Bot,
) -> None:
    updates: dict[str, dict[str, Any]] = {
        "null_message": {"message": None},
        "nothing_but_the_id": {},
        "unknown_type": {"business_message_v9": {"text": "hi"}},
        "unknown_type_fixture": fixture_update("unknown_update_type"),
        "null_message_fixture": fixture_update("null_message"),
    }
    changes: dict[str, tuple[int, Any, bool]] = {}
    for update_id, (name, update) in enumerate(updates.items(), start=3):
        claims, outbox, conversations = _snapshot()
        response = _post(chatting.pk, json.dumps({**update, "update_id": update_id}))
        changes[name] = (
            response.status_code,
            response.json(),
            _snapshot()
            == ([*claims, (chatting.pk, update_id, "ignored")], outbox, conversations),
        )

    assert changes == dict.fromkeys(updates, (200, {"ok": True}, True))


def test_the_conversation_still_answers_after_every_refusal(chatting: Bot) -> None:
    # given a wizard that has seen hostile requests of every kind
    for body, secret in (("{", DEMO_SECRET), ("[]", DEMO_SECRET), ("{}", "no")):
        assert _post(chatting.pk, body, secret=secret).status_code in (400, 403)
    sent_before = OutboundMessage.objects.count()

    # when the user answers the step
    response = _post(chatting.pk, json.dumps(_message(3, "Latte")))

    # then the wizard moves on as if nothing had happened
    assert response.status_code == 200
    assert Conversation.objects.get().state["node"] == "order"
    assert OutboundMessage.objects.count() > sent_before
    assert ProcessedUpdate.objects.filter(update_id=3).get().outcome == "processed"


# A template over its bounds: 200, logged, the user gets the fallback


def test_a_template_over_its_bound_is_logged_and_the_user_gets_the_fallback(
    demo_bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    # given a published help text that builds a huge value
    source = json.loads((DEMO_DIR / "spec.json").read_text(encoding="utf-8"))
    source["nodes"]["help"]["template"] = "{{ 'x' * 10**9 }}"
    # The demo's conversation tests describe the shipped spec, changed here.
    demo_bot.transcripts.all().delete()
    spec_publish(bot=demo_bot, source=source)
    assert _post(demo_bot.pk, json.dumps(_message(1, "/start"))).status_code == 200
    sent_before = OutboundMessage.objects.count()

    # when the user asks for it
    with caplog.at_level(logging.WARNING, logger="bots.services.updates"):
        response = _post(demo_bot.pk, json.dumps(_message(2, "/help")))

    # then the webhook answers 200, the user gets the apology and the menu,
    # the log names the node and the bound, and the conversation is usable
    assert response.status_code == 200
    sent = OutboundMessage.objects.order_by("pk")[sent_before:]
    assert [m.payload["text"] for m in sent][:1] == [
        "Sorry, something went wrong. Let's start over."
    ]
    assert len(sent) == 2
    logged = [
        r.getMessage() for r in caplog.records if r.name == "bots.services.updates"
    ]
    assert logged == [
        "Node help failed: template_error "
        "(the template builds a value over 16384 characters)."
    ]
    assert Conversation.objects.get().state["node"] == "main"
    assert _post(demo_bot.pk, json.dumps(_message(3, "/order"))).status_code == 200
    assert Conversation.objects.get().state["node"] == "order"
