import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from bots.models import AuditEntry, Bot, BotAccess
from tests.factories import BotAccessFactory, BotFactory
from tests.fakes.control import FakeTelegramControl
from tests.tokens import fake_bot_token

PUBLIC_URL = "https://bots.example.com"
OLD_TOKEN = fake_bot_token(7123400001, "audit-old")
NEW_TOKEN = fake_bot_token(7123400001, "audit-new")


def _fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def _row_text(entry: AuditEntry) -> str:
    """Everything the row holds, as text, to look for a leaked secret in."""
    values = AuditEntry.objects.filter(pk=entry.pk).values().get()

    return json.dumps(values, default=str, ensure_ascii=False)


def _assert_holds_none_of(entry: AuditEntry, *secrets: str) -> None:
    text = _row_text(entry)
    for secret in secrets:
        assert secret not in text
        assert secret.partition(":")[2] not in text
        assert secret[-4:] not in text


def _change_data(bot: Bot, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": bot.name,
        "slug": bot.slug,
        "default_locale": bot.default_locale,
        "draft_spec": json.dumps(bot.draft_spec),
        "translations-TOTAL_FORMS": "0",
        "translations-INITIAL_FORMS": "0",
        "translations-MIN_NUM_FORMS": "0",
        "translations-MAX_NUM_FORMS": "1000",
        **overrides,
    }
    if bot.is_active:
        data["is_active"] = "on"

    return data


@pytest.mark.django_db
def test_token_replaced_and_cleared_in_the_admin_are_audited_without_the_token(
    admin_client: Client, admin_user: Any
) -> None:
    bot = BotFactory.create(slug="tokened", token=OLD_TOKEN, is_active=False)
    url = f"/admin/bots/bot/{bot.pk}/change/"

    replaced = admin_client.post(url, _change_data(bot, new_token=NEW_TOKEN))
    kept = admin_client.post(url, _change_data(bot, name="Renamed only"))
    cleared = admin_client.post(url, _change_data(bot, clear_token="on"))

    assert (replaced.status_code, kept.status_code, cleared.status_code) == (
        302,
        302,
        302,
    )
    entries = list(AuditEntry.objects.order_by("id"))
    assert [
        (e.action, e.bot_id, e.bot_label, e.actor_id, e.actor_label, e.detail)
        for e in entries
    ] == [
        (
            "token_change",
            bot.pk,
            "tokened",
            admin_user.pk,
            "admin",
            {
                "change": "replaced",
                "telegram_bot_id": "7123400001",
                "old_fingerprint": _fingerprint(OLD_TOKEN),
                "new_fingerprint": _fingerprint(NEW_TOKEN),
            },
        ),
        (
            "token_change",
            bot.pk,
            "tokened",
            admin_user.pk,
            "admin",
            {
                "change": "cleared",
                "telegram_bot_id": "7123400001",
                "old_fingerprint": _fingerprint(NEW_TOKEN),
                "new_fingerprint": "",
            },
        ),
    ]
    for entry in entries:
        _assert_holds_none_of(entry, OLD_TOKEN, NEW_TOKEN)


@pytest.mark.django_db
def test_a_refused_token_leaves_no_audit_entry(admin_client: Client) -> None:
    bot = BotFactory.create(token=OLD_TOKEN)

    response = admin_client.post(
        f"/admin/bots/bot/{bot.pk}/change/", _change_data(bot, new_token="nope")
    )

    assert response.status_code == 200
    assert Bot.objects.get(pk=bot.pk).token == OLD_TOKEN
    assert AuditEntry.objects.count() == 0


def test_rotate_commands_are_audited_without_any_secret(
    demo_bot: Bot, telegram_api: FakeTelegramControl, settings: Any, tmp_path: Path
) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_URL
    old_token = demo_bot.token
    old_secret = demo_bot.webhook_secret
    new_token = fake_bot_token(7000000001, "audited-rotation")
    token_file = tmp_path / "token"
    token_file.write_text(new_token, encoding="utf-8")

    call_command("rotate_bot_token", "demo", "--token-file", str(token_file))
    call_command("rotate_webhook_secret", "demo")

    new_secret = Bot.objects.get(pk=demo_bot.pk).webhook_secret
    entries = list(
        AuditEntry.objects.filter(
            action__in=["token_change", "secret_change"]
        ).order_by("id")
    )
    assert [
        (e.action, e.bot_id, e.actor_id, e.actor_label, e.detail) for e in entries
    ] == [
        (
            "token_change",
            demo_bot.pk,
            None,
            "command:rotate_bot_token",
            {
                "change": "replaced",
                "telegram_bot_id": "7000000001",
                "old_fingerprint": _fingerprint(old_token),
                "new_fingerprint": _fingerprint(new_token),
            },
        ),
        (
            "secret_change",
            demo_bot.pk,
            None,
            "command:rotate_webhook_secret",
            {
                "change": "rotated",
                "old_fingerprint": _fingerprint(old_secret),
                "new_fingerprint": _fingerprint(new_secret),
            },
        ),
    ]
    for entry in entries:
        _assert_holds_none_of(entry, old_token, new_token)
        assert old_secret not in _row_text(entry)
        assert new_secret not in _row_text(entry)


def test_a_rotation_telegram_refuses_is_not_audited(
    demo_bot: Bot, telegram_api: FakeTelegramControl, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = PUBLIC_URL
    telegram_api.add_fault(method="setWebhook", status=400, times=1)

    with pytest.raises(CommandError):
        call_command("rotate_webhook_secret", "demo")

    assert not AuditEntry.objects.filter(action="secret_change").exists()


@pytest.mark.django_db
def test_the_audit_log_shows_each_user_only_their_bots_and_is_read_only(
    admin_client: Client,
) -> None:
    mine = BotFactory.create(slug="mine")
    theirs = BotFactory.create(slug="theirs")
    gone = BotFactory.create(slug="gone")
    access = BotAccessFactory.create(bot=mine, level=BotAccess.Level.VIEW)
    for bot in (mine, theirs, gone):
        AuditEntry.objects.create(
            bot=bot, bot_label=bot.slug, actor_label="x", action="publish"
        )
    gone.delete()
    staff = Client()
    staff.force_login(access.user)
    hidden = AuditEntry.objects.get(bot_label="theirs")

    listing = staff.get("/admin/bots/auditentry/")
    other = staff.get(f"/admin/bots/auditentry/{hidden.pk}/change/")
    add = staff.get("/admin/bots/auditentry/add/")
    everything = admin_client.get("/admin/bots/auditentry/")
    change = admin_client.post(
        f"/admin/bots/auditentry/{hidden.pk}/change/", {"action": "delete"}
    )

    assert [e.bot_label for e in listing.context["cl"].result_list] == ["mine"]
    assert "theirs" not in listing.content.decode()
    assert other.status_code == 302
    assert add.status_code == 403
    assert sorted(e.bot_label for e in everything.context["cl"].result_list) == [
        "gone",
        "mine",
        "theirs",
    ]
    assert change.status_code == 403
    assert AuditEntry.objects.get(pk=hidden.pk).action == "publish"
