import json

import pytest
from django.test import Client

from bots.models import Bot, Conversation, OutboundMessage, ProcessedUpdate
from tests.bots.conftest import DEMO_SECRET, Webhook, fixture_update

START = {
    "update_id": 1001,
    "message": {
        "message_id": 1,
        "date": 1767261600,
        "chat": {"id": 5550001, "type": "private"},
        "from": {
            "id": 5550001,
            "is_bot": False,
            "first_name": "Ann",
            "language_code": "en",
        },
        "text": "/start",
    },
}


def _nothing_stored() -> bool:
    return (
        ProcessedUpdate.objects.count() == 0
        and Conversation.objects.count() == 0
        and OutboundMessage.objects.count() == 0
    )


def test_unknown_bot_is_404(demo_bot: Bot) -> None:
    response = Client().post(
        f"/telegram/{demo_bot.pk + 1000}/webhook",
        data=json.dumps(START),
        content_type="application/json",
        headers={"X-Telegram-Bot-Api-Secret-Token": DEMO_SECRET},
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "No such bot.", "code": "bot_not_found"}
    assert _nothing_stored()


@pytest.mark.parametrize(
    "secret", [None, "", "wrong-secret", DEMO_SECRET + "x", DEMO_SECRET[:-1]]
)
def test_wrong_or_missing_secret_is_403(webhook: Webhook, secret: str | None) -> None:
    response = webhook.post(START, secret=secret)

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert _nothing_stored()


def test_secret_is_checked_before_content_type(webhook: Webhook) -> None:
    response = webhook.post("x", secret="wrong", content_type="text/plain", raw=True)

    assert response.status_code == 403


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded"]
)
def test_other_content_type_is_415(webhook: Webhook, content_type: str) -> None:
    response = webhook.post(json.dumps(START), content_type=content_type, raw=True)

    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert _nothing_stored()


def test_body_over_the_cap_is_413(webhook: Webhook, settings: object) -> None:
    settings.WEBHOOK_MAX_BODY_BYTES = 2048  # type: ignore[attr-defined]
    update = dict(START, padding="x" * 4096)

    response = webhook.post(update)

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert _nothing_stored()


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        '{"update_id": 1',
        "[1, 2]",
        '"text"',
        "{}",
        '{"update_id": "5"}',
        '{"update_id": 1.5}',
        '{"update_id": true}',
        '{"update_id": null}',
        '{"update_id": 9223372036854775808}',
        '{"update_id": -9223372036854775809}',
        '{"update_id": NaN}',
        "[" * 100000 + "]" * 100000,
        '{"update_id": 1, "x": ' + "[" * 50000 + "]" * 50000 + "}",
        " ",
    ],
)
def test_malformed_envelope_is_400(webhook: Webhook, body: str) -> None:
    response = webhook.post(body, raw=True)

    assert response.status_code == 400
    assert response.json()["code"] == "bad_update"
    assert _nothing_stored()


def test_largest_64_bit_update_id_is_accepted(webhook: Webhook) -> None:
    response = webhook.post({"update_id": 9223372036854775807, "poll": {"id": "1"}})

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert list(ProcessedUpdate.objects.values_list("update_id", "outcome")) == [
        (9223372036854775807, "ignored")
    ]


@pytest.mark.parametrize(
    "name",
    ["unknown_update_type", "null_message", "inline_query", "poll", "channel_post"],
)
def test_update_the_runtime_does_not_handle_is_200_and_ignored(
    webhook: Webhook, name: str
) -> None:
    update = fixture_update(name)

    response = webhook.post(update)

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert list(ProcessedUpdate.objects.values_list("update_id", "outcome")) == [
        (update["update_id"], "ignored")
    ]
    assert OutboundMessage.objects.count() == 0


def test_duplicate_update_is_a_no_op(webhook: Webhook) -> None:
    first = webhook.post(START)
    sent_after_first = OutboundMessage.objects.count()
    state_after_first = Conversation.objects.get().state

    second = webhook.post(START)

    assert first.status_code == second.status_code == 200
    assert second.json() == {"ok": True}
    assert sent_after_first >= 1
    assert OutboundMessage.objects.count() == sent_after_first
    assert ProcessedUpdate.objects.count() == 1
    assert Conversation.objects.get().state == state_after_first


def test_an_inactive_bot_answers_404_and_stores_nothing(webhook: Webhook) -> None:
    Bot.objects.filter(pk=webhook.bot.pk).update(is_active=False)

    response = webhook.post(START)

    assert response.status_code == 404
    assert response.json()["code"] == "bot_inactive"
    assert ProcessedUpdate.objects.count() == 0
    assert Conversation.objects.count() == 0
    assert OutboundMessage.objects.count() == 0


def test_an_inactive_bot_with_a_wrong_secret_is_still_a_403(webhook: Webhook) -> None:
    Bot.objects.filter(pk=webhook.bot.pk).update(is_active=False)

    response = webhook.post(START, secret="wrong")

    assert response.status_code == 403
    assert ProcessedUpdate.objects.count() == 0


def test_an_update_refused_while_inactive_is_processed_once_switched_back_on(
    webhook: Webhook,
) -> None:
    Bot.objects.filter(pk=webhook.bot.pk).update(is_active=False)
    assert webhook.post(START).status_code == 404

    Bot.objects.filter(pk=webhook.bot.pk).update(is_active=True)
    response = webhook.post(START)

    assert response.status_code == 200
    assert list(ProcessedUpdate.objects.values_list("outcome", flat=True)) == [
        "processed"
    ]
    assert OutboundMessage.objects.count() == 1


def test_get_is_not_allowed(webhook: Webhook) -> None:
    response = Client().get(f"/telegram/{webhook.bot.pk}/webhook")

    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response["Allow"] == "POST"
