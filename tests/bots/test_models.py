from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.db import connection

from bots.models import Bot
from bots.services.bots import bot_activate, bot_deactivate
from tests.factories import BotFactory
from tests.fakes.control import FakeTelegramControl
from tests.tokens import fake_bot_token

TOKEN = fake_bot_token(7123456789, "models")


def _raw(bot: Bot, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM bots_bot WHERE id = %s", [bot.pk])
        return str(cursor.fetchone()[0])


@pytest.mark.django_db
def test_token_and_webhook_secret_are_encrypted_at_rest() -> None:
    bot = BotFactory.create(token=TOKEN, webhook_secret="secret-value_123")

    raw_token = _raw(bot, "token")
    raw_secret = _raw(bot, "webhook_secret")

    assert TOKEN not in raw_token and TOKEN.split(":")[1][:8] not in raw_token
    assert "secret-value_123" not in raw_secret
    reloaded = Bot.objects.get(pk=bot.pk)
    assert (reloaded.token, reloaded.webhook_secret) == (TOKEN, "secret-value_123")


@pytest.mark.django_db
def test_a_new_key_first_still_reads_values_written_with_the_old_one(
    settings: Any,
) -> None:
    bot = BotFactory.create(token=TOKEN)
    old_keys = list(settings.FIELD_ENCRYPTION_KEYS)

    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *old_keys]

    assert Bot.objects.get(pk=bot.pk).token == TOKEN


@pytest.mark.django_db
def test_token_is_shown_masked() -> None:
    bot = BotFactory.create(token=TOKEN)

    assert bot.token_masked == f"7123456789:…{TOKEN[-4:]}"
    assert BotFactory.create(token="").token_masked == ""


@pytest.mark.django_db
def test_every_bot_gets_its_own_generated_webhook_secret() -> None:
    first, second = BotFactory.create(), BotFactory.create()

    assert len(first.webhook_secret) >= 32
    assert first.webhook_secret != second.webhook_secret


@pytest.mark.django_db(transaction=True)
def test_deactivating_a_bot_deletes_its_webhook(
    telegram_api: FakeTelegramControl,
) -> None:
    bot = BotFactory.create(token=TOKEN)

    bot_deactivate(bot=bot)

    assert Bot.objects.get(pk=bot.pk).is_active is False
    assert [(c["method"], c["token"]) for c in telegram_api.calls()] == [
        ("deleteWebhook", TOKEN)
    ]


@pytest.mark.django_db(transaction=True)
def test_activating_a_bot_sets_its_webhook_again_when_a_public_url_is_set(
    telegram_api: FakeTelegramControl, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = "https://bots.example.com"
    bot = BotFactory.create(token=TOKEN, is_active=False)

    bot_activate(bot=bot)

    assert Bot.objects.get(pk=bot.pk).is_active is True
    calls = telegram_api.calls("setWebhook")
    assert [c["params"]["url"] for c in calls] == [
        f"https://bots.example.com/telegram/{bot.pk}/webhook"
    ]
